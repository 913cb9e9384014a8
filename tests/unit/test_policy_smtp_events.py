"""The SMTP-time events (KumoMTA's smtp_server_connection_accepted, _ehlo, _mail_from, _rcpt_to,
_auth_plain) as the policy engine runs them for ingest: KumoMTA's arguments, return values,
kumo.reject, failures, and conn_meta shared across the events of one session."""

from __future__ import annotations

from relaystream.core.policy import (
    SMTP_AUTH_PLAIN,
    SMTP_CONNECTION_ACCEPTED,
    SMTP_EHLO,
    SMTP_MAIL_FROM,
    SMTP_RCPT_TO,
    ConnectionMeta,
    EventReturned,
    PolicyAccepted,
    PolicyFailed,
    PolicyLimits,
    PolicyMessage,
    PolicyRejected,
    policy_from_source,
)

SESSION_POLICY = """
local kumo = require 'kumo'
kumo.on('smtp_server_connection_accepted', function(conn_meta)
  if conn_meta:get_meta('received_from') == '192.0.2.9:25' then
    kumo.reject(421, '4.7.0 not from you')
  end
  conn_meta:set_meta('x_seen', { 'connect' })
end)
kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  local seen = conn_meta:get_meta('x_seen')
  table.insert(seen, 'ehlo ' .. domain)
  conn_meta:set_meta('x_seen', seen)
  if domain == 'bad.actor' then
    kumo.reject(550, '5.7.1 go away')
  end
  table.insert(extensions, 'X-SOMETHING')
  return extensions
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  if sender.domain == 'bad.domain' then
    kumo.reject(550, '5.7.1 not thanks')
  end
  conn_meta:set_meta('x_sender_user', sender.user)
end)
kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.email == 'nobody@example.com' then
    kumo.reject(550, '5.1.1 no such user ' .. conn_meta:get_meta('x_sender_user'))
  end
  if recipient.domain == 'broken.example' then
    error('lookup failed')
  end
end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  conn_meta:set_meta('x_auth', authz .. '/' .. authc)
  return password == 'tiger'
end)
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  msg:set_meta('seen', conn_meta:get_meta('x_seen'))
  conn_meta:set_meta('x_messages', (conn_meta:get_meta('x_messages') or 0) + 1)
end)
"""


def session() -> ConnectionMeta:
    return {"received_from": "127.0.0.1:40000", "received_via": "127.0.0.1:2525"}


def test_each_event_gets_kumomtas_arguments_and_shares_conn_meta() -> None:
    policy = policy_from_source(SESSION_POLICY, "policy.lua")
    conn = session()
    assert policy.on_smtp_event(SMTP_CONNECTION_ACCEPTED, [], conn) == EventReturned()
    ehlo = policy.on_smtp_event(SMTP_EHLO, ["client.example", ["SIZE 100", "8BITMIME"]], conn)
    assert ehlo == EventReturned(["SIZE 100", "8BITMIME", "X-SOMETHING"])
    assert policy.on_smtp_event(SMTP_MAIL_FROM, ["alice@example.org"], conn) == EventReturned()
    assert policy.on_smtp_event(SMTP_RCPT_TO, ["bob@example.com"], conn) == EventReturned()
    assert conn["x_seen"] == ["connect", "ehlo client.example"]
    assert conn["x_sender_user"] == "alice"
    # The message handler's conn_meta is the session's: it reads and writes the same values.
    message = PolicyMessage("m1", "alice@example.org", "bob@example.com", dict(conn))
    result = policy.on_message_received("ESMTP", message, conn)
    assert isinstance(result, PolicyAccepted)
    assert result.meta["seen"] == ["connect", "ehlo client.example"]
    assert conn["x_messages"] == 1


def test_kumo_reject_at_each_event_is_that_reply() -> None:
    policy = policy_from_source(SESSION_POLICY, "policy.lua")
    blocked = {"received_from": "192.0.2.9:25"}
    assert policy.on_smtp_event(SMTP_CONNECTION_ACCEPTED, [], blocked) == PolicyRejected(
        421, "4.7.0 not from you"
    )
    conn = session()
    conn["x_seen"] = []
    assert policy.on_smtp_event(SMTP_EHLO, ["bad.actor", []], conn) == PolicyRejected(
        550, "5.7.1 go away"
    )
    # What the handler set before rejecting stays set, as on KumoMTA's shared object.
    assert conn["x_seen"] == ["ehlo bad.actor"]
    assert policy.on_smtp_event(SMTP_MAIL_FROM, ["x@bad.domain"], conn) == PolicyRejected(
        550, "5.7.1 not thanks"
    )
    policy.on_smtp_event(SMTP_MAIL_FROM, ["carol@example.org"], conn)
    assert policy.on_smtp_event(SMTP_RCPT_TO, ["nobody@example.com"], conn) == PolicyRejected(
        550, "5.1.1 no such user carol"
    )


def test_a_failing_handler_is_a_policy_failure_naming_the_line() -> None:
    policy = policy_from_source(SESSION_POLICY, "policy.lua")
    result = policy.on_smtp_event(SMTP_RCPT_TO, ["a@broken.example"], session())
    assert isinstance(result, PolicyFailed)
    assert result.reason == "error"
    assert "policy.lua:" in result.message and "lookup failed" in result.message


def test_auth_plain_returns_the_handlers_verdict() -> None:
    policy = policy_from_source(SESSION_POLICY, "policy.lua")
    conn = session()
    assert policy.on_smtp_event(SMTP_AUTH_PLAIN, ["daniel", "daniel", "tiger"], conn) == (
        EventReturned(True)
    )
    assert policy.on_smtp_event(SMTP_AUTH_PLAIN, ["daniel", "daniel", "lion"], conn) == (
        EventReturned(False)
    )
    assert conn["x_auth"] == "daniel/daniel"


def test_a_policy_without_the_handlers_answers_nothing() -> None:
    policy = policy_from_source("local kumo = require 'kumo'\n", "policy.lua")
    assert not policy.has_handler(SMTP_RCPT_TO)
    assert policy.on_smtp_event(SMTP_RCPT_TO, ["bob@example.com"], session()) == EventReturned()


def test_an_endless_handler_stops_at_the_deadline() -> None:
    policy = policy_from_source(
        "kumo.on('smtp_server_mail_from', function() while true do end end)\n",
        "policy.lua",
        PolicyLimits(deadline_seconds=0.2, instruction_budget=10**12),
    )
    result = policy.on_smtp_event(SMTP_MAIL_FROM, ["a@example.org"], session())
    assert isinstance(result, PolicyFailed)
    assert result.reason == "timeout"


def test_conn_meta_changes_too_large_to_encode_do_not_break_later_calls() -> None:
    # The changes are encoded after the handler; running out of memory there once used to
    # leave them behind, so every later call of the session failed too.
    policy = policy_from_source(
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_ehlo', function(domain, conn_meta)\n"
        "  if domain == 'big.example' then\n"
        "    local parts = {}\n"
        "    for i = 1, 120 do parts[i] = string.rep('x', 100000) end\n"
        "    conn_meta:set_meta('big', parts)\n"
        "  else\n"
        "    conn_meta:set_meta('small', domain)\n"
        "  end\n"
        "end)\n",
        "policy.lua",
        PolicyLimits(memory_bytes=24 * 1024 * 1024),
    )
    connection = ConnectionMeta()
    policy.on_smtp_event(SMTP_EHLO, ["big.example"], connection)
    assert "big" not in connection
    assert isinstance(policy.on_smtp_event(SMTP_EHLO, ["ok.example"], connection), EventReturned)
    assert connection["small"] == "ok.example"
