"""`relaystream logs` against a real broker: the log topic replayed as KumoMTA-shaped records."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from kumo_log_shape import assert_kumo_shape

from relaystream.cli.main import main
from relaystream.core.domain.log_record import LogRecord, RecordType
from relaystream.core.domain.smtp_reply import SmtpResponse
from relaystream.core.events.codec import encode
from relaystream.core.kafka.admin import ensure_topics
from relaystream.core.kafka.producer import EventProducer
from relaystream.core.kafka.topics import TopicSettings, declare_topics


def log_record(kind: RecordType, message_id: str, text: str) -> LogRecord:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    return LogRecord(
        type=kind,
        id=message_id,
        sender="sender@example.org",
        recipients=("rcpt@example.com",),
        queue="example.com!my.smarthost.com",
        response=SmtpResponse.parse(text),
        timestamp=now,
        created=now,
        site="my.smarthost.com",
    )


async def publish(bootstrap: str, prefix: str, records: list[LogRecord]) -> None:
    topics = declare_topics(TopicSettings.local(prefix))
    await ensure_topics(bootstrap, [topics.log])
    async with EventProducer(bootstrap, client_id="test-logs") as producer:
        for record in records:
            await producer.send(
                topics.log.name, encode("LogRecord", record.to_avro()), key=record.id
            )


def run_logs(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["logs", *argv])
    assert exit_info.value.code == 0
    return capsys.readouterr().out.splitlines()


async def test_logs_prints_every_record_then_stops_at_the_end(
    kafka_bootstrap: str, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish(
        kafka_bootstrap,
        topic_prefix,
        [
            log_record(RecordType.RECEPTION, "a" * 32, "250 2.0.0 ok"),
            log_record(RecordType.TRANSIENT_FAILURE, "a" * 32, "451 4.4.4 try later"),
            log_record(RecordType.DELIVERY, "a" * 32, "250 2.0.0 delivered"),
            log_record(RecordType.BOUNCE, "b" * 32, "550 5.1.1 no such user"),
        ],
    )
    args = ("--bootstrap", kafka_bootstrap, "--prefix", topic_prefix, "--json")
    lines = await asyncio.to_thread(run_logs, capsys, *args)
    records = [json.loads(line) for line in lines]
    # Written as serde_json writes KumoMTA's logs: compact.
    assert lines == [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records]
    for record in records:
        assert_kumo_shape(record)
    assert sorted(r["type"] for r in records) == [
        "Bounce",
        "Delivery",
        "Reception",
        "TransientFailure",
    ]
    bounce = next(r for r in records if r["type"] == "Bounce")
    assert bounce["recipient"] == "rcpt@example.com"
    assert bounce["response"]["code"] == 550
    assert bounce["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}
    assert bounce["queue"] == "example.com!my.smarthost.com"

    only = await asyncio.to_thread(run_logs, capsys, *args, "--type", "Delivery", "--id", "a" * 32)
    assert [json.loads(line)["type"] for line in only] == ["Delivery"]

    human = await asyncio.to_thread(
        run_logs, capsys, "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix
    )
    assert len(human) == 4
    assert any("Bounce" in line and "550 5.1.1 no such user" in line for line in human)


async def test_logs_names_a_missing_topic(
    kafka_bootstrap: str, topic_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        await asyncio.to_thread(
            main, ["logs", "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix]
        )
    assert exit_info.value.code == 1
    assert "does not exist" in capsys.readouterr().err
