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
import random
import re
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import IO, Protocol

import aiosmtplib

from .bench_postfix import postfix_tool_path
from .broker import port_in_use
from .sink import MailSink

SENDER = "bench@sender.bench.test"


@dataclass(frozen=True)
class Scenario:
    name: str
    recipients: int
    domains: int
    size: int
    # Random words instead of one repeated line (see _prose).
    text: bool = False

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
        if self.text:
            return headers + _prose(index, self.size - len(headers))
        line = b"x" * 76 + b"\r\n"
        lines = max(1, (self.size - len(headers)) // len(line))
        return headers + line * lines


# Words for bodies that compress about as prose does (a repeated line compresses 40-fold, which
# flatters a Kafka compression codec): 2000 made-up words of 2 to 9 letters, drawn at random.
_WORDS = [
    "".join(random.Random(n).choices(string.ascii_lowercase, k=2 + n % 8)).encode()
    for n in range(2000)
]


def _prose(seed: int, size: int) -> bytes:
    """About `size` bytes of random words in lines of at most 76 characters, the same for a
    seed."""
    draw = random.Random(seed)
    lines: list[bytes] = []
    line: list[bytes] = []
    length = written = 0
    while written < size:
        word = draw.choice(_WORDS)
        if length + len(word) + 1 > 76:
            lines.append(b" ".join(line) + b"\r\n")
            written += length + 2
            line, length = [], 0
        line.append(word)
        length += len(word) + 1
    return b"".join(lines)


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("1rcpt-1k", recipients=1, domains=1, size=1024),
        Scenario("1rcpt-10k", recipients=1, domains=1, size=10 * 1024),
        Scenario("1rcpt-10k-text", recipients=1, domains=1, size=10 * 1024, text=True),
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


def inject_smtp_source(
    host: str, port: int, scenario: Scenario, messages: int, concurrency: int, tag: str
) -> Injection:
    """Postfix's reference generator; it sends every recipient of a message to one domain."""
    program = postfix_tool_path("smtp-source")
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


# -- the sink processes -----------------------------------------------------------------------


class Sink(Protocol):
    """Where both systems deliver; it counts what arrived and when the last of it did."""

    @property
    def pid(self) -> int | None: ...

    @property
    def recipients(self) -> int: ...

    @property
    def last_arrival(self) -> float: ...

    def start(self, timeout_s: float = 30.0) -> None: ...

    async def wait_for(self, total: int, idle_timeout_s: float) -> bool: ...

    def stop(self) -> None: ...


async def wait_for_count(sink: Sink, total: int, idle_timeout_s: float) -> bool:
    """Wait until `sink` counted `total` recipients; False once nothing arrived for
    `idle_timeout_s`."""
    seen, since = sink.recipients, time.monotonic()
    while sink.recipients < total:
        if sink.recipients != seen:
            seen, since = sink.recipients, time.monotonic()
        elif time.monotonic() - since > idle_timeout_s:
            return False
        await asyncio.sleep(0.01)
    # The count may include arrivals newer than the published timestamp: one more poll.
    await asyncio.sleep(0.05)
    return True


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
        return await wait_for_count(self, total, idle_timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class SmtpSinkCounter:
    """Reads `smtp-sink -c` output: it rewrites one status line per event, "sess=N quit=N
    mesg=N" ended by a CR, whatever the pipe's chunks."""

    _MESSAGES = re.compile(rb"mesg=(\d+)")

    def __init__(self) -> None:
        self.messages = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bool:
        """Take the next output; whether the message count went up."""
        *complete, self._pending = (self._pending + chunk).split(b"\r")
        before = self.messages
        for line in complete:
            found = self._MESSAGES.search(line)
            if found:
                self.messages = max(self.messages, int(found.group(1)))
        return self.messages > before


class PostfixSinkProcess:
    """Postfix's reference sink, `smtp-sink`, counting with its `-c` status line.

    It counts messages, not recipients, so it serves one-recipient scenarios only (Postfix
    would also group a message's recipients into one relayed copy). It offers PIPELINING, as
    the builtin sink does, and costs a fraction of its CPU (it is C, event-driven).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._count = 0
        self._last_arrival = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def recipients(self) -> int:
        return self._count

    @property
    def last_arrival(self) -> float:
        return self._last_arrival

    def start(self, timeout_s: float = 30.0) -> None:
        program = postfix_tool_path("smtp-sink")
        if program is None:
            raise RuntimeError("smtp-sink not found: apt-get install postfix")
        # As root it must be told whom to run as once its socket is open.
        user = ("-u", "nobody") if os.geteuid() == 0 else ()
        self._process = subprocess.Popen(
            [program, "-c", *user, f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read_counters, args=(self._process.stdout,), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not port_in_use(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"smtp-sink did not start on port {self.port}")
            time.sleep(0.05)

    def _read_counters(self, output: IO[bytes]) -> None:
        counter = SmtpSinkCounter()
        while chunk := os.read(output.fileno(), 4096):
            if counter.feed(chunk):
                # The builtin sink's clock (time.monotonic()); set before the count is read.
                self._last_arrival = time.monotonic()
                self._count = counter.messages

    async def wait_for(self, total: int, idle_timeout_s: float) -> bool:
        return await wait_for_count(self, total, idle_timeout_s)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._reader is not None:
            self._reader.join(5)
