"""Crash safety: the scheduling service as a real process, killed with SIGKILL and restarted.

Waiting messages must survive (their due times are in the `queued` events), be released at
their original due time (not earlier), and nothing released before the crash may be released
again (the rebuild reads recent `attempts` and treats them as in flight).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from scheduling_support import TopicWatcher, create_topics, now_ms, queue_message

from relaystream.core.kafka.producer import EventProducer
from relaystream.devkit.broker import free_loopback_ports

LATE_MS = 3_000


class ServiceProcess:
    def __init__(self, bootstrap: str, prefix: str, log_path: Path) -> None:
        (self.port,) = free_loopback_ports(1)
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RELAYSTREAM_")},
            "RELAYSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "RELAYSTREAM_TOPIC_PREFIX": prefix,
            "RELAYSTREAM_HTTP_BIND": f"127.0.0.1:{self.port}",
            "RELAYSTREAM_SCHEDULING_TICK_INTERVAL_SECONDS": "0.2",
        }
        self._log = log_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaystream.scheduling"],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def wait_ready(self, within: float = 60.0) -> None:
        for _ in range(int(within * 5)):
            assert self.process is not None and self.process.poll() is None, "service exited"
            if await asyncio.to_thread(self.ready):
                return
            await asyncio.sleep(0.2)
        raise AssertionError("service not ready")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "scheduling.log"
    yield path
    # Shown only when the test fails (pytest captures stdout).
    if path.exists():
        print(path.read_text(errors="replace")[-5000:])


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    async with EventProducer(kafka_bootstrap, client_id="scheduling-crash-test") as producer:
        yield producer


async def test_sigkill_loses_no_waiting_message_and_releases_none_twice(
    kafka_bootstrap: str, topic_prefix: str, producer: EventProducer, log_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    start = now_ms()
    dues = {f"now-{n}": start for n in range(3)}
    dues |= {f"later-{n}": start + 35_000 + n * 2_000 for n in range(5)}
    for message_id, due in dues.items():
        await queue_message(producer, topics, message_id, due_at=due)

    attempts = TopicWatcher(kafka_bootstrap, topics.attempts, "DeliveryRequest")
    await attempts.start()
    first = ServiceProcess(kafka_bootstrap, topic_prefix, log_path)
    second = ServiceProcess(kafka_bootstrap, topic_prefix, log_path)
    try:
        first.start()
        await first.wait_ready()
        released = await attempts.wait_for(3, within=20)
        assert sorted(r.key for r in released) == ["now-0", "now-1", "now-2"]
        first.kill()
        assert now_ms() < start + 30_000, "too slow to test the later messages"

        second.start()
        await second.wait_ready(within=90)
        await attempts.wait_for(len(dues), within=70)
        await asyncio.sleep(3.0)
    finally:
        first.kill()
        second.terminate()
        await attempts.stop()

    keys = [r.key for r in attempts.records]
    assert sorted(keys) == sorted(dues), "a message was lost or released twice"
    for record in attempts.records:
        assert dues[record.key] <= record.seen_at, f"{record.key} released early"
        if record.key.startswith("later-"):
            assert record.seen_at < dues[record.key] + LATE_MS, f"{record.key} released late"
