"""The load side of `relaystream bench`: scenarios, SMTP load generators and the counting sink.

Every message of a run carries the run's tag in each recipient's local part, so the log
records (and Postfix's log lines) of one run can be told from the others on shared topics.
The sink runs in its own process, so it competes with the generator for neither the GIL nor
the event loop; its arrival times are CLOCK_MONOTONIC, comparable across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import aiosmtplib

from .sink import MailSink

SENDER = "bench@sender.bench.test"


@dataclass(frozen=True)
class Scenario:
    name: str
    recipients: int
    domains: int
    size: int

    def recipient_list(self, index: int, tag: str) -> list[str]:
        return [
            f"m{index}.r{k}-{tag}@d{k % self.domains}.bench.test" for k in range(self.recipients)
        ]

    def content(self, index: int, recipients: list[str]) -> bytes:
        """A plain message of about `size` bytes: headers, then 76-character body lines."""
        headers = (
            f"From: <{SENDER}>\r\nTo: <{recipients[0]}>\r\nSubject: bench {index}\r\n"
            f"Message-ID: <{index}.{recipients[0]}>\r\n\r\n"
        ).encode()
        line = b"x" * 76 + b"\r\n"
        lines = max(1, (self.size - len(headers)) // len(line))
        return headers + line * lines


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("1rcpt-1k", recipients=1, domains=1, size=1024),
        Scenario("1rcpt-10k", recipients=1, domains=1, size=10 * 1024),
        Scenario("10rcpt-10dom-1k", recipients=10, domains=10, size=1024),
        Scenario("1rcpt-100k", recipients=1, domains=1, size=100 * 1024),
    )
}


@dataclass(frozen=True)
class Injection:
    """How the generator fared: messages accepted (250) or refused, and when (monotonic)."""

    accepted: int
    refused: int
    started: float
    finished: float
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.accepted / max(self.finished - self.started, 1e-9)


async def inject_builtin(
    host: str,
    port: int,
    scenario: Scenario,
    messages: int,
    concurrency: int,
    tag: str,
    rate: float | None = None,
) -> Injection:
    """Send `messages` over `concurrency` SMTP sessions, each reusing its connection; with a
    `rate`, message i is sent no earlier than i/rate seconds after the start."""
    indexes: Iterator[int] = iter(range(messages))
    accepted = refused = 0
    errors: list[str] = []
    started = time.monotonic()

    async def session() -> None:
        nonlocal accepted, refused
        client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=120)
        await client.connect()
        try:
            for index in indexes:  # shared: each session takes the next message
                if rate:
                    await asyncio.sleep(started + index / rate - time.monotonic())
                recipients = scenario.recipient_list(index, tag)
                try:
                    await client.sendmail(SENDER, recipients, scenario.content(index, recipients))
                    accepted += 1
                except aiosmtplib.SMTPException as error:
                    refused += 1
                    errors.append(str(error))
                    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
                        await client.connect()
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()

    await asyncio.gather(*(session() for _ in range(min(concurrency, messages))))
    return Injection(accepted, refused, started, time.monotonic(), errors[0] if errors else None)


def smtp_source_path() -> str | None:
    # Debian installs Postfix's tools in /usr/sbin, which a user's PATH may lack.
    return shutil.which("smtp-source", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def inject_smtp_source(
    host: str, port: int, scenario: Scenario, messages: int, concurrency: int, tag: str
) -> Injection:
    """Postfix's reference generator; it sends every recipient of a message to one domain."""
    program = smtp_source_path()
    if program is None:
        raise RuntimeError("smtp-source not found: apt-get install postfix")
    if scenario.domains != 1:
        raise RuntimeError(
            f"smtp-source cannot spread recipients over domains ({scenario.name}): use the "
            "builtin generator"
        )
    command = [
        program,
        *("-s", str(min(concurrency, messages)), "-m", str(messages)),
        *("-l", str(scenario.size), "-r", str(scenario.recipients), "-N"),
        *("-f", SENDER, "-t", f"r-{tag}@d0.bench.test", "-M", "generator.bench.test"),
        f"{host}:{port}",
    ]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    finished = time.monotonic()
    if completed.returncode != 0:
        error = (completed.stderr or completed.stdout).strip()[-500:]
        return Injection(0, messages, started, finished, error)
    return Injection(messages, 0, started, finished)


# -- the sink process ------------------------------------------------------------------------


def _serve_sink(
    port: int,
    recipients: Synchronized[int],
    last_arrival: Synchronized[float],
    ready: Event,
    stop: Event,
) -> None:
    sink = MailSink(port=port, quiet=True)
    sink.start()
    ready.set()
    try:
        while not stop.wait(0.02):
            arrivals = sink.stats.arrivals
            if arrivals:
                last_arrival.value = arrivals[-1]
            recipients.value = sink.stats.recipients
    finally:
        sink.stop()


class SinkProcess:
    """The builtin MailSink in a child process; `recipients` and `last_arrival` are live."""

    def __init__(self, port: int) -> None:
        self.port = port
        context = multiprocessing.get_context("spawn")
        self._recipients: Synchronized[int] = context.Value("q", 0)
        self._last_arrival: Synchronized[float] = context.Value("d", 0.0)
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve_sink,
            args=(port, self._recipients, self._last_arrival, self._ready, self._stop),
            name="relaystream-bench-sink",
            daemon=True,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def recipients(self) -> int:
        return int(self._recipients.value)

    @property
    def last_arrival(self) -> float:
        return float(self._last_arrival.value)

    def start(self, timeout_s: float = 30.0) -> None:
        self._process.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the bench sink did not start on port {self.port}")

    async def wait_for(self, total: int, idle_timeout_s: float) -> bool:
        """Wait until the sink counted `total` recipients; False once nothing arrived for
        `idle_timeout_s`."""
        seen, since = self.recipients, time.monotonic()
        while self.recipients < total:
            if self.recipients != seen:
                seen, since = self.recipients, time.monotonic()
            elif time.monotonic() - since > idle_timeout_s:
                return False
            await asyncio.sleep(0.01)
        # The count may include arrivals newer than the published timestamp: one more poll.
        await asyncio.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
