"""With Kafka unreachable, SMTP answers 451 4.3.0 and HTTP 503, and no message lands.

Runs its own broker (LocalKafka) so it can stop and restart it without disturbing the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from ingest_harness import ingest_settings, read_events, running_ingest

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream_devkit.broker import LocalKafka, free_loopback_ports

pytestmark = pytest.mark.kafka


class RestartableBroker:
    def __init__(self, state_dir: Path) -> None:
        self._broker = LocalKafka(state_dir=state_dir)
        self._data_dir = state_dir / "data"
        self._port, self._controller_port = free_loopback_ports(2)

    def start(self) -> str:
        bootstrap: str = self._broker.start(
            port=self._port,
            controller_port=self._controller_port,
            data_dir=self._data_dir,
            timeout_s=180,
        )
        return bootstrap

    def stop(self) -> None:
        self._broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    started = RestartableBroker(tmp_path / "own-kafka")
    try:
        yield started
    finally:
        started.stop()


async def test_kafka_down_means_451_and_503_and_nothing_accepted(
    broker: RestartableBroker,
) -> None:
    bootstrap = await asyncio.to_thread(broker.start)
    topics = declare_topics(TopicSettings(prefix="down."))
    await ensure_topics(bootstrap, topics)
    settings = ingest_settings(bootstrap, "down.", kafka_ack_timeout_seconds=3.0)
    async with running_ingest(settings, clean_exit=False) as ingest:
        await asyncio.to_thread(broker.stop)
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=ingest.endpoints.smtp_port, timeout=60, start_tls=False
        )
        await client.connect()
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.sendmail(
                "s@example.com", ["a@example.org", "b@example.org"], b"Subject: x\r\n\r\ny\r\n"
            )
        await client.quit()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{ingest.endpoints.http_port}/api/inject/v1",
                json={
                    "envelope_sender": "s@example.com",
                    "recipients": [{"email": "c@example.org"}],
                    "content": "Subject: x\r\n\r\ny\r\n",
                },
            ) as response,
        ):
            http_status = response.status
        # Shut down while Kafka is still away: in-flight work is given up, not half-done.
        ingest.runtime.request_shutdown("test over")
    assert refused.value.code == 451 and refused.value.message.startswith("4.3.0")
    assert http_status == 503

    await asyncio.to_thread(broker.start)
    committed = await read_events(
        bootstrap, topics.accepted.name, 0, schema="MessageAccepted", settle_seconds=5.0
    )
    assert committed == []
