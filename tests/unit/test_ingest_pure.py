"""Pure parts of the ingest service: ids, paths, templates, requests, messages, headers, users."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.cli.publish import parse_meta
from relaystream.core.kafka.dead_letter import RecordRejected
from relaystream.core.kafka.submission import SubmissionError, submission_event
from relaystream.ingest.accepted_messages import Reception, accepted_messages
from relaystream.ingest.inject_api import TokensRequired, require_tokens, token_matches
from relaystream.ingest.inject_request import BuiltContent, InvalidRequest, parse_inject_request
from relaystream.ingest.message_builder import build_message, normalize_crlf
from relaystream.ingest.message_ids import submission_message_id
from relaystream.ingest.received_header import TraceFacts, received_header, with_protocol
from relaystream.ingest.smtp_server import split_path
from relaystream.ingest.smtp_users import (
    SmtpUsers,
    UsersFileError,
    hash_password,
    verify_password,
)
from relaystream.ingest.submissions import validated_recipients
from relaystream.ingest.templates import TemplateError, check_template, render

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MAX_SIZE = 1_000_000


# -- message ids ---------------------------------------------------------------------------


@given(st.text(min_size=1), st.integers(min_value=0, max_value=10_000))
def test_submission_ids_are_32_hex_and_stable(submission_id: str, index: int) -> None:
    first = submission_message_id(submission_id, index)
    assert first == submission_message_id(submission_id, index)
    assert len(first) == 32 and int(first, 16) >= 0 and first == first.lower()


def test_submission_ids_differ_by_index_and_do_not_collide_on_concatenation() -> None:
    assert submission_message_id("a", 12) != submission_message_id("a1", 2)
    assert submission_message_id("s", 0) != submission_message_id("s", 1)


# -- SMTP paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<user@example.com>", ("user@example.com", "")),
        (
            "<user@example.com> SIZE=100 BODY=8BITMIME",
            ("user@example.com", "SIZE=100 BODY=8BITMIME"),
        ),
        ("<>", ("<>", "")),
        ("<@relay.example,@b.example:user@example.com>", ("user@example.com", "")),
        ('<"a>b"@example.com>', ('"a>b"@example.com', "")),
        ("<a b@example.com>", ("a b@example.com", "")),
        ("user@example.com", None),
        ("<user@example.com", None),
        ("<user@example.com>SIZE=1", None),
        ("<@relay.example>", None),
    ],
)
def test_split_path(argument: str, expected: tuple[str, str] | None) -> None:
    assert split_path(argument) == expected


# -- templates -----------------------------------------------------------------------------


def test_render_substitutes_names_and_dotted_names() -> None:
    values = {"name": "Ann", "user": {"city": "Oslo"}, "n": 3, "flag": True}
    assert render(
        "Hi {{name}} from {{ user.city }} ({{ n }}, {{ flag }}){{ missing }}", values
    ) == ("Hi Ann from Oslo (3, true)")
    assert render("<b>{{ x }}</b>", {"x": "<i>&"}, escape_html=True) == "<b>&lt;i&gt;&amp;</b>"


@pytest.mark.parametrize("text", ["{% if x %}y{% endif %}", "{# note #}", "{{ name | upper }}"])
def test_unsupported_template_constructs_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        check_template(text)


# -- injection requests --------------------------------------------------------------------


def test_a_valid_builder_request_parses() -> None:
    request = parse_inject_request(
        {
            "envelope_sender": "Bounce@Example.COM",
            "recipients": [{"email": "a@example.org", "name": None}],
            "content": {
                "text_body": "t",
                "attachments": [
                    {"data": "aGk=", "content_type": "text/plain", "base64": True},
                    {"data": "raw", "content_type": "image/png", "content_id": "logo"},
                ],
            },
        },
        max_recipients=5,
        max_message_size=MAX_SIZE,
    )
    assert request.envelope_sender == "Bounce@example.com"
    assert isinstance(request.content, BuiltContent)
    assert [a.data for a in request.content.attachments] == [b"hi", b"raw"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"recipients": [{"email": "a@b.c"}], "content": "x"}, "envelope_sender: required"),
        (
            {"envelope_sender": "", "recipients": [{"email": "a@b.c"}] * 3, "content": "x"},
            "recipients: at most 2 per request, got 3",
        ),
        (
            {"envelope_sender": "", "recipients": [{"email": 5}], "content": "x"},
            "recipients[0].email: expected a string",
        ),
        ({"envelope_sender": "", "recipients": [{"email": "a@b.c"}]}, "content: required"),
        (
            {
                "envelope_sender": "",
                "recipients": [{"email": "a@b.c"}],
                "content": {
                    "text_body": "t",
                    "attachments": [{"data": "!", "content_type": "a/b", "base64": True}],
                },
            },
            "content.attachments[0].data: not valid base64",
        ),
        (
            {"envelope_sender": "x@[::1]", "recipients": [{"email": "a@b.c"}], "content": "x"},
            "envelope_sender:",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRequest) as invalid:
        parse_inject_request(body, max_recipients=2, max_message_size=MAX_SIZE)
    assert any(r.startswith(reason) for r in invalid.value.reasons), invalid.value.reasons


def test_tokens_are_required_beyond_loopback() -> None:
    assert require_tokens("127.0.0.1", ()) is False
    assert require_tokens("::1", ()) is False
    assert require_tokens("127.0.0.1", ("t",)) is True
    assert require_tokens("0.0.0.0", ("t",)) is True
    for host in ("0.0.0.0", "::", "10.1.2.3", "ingest.example"):
        with pytest.raises(TokensRequired):
            require_tokens(host, ())
    assert token_matches("b", ("a", "b")) and not token_matches("c", ("a", "b"))


# -- messages ------------------------------------------------------------------------------


def test_built_message_is_valid_rfc5322_with_crlf() -> None:
    request = parse_inject_request(
        {
            "envelope_sender": "a@example.com",
            "recipients": [{"email": "b@example.org", "name": "Bé"}],
            "content": {
                "subject": "Hi {{ name }}",
                "text_body": "text",
                "html_body": "<p>{{ name }}</p>",
                "reply_to": {"email": "r@example.com"},
                "headers": {"X-Tag": "t1"},
            },
        },
        max_recipients=1,
        max_message_size=MAX_SIZE,
    )
    built = build_message(
        request.content,
        request.recipients[0],
        {},
        now=NOW,
        message_id="m1",
        hostname="h.test",
        max_size=MAX_SIZE,
    )
    assert b"\n" not in built.replace(b"\r\n", b"")
    # Non-ASCII header text is RFC 2047 encoded (the body may be 8bit: 8BITMIME).
    assert built.split(b"\r\n\r\n", 1)[0].isascii()
    parsed = message_from_bytes(built, policy=policy.default)
    assert parsed["Subject"] == "Hi Bé" and parsed["To"] == "Bé <b@example.org>"
    assert parsed["Message-ID"] == "<m1@h.test>" and parsed["X-Tag"] == "t1"
    assert parsed.get_content_type() == "multipart/alternative"


def test_normalize_crlf() -> None:
    assert normalize_crlf("a\nb\r\nc\rd") == "a\r\nb\r\nc\r\nd"


def test_accepted_messages_one_per_recipient() -> None:
    reception = Reception("HTTP", "s@example.com", b"x", NOW, "t1", {"received_from": "1.2.3.4"})
    events = accepted_messages(
        reception, ["a@x.org", "b@x.org"], ["1" * 32, "2" * 32], [{"extra": {"k": 1}}, {}]
    )
    assert [e["recipient"] for e in events] == ["a@x.org", "b@x.org"]
    assert events[0]["meta"] == {
        "received_from": '"1.2.3.4"',
        "reception_protocol": '"HTTP"',
        "extra": '{"k":1}',
    }
    assert "extra" not in events[1]["meta"]
    with pytest.raises(ValueError):
        accepted_messages(reception, ["a@x.org"], [])


# -- Received: -----------------------------------------------------------------------------


def test_received_header() -> None:
    facts = TraceFacts("client\r\nX-Evil: 1", "::1", "mx.test", True, False, "tx1", NOW)
    header = received_header(facts, ["a@example.org"]).decode()
    assert header.startswith("Received: from client??X-Evil:?1 ([IPv6:::1])\r\n")
    assert "with ESMTPS\r\n" in header and "id tx1 for <a@example.org>;" in header
    assert "for <" not in received_header(facts, ["a@x.org", "b@x.org"]).decode()
    assert with_protocol(tls=True, authenticated=True) == "ESMTPSA"


# -- SMTP users ----------------------------------------------------------------------------


def test_password_hashes_verify_and_users_file_loads(tmp_path: Path) -> None:
    stored = hash_password("pw")
    assert stored.startswith("scrypt$") and "pw" not in stored.split("$", 4)[-1]
    assert verify_password(stored, "pw") and not verify_password(stored, "PW")
    users_file = tmp_path / "users"
    users_file.write_text(f"# users\n\nalice:{stored}\n")
    users = SmtpUsers.load(users_file)
    assert users.authenticate("alice", "pw")
    assert not users.authenticate("alice", "nope") and not users.authenticate("bob", "pw")


def test_a_malformed_users_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_text("alice:plaintext-password\n")
    with pytest.raises(UsersFileError) as refused:
        SmtpUsers.load(users_file)
    assert "plaintext-password" not in str(refused.value) and ":1:" in str(refused.value)


# -- submissions ---------------------------------------------------------------------------


def test_submission_validation() -> None:
    good = submission_event("", ["A@Example.ORG"], b"x", meta={"t": 1}, submission_id="s1")
    sender, recipients, meta = validated_recipients(good, max_recipients=5, max_message_size=10)
    assert (sender, recipients, meta) == ("", ["A@example.org"], {"t": 1})
    for bad, reason in [
        ({**good, "recipients": []}, "no recipients"),
        ({**good, "content": b"x" * 11}, "content of 11 bytes"),
        ({**good, "sender": "nope"}, "sender:"),
        ({**good, "meta": {"k": "not json"}}, "meta 'k'"),
    ]:
        with pytest.raises(RecordRejected) as rejected:
            validated_recipients(bad, max_recipients=5, max_message_size=10)
        assert rejected.value.reason.startswith(reason)


def test_submission_event_refuses_what_is_visibly_wrong() -> None:
    with pytest.raises(SubmissionError):
        submission_event("s@x.org", [], b"x")
    with pytest.raises(SubmissionError):
        submission_event("s@x.org", "a@x.org", b"x")
    with pytest.raises(SubmissionError):
        submission_event("s@x.org", ["a@x.org"], b"")
    assert len(submission_event("s@x.org", ["a@x.org"], b"x")["submission_id"]) == 32


def test_publish_meta_values_are_json_or_strings() -> None:
    assert parse_meta(["tenant=acme", "n=3", 'o={"a":1}']) == {
        "tenant": "acme",
        "n": 3,
        "o": {"a": 1},
    }
    with pytest.raises(ValueError):
        parse_meta(["novalue"])
