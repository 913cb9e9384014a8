"""Delivery applies the policy's egress (issue 19): sources bind their address in the pool's
weights' proportion, and each site's TLS mode, port and connection limit come from its egress
path config. Real SMTP sinks on loopback, a real Lua policy."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from delivery_sinks import SmtpSink, start_sink
from prometheus_client import REGISTRY

from relaystream.core.dns.resolver import MxResolver
from relaystream.core.events.records import DeliveryRequest
from relaystream.core.policy import policy_from_source
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery import metrics
from relaystream.delivery.attempt import Deliverer, log_event

POLICY = """
local kumo = require 'kumo'
kumo.on('get_egress_pool', function(name)
  if name == 'solo' then
    return kumo.make_egress_pool { name = name, entries = { { name = 'ip-2' } } }
  end
  return kumo.make_egress_pool { name = name, entries = {
    { name = 'ip-2', weight = 3 }, { name = 'ip-3', weight = 1 } } }
end)
kumo.on('get_egress_source', function(name)
  local addr = { ['ip-2'] = '127.0.0.2', ['ip-3'] = '127.0.0.3' }
  return kumo.make_egress_source { name = name, source_address = addr[name] }
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  if not site:find('mx_list:', 1, true) then error('no egress for this site') end
  return kumo.make_egress_path {
    -- loopback sinks: the path allows them (the settings do not)
    prohibited_hosts = {},
    smtp_port = SMTP_PORT,
    -- the sink named with its port: Required (it offers no STARTTLS)
    enable_tls = site:find(':' .. SMTP_PORT, 1, true) and 'Required' or 'Disabled',
    connection_limit = 2,
    ehlo_domain = 'egress.example',
  }
end)
"""


def request(domain: str, *, n: int = 0, pool: str = "pool-a") -> DeliveryRequest:
    now = datetime.now(UTC)
    config = {"egress_pool": pool, "protocol": {"smtp": {"mx_list": ["127.0.0.1"]}}}
    return {
        "id": f"{n:032x}",
        "queue": domain,
        "attempt": 0,
        "sender": "sender@example.com",
        "recipient": f"rcpt{n}@{domain}",
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": {},
        "created_at": now,
        "queue_config": json.dumps(config),
        "released_at": now,
    }


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink(data_delay=0.05)
    yield server
    await server.close()


def deliverer_for(sink: SmtpSink) -> Deliverer:
    policy = policy_from_source(POLICY.replace("SMTP_PORT", str(sink.port)), "policy.lua")
    # smtp_port and TLS mode of the settings must lose against the path's; loopback is
    # not allowed by the settings.
    settings = DeliverySettings(
        smtp_port=1, tls_mode="Required", connect_timeout_seconds=5.0, allow_loopback=False
    )
    return Deliverer.from_settings(settings, MxResolver([]), policy)


async def test_sources_bind_their_addresses_in_the_pools_weights(sink: SmtpSink) -> None:
    deliverer = deliverer_for(sink)
    try:
        # The site of an mx_list queue is its mx_list's name; the TLS mode is Disabled there.
        results = [await deliverer.deliver(request("example.test", n=n)) for n in range(40)]
    finally:
        await deliverer.aclose()
    assert {result.kind for result in results} == {"DELIVERED"}
    peers = Counter(message.peer[0] for message in sink.messages)
    assert peers == {"127.0.0.2": 30, "127.0.0.3": 10}
    sources = Counter(result.egress_source for result in results)
    assert sources == {"ip-2": 30, "ip-3": 10}
    records: list[Any] = [log_event(request("example.test", n=n), r) for n, r in enumerate(results)]
    for record in records:
        assert record["egress_pool"] == "pool-a"
        address = {"ip-2": "127.0.0.2:", "ip-3": "127.0.0.3:"}[record["egress_source"]]
        assert record["source_address"]["address"].startswith(address)


async def test_the_sites_path_sets_tls_port_limit_and_ehlo(sink: SmtpSink) -> None:
    deliverer = deliverer_for(sink)
    ready_queue = "smtp_client:ip-2->mx_list:127.0.0.1@smtp_client"
    plaintext_before = metrics.TLS_OUTCOMES.value(ready_queue, "plaintext")
    try:
        # Eight at once through one (source, site): the path's connection_limit (2) holds,
        # not the settings' 32.
        delivered = await asyncio.gather(
            *(deliverer.deliver(request("example.test", n=n, pool="solo")) for n in range(8))
        )
        most_at_once = sink.stats.connections_max_active
        # The ready queue's own connection_count series (both sessions idle in the pool now).
        open_now = REGISTRY.get_sample_value("connection_count", {"service": ready_queue})
        required = await deliverer.deliver(
            _with_mx_list(request("required.test"), [f"127.0.0.1:{sink.port}"])
        )
        # A domain literal: not an mx_list site, for which the policy's handler fails.
        literal = {"egress_pool": "solo"}
        broken = await deliverer.deliver(
            {**request("x"), "queue": "[127.0.0.1]", "queue_config": json.dumps(literal)}
        )
    finally:
        await deliverer.aclose()
    assert {result.kind for result in delivered} == {"DELIVERED"}
    assert most_at_once == 2
    assert open_now == 2
    assert metrics.TLS_OUTCOMES.value(ready_queue, "plaintext") - plaintext_before == 2
    # Required on a sink without STARTTLS: no session, transient, and counted as a TLS failure.
    assert required.kind == "TRANSIENT_FAILURE"
    assert "STARTTLS is not offered" in required.response.content
    service = f"smtp_client:{required.egress_source}->{required.site}@smtp_client"
    assert metrics.TLS_OUTCOMES.value(service, "failed") >= 1
    # A failing get_egress_path_config holds the message: nothing reaches the public MX.
    assert broken.kind == "TRANSIENT_FAILURE"
    assert (broken.response.code, str(broken.response.enhanced_code)) == (451, "4.3.0")
    assert "no egress for this site" in broken.response.content
    assert len(sink.messages) == 8


def _with_mx_list(req: DeliveryRequest, mx_list: list[Any]) -> DeliveryRequest:
    config = json.loads(req["queue_config"])
    config["protocol"]["smtp"]["mx_list"] = mx_list
    return {**req, "queue_config": json.dumps(config)}
