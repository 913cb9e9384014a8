"""Running the ingest service in-process against the real broker, and reading what it produced."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaConsumer

from relaystream.core.events.codec import decode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicCatalog, TopicRole, TopicSettings, declare_topics
from relaystream.core.runtime.service import EXIT_OK, ServiceRuntime, run_service
from relaystream.core.runtime.settings import HostPort, IngestSettings, RuntimeSettings, Settings
from relaystream.ingest.service import SERVICE, IngestEndpoints, ingest_main

WAIT_SECONDS = 60.0
# Tests that need a refused record make `accepted` refuse records over this size.
ACCEPTED_MAX_BYTES = 64 * 1024


async def topics_with_small_accepted(bootstrap: str, prefix: str, partitions: int) -> TopicCatalog:
    """The topics under `prefix`, created, with `accepted` refusing records over
    ACCEPTED_MAX_BYTES."""
    catalog = declare_topics(
        TopicSettings(
            prefix=prefix,
            partitions=partitions,
            extra_configs=MappingProxyType(
                {TopicRole.ACCEPTED: {"max.message.bytes": str(ACCEPTED_MAX_BYTES)}}
            ),
        )
    )
    await ensure_topics(bootstrap, catalog)
    return catalog


def ingest_settings(bootstrap: str, prefix: str, **ingest: Any) -> Settings:
    """Settings for a test instance: free ports, a transactional id of its own, short timeouts."""
    defaults = IngestSettings(
        smtp_port=0,
        http_port=0,
        smtp_hostname="mx.ingest.test",
        kafka_ack_timeout_seconds=10.0,
        transactional_id=f"test-ingest-{uuid.uuid4().hex}",
    )
    return Settings(
        runtime=RuntimeSettings(
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            http_bind=HostPort("127.0.0.1", 0),
            shutdown_grace_seconds=10.0,
        ),
        ingest=replace(defaults, **ingest),
    )


@dataclass
class RunningIngest:
    endpoints: IngestEndpoints
    runtime: ServiceRuntime


@asynccontextmanager
async def running_ingest(
    settings: Settings, *, clean_exit: bool = True
) -> AsyncIterator[RunningIngest]:
    """The service running until the block ends; then it must shut down (cleanly, unless
    `clean_exit` is False: without Kafka the consumer cannot commit or leave its group)."""
    runtimes: list[ServiceRuntime] = []
    started: asyncio.Future[IngestEndpoints] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(
        run_service(
            replace(SERVICE, main=ingest_main(started=started.set_result)),
            settings,
            handle_signals=False,
            runtime_ready=runtimes.append,
        )
    )
    done, _ = await asyncio.wait(
        {started, service}, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED
    )
    if started not in done:
        service.cancel()
        raise AssertionError(f"ingest did not start: {service.result() if done else 'timeout'}")
    try:
        yield RunningIngest(started.result(), runtimes[0])
    finally:
        runtimes[0].request_shutdown("test over")
        code = await asyncio.wait_for(service, WAIT_SECONDS)
        assert code == EXIT_OK or not clean_exit


async def read_events(
    bootstrap: str, topic: str, count: int, *, schema: str, settle_seconds: float = 0.0
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """(key, event) of the first `count` committed records of `topic`; with `settle_seconds`,
    keep reading that long after the count was reached (to see records that should not be)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found.extend(records)
        loop = asyncio.get_running_loop()
        until = loop.time() + settle_seconds
        while loop.time() < until:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return [(record.key, decode(record.value, schema)[1]) for record in found]


def self_signed_certificate(directory: Path, name: str = "mx.ingest.test") -> tuple[Path, Path]:
    """A throwaway certificate and key (PEM) made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
