"""`relaystream audit decisions` and `audit verify` against a real broker.

Decisions are made by the routing service's own `decide` with a real Lua policy and written to
the compacted `decisions` topic as the service writes them (key = message id), with Kafka
timestamps set so --since/--until have something to cut.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from relaystream.cli.main import main
from relaystream.core.events.codec import encode
from relaystream.core.events.meta import encode_meta
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.topics import TopicSettings, declare_topics
from relaystream.core.policy import Policy, policy_from_file
from relaystream.routing.decision import decide

# Policy A: tenant and campaign from the submitter's meta, example.net via a smarthost,
# recipients named "reject" refused.
POLICY_A = """\
kumo.on('smtp_server_message_received', function(msg)
  local user = msg:recipient().user
  if user == 'reject' then
    kumo.reject(550, '5.7.1 not from here')
  end
  msg:set_meta('tenant', msg:get_meta('customer') or 'anon')
  msg:set_meta('campaign', 'spring')
  if msg:recipient().domain == 'example.net' then
    msg:set_meta('routing_domain', 'relay.example.com')
  end
end)
"""
# Policy B: like A, but customer "shop" now goes to tenant "retail".
POLICY_B = POLICY_A.replace(
    "msg:set_meta('tenant', msg:get_meta('customer') or 'anon')",
    "local customer = msg:get_meta('customer') or 'anon'\n"
    "  if customer == 'shop' then customer = 'retail' end\n"
    "  msg:set_meta('tenant', customer)",
)

BASE_TIME = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def accepted(recipient: str, customer: str | None, received_at: datetime) -> dict[str, Any]:
    meta = {"reception_protocol": "ESMTP", **({"customer": customer} if customer else {})}
    return {
        "id": uuid.uuid4().hex,
        "sender": "sender@origin.example",
        "recipient": recipient,
        "content": b"From: sender@origin.example\r\nSubject: hi\r\n\r\nbody\r\n",
        "meta": encode_meta(meta),
        "reception_protocol": "ESMTP",
        "received_at": received_at,
        "transaction_id": None,
    }


# (recipient, customer, minutes after BASE_TIME)
MESSAGES: Sequence[tuple[str, str | None, int]] = (
    ("ann@example.org", "shop", 0),
    ("bob@example.org", "bank", 10),
    ("cat@example.net", "shop", 20),
    ("reject@example.org", "shop", 30),
    ("dan@example.org", None, 40),
)


async def publish_decisions(bootstrap: str, prefix: str, policy: Policy) -> list[dict[str, Any]]:
    topics = declare_topics(TopicSettings.local(prefix))
    await ensure_topics(bootstrap, [topics.decisions])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    decisions = []
    try:
        for recipient, customer, minutes in MESSAGES:
            at = BASE_TIME + timedelta(minutes=minutes)
            decision = decide(accepted(recipient, customer, at), policy, decided_at=at).decision
            await producer.send_and_wait(
                topics.decisions.name,
                encode("RoutingDecision", decision),
                key=decision["id"].encode(),
                timestamp_ms=int(at.timestamp() * 1000),
            )
            decisions.append(decision)
    finally:
        await producer.stop()
    return decisions


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


async def audit(
    capsys: pytest.CaptureFixture[str], bootstrap: str, prefix: str, *args: str
) -> tuple[int, str, str]:
    argv = ["audit", *args, "--bootstrap", bootstrap, "--prefix", prefix]
    return await asyncio.to_thread(run_cli, capsys, argv)


def jsonl(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def policy_a(tmp_path: Path) -> Path:
    path = tmp_path / "a.lua"
    path.write_text(POLICY_A)
    return path


@pytest.fixture
def policy_b(tmp_path: Path) -> Path:
    path = tmp_path / "b.lua"
    path.write_text(POLICY_B)
    return path


async def test_decisions_in_every_format_with_summaries(
    kafka_bootstrap: str, topic_prefix: str, policy_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))
    ids = {d["id"] for d in recorded}

    code, out, err = await audit(capsys, kafka_bootstrap, topic_prefix, "decisions")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("DECIDED_AT") and len(lines) == 1 + len(MESSAGES)
    assert any("REJECTED" in line and "550 5.7.1 not from here" in line for line in lines)
    assert "5 decisions matched of 5 read" in err
    assert "spring:shop@example.org" in err and recorded[0]["policy_hash"] in err

    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "decisions", "--format", "jsonl", "--summary"
    )
    objects = jsonl(out)
    assert {o["id"] for o in objects[:-1]} == ids
    summary = objects[-1]
    assert summary["summary"] is True and summary["matched"] == 5
    assert summary["per_outcome"] == {"QUEUED": 4, "REJECTED": 1}
    assert summary["per_queue"]["spring:shop@example.org"] == 1
    assert summary["per_queue"]["spring:shop@example.net!relay.example.com"] == 1
    assert summary["per_policy"] == [
        {"policy_hash": recorded[0]["policy_hash"], "policy_name": "a.lua", "decisions": 5}
    ]
    ann = next(o for o in objects if o.get("recipient") == "ann@example.org")
    assert ann["meta_after"]["tenant"] == "shop" and ann["decided_at"] == "2026-11-24T12:00:00.000Z"

    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "decisions", "--format", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {row["id"] for row in rows} == ids
    rejected = next(row for row in rows if row["outcome"] == "REJECTED")
    assert rejected["queue"] == "" and rejected["rejection"] == "550 5.7.1 not from here"


@pytest.mark.parametrize(
    ("option", "value", "recipients"),
    [
        ("--domain", "EXAMPLE.net", {"cat@example.net"}),
        ("--tenant", "shop", {"ann@example.org", "cat@example.net"}),
        ("--campaign", "spring", {"ann@example.org", "bob@example.org", "cat@example.net",
                                  "dan@example.org"}),
        ("--queue", "spring:bank@example.org", {"bob@example.org"}),
        ("--routing-domain", "relay.example.com", {"cat@example.net"}),
        ("--campaign", "autumn", set()),
    ],
)  # fmt: skip
async def test_each_filter(
    kafka_bootstrap: str,
    topic_prefix: str,
    policy_a: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    recipients: set[str],
) -> None:
    await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))
    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "decisions", "--format", "jsonl", option, value
    )
    assert code == 0
    assert {o["recipient"] for o in jsonl(out)} == recipients


async def test_message_id_filter(
    kafka_bootstrap: str, topic_prefix: str, policy_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))
    wanted = recorded[3]["id"]
    _, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "decisions", "--format", "jsonl",
        "--message-id", wanted,
    )  # fmt: skip
    assert [o["id"] for o in jsonl(out)] == [wanted]


async def test_since_and_until(
    kafka_bootstrap: str, topic_prefix: str, policy_a: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))

    async def recipients(*window: str) -> list[str]:
        code, out, _ = await audit(
            capsys, kafka_bootstrap, topic_prefix, "decisions", "--format", "jsonl", *window
        )
        assert code == 0
        return sorted(o["recipient"] for o in jsonl(out))

    assert await recipients("--since", "2026-11-24T12:20:00Z") == [
        "cat@example.net",
        "dan@example.org",
        "reject@example.org",
    ]
    assert await recipients("--until", "2026-11-24T12:10:00") == [
        "ann@example.org",
        "bob@example.org",
    ]
    assert await recipients(
        "--since", "2026-11-24T13:05:00+01:00", "--until", "2026-11-24T12:25:00Z"
    ) == ["bob@example.org", "cat@example.net"]
    # Relative: everything was stamped in 2026-11-24 12:00..12:40, long before "1h" ago.
    assert await recipients("--since", "1h") == []
    assert len(await recipients("--until", "1m")) == len(MESSAGES)


async def test_bad_time_is_a_usage_error(
    kafka_bootstrap: str, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await audit(
        capsys, kafka_bootstrap, topic_prefix, "decisions", "--since", "yesterday"
    )
    assert code == 2 and "bad time 'yesterday'" in err


async def test_verify_detects_a_policy_change(
    kafka_bootstrap: str,
    topic_prefix: str,
    policy_a: Path,
    policy_b: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorded = await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))
    hash_a = recorded[0]["policy_hash"]

    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "verify", "--policy", str(policy_a)
    )
    assert code == 0, out
    assert "5 decisions checked, 0 would change" in out
    assert f"recorded policy {hash_a} a.lua: 5 checked, 0 changed" in out

    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "verify", "--policy", str(policy_b),
        "--format", "jsonl",
    )  # fmt: skip
    assert code == 1
    *changes, summary = jsonl(out)
    by_id = {change["id"]: change for change in changes}
    ann, cat = recorded[0]["id"], recorded[2]["id"]
    assert set(by_id) == {ann, cat}  # the rejected "shop" message stays rejected
    assert by_id[ann]["queue"] == ["spring:shop@example.org", "spring:retail@example.org"]
    assert by_id[ann]["meta_keys"] == ["tenant"]
    assert by_id[ann]["outcome"] == ["QUEUED", "QUEUED"]
    assert by_id[cat]["queue"] == [
        "spring:shop@example.net!relay.example.com",
        "spring:retail@example.net!relay.example.com",
    ]
    assert summary["checked"] == 5 and summary["changed"] == 2
    assert summary["policy_hash"] == policy_from_file(policy_b).content_hash
    assert summary["per_policy"] == [
        {
            "policy_hash": hash_a,
            "policy_name": "a.lua",
            "same_policy": False,
            "checked": 5,
            "changed": 2,
            "unverifiable": 0,
        }
    ]

    # Filters narrow what is verified: bank's decision does not change under B.
    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "verify", "--policy", str(policy_b),
        "--tenant", "bank",
    )  # fmt: skip
    assert code == 0 and "1 decisions checked, 0 would change" in out


async def test_verify_reports_outcome_changes(
    kafka_bootstrap: str, topic_prefix: str, policy_a: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    recorded = await publish_decisions(kafka_bootstrap, topic_prefix, policy_from_file(policy_a))
    strict = tmp_path / "strict.lua"
    strict.write_text(POLICY_A.replace("user == 'reject'", "user == 'reject' or user == 'bob'"))
    code, out, _ = await audit(
        capsys, kafka_bootstrap, topic_prefix, "verify", "--policy", str(strict)
    )
    assert code == 1
    bob = next(line for line in out.splitlines() if line.startswith(recorded[1]["id"]))
    assert "outcome QUEUED -> REJECTED" in bob
    assert "queue spring:bank@example.org -> -" in bob
    assert "rejection None -> '550 5.7.1 not from here'" in bob


async def test_verify_with_an_unloadable_policy_is_a_usage_error(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.lua"
    broken.write_text("kumo.on(")
    code, _, err = await audit(
        capsys, kafka_bootstrap, topic_prefix, "verify", "--policy", str(broken)
    )
    assert code == 2 and "broken.lua" in err
