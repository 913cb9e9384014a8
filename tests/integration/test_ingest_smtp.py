"""The ingest SMTP listener through real SMTP sessions (aiosmtplib, and once delivery's own
client beside it) and the real broker."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import ssl
from pathlib import Path

import aiosmtplib
import pytest
from ingest_harness import (
    RunningIngest,
    ingest_settings,
    read_events,
    running_ingest,
    self_signed_certificate,
)

from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicCatalog, TopicSettings, declare_topics
from relaystream.core.runtime.settings import InvalidLineEndings
from relaystream.delivery.smtp_session import Destination, SessionOptions, SmtpSession
from relaystream.delivery.tls import TlsMode
from relaystream.ingest.smtp_lines import has_bare_cr_or_lf, normalize_line_endings
from relaystream.ingest.smtp_users import hash_password

MESSAGE = b"From: a@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"
NOT_LOOPBACK = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    catalog = declare_topics(TopicSettings(prefix=topic_prefix, partitions=2))
    await ensure_topics(kafka_bootstrap, catalog)
    return catalog


async def session(ingest: RunningIngest, **options: object) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=ingest.endpoints.smtp_port,
        local_hostname="client.example",
        timeout=30,
        start_tls=False,
        **options,  # type: ignore[arg-type]
    )
    await client.connect()
    await client.ehlo()
    return client


async def command(client: aiosmtplib.SMTP, line: str) -> tuple[int, str]:
    verb, _, argument = line.partition(" ")
    response = await client.execute_command(verb.encode(), argument.encode())
    return response.code, response.message


async def raw_reply(reader: asyncio.StreamReader) -> bytes:
    """The last line of the next reply on a raw connection (continuation lines skipped)."""
    line = await asyncio.wait_for(reader.readline(), 30)
    while line[3:4] == b"-":
        line = await asyncio.wait_for(reader.readline(), 30)
    return line


async def raw_session(ingest: RunningIngest) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket past the banner and EHLO, to write commands exactly as a test wants."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.endpoints.smtp_port)
    assert (await raw_reply(reader)).startswith(b"220")
    writer.write(b"EHLO client.example\r\n")
    assert (await raw_reply(reader)).startswith(b"250")
    return reader, writer


async def test_each_recipient_becomes_one_accepted_message_with_connection_meta(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        errors, reply = await client.sendmail(
            "sender@example.com", ["one@example.org", "two@Example.NET"], MESSAGE
        )
        port = client.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        await client.quit()
        assert errors == {}
        assert reply.startswith("2.0.0 OK queued as")

    events = await read_events(kafka_bootstrap, topics.accepted.name, 2, schema="MessageAccepted")
    by_recipient = {event["recipient"]: (key, event) for key, event in events}
    assert set(by_recipient) == {"one@example.org", "two@example.net"}
    transaction_ids = {event["transaction_id"] for _, event in events}
    assert len(transaction_ids) == 1
    for key, event in by_recipient.values():
        assert re.fullmatch(r"[0-9a-f]{32}", event["id"]) and key == event["id"].encode()
        assert event["sender"] == "sender@example.com"
        assert event["reception_protocol"] == "ESMTP"
        assert event["content"].endswith(MESSAGE)
        received = event["content"][: -len(MESSAGE)].decode()
        assert received.startswith("Received: from client.example ([127.0.0.1])\r\n")
        assert "by mx.ingest.test (relaystream) with ESMTP" in received
        meta = {name: json.loads(value) for name, value in event["meta"].items()}
        assert meta["received_from"] == f"127.0.0.1:{port}"
        assert meta["received_via"] == f"127.0.0.1:{ingest.endpoints.smtp_port}"
        assert meta["ehlo_domain"] == "client.example"
        assert meta["hostname"] == "mx.ingest.test"
        assert meta["reception_protocol"] == "ESMTP"
        assert "authn_id" not in meta and "tls_cipher" not in meta
    assert len({event["id"] for _, event in events}) == 2


async def test_relaying_is_denied_to_clients_outside_the_relay_networks(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix, relay_networks=NOT_LOOPBACK)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        assert (await command(client, "MAIL FROM:<sender@example.com>"))[0] == 250
        code, message = await command(client, "RCPT TO:<rcpt@example.org>")
        await client.quit()
    assert (code, message) == (550, "5.7.1 relaying denied")


async def test_auth_after_starttls_allows_relaying(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    users = tmp_path / "users"
    users.write_text(f"# test users\nalice:{hash_password('s3cret')}\n")
    settings = ingest_settings(
        kafka_bootstrap,
        topic_prefix,
        relay_networks=NOT_LOOPBACK,
        tls_cert=cert,
        tls_key=key,
        smtp_users_file=users,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    trust.check_hostname = False
    async with running_ingest(settings) as ingest:
        client = await session(ingest, tls_context=trust)
        assert client.supports_extension("starttls")
        await client.starttls()
        await client.ehlo()
        assert "PLAIN" in client.esmtp_extensions["auth"].upper()
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client.login("alice", "wrong")
        assert refused.value.code == 535
        # alice may not act as bob (an authorization identity of another user).
        as_bob = base64.b64encode(b"bob\0alice\0s3cret").decode()
        assert (await command(client, f"AUTH PLAIN {as_bob}"))[0] == 535
        await client.login("alice", "s3cret")
        errors, _ = await client.sendmail("alice@example.com", ["far@example.org"], MESSAGE)
        await client.quit()
    assert errors == {}
    [(_, event)] = await read_events(
        kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted"
    )
    meta = {name: json.loads(value) for name, value in event["meta"].items()}
    assert meta["authn_id"] == "alice"
    assert meta["authz_id"] == "alice"
    assert meta["tls_protocol_version"].startswith("TLS")
    assert meta["tls_cipher"]
    assert b"with ESMTPSA" in event["content"]


async def test_message_size_limit_is_advertised_and_enforced(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix, max_message_size=1000)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        assert client.esmtp_extensions["size"] == "1000"
        assert client.supports_extension("8bitmime")
        code, message = await command(client, "MAIL FROM:<s@example.com> SIZE=5000")
        assert (code, message[:5]) == (552, "5.3.4")
        assert (await command(client, "MAIL FROM:<s@example.com>"))[0] == 250
        assert (await command(client, "RCPT TO:<r@example.org>"))[0] == 250
        with pytest.raises(aiosmtplib.SMTPDataError) as too_big:
            await client.data(MESSAGE + (b"x" * 70 + b"\r\n") * 30)
        assert (too_big.value.code, too_big.value.message[:5]) == (552, "5.3.4")
        await client.quit()


async def test_the_body_arrives_as_sent_dot_stuffing_undone(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    # Lines starting with dots (the client doubles them on the wire), a dot inside a line and
    # a body long enough to arrive in many reads. (aiosmtplib would turn a bare LF into CRLF.)
    body = b"Subject: dots\r\n\r\n.\r\n..two\r\nmid.dle.\r\n" + b"".join(
        b".%04d " % n + b"x" * 70 + b"\r\n" for n in range(300)
    )
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        errors, _ = await client.sendmail("s@example.com", ["r@example.org"], body)
        assert errors == {}
        await client.quit()
    events = await read_events(kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted")
    assert events[0][1]["content"].endswith(b"\r\n" + body)


async def test_a_line_over_1000_octets_gets_500_and_the_session_goes_on(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        assert (await command(client, "MAIL FROM:<s@example.com>"))[0] == 250
        assert (await command(client, "RCPT TO:<r@example.org>"))[0] == 250
        with pytest.raises(aiosmtplib.SMTPDataError) as too_long:
            await client.data(b"Subject: long\r\n\r\n" + b"y" * 1000 + b"\r\nafter\r\n")
        assert (too_long.value.code, too_long.value.message[:5]) == (500, "5.5.2")
        errors, _ = await client.sendmail("s@example.com", ["ok@example.org"], MESSAGE)
        assert errors == {}
        await client.quit()
    events = await read_events(kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted")
    assert [event["recipient"] for _, event in events] == ["ok@example.org"]


async def test_commands_pipelined_after_the_final_dot_are_answered(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        reader, writer = await raw_session(ingest)

        async def transaction(recipient: bytes) -> None:
            for line, code in [
                (b"MAIL FROM:<s@example.com>", b"250"),
                (b"RCPT TO:<" + recipient + b">", b"250"),
                (b"DATA", b"354"),
            ]:
                writer.write(line + b"\r\n")
                assert (await raw_reply(reader)).startswith(code)

        # An empty body: the data ends at its first line.
        await transaction(b"empty@example.org")
        writer.write(b".\r\n")
        assert (await raw_reply(reader)).startswith(b"250 2.0.0")
        # The end of the data and the next commands in one write.
        await transaction(b"r@example.org")
        writer.write(MESSAGE + b".\r\nMAIL FROM:<t@example.com>\r\nQUIT\r\n")
        assert (await raw_reply(reader)).startswith(b"250 2.0.0")
        assert (await raw_reply(reader)).startswith(b"250")
        assert (await raw_reply(reader)).startswith(b"221")
        writer.close()
    events = await read_events(kafka_bootstrap, topics.accepted.name, 2, schema="MessageAccepted")
    contents = {event["recipient"]: event["content"] for _, event in events}
    assert contents["r@example.org"].endswith(b"\r\n" + MESSAGE)
    # Only our Received header (folded over lines starting with a tab), nothing of the data.
    received_lines = contents["empty@example.org"].split(b"\r\n")
    assert received_lines[0].startswith(b"Received: ") and received_lines[-1] == b""
    assert all(line.startswith(b"\t") for line in received_lines[1:-1])


async def test_pipelining_is_offered_and_a_pipelined_envelope_is_answered_in_order(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        assert client.supports_extension("pipelining")
        client.close()
        reader, writer = await raw_session(ingest)

        # The whole envelope in one write, one recipient of it refused.
        writer.write(
            b"MAIL FROM:<s@example.com>\r\nRCPT TO:<p@example.org>\r\n"
            b"RCPT TO:<not an address>\r\nDATA\r\n"
        )
        codes = [(await raw_reply(reader))[:3] for _ in range(4)]
        assert codes[:2] == [b"250", b"250"] and codes[2].startswith(b"5") and codes[3] == b"354"
        writer.write(MESSAGE + b".\r\nQUIT\r\n")
        assert (await raw_reply(reader)).startswith(b"250 2.0.0")
        assert (await raw_reply(reader)).startswith(b"221")
        writer.close()
    events = await read_events(kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted")
    assert [event["recipient"] for _, event in events] == ["p@example.org"]


async def test_delivery_s_pipelining_client_and_aiosmtplib_hand_over_the_same_bodies(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    """Two independent clients, two transactions each over one session: relaystream's own
    delivery client (envelope pipelined, RSET before the second) as when one relaystream
    relays to another's ingest, and aiosmtplib (one command at a time) as the reference. Ingest
    stores the same bodies from both, dot-stuffing undone."""
    body = b"Subject: two clients\r\n\r\n.leading dot\r\n..two dots\r\nmid.dle\r\n.\r\nend\r\n"
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        destination = Destination("ingest", "127.0.0.1", ingest.endpoints.smtp_port)
        options = SessionOptions(ehlo_name="relay.example", tls_mode=TlsMode.DISABLED)
        own = await SmtpSession.open(destination, options)
        try:
            for n in range(2):
                reply = await own.send("s@example.com", f"own{n}@example.org", body)
                assert reply.code == 250, reply
        finally:
            await own.close()
        reference = await session(ingest)
        for n in range(2):
            errors, _ = await reference.sendmail("s@example.com", [f"ref{n}@example.org"], body)
            assert errors == {}
        await reference.quit()
    events = await read_events(kafka_bootstrap, topics.accepted.name, 4, schema="MessageAccepted")
    contents = {event["recipient"]: event["content"] for _, event in events}
    assert sorted(contents) == ["own0@example.org", "own1@example.org", "ref0@example.org",
                                "ref1@example.org"]  # fmt: skip
    assert all(content.endswith(b"\r\n" + body) for content in contents.values())


async def test_recipients_past_the_limit_are_refused_with_452(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix, max_recipients=2)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        await command(client, "MAIL FROM:<s@example.com>")
        replies = [await command(client, f"RCPT TO:<r{i}@example.org>") for i in range(3)]
        await client.quit()
    assert [code for code, _ in replies] == [250, 250, 452]
    assert replies[2][1] == "4.5.3 Too many recipients"


async def test_envelope_addresses_are_checked(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        client = await session(ingest)
        bad_sender = await command(client, "MAIL FROM:<a b@example.com>")
        no_brackets = await command(client, "MAIL FROM:sender@example.com")
        null_sender = await command(client, "MAIL FROM:<>")
        untagged_v6 = await command(client, "RCPT TO:<user@[::1]>")
        tagged_v6 = await command(client, "RCPT TO:<user@[IPv6:::1]>")
        bad_domain = await command(client, "RCPT TO:<user@-bad.example>")
        unbracketed = await command(client, "RCPT TO:user@example.org")
        long_local_part = await command(client, "RCPT TO:<" + "a" * 65 + "@example.org>")
        await client.quit()
    assert bad_sender[0] == 553 and bad_sender[1].startswith("5.1.7")
    assert no_brackets[0] == 501 and no_brackets[1].startswith("5.1.7")
    assert null_sender[0] == 250
    assert untagged_v6[0] == 553 and untagged_v6[1].startswith("5.1.3")
    assert "[IPv6:::1]" in untagged_v6[1]
    assert tagged_v6[0] == 250
    assert bad_domain[0] == 553 and bad_domain[1].startswith("5.1.3")
    assert unbracketed[0] == 501 and unbracketed[1].startswith("5.1.3")
    # RFC 5321's sizes, the same as the injection API's (core.domain.envelope).
    assert long_local_part == (
        553,
        "5.1.3 Bad recipient address: local part of 65 octets is longer than RFC 5321 allows (64)",
    )


async def test_connections_past_the_limit_get_421(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix, max_connections=1)
    async with running_ingest(settings) as ingest:
        first = await session(ingest)
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.endpoints.smtp_port)
        greeting = await asyncio.wait_for(reader.readline(), 30)
        closed = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        await first.quit()
    assert greeting.startswith(b"421 4.7.0")
    assert closed == b""


# -- issue 16, finding 7: NUL bytes, bare LF, SMTP smuggling --------------------------------

# Each is an end of data to some server; to ours only CRLF.CRLF is.
SMUGGLING_ENDS = [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"]
SMUGGLED = (
    b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nevil\r\n"
)


async def test_nul_and_control_bytes_in_commands_get_501_and_the_session_goes_on(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)
    async with running_ingest(settings) as ingest:
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.endpoints.smtp_port)
        assert (await raw_reply(reader)).startswith(b"220")
        replies = []
        for line in [
            b"EHLO client\x00.example",
            b"EHLO client.example",
            b"MAIL FROM:<a\x00b@example.com>",
            b"MAIL FROM:<a@example.com>\rRCPT TO:<x@example.org>",
            b"NOOP",
        ]:
            writer.write(line + b"\r\n")
            replies.append(await raw_reply(reader))
        writer.close()
    assert replies == [
        b"501 5.5.2 Syntax error: a NUL byte in command\r\n",
        b"250 HELP\r\n",
        b"501 5.5.2 Syntax error: a NUL byte in command\r\n",
        b"501 5.5.2 Syntax error: a bare <CR> in command\r\n",
        b"250 OK\r\n",
    ]


async def test_a_command_ending_in_a_bare_lf_is_refused_and_the_session_closed(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)  # Deny, the default
    async with running_ingest(settings) as ingest:
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.endpoints.smtp_port)
        assert (await raw_reply(reader)).startswith(b"220")
        writer.write(b"EHLO client.example\n")
        refused_ehlo = await raw_reply(reader)
        closed_after_ehlo = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        # Pipelined: the good command is answered, the bare-LF one ends the session.
        reader, writer = await raw_session(ingest)
        writer.write(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.org>\nDATA\r\n")
        pipelined = [await raw_reply(reader), await raw_reply(reader)]
        closed_after_rcpt = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    bare_lf = b"550 5.5.2 Error: bare <LF> received, lines must end with <CR><LF>\r\n"
    assert (refused_ehlo, closed_after_ehlo) == (bare_lf, b"")
    assert pipelined == [b"250 2.1.0 OK\r\n", bare_lf] and closed_after_rcpt == b""


async def test_a_bare_lf_command_is_read_as_crlf_when_allowed_or_fixed(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    for mode in (InvalidLineEndings.ALLOW, InvalidLineEndings.FIX):
        settings = ingest_settings(kafka_bootstrap, topic_prefix, smtp_invalid_line_endings=mode)
        async with running_ingest(settings) as ingest:
            reader, writer = await asyncio.open_connection("127.0.0.1", ingest.endpoints.smtp_port)
            assert (await raw_reply(reader)).startswith(b"220")
            writer.write(b"EHLO client.example\nNOOP\r\nEHLO a\x00b\n")
            replies = [await raw_reply(reader) for _ in range(3)]
            writer.close()
        assert replies[:2] == [b"250 HELP\r\n", b"250 OK\r\n"], mode
        assert replies[2].startswith(b"501 5.5.2 Syntax error: a NUL byte"), mode


async def smuggle(ingest: RunningIngest, tag: str) -> list[bytes]:
    """One session, one transaction per smuggling sequence (recipient <i>.<tag>@example.org),
    then QUIT; the reply to each DATA's end and to QUIT, in order."""
    reader, writer = await raw_session(ingest)
    replies = []
    for index, end in enumerate(SMUGGLING_ENDS):
        for line, code in [
            (b"MAIL FROM:<s@example.com>", b"250"),
            (f"RCPT TO:<{index}.{tag}@example.org>".encode(), b"250"),
            (b"DATA", b"354"),
        ]:
            writer.write(line + b"\r\n")
            assert (await raw_reply(reader)).startswith(code)
        writer.write(b"Subject: s\r\n\r\nfirst" + end + SMUGGLED + b".\r\n")
        replies.append(await raw_reply(reader))
    writer.write(b"QUIT\r\n")
    replies.append(await raw_reply(reader))
    writer.close()
    return replies


async def test_smuggling_sequences_are_refused_by_default_and_never_make_a_second_message(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    settings = ingest_settings(kafka_bootstrap, topic_prefix)  # Deny, the default
    async with running_ingest(settings) as ingest:
        replies = await smuggle(ingest, "deny")
        client = await session(ingest)
        errors, _ = await client.sendmail("s@example.com", ["after@example.org"], MESSAGE)
        await client.quit()
    assert errors == {}
    refused = b"552 5.6.0 message data must use CRLF for line endings\r\n"
    assert replies == [refused] * len(SMUGGLING_ENDS) + [b"221 Bye\r\n"]
    events = await read_events(
        kafka_bootstrap, topics.accepted.name, 1, schema="MessageAccepted", settle_seconds=2.0
    )
    assert [event["recipient"] for _, event in events] == ["after@example.org"]


async def test_smuggling_sequences_stay_inside_one_message_when_allowed_or_fixed(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicCatalog
) -> None:
    for mode in (InvalidLineEndings.ALLOW, InvalidLineEndings.FIX):
        settings = ingest_settings(kafka_bootstrap, topic_prefix, smtp_invalid_line_endings=mode)
        async with running_ingest(settings) as ingest:
            replies = await smuggle(ingest, mode.value)
        assert [reply[:9] for reply in replies[:-1]] == [b"250 2.0.0"] * len(SMUGGLING_ENDS)
        assert replies[-1] == b"221 Bye\r\n"
    events = await read_events(
        kafka_bootstrap,
        topics.accepted.name,
        2 * len(SMUGGLING_ENDS),
        schema="MessageAccepted",
        settle_seconds=2.0,
    )
    # One message per DATA, none for victim@example.org: the smuggled transaction is text.
    contents = {event["recipient"]: event["content"] for _, event in events}
    assert len(events) == len(contents) == 2 * len(SMUGGLING_ENDS)
    for index, end in enumerate(SMUGGLING_ENDS):
        sent = b"first" + end + SMUGGLED
        # Allow keeps the line endings as sent (dot-unstuffing after CRLF only); Fix makes
        # each CRLF first.
        allowed = contents[f"{index}.Allow@example.org"]
        fixed = contents[f"{index}.Fix@example.org"]
        assert allowed.endswith(sent.replace(b"\r\n.", b"\r\n"))
        assert fixed.endswith(normalize_line_endings(sent).replace(b"\r\n.", b"\r\n"))
        assert not has_bare_cr_or_lf(fixed)
