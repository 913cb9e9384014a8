"""Whole delivery attempts (plan, pool, SMTP, classification) against aiosmtpd peers on loopback.

Destinations here need no DNS (domain literals, mx_list literals and {name, addr} tables), so
the planner's resolver has no nameserver: a lookup would fail the delivery (451 DNSFAIL) and
so the test.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from delivery_sinks import SmtpSink, refused_port, start_banner_peer, start_sink

from relaystream.core.dns.resolver import MxResolver
from relaystream.core.events.records import DeliveryRequest
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery.attempt import Deliverer, log_event, outcome_event


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="no IPv6 loopback (::1) on this host"
)


def make_deliverer(
    *, allow_loopback: bool = True, default_port: int = 25, **settings: Any
) -> Deliverer:
    values: dict[str, Any] = {
        "ehlo_name": "relay.test",
        "connect_timeout_seconds": 5.0,
        "banner_timeout_seconds": 5.0,
        "command_timeout_seconds": 10.0,
        "idle_timeout_seconds": 30.0,
        "allow_loopback": allow_loopback,
        "smtp_port": default_port,
    }
    delivery = DeliverySettings(**{**values, **settings})
    return Deliverer.from_settings(delivery, MxResolver([]))


def request(
    queue: str,
    *,
    mx_list: list[Any] | None = None,
    recipient: str = "rcpt@example.com",
    attempt: int = 0,
    config: dict[str, Any] | None = None,
) -> DeliveryRequest:
    queue_config = dict(config or {})
    if mx_list is not None:
        queue_config["protocol"] = {"smtp": {"mx_list": mx_list}}
    now = datetime.now(UTC)
    return {
        "id": "0123456789abcdef0123456789abcdef",
        "queue": queue,
        "attempt": attempt,
        "sender": "sender@example.com",
        "recipient": recipient,
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": {"reception_protocol": '"ESMTP"'},
        "created_at": now,
        "queue_config": json.dumps(queue_config),
        "released_at": now,
    }


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink(
        rcpt_replies={
            "later@example.com": "451 4.3.0 try later",
            "nobody@example.com": "550 5.1.1 no such user",
            "full@example.com": "452 4.5.3 too many recipients",
        }
    )
    yield server
    await server.close()


@pytest.fixture
async def deliverer() -> AsyncIterator[Deliverer]:
    created = make_deliverer()
    yield created
    await created.aclose()


async def test_a_domain_literal_is_delivered_to_directly(
    sink: SmtpSink, deliverer: Deliverer
) -> None:
    result = await deliverer.deliver(request(f"[127.0.0.1]:{sink.port}"))
    assert result.kind == "DELIVERED"
    assert result.response.code == 250
    assert result.site == f"127.0.0.1:{sink.port}"
    assert result.peer is not None and result.peer.address == "127.0.0.1"
    assert len(sink.messages) == 1


async def test_a_routing_domain_literal_is_the_destination(
    sink: SmtpSink, deliverer: Deliverer
) -> None:
    result = await deliverer.deliver(request(f"tenant@example.com![127.0.0.1]:{sink.port}"))
    assert result.kind == "DELIVERED"
    assert sink.messages[0].recipients == ["rcpt@example.com"]


async def test_loopback_literals_bounce_without_the_allow_switch(sink: SmtpSink) -> None:
    strict = make_deliverer(allow_loopback=False)
    result = await strict.deliver(request(f"[127.0.0.1]:{sink.port}"))
    await strict.aclose()
    assert result.kind == "BOUNCE"
    assert result.response.code == 550
    assert str(result.response.enhanced_code) == "5.4.4"
    assert sink.messages == []
    assert sink.stats.connections_total == 0


@needs_ipv6
@pytest.mark.parametrize("literal", ["[IPv6:::1]", "[::1]"])
async def test_ipv6_loopback_literals(literal: str) -> None:
    sink6 = await start_sink("::1")
    deliverer = make_deliverer(default_port=sink6.port)
    result = await deliverer.deliver(request(literal))
    strict = make_deliverer(allow_loopback=False, default_port=sink6.port)
    refused = await strict.deliver(request(literal))
    await deliverer.aclose()
    await strict.aclose()
    await sink6.close()
    assert result.kind == "DELIVERED"
    assert result.site == "::1"
    assert result.peer is not None and result.peer.address == "::1"
    assert len(sink6.messages) == 1
    assert refused.kind == "BOUNCE" and refused.response.code == 550


async def test_mx_list_is_tried_strictly_in_order(sink: SmtpSink, deliverer: Deliverer) -> None:
    second = await start_sink()
    mx_list = [f"127.0.0.1:{sink.port}", f"127.0.0.1:{second.port}"]
    for _ in range(5):
        result = await deliverer.deliver(request("example.com", mx_list=mx_list))
        assert result.kind == "DELIVERED"
    await second.close()
    # No shuffle: the first entry takes every message while it accepts connections.
    assert len(sink.messages) == 5 and second.messages == []
    assert result.site == f"mx_list:127.0.0.1:{sink.port},127.0.0.1:{second.port}"


async def test_mx_list_falls_back_past_a_refusing_and_a_421_host(
    sink: SmtpSink, deliverer: Deliverer
) -> None:
    busy = await start_banner_peer(b"421 4.7.0 too busy\r\n")
    mx_list = [
        f"[127.0.0.1]:{refused_port()}",
        f"[127.0.0.1]:{busy.port}",
        f"[127.0.0.1]:{sink.port}",
    ]
    result = await deliverer.deliver(request("example.com", mx_list=mx_list))
    await busy.close()
    assert result.kind == "DELIVERED"
    assert busy.connections == 1
    assert result.peer is not None and result.peer.port == sink.port


async def test_a_name_addr_table_is_used_without_dns(sink: SmtpSink, deliverer: Deliverer) -> None:
    mx_list = [{"name": "mx.example.net", "addr": f"127.0.0.1:{sink.port}"}]
    result = await deliverer.deliver(request("example.com", mx_list=mx_list))
    assert result.kind == "DELIVERED"
    assert result.peer is not None
    assert (result.peer.peer_name, result.peer.address) == ("mx.example.net", "127.0.0.1")
    log = log_event(request("example.com", mx_list=mx_list), result)
    assert log["peer_address"] == {"name": "mx.example.net", "addr": "127.0.0.1"}


async def test_a_4xx_reply_is_a_transient_failure(sink: SmtpSink, deliverer: Deliverer) -> None:
    req = request(f"[127.0.0.1]:{sink.port}", recipient="later@example.com", attempt=3)
    result = await deliverer.deliver(req)
    assert result.kind == "TRANSIENT_FAILURE"
    assert (result.response.code, str(result.response.enhanced_code)) == (451, "4.3.0")
    assert result.response.content == "try later"
    assert result.response.command == "RCPT TO:<later@example.com>"
    outcome = outcome_event(req, result)
    assert outcome["kind"] == "TRANSIENT_FAILURE" and outcome["attempt"] == 3
    log = log_event(req, result)
    assert log["type"] == "TransientFailure"
    assert log["num_attempts"] == 3
    assert log["delivery_protocol"] == "ESMTP"
    assert log["reception_protocol"] == "ESMTP"


async def test_too_many_recipients_is_transient(sink: SmtpSink, deliverer: Deliverer) -> None:
    result = await deliverer.deliver(
        request(f"[127.0.0.1]:{sink.port}", recipient="full@example.com")
    )
    assert result.kind == "TRANSIENT_FAILURE"


async def test_a_5xx_reply_is_a_bounce(sink: SmtpSink, deliverer: Deliverer) -> None:
    req = request(f"[127.0.0.1]:{sink.port}", recipient="nobody@example.com")
    result = await deliverer.deliver(req)
    assert result.kind == "BOUNCE"
    assert result.response.code == 550
    assert log_event(req, result)["type"] == "Bounce"
    assert outcome_event(req, result)["kind"] == "BOUNCE"


async def test_no_reachable_host_is_a_transient_400(deliverer: Deliverer) -> None:
    mx_list = [f"[127.0.0.1]:{refused_port()}", f"127.0.0.1:{refused_port()}"]
    result = await deliverer.deliver(request("example.com", mx_list=mx_list))
    assert result.kind == "TRANSIENT_FAILURE"
    assert result.response.code == 400
    assert result.response.enhanced_code is None
    assert result.response.content.startswith("failed to connect to any candidate hosts")
    assert result.peer is None


async def test_required_tls_without_starttls_is_transient(sink: SmtpSink) -> None:
    deliverer = make_deliverer(tls_mode="Required")
    result = await deliverer.deliver(request(f"[127.0.0.1]:{sink.port}"))
    await deliverer.aclose()
    assert result.kind == "TRANSIENT_FAILURE"
    assert result.response.code == 400
    assert "STARTTLS is not offered" in result.response.content
    assert sink.messages == []


async def test_an_invalid_queue_config_is_transient(deliverer: Deliverer) -> None:
    result = await deliverer.deliver(request("example.com", config={"no_such_field": 1}))
    assert result.kind == "TRANSIENT_FAILURE"
    assert (result.response.code, str(result.response.enhanced_code)) == (451, "4.3.5")


async def test_a_pool_no_policy_defines_holds_the_message(
    sink: SmtpSink, deliverer: Deliverer
) -> None:
    req = request(f"[127.0.0.1]:{sink.port}", config={"egress_pool": "pool-a"})
    result = await deliverer.deliver(req)
    assert result.kind == "TRANSIENT_FAILURE"
    assert (result.response.code, str(result.response.enhanced_code)) == (451, "4.3.0")
    assert "get_egress_pool(pool-a)" in result.response.content
    assert sink.messages == []
    log = log_event(req, result)
    assert (log["egress_pool"], log["egress_source"]) == ("pool-a", None)


async def test_the_unspecified_pool_and_source_are_reported(
    sink: SmtpSink, deliverer: Deliverer
) -> None:
    req = request(f"[127.0.0.1]:{sink.port}")
    result = await deliverer.deliver(req)
    assert result.kind == "DELIVERED"
    log = log_event(req, result)
    assert (log["egress_pool"], log["egress_source"]) == ("unspecified", "unspecified")
