"""A destination mail sink for local runs and benchmarks: a real SMTP server on loopback.

It accepts every message, writes each one to `<directory>/<n>.eml` (when a directory is given)
and counts what it received, so a newcomer can see delivered mail and a benchmark can time it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class SinkStats:
    """What the sink received; `arrivals` are monotonic timestamps, one per recipient."""

    messages: int = 0
    recipients: int = 0
    arrivals: list[float] = field(default_factory=list)


class OffersPipelining:
    """An aiosmtpd handler mixin that offers PIPELINING (RFC 2920), as real MXes do: aiosmtpd
    reads pipelined commands in order but does not say so, and senders pipeline only when told.
    """

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves it to a handler that has this hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _SinkHandler(OffersPipelining):
    def __init__(self, directory: Path | None, stats: SinkStats, quiet: bool) -> None:
        self.directory = directory
        self.stats = stats
        self.quiet = quiet

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.stats.messages += 1
        self.stats.recipients += len(envelope.rcpt_tos)
        now = time.monotonic()
        self.stats.arrivals.extend(now for _ in envelope.rcpt_tos)
        if self.directory is not None:
            path = self.directory / f"{self.stats.messages:06d}.eml"
            content = envelope.original_content or b""
            await asyncio.to_thread(path.write_bytes, content)
        if not self.quiet:
            print(
                f"sink: message {self.stats.messages} from <{envelope.mail_from}> "
                f"to {', '.join(f'<{r}>' for r in envelope.rcpt_tos)}",
                flush=True,
            )
        return "250 2.0.0 OK: stored by the relaystream sink"


class MailSink:
    """Start with `start()`, stop with `stop()`; listens on `host:port`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2526,
        directory: Path | None = None,
        quiet: bool = False,
    ) -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self._host, self._port = host, port
        self.stats = SinkStats()
        handler: Any = _SinkHandler(directory, self.stats, quiet)
        self._controller = Controller(
            handler, hostname=host, port=port, server_hostname="sink.relaystream.local"
        )

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
