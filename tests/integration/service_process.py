"""A relaystream service as a real `relaystream run NAME` process, for the crash tests.

The process gets a clean RELAYSTREAM_* environment (bootstrap, topic prefix, a free health
port, plus the test's own settings), writes its output to a log file the test shows on
failure, and is killed with SIGKILL or stopped with SIGTERM like an orchestrator would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from child_processes import ends_with_test_run

from relaystream_devkit.broker import free_loopback_ports


class ServiceProcess:
    def __init__(
        self,
        service: str,
        *,
        bootstrap: str,
        prefix: str,
        log_path: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.service = service
        (self.port,) = free_loopback_ports(1)
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RELAYSTREAM_")},
            "RELAYSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "RELAYSTREAM_TOPIC_PREFIX": prefix,
            "RELAYSTREAM_HTTP_BIND": f"127.0.0.1:{self.port}",
            **(settings or {}),
        }
        self._log = log_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaystream", "run", self.service],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=ends_with_test_run,
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def wait_ready(self, within: float = 90.0) -> None:
        for _ in range(int(within * 5)):
            assert self.process is not None and self.process.poll() is None, "service exited"
            if await asyncio.to_thread(self.ready):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.service} service not ready")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, within: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after `within` seconds; the exit code of a graceful stop."""
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                code = self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.kill()
        return code

    def close(self) -> None:
        self.kill()
        self._log.close()
