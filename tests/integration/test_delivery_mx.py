"""MX resolution through a real dnsmasq on loopback, delivering to aiosmtpd sinks.

The shared helper tests/integration/dnsmasq.py did not exist when this was written, so this
module starts dnsmasq itself (no config file, no upstream, records from the command line).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from delivery_sinks import SmtpSink, start_sink

from relaystream.core.events.records import DeliveryRequest
from relaystream.core.runtime.settings import HostPort
from relaystream.delivery.attempt import Deliverer
from relaystream.delivery.dns import DnsResolver
from relaystream.delivery.planning import DestinationPlanner
from relaystream.delivery.pool import PoolLimits, PoolRegistry
from relaystream.delivery.smtp_session import SessionOptions, SessionTimeouts

pytestmark = pytest.mark.dns


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_dns(port: int) -> None:
    """Until dnsmasq answers on `port` (it binds asynchronously after fork)."""
    query = bytes.fromhex("12340100000100000000000004746573740000010001")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            sock.sendto(query, ("127.0.0.1", port))
            try:
                sock.recv(512)
                return
            except OSError:
                continue
    raise RuntimeError("dnsmasq did not answer")


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[int]:
    """dnsmasq on a loopback port with the zone these tests use; yields the port."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    port = free_udp_port()
    records = [
        # Two MX hosts at preference 10 and a backup at 20, all on loopback.
        "--mx-host=mx.test,mx1.mx.test,10",
        "--mx-host=mx.test,mx2.mx.test,10",
        "--mx-host=mx.test,backup.mx.test,20",
        "--host-record=mx1.mx.test,127.0.0.1",
        "--host-record=mx2.mx.test,127.0.0.1",
        "--host-record=backup.mx.test,127.0.0.1",
        # A name with an address and no MX: the implicit MX is the name itself.
        "--host-record=implicit.test,127.0.0.1",
        # Null MX (RFC 7505).
        "--mx-host=nullmx.test,.,0",
        # An A-only name for mx_list entries.
        "--host-record=smarthost.test,127.0.0.1",
    ]
    process = subprocess.Popen(
        [
            binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            f"--port={port}",
            "--local=/test/",
            *records,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_dns(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await start_sink()
    yield server
    await server.close()


def make_deliverer(dns_port: int, smtp_port: int) -> Deliverer:
    options = SessionOptions(
        ehlo_name="relay.test", timeouts=SessionTimeouts(connect=5.0, banner=5.0, command=10.0)
    )
    planner = DestinationPlanner(
        DnsResolver([HostPort("127.0.0.1", dns_port)], timeout=2.0),
        default_port=smtp_port,
        allow_prohibited=True,
    )
    return Deliverer(planner, PoolRegistry(PoolLimits(), options), "unspecified")


def request(queue: str, config: dict[str, object] | None = None) -> DeliveryRequest:
    now = datetime.now(UTC)
    return {
        "id": "f" * 32,
        "queue": queue,
        "attempt": 0,
        "sender": "sender@example.com",
        "recipient": "rcpt@mx.test",
        "content": b"Subject: mx\r\n\r\nbody\r\n",
        "meta": {},
        "created_at": now,
        "queue_config": json.dumps(config or {}),
        "released_at": now,
    }


async def test_mx_resolution_delivers_to_the_mx_hosts(dnsmasq: int, sink: SmtpSink) -> None:
    deliverer = make_deliverer(dnsmasq, sink.port)
    result = await deliverer.deliver(request("mx.test"))
    await deliverer.aclose()
    assert result.kind == "DELIVERED", result.response
    assert result.site == "(mx1|mx2|backup).mx.test"
    assert result.peer is not None
    assert result.peer.peer_name in ("mx1.mx.test", "mx2.mx.test")  # preference 10 first
    assert len(sink.messages) == 1


async def test_a_routing_domain_port_overrides_the_default_port(
    dnsmasq: int, sink: SmtpSink
) -> None:
    deliverer = make_deliverer(dnsmasq, smtp_port=1)  # port 1: nothing listens there
    result = await deliverer.deliver(request(f"tenant@example.com!mx.test:{sink.port}"))
    await deliverer.aclose()
    assert result.kind == "DELIVERED", result.response
    assert result.peer is not None and result.peer.port == sink.port
    assert result.site == f"(mx1|mx2|backup).mx.test:{sink.port}"


async def test_a_name_without_mx_uses_its_own_address(dnsmasq: int, sink: SmtpSink) -> None:
    deliverer = make_deliverer(dnsmasq, sink.port)
    result = await deliverer.deliver(request("implicit.test"))
    await deliverer.aclose()
    assert result.kind == "DELIVERED", result.response
    assert result.site == "implicit.test"


async def test_null_mx_bounces(dnsmasq: int, sink: SmtpSink) -> None:
    deliverer = make_deliverer(dnsmasq, sink.port)
    result = await deliverer.deliver(request("nullmx.test"))
    await deliverer.aclose()
    assert result.kind == "BOUNCE"
    assert (result.response.code, str(result.response.enhanced_code)) == (556, "5.1.10")


async def test_nxdomain_is_transient(dnsmasq: int, sink: SmtpSink) -> None:
    deliverer = make_deliverer(dnsmasq, sink.port)
    result = await deliverer.deliver(request("missing.test"))
    await deliverer.aclose()
    assert result.kind == "TRANSIENT_FAILURE"
    assert (result.response.code, str(result.response.enhanced_code)) == (451, "4.4.4")
    assert sink.messages == []


async def test_an_unreachable_dns_server_is_transient(sink: SmtpSink) -> None:
    deliverer = make_deliverer(free_udp_port(), sink.port)
    result = await deliverer.deliver(request("mx.test"))
    await deliverer.aclose()
    assert result.kind == "TRANSIENT_FAILURE"
    assert result.response.code == 451


async def test_mx_list_names_are_resolved_for_addresses_only(dnsmasq: int, sink: SmtpSink) -> None:
    deliverer = make_deliverer(dnsmasq, smtp_port=1)
    config = {"protocol": {"smtp": {"mx_list": [f"smarthost.test:{sink.port}"]}}}
    # The queue's domain has a null MX: with an mx_list, MX is never looked up.
    result = await deliverer.deliver(request("nullmx.test", config))
    await deliverer.aclose()
    assert result.kind == "DELIVERED", result.response
    assert result.peer is not None and result.peer.peer_name == "smarthost.test"
    assert result.site == f"mx_list:smarthost.test:{sink.port}"
