"""Delivery's SMTP client against aiosmtplib: N messages over one connection to the bench sink.

    .venv/bin/python devkit/bench/smtp_client_bench.py [--messages 3000] [--content-size 10000]
        [--repeats 3] [--sink builtin|smtp-sink]

Why delivery speaks SMTP through its own client (delivery/smtp_session.py, smtp_client.py)
rather than aiosmtplib: both send the same messages, one recipient each, over one reused
connection to the same sink (the devkit's MailSink in a child process, which offers
PIPELINING as real MXes do; or Postfix's `smtp-sink`). aiosmtplib sends MAIL, RCPT and DATA
one at a time, waiting for each reply; delivery's session writes RSET, MAIL, RCPT and DATA at
once and reads their replies afterwards (RFC 2920), and copies a body only when a line ending
or a leading dot needs it. Prints per client the median (min-max) over the alternating
repeats of messages per second and of this process's CPU µs per message (the client's own
cost, which is what delivery pays per message on a CPU-bound machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import aiosmtplib

from relaystream.core.runtime import event_loop
from relaystream.delivery.smtp_session import Destination, SessionOptions, SmtpSession
from relaystream.delivery.tls import TlsMode
from relaystream_devkit.bench_load import PostfixSinkProcess, SinkProcess
from relaystream_devkit.broker import free_loopback_ports

SENDER = "bench@origin.example"
BenchSink = SinkProcess | PostfixSinkProcess
HOST = "127.0.0.1"


def content_of(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    body = line * (size // len(line) + 1)
    return b"From: bench@origin.example\r\nSubject: client bench\r\n\r\n" + body[:size]


async def send_with_aiosmtplib(port: int, messages: int, content: bytes) -> None:
    client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=60)
    await client.connect()
    try:
        for index in range(messages):
            await client.sendmail(SENDER, [f"user{index}@dest.example"], content)
    finally:
        await client.quit()


async def send_with_delivery(port: int, messages: int, content: bytes) -> None:
    destination = Destination(peer_name="sink", address=HOST, port=port)
    options = SessionOptions(ehlo_name="bench.relaystream.local", tls_mode=TlsMode.DISABLED)
    session = await SmtpSession.open(destination, options)
    try:
        for index in range(messages):
            reply = await session.send(SENDER, f"user{index}@dest.example", content)
            if not reply.is_success:
                raise RuntimeError(f"the sink refused message {index}: {reply}")
    finally:
        await session.close()


CLIENTS: dict[str, Callable[[int, int, bytes], Awaitable[None]]] = {
    "delivery": send_with_delivery,
    "aiosmtplib": send_with_aiosmtplib,
}


async def timed(
    client: Callable[[int, int, bytes], Awaitable[None]],
    sink: BenchSink,
    messages: int,
    content: bytes,
) -> tuple[float, float]:
    """(messages/s, CPU µs per message of this process) until the sink counted them all."""
    expected = sink.recipients + messages
    cpu_before, started = time.process_time(), time.monotonic()
    await client(sink.port, messages, content)
    if not await sink.wait_for(expected, idle_timeout_s=30.0):
        raise RuntimeError(f"the sink counted {sink.recipients} of {expected} messages")
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    return messages / elapsed, cpu / messages * 1e6


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def bench(args: argparse.Namespace, sink: BenchSink) -> None:
    content = content_of(args.content_size)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    for client in CLIENTS.values():  # warm-up: a connection each, unmeasured
        await timed(client, sink, min(200, args.messages), content)
    for _ in range(args.repeats):
        for name, client in CLIENTS.items():
            results[name].append(await timed(client, sink, args.messages, content))
    print(
        f"{args.messages} messages of {len(content)} bytes over one connection, "
        f"{args.repeats} alternating repeats, sink {args.sink}: median (min-max)"
    )
    for name, runs in results.items():
        print(
            f"  {name:<11} {spread([rate for rate, _ in runs])} msgs/s, "
            f"client CPU {spread([cpu for _, cpu in runs])} µs per message"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--content-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sink", choices=("builtin", "smtp-sink"), default="builtin")
    args = parser.parse_args()
    port = free_loopback_ports(1)[0]
    sink: BenchSink = SinkProcess(port) if args.sink == "builtin" else PostfixSinkProcess(port)
    sink.start()
    try:
        event_loop.run(bench(args, sink))
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
