"""Fixtures shared by every test: a real Kafka broker on loopback and unique topic names.

The broker is started once per test session through the devkit (`LocalKafka`), on free
loopback ports with a temporary data dir, and stopped at the end. Tests that take
`kafka_bootstrap` get the `kafka` marker automatically, so `pytest -m "not kafka"` skips them.
Other conftest files (tests/integration/conftest.py, ...) add their own fixtures on top.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka_brokers import fresh_broker

from relaystream.core.runtime import event_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the event loop the services run on."""
    return {"uvloop": event_loop.new_event_loop}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a fresh single-node broker for the whole session."""
    with fresh_broker(tmp_path_factory.mktemp("kafka-state")) as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic-name prefix no other test uses, e.g. "t.test_drift.1a2b3c4d." (legal chars only)."""
    test_name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:80]
    return f"t.{test_name}.{uuid.uuid4().hex[:8]}."
