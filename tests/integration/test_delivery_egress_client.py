"""The egress path's client options against real peers on loopback (issue 19): AUTH PLAIN
(over validated TLS only, unless the path allows otherwise), a client certificate presented
on STARTTLS, LMTP (LHLO, each recipient's reply classified), and ip_lookup_strategy when the
MX hosts resolve (a real dnsmasq). aiosmtpd peers, a real Lua policy."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from delivery_sinks import Certificates, make_certificates
from dnsmasq import DnsRecords, DnsServer, MxHost, dns_server_fixture

from relaystream.core.dns.resolver import MxResolver
from relaystream.core.domain.egress import IpLookupStrategy
from relaystream.core.events.records import DeliveryRequest
from relaystream.core.policy import policy_from_source
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery.attempt import AttemptResult, Deliverer

pytestmark = pytest.mark.dns

# get_egress_path_config answers per site; each case below has a site of its own (its
# mx_list name), so each gets its own path config.
POLICY = """
local kumo = require 'kumo'
local AUTH = { smtp_auth_plain_username = 'daniel', smtp_auth_plain_password = PASSWORD }
local PATHS = {
  ['good-auth'] = { enable_tls = 'Required' },
  ['wrong-password'] = { enable_tls = 'Required',
    smtp_auth_plain_password = { key_data = 'wrong' } },
  ['plain-refused'] = { enable_tls = 'Disabled' },
  ['plain-allowed'] = { enable_tls = 'Disabled', allow_smtp_auth_plain_without_tls = true },
  ['unvalidated'] = { enable_tls = 'RequiredInsecure' },
  ['with-cert'] = { enable_tls = 'Required', tls_certificate = 'client.pem',
    tls_private_key = { key_data = [[CLIENT_KEY]] } },
  ['without-cert'] = { enable_tls = 'Required' },
  ['lmtp'] = { enable_tls = 'Disabled', use_lmtp = true },
  ['ehlo-to-lmtp'] = { enable_tls = 'Disabled' },
  ['six'] = { ip_lookup_strategy = 'Ipv6Only' },
  ['six-then-four'] = { ip_lookup_strategy = 'Ipv6ThenIpv4' },
}
local WITH_AUTH = { ['good-auth'] = true, ['wrong-password'] = true,
  ['plain-refused'] = true, ['plain-allowed'] = true, ['unvalidated'] = true }
kumo.on('get_egress_path_config', function(domain, source, site)
  local case = site:match('^mx_list:([%w-]+)%.') or site:match('^mx%.([%w-]+)%.')
  local params = { smtp_port = SMTP_PORT, enable_tls = 'Disabled' }
  if WITH_AUTH[case] then
    for key, value in pairs(AUTH) do params[key] = value end
  end
  for key, value in pairs(PATHS[case] or error('no case ' .. site)) do params[key] = value end
  return kumo.make_egress_path(params)
end)
"""


@dataclass
class Peer:
    """An aiosmtpd peer: what it was sent, and the AUTH attempts it saw."""

    port: int = 0
    messages: list[tuple[str, bool]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    servers: list[asyncio.Server] = field(default_factory=list)


class _Handler:
    """Records each message (recipient, over TLS?) and answers DATA by recipient: `full`
    452, `nouser` 550, otherwise 250 (one recipient per message, as delivery sends)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0]
        self.peer.messages.append((recipient, session.ssl is not None))
        if recipient.startswith("full@"):
            return "452 4.2.2 mailbox full"
        if recipient.startswith("nouser@"):
            return "550 5.1.1 no such user"
        return "250 2.0.0 delivered"


def _authenticator(peer: Peer) -> Callable[..., AuthResult]:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        peer.logins.append((data.login, data.password))
        ok = (data.login, data.password) == (b"daniel", b"tiger")
        return AuthResult(success=ok, handled=False, auth_data=data)

    return check


@dataclass(frozen=True)
class Peers:
    tls_auth: Peer
    plain_auth: Peer
    client_cert: Peer
    lmtp: Peer
    plain: Peer
    folder: Path
    ca_file: Path


async def _serve(peer: Peer, factory: Callable[[], asyncio.Protocol]) -> None:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    peer.servers.append(server)


CASES = (
    "good-auth",
    "wrong-password",
    "plain-refused",
    "plain-allowed",
    "unvalidated",
    "with-cert",
    "without-cert",
    "lmtp",
    "ehlo-to-lmtp",
)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    # Each case's peer name (its mx_list entry, so its own site) is 127.0.0.1. Both MX hosts
    # have only an A record; dual.test has both.
    hosts = {f"{case}.peer.test": ["127.0.0.1"] for case in CASES}
    records = DnsRecords(
        mx=[
            MxHost("six.test", "mx.six.test", 10),
            MxHost("fallback.test", "mx.six-then-four.test", 10),
        ],
        hosts={
            **hosts,
            "mx.six.test": ["127.0.0.1"],
            "mx.six-then-four.test": ["127.0.0.1"],
            "dual.test": ["192.0.2.1", "2001:db8::1"],
        },
    )
    yield from dns_server_fixture(records)


@pytest.fixture(scope="module")
def tls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def certificates(tls_folder: Path) -> Certificates:
    """A CA and a peer certificate it signed for *.peer.test, and a client certificate."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=relaystream client",
         "-keyout", str(tls_folder / "client.key"), "-out", str(tls_folder / "client.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return make_certificates(tls_folder, "*.peer.test")


@pytest.fixture
async def peers(tls_folder: Path, certificates: Certificates) -> AsyncIterator[Peers]:
    requiring_client_cert = certificates.server_context(self_signed=False)
    requiring_client_cert.verify_mode = ssl.CERT_REQUIRED
    requiring_client_cert.load_verify_locations(tls_folder / "client.pem")
    found = Peers(Peer(), Peer(), Peer(), Peer(), Peer(), tls_folder, certificates.ca_cert)
    await _serve(
        found.tls_auth,
        lambda: SMTP(
            _Handler(found.tls_auth),
            tls_context=certificates.server_context(self_signed=False),
            authenticator=_authenticator(found.tls_auth),
            auth_required=True,
        ),
    )
    await _serve(
        found.plain_auth,
        lambda: SMTP(
            _Handler(found.plain_auth),
            authenticator=_authenticator(found.plain_auth),
            auth_required=True,
            auth_require_tls=False,
        ),
    )
    await _serve(
        found.client_cert,
        lambda: SMTP(_Handler(found.client_cert), tls_context=requiring_client_cert),
    )
    await _serve(found.lmtp, lambda: LMTP(_Handler(found.lmtp)))
    await _serve(found.plain, lambda: SMTP(_Handler(found.plain)))
    yield found
    for peer in (found.tls_auth, found.plain_auth, found.client_cert, found.lmtp, found.plain):
        for server in peer.servers:
            server.close()
            await server.wait_closed()


def deliverer_for(peers: Peers, dns: DnsServer, password: str = "") -> Deliverer:
    text = (
        POLICY.replace("SMTP_PORT", str(peers.plain.port))
        .replace("PASSWORD", password or "{ key_data = 'tiger' }")
        .replace("CLIENT_KEY", (peers.folder / "client.key").read_text())
    )
    policy = policy_from_source(text, "policy.lua", base_dir=peers.folder)
    settings = DeliverySettings(
        connect_timeout_seconds=5.0,
        command_timeout_seconds=10.0,
        allow_loopback=True,
        tls_ca_file=peers.ca_file,
    )
    resolver = MxResolver([dns.address], timeout=2.0)
    return Deliverer.from_settings(settings, resolver, policy)


def request(case: str, peer: Peer, local_part: str = "rcpt") -> DeliveryRequest:
    now = datetime.now(UTC)
    mx = f"{case}.peer.test:{peer.port}"
    return {
        "id": f"{abs(hash((case, local_part))):032x}"[:32],
        "queue": f"{case}.test",
        "attempt": 0,
        "sender": "sender@example.com",
        "recipient": f"{local_part}@{case}.test",
        "content": b"Subject: hi\r\n\r\nbody\r\n",
        "meta": {},
        "created_at": now,
        "queue_config": json.dumps({"protocol": {"smtp": {"mx_list": [mx]}}}),
        "released_at": now,
    }


async def deliver_all(deliverer: Deliverer, *requests: DeliveryRequest) -> list[AttemptResult]:
    try:
        return [await deliverer.deliver(one) for one in requests]
    finally:
        await deliverer.aclose()


def failed_because(result: AttemptResult, *reasons: str) -> bool:
    return result.kind == "TRANSIENT_FAILURE" and all(
        reason in result.response.content for reason in reasons
    )


# aiosmtpd warns about the plain peer: a test of exactly that case.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_plain_only_over_validated_tls_unless_allowed(
    peers: Peers, dns_server: DnsServer
) -> None:
    tls, plain = peers.tls_auth, peers.plain_auth
    good, wrong, refused, allowed, unvalidated = await deliver_all(
        deliverer_for(peers, dns_server),
        request("good-auth", tls),
        request("wrong-password", tls),
        request("plain-refused", plain),
        request("plain-allowed", plain),
        request("unvalidated", tls),
    )
    assert good.kind == "DELIVERED"
    assert tls.messages == [("rcpt@good-auth.test", True)]
    # A refused AUTH fails the connection, as in KumoMTA: transient, with the peer's reply.
    assert failed_because(wrong, "AUTH PLAIN as daniel", "535")
    assert failed_because(refused, "TLS is not enabled and AUTH PLAIN is required")
    assert allowed.kind == "DELIVERED"
    assert plain.messages == [("rcpt@plain-allowed.test", False)]
    assert failed_because(unvalidated, "certificate was not validated")
    # The credentials went only where they were allowed to.
    assert tls.logins == [(b"daniel", b"tiger"), (b"daniel", b"wrong")]
    assert plain.logins == [(b"daniel", b"tiger")]


async def test_auth_password_from_a_file_of_the_policys_folder(
    peers: Peers, dns_server: DnsServer
) -> None:
    (peers.folder / "password").write_text("tiger")
    [result] = await deliver_all(
        deliverer_for(peers, dns_server, password="'password'"),
        request("good-auth", peers.tls_auth),
    )
    assert result.kind == "DELIVERED"
    assert peers.tls_auth.logins == [(b"daniel", b"tiger")]


async def test_the_client_certificate_is_presented_on_starttls(
    peers: Peers, dns_server: DnsServer
) -> None:
    peer = peers.client_cert
    with_cert, without_cert = await deliver_all(
        deliverer_for(peers, dns_server), request("with-cert", peer), request("without-cert", peer)
    )
    assert with_cert.kind == "DELIVERED"
    assert peer.messages == [("rcpt@with-cert.test", True)]
    # Under TLS 1.3 the peer checks the certificate after the client's side of the handshake
    # ended: the refusal shows as the connection closing at the EHLO that follows.
    assert failed_because(without_cert, "without-cert.peer.test", "EHLO")


async def test_lmtp_says_lhlo_and_classifies_each_recipients_reply(
    peers: Peers, dns_server: DnsServer
) -> None:
    peer = peers.lmtp
    delivered, full, unknown, ehlo = await deliver_all(
        deliverer_for(peers, dns_server),
        request("lmtp", peer),
        request("lmtp", peer, "full"),
        request("lmtp", peer, "nouser"),
        request("ehlo-to-lmtp", peer),
    )
    assert delivered.kind == "DELIVERED"
    assert (full.kind, full.response.code) == ("TRANSIENT_FAILURE", 452)
    assert (unknown.kind, unknown.response.code) == ("BOUNCE", 550)
    # An LMTP server refuses EHLO: without use_lmtp there is no session.
    assert failed_because(ehlo, "EHLO", "500")
    assert [recipient for recipient, _ in peer.messages] == [
        "rcpt@lmtp.test",
        "full@lmtp.test",
        "nouser@lmtp.test",
    ]


async def test_ip_lookup_strategy_decides_which_records_give_addresses(
    peers: Peers, dns_server: DnsServer
) -> None:
    # The MX hosts have an A record only: Ipv6Only finds no address, Ipv6ThenIpv4 falls back.
    six, fallback = await deliver_all(
        deliverer_for(peers, dns_server),
        {**request("x", peers.plain), "queue": "six.test", "queue_config": "{}"},
        {**request("y", peers.plain), "queue": "fallback.test", "queue_config": "{}"},
    )
    assert (six.kind, six.response.code, str(six.response.enhanced_code)) == (
        "TRANSIENT_FAILURE",
        451,
        "4.4.4",
    )
    assert "MX didn't resolve to any hosts" in six.response.content
    assert fallback.kind == "DELIVERED"
    assert len(peers.plain.messages) == 1


async def test_the_resolver_asks_only_for_the_strategys_families(dns_server: DnsServer) -> None:
    resolver = MxResolver([dns_server.address], timeout=2.0)
    both = ["192.0.2.1", "2001:db8::1"]
    answers = {
        strategy: await resolver.resolve_addresses("dual.test", strategy)
        for strategy in IpLookupStrategy
    }
    assert answers == {
        IpLookupStrategy.IPV4_AND_IPV6: both,
        IpLookupStrategy.IPV4_ONLY: ["192.0.2.1"],
        IpLookupStrategy.IPV6_ONLY: ["2001:db8::1"],
        IpLookupStrategy.IPV4_THEN_IPV6: ["192.0.2.1"],
        IpLookupStrategy.IPV6_THEN_IPV4: ["2001:db8::1"],
    }
    # The default is KumoMTA's: both families.
    assert await resolver.resolve_addresses("dual.test") == both
    assert await resolver.resolve_addresses("mx.six.test", IpLookupStrategy.IPV4_THEN_IPV6) == [
        "127.0.0.1"
    ]
