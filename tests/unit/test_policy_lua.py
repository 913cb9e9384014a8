"""The Lua policy engine: KumoMTA's message API, results, load and runtime errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.policy import (
    Policy,
    PolicyAccepted,
    PolicyFailed,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    PolicyRuntimeError,
    policy_from_file,
    policy_from_source,
)

POLICIES = Path(__file__).resolve().parents[1] / "policies"

HEADERS = (
    "From: Alice <alice@example.org>\r\n"
    "Subject: =?utf-8?q?caf=C3=A9?= and\r\n"
    "\tmore\r\n"
    "X-Tag: first\r\n"
    "x-tag: second\r\n"
)


def message(**changes: object) -> PolicyMessage:
    fields: dict[str, object] = {
        "id": "msg-1",
        "sender": "alice@example.org",
        "recipient": "bob@example.com",
        "meta": {"tenant": "acme"},
        "headers": HEADERS,
    }
    fields.update(changes)
    return PolicyMessage(**fields)


def on_smtp(body: str) -> Policy:
    source = f"kumo.on('smtp_server_message_received', function(msg, conn_meta)\n{body}\nend)\n"
    return policy_from_source(source, "policy.lua")


def accepted_meta(policy: Policy, msg: PolicyMessage | None = None) -> dict[str, object]:
    result = policy.on_message_received("ESMTP", msg or message())
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


# The founding document's four snippets, unchanged (tests/policies/seed_*.lua).


def test_seed_routing_domain_sets_meta_and_keeps_tenant() -> None:
    policy = policy_from_file(POLICIES / "seed_routing_domain.lua")
    assert accepted_meta(policy) == {"tenant": "acme", "routing_domain": "my.smarthost.com"}
    assert policy.get_queue_config("example.com", "acme", None, "my.smarthost.com") is None


def test_seed_get_queue_config_gives_mx_list_for_the_smart_hosted_domain() -> None:
    policy = policy_from_file(POLICIES / "seed_mx_list.lua")
    assert policy.get_queue_config("domain.to.be.smart.hosted", None, None, None) == {
        "protocol": {
            "smtp": {
                "mx_list": ["smart.host.local", {"name": "mx.example.com", "addr": "10.0.0.1"}]
            }
        }
    }
    assert policy.get_queue_config("example.com", "t", "c", None) == {}
    # No reception handler: meta passes through unchanged.
    assert accepted_meta(policy) == {"tenant": "acme"}


def test_seed_queue_rewrite() -> None:
    policy = policy_from_file(POLICIES / "seed_queue_rewrite.lua")
    assert accepted_meta(policy)["queue"] == "my.smarthost.com"


def test_seed_queue_rewrite_to_a_literal() -> None:
    policy = policy_from_file(POLICIES / "seed_queue_literal.lua")
    assert accepted_meta(policy)["queue"] == "[20.83.209.56]"


def test_content_hash_is_sha256_of_the_text_and_name_is_the_file_name() -> None:
    path = POLICIES / "seed_queue_rewrite.lua"
    policy = policy_from_file(path)
    assert policy.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.name == "seed_queue_rewrite.lua"


# The message object.


def test_sender_and_recipient_have_user_domain_email_and_tostring() -> None:
    policy = on_smtp(
        "local s, r = msg:sender(), msg:recipient()\n"
        "msg:set_meta('x_s', s.user .. '|' .. s.domain .. '|' .. s.email .. '|' .. tostring(s))\n"
        "msg:set_meta('x_r', r.user .. '|' .. r.domain .. '|' .. tostring(r))\n"
        "msg:set_meta('x_id', msg:id())"
    )
    meta = accepted_meta(policy)
    assert meta["x_s"] == "alice|example.org|alice@example.org|alice@example.org"
    assert meta["x_r"] == "bob|example.com|bob@example.com"
    assert meta["x_id"] == "msg-1"


def test_null_sender_has_empty_fields() -> None:
    policy = on_smtp("local s = msg:sender(); msg:set_meta('x', '[' .. s.user .. s.domain .. ']')")
    assert accepted_meta(policy, message(sender=""))["x"] == "[]"


def test_headers_are_case_insensitive_unfolded_and_decoded() -> None:
    policy = on_smtp(
        "msg:set_meta('x_subject', msg:get_first_named_header_value('SUBJECT'))\n"
        "msg:set_meta('x_tag', msg:get_first_named_header_value('x-tag'))\n"
        "msg:set_meta('x_tags', msg:get_all_named_header_values('X-Tag'))\n"
        "msg:set_meta('x_missing', msg:get_first_named_header_value('Nope') == nil)"
    )
    meta = accepted_meta(policy)
    assert meta["x_subject"] == "café and\tmore"
    assert meta["x_tag"] == "first"
    assert meta["x_tags"] == ["first", "second"]
    assert meta["x_missing"] is True


def test_get_meta_reads_input_meta_and_earlier_set_meta_and_nil_when_absent() -> None:
    policy = on_smtp(
        "msg:set_meta('x_t', msg:get_meta('tenant'))\n"
        "msg:set_meta('campaign', 'spring')\n"
        "msg:set_meta('x_c', msg:get_meta('campaign'))\n"
        "msg:set_meta('x_absent', msg:get_meta('nothing') == nil)\n"
        "msg:set_meta('x_conn', conn_meta:get_meta('received_from'))"
    )
    meta = accepted_meta(policy, message(meta={"tenant": "acme", "received_from": "1.2.3.4"}))
    assert meta["x_t"] == "acme"
    assert meta["x_c"] == "spring"
    assert meta["x_absent"] is True
    assert meta["x_conn"] == "1.2.3.4"


def test_set_meta_accepts_any_key_and_json_values() -> None:
    policy = on_smtp(
        "msg:set_meta('any_key', 1)\n"
        "msg:set_meta('x_float', 2.5)\n"
        "msg:set_meta('x_list', {'a', 'b'})\n"
        "msg:set_meta('x_obj', {k = {1, 2}, [3] = true})\n"
        "msg:set_meta('x_empty', {})\n"
        "msg:set_meta('x_null', nil)\n"
        "msg:set_meta('tenant', 'overwritten')"
    )
    meta = accepted_meta(policy)
    assert meta == {
        "tenant": "overwritten",
        "any_key": 1,
        "x_float": 2.5,
        "x_list": ["a", "b"],
        "x_obj": {"k": [1, 2], "3": True},
        "x_empty": {},
        "x_null": None,
    }


def test_set_meta_table_is_copied_when_set() -> None:
    policy = on_smtp("local t = {1}\nmsg:set_meta('x', t)\nt[2] = 2\nmsg:get_meta('x')[3] = 3")
    assert accepted_meta(policy)["x"] == [1]


def test_a_key_set_twice_keeps_the_last_value() -> None:
    policy = on_smtp("msg:set_meta('x', {1})\nmsg:set_meta('x', 'text')")
    assert accepted_meta(policy)["x"] == "text"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("function() end", "a function cannot be represented in JSON"),
        ("0/0", "is not a JSON number"),
        ("{[{}] = 1}", "cannot be a JSON object key"),
        ("(function() local t = {}; t.t = t; return t end)()", "levels deep"),
    ],
)
def test_set_meta_rejects_values_json_cannot_carry(value: str, complaint: str) -> None:
    result = on_smtp(f"msg:set_meta('x', {value})").on_message_received("ESMTP", message())
    assert isinstance(result, PolicyFailed)
    assert result.message.startswith("policy.lua:2: msg:set_meta('x')")
    assert complaint in result.message


json_scalars = (
    st.text()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
# Lua cannot tell an empty array from an empty object, nor carry a nil inside an array:
# those are the documented exceptions, so the generator leaves them out.
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_meta_values_cross_lua_unchanged(value: object) -> None:
    result = COPY_POLICY.on_message_received("ESMTP", message(meta={"x_in": value}))
    assert isinstance(result, PolicyAccepted)
    assert result.meta["x_out"] == value


COPY_POLICY = on_smtp("msg:set_meta('x_out', msg:get_meta('x_in'))")


# Protocols and handlers.


def test_protocol_picks_the_handler_and_kafka_uses_http_message_generated() -> None:
    policy = policy_from_source(
        "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('x', 'smtp') end)\n"
        "kumo.on('http_message_generated', function(msg) msg:set_meta('x', 'http') end)\n",
        "policy.lua",
    )
    for protocol, expected in (("ESMTP", "smtp"), ("HTTP", "http"), ("Kafka", "http")):
        result = policy.on_message_received(protocol, message())
        assert isinstance(result, PolicyAccepted)
        assert result.meta["x"] == expected


def test_kumo_reject_gives_code_and_text() -> None:
    result = on_smtp("kumo.reject(550, '5.7.1 not welcome')").on_message_received(
        "ESMTP", message()
    )
    assert result == PolicyRejected(550, "5.7.1 not welcome")
    assert result.response == "550 5.7.1 not welcome"


def test_kumo_reject_needs_an_error_code() -> None:
    result = on_smtp("kumo.reject(250, 'ok')").on_message_received("ESMTP", message())
    assert isinstance(result, PolicyFailed)
    assert "policy.lua:2: kumo.reject: the code must be an SMTP error code" in result.message


def test_runtime_error_fails_the_message_with_its_line_and_the_policy_stays_usable() -> None:
    policy = on_smtp(
        "if msg:get_meta('tenant') == 'bad' then\n  local t = nil\n  return t.field\nend\n"
        "msg:set_meta('x', 'fine')"
    )
    failed = policy.on_message_received("ESMTP", message(meta={"tenant": "bad"}))
    assert isinstance(failed, PolicyFailed)
    assert failed.reason == "error"
    assert failed.message == "policy.lua:4: attempt to index a nil value (local 't')"
    assert "stack traceback" in failed.traceback
    assert failed.as_rejection() == PolicyRejected(451, "4.3.0 technical difficulties")
    assert accepted_meta(policy)["x"] == "fine"


def test_message_methods_fail_outside_their_handler() -> None:
    policy = policy_from_source(
        "local saved\n"
        "kumo.on('smtp_server_message_received', function(msg) saved = msg end)\n"
        "kumo.on('get_queue_config', function() saved:set_meta('x', 1) end)\n",
        "policy.lua",
    )
    accepted_meta(policy)
    with pytest.raises(PolicyRuntimeError, match=r"policy.lua:3: msg:set_meta\(\) called outside"):
        policy.get_queue_config("example.com", None, None, None)


def test_get_queue_config_handlers_run_in_order_until_one_returns_a_config() -> None:
    policy = policy_from_source(
        "kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)\n"
        "  if tenant == '' and campaign == 'c' and routing_domain == nil then\n"
        "    return kumo.make_queue_config { egress_pool = 'empty-tenant' }\n"
        "  end\n"
        "end)\n"
        "kumo.on('get_queue_config', function(domain)\n"
        "  if domain == 'b.example' then return kumo.make_queue_config { max_age = '1h' } end\n"
        "end)\n",
        "policy.lua",
    )
    assert policy.get_queue_config("a.example", "", "c", None) == {"egress_pool": "empty-tenant"}
    assert policy.get_queue_config("b.example", None, None, None) == {"max_age": "1h"}
    assert policy.get_queue_config("c.example", None, None, None) is None


def test_get_queue_config_must_return_a_table() -> None:
    policy = policy_from_source(
        "kumo.on('get_queue_config', function() return 'nope' end)", "policy.lua"
    )
    with pytest.raises(PolicyRuntimeError, match=r"policy\.lua:1: get_queue_config returned a"):
        policy.get_queue_config("example.com", None, None, None)


# Loading.


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.lua"
    path.write_text("-- a policy\n\n\n\n\n\nkumo.on('x', function( end)\n")
    with pytest.raises(PolicyLoadError, match=r"^policy.lua:7: .*near 'end'"):
        policy_from_file(path)


def test_top_level_runtime_error_names_file_and_line() -> None:
    with pytest.raises(PolicyLoadError, match=r"^policy.lua:2: attempt to call a nil value"):
        policy_from_source("local x = 1\nundefined_function {}\n", "policy.lua")


def test_a_single_event_cannot_have_two_handlers() -> None:
    with pytest.raises(PolicyLoadError, match=r"already has a handler defined at policy\.lua:1"):
        policy_from_source(
            "kumo.on('smtp_server_message_received', function() end)\n"
            "kumo.on('smtp_server_message_received', function() end)\n",
            "policy.lua",
        )


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="cannot read policy"):
        policy_from_file(tmp_path / "absent.lua")


@pytest.mark.parametrize(
    ("event", "constructor"),
    [("get_queue_config", "make_queue_config"), ("get_listener_domain", "make_listener_domain")],
)
def test_a_handler_returning_a_non_table_names_its_line_and_constructor(
    event: str, constructor: str
) -> None:
    policy = policy_from_source(
        f"local kumo = require 'kumo'\nkumo.on('{event}', function() return 42 end)\n",
        "policy.lua",
    )
    with pytest.raises(PolicyRuntimeError) as raised:
        if event == "get_queue_config":
            policy.get_queue_config("example.com", None, None, None)
        else:
            policy.get_listener_domain("example.com", "127.0.0.1:25", {})
    assert str(raised.value) == (
        f"policy.lua:2: {event} returned a number; expected kumo.{constructor}{{...}}"
    )
