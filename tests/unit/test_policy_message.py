"""The message object's methods (namespaces/message.lua, message_state.py) with KumoMTA's
semantics, each through a policy of our own; what a handler changed comes back in
PolicyAccepted (sender, recipient, data), and nothing else does."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyFailed,
    PolicyMessage,
    PolicyResult,
    policy_from_source,
)
from relaystream.core.policy.conformance import transport_encoded
from relaystream.core.policy.message_state import split_message

DATA = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: bob@example.com, Carol <carol@example.net>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= and\r\n"
    b" more\r\n"
    b"X-Campaign-ID: 12345\r\n"
    b"X-Mailer: foobar\r\n"
    b"Received: from a\r\n"
    b"Received: from b\r\n"
    b"\r\n"
    b"The body\r\n"
)
MESSAGE = PolicyMessage(
    "0123abcd", "alice@example.org", "bob@example.com", {"tenant": "acme"}, data=DATA
)


def run(body: str, message: PolicyMessage = MESSAGE) -> PolicyResult:
    source = (
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy_from_source(source, "policy.lua").on_message_received("ESMTP", message)


def accepted(body: str, message: PolicyMessage = MESSAGE) -> PolicyAccepted:
    result = run(body, message)
    assert isinstance(result, PolicyAccepted), result
    return result


def failure(body: str, message: PolicyMessage = MESSAGE) -> str:
    result = run(body, message)
    assert isinstance(result, PolicyFailed), result
    return result.message


def test_a_handler_that_changes_nothing_hands_back_no_envelope_and_no_data() -> None:
    result = accepted("msg:set_meta('x_seen', msg:get_first_named_header_value('subject'))")
    assert (result.sender, result.recipient, result.data) == (None, None, None)
    assert result.meta == {"tenant": "acme", "x_seen": "café and more"}


def test_envelope_accessors_and_setters() -> None:
    result = accepted(
        """
  assert(msg:id() == '0123abcd')
  local s, r = msg:sender(), msg:recipient()
  assert(s.user == 'alice' and s.domain == 'example.org' and s.email == 'alice@example.org')
  assert(tostring(r) == 'bob@example.com')
  assert(#msg:recipient_list() == 1 and msg:recipient_list()[1].domain == 'example.com')
  assert(msg:num_attempts() == 0)
  msg:set_sender(string.format('bounce-%s@%s', msg:id(), 'bounces.example.org'))
  msg:set_recipient({ msg:recipient() })
  msg:set_recipient 'someone.else@example.com'
  assert(msg:sender().domain == 'bounces.example.org')
  assert(msg:recipient().user == 'someone.else')
"""
    )
    assert result.sender == "bounce-0123abcd@bounces.example.org"
    assert result.recipient == "someone.else@example.com"
    assert result.data is None
    assert accepted("msg:set_sender('')").sender == ""


def test_bad_envelope_addresses_are_refused_naming_the_method() -> None:
    assert "msg:set_sender" in failure("msg:set_sender('no at sign')")
    assert "msg:set_recipient" in failure("msg:set_recipient('')")
    assert "exactly one recipient" in failure("msg:set_recipient({'a@b.example', 'c@d.example'})")


def test_header_reads_are_case_insensitive_unfolded_and_decoded() -> None:
    result = accepted(
        """
  msg:set_meta('first', msg:get_first_named_header_value('SUBJECT'))
  msg:set_meta('received', msg:get_all_named_header_values('received'))
  msg:set_meta('none', #msg:get_all_named_header_values('Cc'))
  msg:set_meta('missing', msg:get_first_named_header_value('Cc') == nil)
  msg:set_meta('all', msg:get_all_headers())
"""
    )
    assert result.meta["first"] == "café and more"
    assert result.meta["received"] == ["from a", "from b"]
    assert result.meta["none"] == 0 and result.meta["missing"] is True
    assert result.meta["all"][0] == ["From", "Alice Example <alice@example.org>"]
    assert [name for name, _ in result.meta["all"]][-2:] == ["Received", "Received"]


def test_appended_and_prepended_headers_are_in_the_data_and_readable_at_once() -> None:
    result = accepted(
        """
  msg:append_header('X-Tracking', 'abc')
  msg:prepend_header('Received', 'from relay')
  msg:append_header('X-Note', 'héllo wörld', true)
  assert(msg:get_first_named_header_value('x-tracking') == 'abc')
  assert(msg:get_first_named_header_value('x-note') == 'héllo wörld')
  assert(msg:get_all_named_header_values('Received')[1] == 'from relay')
"""
    )
    assert result.data is not None
    fields = split_message(result.data)[0]
    assert fields[0].raw == b"Received: from relay\r\n"
    assert fields[-2].raw == b"X-Tracking: abc\r\n"
    assert fields[-1].raw.startswith(b"X-Note: =?utf-8?")  # RFC 2047, as encode=true asks
    assert result.data.endswith(b"\r\n\r\nThe body\r\n")
    assert DATA.split(b"\r\n\r\n")[0] in result.data  # the original fields, byte for byte


def test_an_encoded_long_ascii_value_is_folded_at_whitespace() -> None:
    result = accepted("msg:append_header('X-Long', string.rep('word ', 40), true)")
    assert result.data is not None
    field = split_message(result.data)[0][-1]
    lines = field.raw.split(b"\r\n")
    assert len(lines) > 2 and all(len(line) <= 78 for line in lines)
    assert field.value == " ".join(["word"] * 40)


def test_a_header_value_cannot_smuggle_in_another_field() -> None:
    text = failure("msg:append_header('X-Note', 'a\\r\\nBcc: victim@example.com')")
    assert "msg:append_header('X-Note')" in text and "folded line" in text
    assert "not a header field name" in failure("msg:append_header('Bad Name', 'x')")
    # A folded value is fine.
    assert accepted("msg:append_header('X-Long', 'a\\r\\n b')").data is not None


def test_removing_headers() -> None:
    only_named = accepted("msg:remove_all_named_headers('received')").data
    assert only_named is not None and b"Received" not in only_named and b"X-Mailer" in only_named
    all_x = accepted("msg:remove_x_headers()").data
    assert all_x is not None and b"X-" not in all_x and b"Received: from a" in all_x
    listed = accepted("msg:remove_x_headers { 'x-campaign-id' }").data
    assert listed is not None and b"X-Campaign-ID" not in listed and b"X-Mailer" in listed
    # Removing what is not there changes nothing.
    assert accepted("msg:remove_all_named_headers('Cc')").data is None


def test_import_x_headers_names_meta_keys_like_kumomta() -> None:
    assert accepted("msg:import_x_headers()").meta == {
        "tenant": "acme",
        "x_campaign_id": "12345",
        "x_mailer": "foobar",
    }
    listed = accepted("msg:import_x_headers { 'x-campaign-id', 'Subject' }").meta
    assert listed == {"tenant": "acme", "x_campaign_id": "12345", "subject": "café and more"}


def test_import_headers_by_name_and_pattern_with_kumomta_naming() -> None:
    result = accepted(
        """
  msg:import_headers {
    { name = 'X-Campaign-ID', target = 'campaign_id' },
    { name = 'X-*', transform = 'camel_case', remove = true },
    { name = 'Received', match = 'all' },
    { name = 'received', match = 'first' },
    { name = 'Subject', transform = 'pascal_case' },
    { name = 'Cc', match = 'all' },
  }
"""
    )
    assert result.meta == {
        "tenant": "acme",
        "campaign_id": "12345",
        "xMailer": "foobar",
        "received": ["from a", "from b"],
        "Subject": "café and more",
    }
    assert result.data is not None
    assert b"X-Mailer" not in result.data and b"X-Campaign-ID" in result.data


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ("{ { name = '*' } }", "only one trailing '*'"),
        ("{ { name = 'X-*-Id' } }", "only one trailing '*'"),
        ("{ { name = 'X-*', target = 'x' } }", "target cannot be used with a wildcard"),
        ("{ { name = 'Subject', match = 'middle' } }", "match must be"),
        ("{ { name = 'Subject', colour = 'red' } }", "unknown field(s) colour"),
    ],
)
def test_import_headers_refuses_specs_kumomta_refuses(specs: str, expected: str) -> None:
    text = failure(f"msg:import_headers {specs}")
    assert "msg:import_headers: spec 1" in text and expected in text


def test_append_text_plain_and_html() -> None:
    multipart = (
        b"From: a@b.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain text\r\n"
        b"--b\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
        b"<html><BODY><b>rich</b></BODY></html>\r\n--b--\r\n"
    )
    message = PolicyMessage("m", "a@b.example", "c@d.example", {}, data=multipart)
    result = accepted(
        "assert(msg:append_text_plain('Unsubscribe: https://u.example/x'))\n"
        "assert(msg:append_text_html('<img src=\"https://t.example/p.gif\">'))",
        message,
    )
    assert result.data is not None
    parsed = email.message_from_bytes(result.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert plain.get_content().split() == ["plain", "text", "Unsubscribe:", "https://u.example/x"]
    assert (
        html.get_content()
        .replace("\r\n", "")
        .startswith('<html><BODY><b>rich</b><img src="https://t.example/p.gif"></BODY>')
    )
    # No text/html part: false, and the message is left alone.
    assert accepted("assert(msg:append_text_html('x') == false)").data is None


def test_get_data_and_set_data_including_bytes_that_are_not_utf8() -> None:
    result = accepted(
        """
  local data = msg:get_data()
  assert(data:sub(1, 5) == 'From:')
  msg:set_data('Subject: new\\r\\nX-Raw: \\xff\\xfe\\r\\n\\r\\nbody \\x80\\r\\n')
  assert(msg:get_first_named_header_value('subject') == 'new')
"""
    )
    assert result.data == b"Subject: new\r\nX-Raw: \xff\xfe\r\n\r\nbody \x80\r\n"


def test_with_only_the_headers_reads_work_and_changes_fail_clearly() -> None:
    headers_only = PolicyMessage(
        "m", "a@b.example", "c@d.example", {}, headers=DATA.split(b"\r\n\r\n")[0].decode()
    )
    read = accepted("msg:set_meta('s', msg:from_header().domain)", headers_only)
    assert read.meta == {"s": "example.org"} and read.data is None
    for call in ("msg:get_data()", "msg:append_header('X-A', 'b')", "msg:remove_x_headers()"):
        text = failure(call, headers_only)
        assert "only the message's headers are available here" in text, text
        assert "policy.lua:3:" in text


def test_address_headers() -> None:
    result = accepted(
        """
  local from = msg:from_header()
  msg:set_meta('from', { from.user, from.domain, from.email, from.name })
  local list = {}
  for _, a in ipairs(msg:to_header().list) do list[#list + 1] = a.email end
  msg:set_meta('to', list)
  msg:set_meta('no_cc', msg:get_address_header('Cc') == nil)
  msg:set_meta('ok', pcall(function() return msg:to_header().domain end))
"""
    )
    assert result.meta["from"] == ["alice", "example.org", "alice@example.org", "Alice Example"]
    assert result.meta["to"] == ["bob@example.com", "carol@example.net"]
    assert result.meta["no_cc"] is True
    assert result.meta["ok"] is False  # two addresses: .domain is an error, as in KumoMTA


def test_queue_name_follows_the_meta_set_so_far() -> None:
    result = accepted(
        """
  msg:set_meta('x_before', msg:queue_name())
  msg:set_meta('campaign', 'spring')
  msg:set_meta('x_after', msg:queue_name())
"""
    )
    assert result.meta["x_before"] == "acme@example.com"
    assert result.meta["x_after"] == "spring:acme@example.com"


def test_check_fix_conformance_reports_checked_issues() -> None:
    message = PolicyMessage("m", "a@b.example", "c@d.example", {}, data=b"Subject: x\r\n\r\nhi\r\n")
    result = accepted(
        "msg:set_meta('failed', msg:check_fix_conformance("
        "'MISSING_DATE_HEADER|MISSING_COLON_VALUE', ''))",
        message,
    )
    assert result.meta["failed"] == "Message has conformance issues: MISSING_DATE_HEADER"
    assert result.data is None


def test_check_fix_conformance_fixes_what_it_can_without_a_rewrite() -> None:
    message = PolicyMessage(
        "m1", "a@b.example", "c@d.example", {}, data=b"Subject : x\nFrom: a@b.example\n\nhi\n"
    )
    result = accepted(
        "assert(msg:check_fix_conformance('', 'NON_CANONICAL_LINE_ENDINGS|NAME_ENDS_WITH_SPACE|"
        "MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION') == nil)",
        message,
    )
    assert result.data is not None
    assert result.data.startswith(b"Subject: x\r\nFrom: a@b.example\r\nDate: ")
    assert b"\r\nMessage-ID: <m1@b.example>\r\nMIME-Version: 1.0\r\n\r\nhi\r\n" in result.data
    assert b"\n" not in result.data.replace(b"\r\n", b"")


def test_check_fix_conformance_reencodes_long_lines_and_8bit_content() -> None:
    data = (
        "From: a@b.example\r\nSubject: café\r\nMIME-Version: 1.0\r\n\r\n" + "é" * 100 + "\r\n"
    ).encode()
    message = PolicyMessage("m", "a@b.example", "c@d.example", {}, data=data)
    result = accepted(
        "assert(msg:check_fix_conformance('', 'LINE_TOO_LONG|NEEDS_TRANSFER_ENCODING') == nil)\n"
        "msg:set_meta('subject', msg:get_first_named_header_value('Subject'))",
        message,
    )
    assert result.data is not None and result.meta["subject"] == "café"
    assert all(byte < 0x80 for byte in result.data)
    assert max(len(line) for line in result.data.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(result.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content().replace("\r\n", "\n") == "é" * 100 + "\n"


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=300))
def test_reencoding_for_transport_keeps_the_text(text: str) -> None:
    data = b"Subject: t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
    encoded = transport_encoded(data + b"\r\n")
    assert all(byte < 0x80 for byte in encoded)
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(encoded, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")


def test_check_fix_conformance_refuses_to_guess_and_unknown_names() -> None:
    message = PolicyMessage("m", "a@b.example", "c@d.example", {}, data=b"Subject\r\n\r\nx\r\n")
    assert "fixing MISSING_COLON_VALUE" in failure(
        "msg:check_fix_conformance('', 'MISSING_COLON_VALUE')", message
    )
    # Listed but absent: nothing to fix, nothing refused.
    assert accepted("msg:check_fix_conformance('', 'MISSING_COLON_VALUE')").data is None
    assert "unknown conformance issue(s) NOPE" in failure("msg:check_fix_conformance('NOPE', '')")


def test_scheduling_is_checked_then_refused_until_the_scheduler_honours_it() -> None:
    assert accepted("assert(msg:set_scheduling(nil) == nil)").data is None
    assert "first_attempt" in failure("msg:set_scheduling { first_attempt = 'tomorrow' }")
    assert "must be given together" in failure("msg:set_scheduling { dow = 'Mon' }")
    refused = failure(
        "msg:set_scheduling { dow = 'Mon,Wed', tz = 'America/Phoenix', start = '09:00:00',"
        " ['end'] = '17:00:00' }"
    )
    assert "does not yet honour per-message scheduling" in refused
    assert accepted("assert(msg:import_scheduling_header('X-Schedule', true) == nil)").meta
    scheduled = PolicyMessage(
        "m", "a@b.example", "c@d.example", {}, data=b'X-Schedule: {"expires": 5}\r\n\r\nx\r\n'
    )
    assert "expires must be an RFC 3339" in failure(
        "msg:import_scheduling_header('X-Schedule', true)", scheduled
    )


def test_methods_relaystream_does_not_offer_fail_naming_themselves() -> None:
    for method in ("dkim_verify", "parse_mime", "set_due", "arc_seal", "increment_num_attempts"):
        text = failure(f"msg:{method}()")
        assert f"policy.lua:3: msg:{method}() is not available in relaystream" in text
    assert accepted("msg:save() msg:shrink() msg:shrink_data()").data is None


def test_methods_work_only_inside_their_handler() -> None:
    source = (
        "local kumo = require 'kumo'\nlocal saved\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  if saved then saved:append_header('X-Late', '1') end\n  saved = msg\nend)\n"
    )
    policy = policy_from_source(source, "policy.lua")
    assert isinstance(policy.on_message_received("ESMTP", MESSAGE), PolicyAccepted)
    late = policy.on_message_received("ESMTP", MESSAGE)
    assert isinstance(late, PolicyFailed)
    assert "outside the handler that received this message" in late.message


header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=60
).map(str.strip)


@settings(max_examples=40, deadline=None)
@given(header_names, header_values)
def test_an_appended_header_reads_back_and_leaves_the_rest_untouched(name: str, value: str) -> None:
    lua_value = value.replace("\\", "\\\\").replace("'", "\\'")
    result = accepted(
        f"msg:append_header('{name}', '{lua_value}')\n"
        f"msg:set_meta('back', msg:get_all_named_header_values('{name}'))"
    )
    assert result.meta["back"] == [value]
    head, body = DATA.split(b"\r\n\r\n", 1)
    assert result.data == head + f"\r\n{name}: {value}".encode() + b"\r\n\r\n" + body


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_splitting_a_message_loses_no_byte(data: bytes) -> None:
    fields, separator, body = split_message(data)
    assert b"".join(f.raw for f in fields) + separator + body == data


def test_a_handler_cannot_grow_the_headers_without_bound() -> None:
    # Each appended copy lives in Python, outside the Lua memory limit.
    message = failure(
        "local value = string.rep('v', 60000)\n"
        "for i = 1, 100 do msg:append_header('X-Big', value) end"
    )
    assert "msg:append_header: the handler added more than 1048576 bytes" in message
