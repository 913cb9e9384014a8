"""A `submit` batch holds the policy one record at a time: an SMTP session's call that comes
while the batch runs is served between two of its records, not after the whole batch."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime

from relaystream.core.events.records import MessageAccepted
from relaystream.core.policy.loader import policy_from_source
from relaystream.ingest.accepted_messages import Reception, accepted_messages
from relaystream.ingest.reception import ReceptionPolicy

# Each call takes the next number, so the numbers say in which order the calls ran.
POLICY = """\
local kumo = require 'kumo'
local calls = 0
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  calls = calls + 1
  conn_meta:set_meta('call', calls)
end)
kumo.on('http_message_generated', function(msg)
  calls = calls + 1
  msg:set_meta('call', calls)
end)
"""


def submission(recipient: str) -> list[MessageAccepted]:
    reception = Reception("Kafka", "a@example.com", b"Subject: x\r\n\r\nx\r\n", datetime.now(UTC),
                          "t1", {})  # fmt: skip
    return accepted_messages(reception, [recipient], [f"id-{recipient}"])


def call_number(result: object) -> int:
    assert isinstance(result, dict)
    return int(json.loads(result["meta"]["call"]))


async def test_an_smtp_call_runs_between_two_records_of_a_submit_batch() -> None:
    reception = ReceptionPolicy(policy_from_source(POLICY, "policy.lua"))
    first_done, smtp_queued = threading.Event(), threading.Event()

    def batch() -> list[int]:
        [first] = reception.receive_now("Kafka", submission("one@example.com"))
        first_done.set()
        smtp_queued.wait(30)
        [second] = reception.receive_now("Kafka", submission("two@example.com"))
        return [call_number(first), call_number(second)]

    try:
        converting = asyncio.ensure_future(reception.run_batch(batch))
        await asyncio.to_thread(first_done.wait, 30)
        connection: dict[str, object] = {}
        smtp_call = asyncio.ensure_future(
            reception.event("smtp_server_mail_from", ["a@example.com"], connection)
        )
        await asyncio.sleep(0)  # the session's call is queued for the policy thread
        smtp_queued.set()
        records = await converting
        await smtp_call
    finally:
        reception.close()
    assert records == [1, 3]
    assert connection["call"] == 2
