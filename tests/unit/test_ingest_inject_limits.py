"""The injection API's input limits: JSON depth judged before parsing, every field bounded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.ingest.inject_limits import (
    MAX_ATTACHMENTS,
    MAX_HEADER_TEXT,
    MAX_HEADERS,
    MAX_JSON_DEPTH,
    MAX_KEY_LENGTH,
    MAX_MAPPING_KEYS,
    MAX_MAPPING_VALUES,
    BadJson,
    json_depth_exceeds,
    json_value_count_exceeds,
    parse_json_body,
)
from relaystream.ingest.inject_request import InjectRecipient, InvalidRequest, parse_inject_request
from relaystream.ingest.message_builder import MessageBuildError, build_message
from relaystream.ingest.templates import TemplateError, render

MAX_SIZE = 10_000


def depth(value: Any) -> int:
    """Nesting of arrays and objects, by walking the parsed value."""
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


# Keys and strings full of what could fool a bracket count: brackets, quotes, backslashes.
tricky_text = st.text(st.sampled_from('[]{}"\\ab\n\u00e9'), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


@given(json_values, st.integers(min_value=0, max_value=12))
def test_the_depth_check_agrees_with_the_parsed_value(value: Any, limit: int) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert json_depth_exceeds(raw, limit) == (depth(value) > limit)


@given(st.integers(min_value=1, max_value=200), st.sampled_from(["[", '{"k":']))
def test_deep_nesting_is_a_bad_json_error_not_a_recursion_error(levels: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = (opener * levels + "1" + closer * levels).encode()
    if levels > MAX_JSON_DEPTH:
        with pytest.raises(BadJson, match=f"deeper than {MAX_JSON_DEPTH}"):
            parse_json_body(raw)
    else:
        assert depth(parse_json_body(raw)) == levels


def test_fifty_thousand_levels_are_refused_before_parsing() -> None:
    for raw in (b"[" * 50_000 + b"]" * 50_000, b"[" * 50_000, b'{"a":' * 50_000):
        with pytest.raises(BadJson, match="deeper than"):
            parse_json_body(raw)


def test_bodies_that_are_not_utf8_json_are_bad_json() -> None:
    with pytest.raises(BadJson, match="not UTF-8"):
        parse_json_body(b'{"a": "\xff"}')
    with pytest.raises(BadJson, match="not JSON"):
        parse_json_body(b"{not json")


def request(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "envelope_sender": "bounce@example.com",
        "recipients": [{"email": "a@example.org"}],
        "content": {"subject": "s", "text_body": "t"},
    }
    return base | fields


def reasons(body: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidRequest) as invalid:
        parse_inject_request(body, max_recipients=10, max_message_size=MAX_SIZE)
    return invalid.value.reasons


def test_a_request_at_every_limit_is_accepted() -> None:
    key = "k" * MAX_KEY_LENGTH
    body = request(
        envelope_sender="s" * 64 + "@" + "d" * 63 + ".example",
        recipients=[{"email": "a@example.org", "name": "n" * MAX_HEADER_TEXT}] * 10,
        content={
            "subject": "s" * MAX_HEADER_TEXT,
            "text_body": "t" * MAX_SIZE,
            "headers": {f"X-H{i}": "v" * MAX_HEADER_TEXT for i in range(MAX_HEADERS)},
            "attachments": [{"data": "x", "content_type": "a/b"}] * MAX_ATTACHMENTS,
        },
        substitutions={f"{key[:-4]}{i:04}": i for i in range(MAX_MAPPING_KEYS)},
    )
    parsed = parse_inject_request(body, max_recipients=10, max_message_size=MAX_SIZE)
    assert len(parsed.recipients) == 10


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            request(envelope_sender="a" * 200_000 + "@example.com"),
            "envelope_sender: 200012 characters, at most 254",
        ),
        (
            request(envelope_sender="a" * 65 + "@example.com"),
            "envelope_sender: local part of 65 octets is longer than RFC 5321 allows (64)",
        ),
        (
            request(envelope_sender="é" * 127 + "@x.com"),
            "envelope_sender: 260 octets, at most 254 (RFC 5321)",
        ),
        (
            request(recipients=[{"email": "r" * 300 + "@example.org"}]),
            "recipients[0].email: 312 characters, at most 254",
        ),
        (
            request(recipients=[{"email": "a@example.org", "name": "n" * 999}]),
            "recipients[0].name: 999 characters, at most 998",
        ),
        (request(content="x" * (MAX_SIZE + 1)), f"content: {MAX_SIZE + 1} characters"),
        (
            request(content={"text_body": "x" * (MAX_SIZE + 1)}),
            f"content.text_body: {MAX_SIZE + 1} characters",
        ),
        (
            request(content={"html_body": "x", "subject": "s" * 999}),
            "content.subject: 999 characters, at most 998",
        ),
        (
            request(recipients=[{"email": "a@example.org", "metadata": {"big": [0] * 10_000}}]),
            f"recipients[0].metadata: more than {MAX_MAPPING_VALUES} values, nested ones included",
        ),
        (
            request(content={"text_body": "t", "headers": {f"X-{i}": "v" for i in range(101)}}),
            "content.headers: 101 headers, at most 100",
        ),
        (
            request(content={"text_body": "t", "headers": {"X-Long": "v" * 999}}),
            "content.headers.X-Long: 999 characters, at most 998",
        ),
        (
            request(content={"text_body": "t", "headers": {"Bad: Name": "v"}}),
            "content.headers.Bad: Name: a header name is 1 to 76",
        ),
        (
            request(content={"text_body": "t", "headers": {"X" * 77: "v"}}),
            "content.headers." + "X" * 76 + "...: a header name",
        ),
        (
            request(content={"text_body": "t", "from": {"email": "f" * 255 + "@e.com"}}),
            "content.from.email: 261 characters, at most 254",
        ),
        (
            request(
                content={
                    "text_body": "t",
                    "attachments": [{"data": "", "content_type": "a/b"}] * 101,
                }
            ),
            "content.attachments: 101 attachments, at most 100",
        ),
        (
            request(
                content={
                    "text_body": "t",
                    "attachments": [{"data": "x" * (MAX_SIZE + 1), "content_type": "a/b"}],
                }
            ),
            f"content.attachments[0].data: {MAX_SIZE + 1} bytes, at most {MAX_SIZE}",
        ),
        (
            request(
                content={
                    "text_body": "t",
                    "attachments": [{"data": "x", "content_type": "a/" + "b" * 300}],
                }
            ),
            "content.attachments[0].content_type: 302 characters, at most 255",
        ),
        (
            request(substitutions={str(i): i for i in range(1001)}),
            "substitutions: 1001 entries, at most 1000",
        ),
        (
            request(recipients=[{"email": "a@example.org", "metadata": {"k" * 257: 1}}]),
            "recipients[0].metadata: a key of 257 characters, at most 256",
        ),
    ],
)
def test_a_field_over_its_limit_is_named_with_the_limit(body: dict[str, Any], reason: str) -> None:
    found = reasons(body)
    assert any(r.startswith(reason) for r in found), found


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=50))
def test_substitutions_expand_within_the_limit_or_fail(references: int, value_size: int) -> None:
    text = "{{ v }}" * references
    expanded = references * value_size
    limit = 5_000
    if expanded <= limit:
        assert render(text, {"v": "x" * value_size}, limit=limit) == "x" * expanded
    else:
        with pytest.raises(TemplateError, match=f"past {limit} characters"):
            render(text, {"v": "x" * value_size}, limit=limit)


def test_an_expansion_bomb_fails_the_recipient_not_the_service() -> None:
    """A 1 MB value referenced 1,000 times would be 1 GB; it stops at the message limit."""
    recipient = InjectRecipient("a@example.org", substitutions={"v": "x" * 1_000_000})
    for content in ("Subject: s\r\n\r\n" + "{{ v }}" * 1_000, _built("{{ v }}" * 1_000)):
        with pytest.raises(MessageBuildError, match="past 20000 characters"):
            build_message(
                content,
                recipient,
                {},
                now=datetime(2026, 1, 1, tzinfo=UTC),
                message_id="m",
                hostname="h",
                max_size=20_000,
            )


def _built(text_body: str) -> Any:
    return parse_inject_request(
        request(content={"text_body": text_body}), max_recipients=1, max_message_size=MAX_SIZE
    ).content


@given(json_values, st.integers(min_value=0, max_value=60))
def test_a_truncated_body_is_bad_json_without_recursing(value: Any, cut: int) -> None:
    raw = json.dumps(value).encode()[:cut] + b"[" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(BadJson):
        parse_json_body(raw)


@given(
    st.recursive(st.integers(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner))
)
def test_the_value_count_limit_counts_every_nested_value(value: Any) -> None:
    def count(item: Any) -> int:
        if isinstance(item, list):
            return 1 + sum(map(count, item))
        if isinstance(item, dict):
            return 1 + sum(map(count, item.values()))
        return 1

    total = count(value)
    assert not json_value_count_exceeds(value, total)
    assert json_value_count_exceeds(value, total - 1)
