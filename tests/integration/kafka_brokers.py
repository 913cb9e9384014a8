"""A real Kafka broker for tests: the session's (tests/conftest.py) and those a test needs alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from relaystream_devkit.broker import LocalKafka, free_loopback_ports


@contextlib.contextmanager
def fresh_broker(state_dir: Path) -> Iterator[str]:
    """A single-node broker on free loopback ports with its data in `state_dir`, stopped on
    exit; yields its bootstrap address "127.0.0.1:PORT"."""
    broker = LocalKafka(state_dir=state_dir)
    port, controller_port = free_loopback_ports(2)
    # A generous deadline: on a busy 2-core machine the JVM can take a minute to come up.
    bootstrap = broker.start(
        port=port, controller_port=controller_port, data_dir=state_dir / "data", timeout_s=180
    )
    try:
        yield bootstrap
    finally:
        broker.stop()
