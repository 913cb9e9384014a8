"""Pure parts of the delivery service: TLS mode rules and reply conversion."""

from __future__ import annotations

import pytest

from relaystream.core.kafka.consumer import ConsumedRecord
from relaystream.delivery.attempt import response_from_peer
from relaystream.delivery.finished_attempts import FinishedAttempts
from relaystream.delivery.service import SITE_OWNER_HEADER, SiteOwnership
from relaystream.delivery.smtp_session import PeerReply
from relaystream.delivery.tls import TlsMode


@pytest.mark.parametrize(
    ("mode", "offered", "expected"),
    [
        (TlsMode.OPPORTUNISTIC, True, True),
        (TlsMode.OPPORTUNISTIC, False, False),
        (TlsMode.OPPORTUNISTIC_INSECURE, True, True),
        (TlsMode.OPPORTUNISTIC_INSECURE, False, False),
        (TlsMode.REQUIRED, False, True),
        (TlsMode.REQUIRED_INSECURE, False, True),
        (TlsMode.DISABLED, True, False),
    ],
)
def test_when_starttls_is_sent(mode: TlsMode, offered: bool, expected: bool) -> None:
    assert mode.wants_starttls(offered) is expected


def test_tls_modes_parse_by_kumomta_name_case_insensitively() -> None:
    assert TlsMode.parse("opportunisticinsecure") is TlsMode.OPPORTUNISTIC_INSECURE
    assert TlsMode.parse(" Required ") is TlsMode.REQUIRED
    with pytest.raises(ValueError, match="unknown TLS mode"):
        TlsMode.parse("Always")


def test_only_strict_modes_validate_certificates() -> None:
    assert {mode for mode in TlsMode if mode.validates_certificate} == {
        TlsMode.OPPORTUNISTIC,
        TlsMode.REQUIRED,
    }


def test_a_multiline_peer_reply_keeps_its_enhanced_code_once() -> None:
    reply = PeerReply(550, "5.1.1 no such user\n5.1.1 see the docs", "RCPT TO:<a@b>")
    response = response_from_peer(reply)
    assert response.code == 550
    assert str(response.enhanced_code) == "5.1.1"
    assert response.content == "no such user\nsee the docs"
    assert response.command == "RCPT TO:<a@b>"


def test_a_reply_without_enhanced_code() -> None:
    response = response_from_peer(PeerReply(250, "ok", "DATA"))
    assert (response.code, response.enhanced_code, response.content) == (250, None, "ok")


def test_a_site_is_delivered_by_the_holder_of_its_partition_only() -> None:
    sites = SiteOwnership(8)
    owner = sites.partition_of("mx.example.com")
    plain = ConsumedRecord("attempts", 0, 1, b"k", None, b"v", 0, ())
    handed = ConsumedRecord("attempts", 0, 1, b"k", None, b"v", 0, ((SITE_OWNER_HEADER, b"x"),))
    assert sites.owner_elsewhere("mx.example.com", plain) == owner  # nothing held yet
    sites.assigned([owner])
    assert sites.owner_elsewhere("mx.example.com", plain) is None
    other = next(
        s for s in (f"mx{n}.example" for n in range(100)) if sites.partition_of(s) != owner
    )
    assert sites.owner_elsewhere(other, plain) == sites.partition_of(other)
    # Handed over once already: delivered where it landed, never passed on again.
    assert sites.owner_elsewhere(other, handed) is None
    sites.revoked()
    assert sites.owner_elsewhere("mx.example.com", plain) == owner


async def test_an_attempt_this_process_finished_is_not_sent_twice() -> None:
    # No broker: what this process finished itself needs no read of `outcomes`.
    finished = FinishedAttempts("127.0.0.1:1", "outcomes", client_id="test")
    finished.note_finished("a" * 32, 2)
    assert await finished.contains(0, 0, "a" * 32, 2)
