"""Fixtures for the end-to-end tests: real dnsmasq, real SMTP sinks, the four services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from delivery_sinks import refused_port, start_sink
from dnsmasq import DnsServer, dns_server_fixture
from harness import (
    MAIN_SINK,
    MX_LIST_SINK,
    POLICIES,
    RECORDS,
    LogWatcher,
    Pipeline,
    Sinks,
    ipv6_loopback_available,
    port_free_everywhere,
    start_pipeline,
)


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    yield from dns_server_fixture(RECORDS)


@pytest.fixture(scope="session")
async def sinks() -> AsyncIterator[Sinks]:
    hosts = ["127.0.0.1", MAIN_SINK, MX_LIST_SINK]
    if ipv6_loopback_available():
        hosts.append("::1")
    port = port_free_everywhere(hosts)
    by_host = {host: await start_sink(host, port=port) for host in hosts}
    yield Sinks(port, by_host)
    for sink in by_host.values():
        await sink.close()


@pytest.fixture(scope="session")
async def pipeline(
    kafka_bootstrap: str,
    dns_server: DnsServer,
    sinks: Sinks,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pipeline]:
    """The pipeline with the end-to-end test policy (policies/pipeline.lua.template)."""
    template = (POLICIES / "pipeline.lua.template").read_text()
    policy_text = template.replace("{refused_port}", str(refused_port("127.0.0.4")))
    started = await start_pipeline(
        kafka_bootstrap,
        dns_server,
        sinks,
        tmp_path_factory.mktemp("pipeline"),
        policy_text,
        # Relay only from 127.0.0.1: tests connect from 127.0.0.9 to try an open relay.
        ingest={"relay_networks": ["127.0.0.1/32", "::1/128"]},
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
async def logs(pipeline: Pipeline) -> AsyncIterator[LogWatcher]:
    watcher = LogWatcher(pipeline.bootstrap, pipeline.topics.log.name)
    watcher.start()
    yield watcher
    await watcher.stop()
