"""Audit pure parts: time specs, decision filters (byte pre-test and exact match), summaries,
rendering, policy verification diffs, queue-config override building and history."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.audit.decisions import DecisionFilter, DecisionSummary
from relaystream.core.audit.queue_config_changes import (
    field_changes,
    history_with_changes,
    merged_override,
    override_fields,
    override_target,
    parse_mx_list_option,
)
from relaystream.core.audit.render import CSV_COLUMNS, csv_row, json_line, table_line
from relaystream.core.audit.timespec import TimeSpecError, parse_time
from relaystream.core.audit.verify import (
    UnverifiableDecision,
    VerifyReport,
    compare,
    recompute,
)
from relaystream.core.domain.queue_config import QueueConfig, QueueConfigError
from relaystream.core.events.codec import encode
from relaystream.core.events.examples import example_records
from relaystream.core.events.meta import encode_meta
from relaystream.core.policy import Policy, policy_from_source

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

POLICY_TENANT = """
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('tenant', msg:get_meta('tenant_hint') or 'default')
end)
"""
POLICY_REJECT = """
kumo.on('smtp_server_message_received', function(msg)
  kumo.reject(550, '5.7.1 not today')
end)
"""


def decision(**changes: Any) -> dict[str, Any]:
    record = dict(example_records(200)["RoutingDecision"])
    record.update(changes)
    return record


# -- time specs ------------------------------------------------------------------------------


def test_iso_times_with_and_without_offset_are_utc() -> None:
    assert parse_time("2026-11-24T10:00:00Z", NOW) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert parse_time("2026-11-24T10:00:00", NOW) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert parse_time("2026-11-24T12:00:00+02:00", NOW) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert parse_time("2026-11-24", NOW) == datetime(2026, 11, 24, tzinfo=UTC)


def test_durations_mean_that_long_ago() -> None:
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("1h 30m", NOW) == NOW - timedelta(minutes=90)
    assert parse_time("3d", NOW) == NOW - timedelta(days=3)


@pytest.mark.parametrize("text", ["", "yesterday", "2h ago", "-5m", "2026-13-01"])
def test_bad_times_are_errors(text: str) -> None:
    with pytest.raises(TimeSpecError):
        parse_time(text, NOW)


# -- filters -----------------------------------------------------------------------------


FILTERS = [
    DecisionFilter(),
    DecisionFilter(domain="EXAMPLE.org"),
    DecisionFilter(domain="example.com"),
    DecisionFilter(tenant="shop"),
    DecisionFilter(tenant="Shop"),
    DecisionFilter(campaign="spring"),
    DecisionFilter(campaign="autumn"),
    DecisionFilter(queue="spring:shop@example.org"),
    DecisionFilter(queue="shop@example.org"),
    DecisionFilter(routing_domain="relay.example.net"),
    DecisionFilter(message_id="1" * 32),
    DecisionFilter(tenant="shop", domain="example.org", campaign="spring"),
]


@pytest.mark.parametrize("wanted", FILTERS)
def test_the_byte_pretest_never_rejects_a_match(wanted: DecisionFilter) -> None:
    for record in (
        decision(),
        decision(routing_domain="relay.example.net", queue="x@example.org!relay.example.net"),
    ):
        test = wanted.candidate_test()
        if wanted.matches(record):
            assert test is None or test(record["id"].encode(), encode("RoutingDecision", record))


@given(st.text(min_size=1, max_size=20))
def test_pretest_agrees_with_match_for_any_tenant(tenant: str) -> None:
    record = decision(tenant=tenant)
    wanted = DecisionFilter(tenant=tenant)
    test = wanted.candidate_test()
    assert test is not None and test(None, encode("RoutingDecision", record))
    assert wanted.matches(record)


def uncompressed_batch(values: list[bytes]) -> bytes:
    """A record batch as a producer writes it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=0, key=b"key", value=value, headers=[])
    return bytes(builder.build())


@pytest.mark.parametrize("wanted", FILTERS)
def test_the_batch_pretest_never_rejects_a_batch_holding_a_match(wanted: DecisionFilter) -> None:
    others = [encode("RoutingDecision", decision(id="2" * 32, tenant="t", domain="other.example"))]
    test = wanted.batch_test()
    for record in (
        decision(),
        decision(routing_domain="relay.example.net", queue="x@example.org!relay.example.net"),
    ):
        data = b"header" + uncompressed_batch([*others, encode("RoutingDecision", record)])
        if wanted.matches(record):
            assert test is None or test(data, len(b"header"), len(data))


def test_the_batch_pretest_rules_out_batches_without_the_values() -> None:
    values = [encode("RoutingDecision", decision(tenant=f"tenant{n}")) for n in range(3)]
    data = uncompressed_batch(values)
    by_tenant = DecisionFilter(tenant="tenant2").batch_test()
    assert by_tenant is not None and by_tenant(data, 0, len(data))
    assert not by_tenant(data, 0, data.index(b"tenant2"))  # only the bytes given count
    by_domain = DecisionFilter(domain="EXAMPLE.ORG").batch_test()  # recorded: example.org
    assert by_domain is not None and by_domain(data, 0, len(data))
    elsewhere = DecisionFilter(domain="example.net").batch_test()
    assert elsewhere is not None and not elsewhere(data, 0, len(data))
    assert DecisionFilter().batch_test() is None


def test_filters_match_exactly() -> None:
    record = decision()
    assert DecisionFilter(domain="EXAMPLE.org").matches(record)
    assert not DecisionFilter(tenant="Shop").matches(record)
    assert not DecisionFilter(campaign="autumn").matches(record)
    assert not DecisionFilter(queue="shop@example.org").matches(record)
    assert not DecisionFilter(routing_domain="relay.example.net").matches(record)
    assert not DecisionFilter(message_id="1" * 32).matches(record)
    assert DecisionFilter(message_id=record["id"]).matches(record)


def test_pretest_rejects_other_keys_and_absent_values() -> None:
    record = decision()
    value = encode("RoutingDecision", record)
    by_id = DecisionFilter(message_id=record["id"]).candidate_test()
    assert by_id is not None
    assert by_id(record["id"].encode(), value)
    assert not by_id(b"f" * 32, value)
    by_tenant = DecisionFilter(tenant="nobody").candidate_test()
    assert by_tenant is not None and not by_tenant(None, value)
    assert DecisionFilter().candidate_test() is None


def test_summary_counts_per_queue_policy_and_outcome() -> None:
    summary = DecisionSummary(read=5)
    summary.add(decision())
    summary.add(decision(policy_hash="a" * 64))
    summary.add(decision(outcome="REJECTED", queue=None))
    report = summary.to_json()
    assert report["matched"] == 3 and report["read"] == 5
    assert report["per_queue"] == {"spring:shop@example.org": 2, "(none)": 1}
    assert report["per_outcome"] == {"QUEUED": 2, "REJECTED": 1}
    assert {p["policy_hash"]: p["decisions"] for p in report["per_policy"]} == {
        "9" * 64: 2,
        "a" * 64: 1,
    }
    assert summary.to_lines()[0] == "3 decisions matched of 5 read"


def test_renderings() -> None:
    record = decision()
    line = table_line(record)
    assert record["id"] in line and "QUEUED" in line and line.endswith("spring:shop@example.org")
    obj = json.loads(json_line(record))
    assert obj["decided_at"].endswith("Z")
    assert obj["meta_after"]["queue"] == "spring:shop@example.org"
    rows = list(csv.reader(io.StringIO(",".join(CSV_COLUMNS) + "\n")))
    assert rows[0] == list(CSV_COLUMNS)
    row = csv_row(decision(outcome="REJECTED", queue=None, rejection=rejection(550, "nope")))
    assert row[CSV_COLUMNS.index("queue")] == ""
    assert row[CSV_COLUMNS.index("rejection")] == "550 5.7.1 nope"


def rejection(code: int, text: str) -> dict[str, Any]:
    return {
        "code": code,
        "enhanced_code": {"class": code // 100, "subject": 7, "detail": 1},
        "content": text,
        "command": None,
    }


# -- verify ------------------------------------------------------------------------------


def recorded(policy: Policy, **inputs: Any) -> dict[str, Any]:
    """A decision as the routing service records it for `policy`."""
    base = decision(meta_before=encode_meta(inputs.pop("meta", {})), **inputs)
    result = recompute(policy, base)
    return {
        **base,
        "outcome": result.outcome,
        "queue": result.queue,
        "meta_after": encode_meta(result.meta_after),
        "rejection": None if result.outcome != "REJECTED" else rejection(550, "not today"),
        "policy_hash": policy.content_hash,
        "policy_name": policy.name,
    }


def test_same_policy_reproduces_its_decisions() -> None:
    policy = policy_from_source(POLICY_TENANT, "tenant.lua")
    record = recorded(policy, meta={"tenant_hint": "shop"})
    assert record["queue"] == "shop@example.org"
    assert compare(record, recompute(policy, record)) is None


def test_a_different_policy_reports_queue_and_meta_changes() -> None:
    old = policy_from_source(POLICY_TENANT, "tenant.lua")
    new = policy_from_source(POLICY_TENANT.replace("'default'", "'other'"), "tenant2.lua")
    record = recorded(old, meta={})
    change = compare(record, recompute(new, record))
    assert change is not None
    assert (change.old_queue, change.new_queue) == ("default@example.org", "other@example.org")
    assert change.meta_keys == ("tenant",)
    assert change.old_outcome == change.new_outcome == "QUEUED"
    assert "queue default@example.org -> other@example.org" in change.describe()


def test_a_rejecting_policy_reports_the_outcome_change() -> None:
    old = policy_from_source(POLICY_TENANT, "tenant.lua")
    record = recorded(old, meta={})
    change = compare(record, recompute(policy_from_source(POLICY_REJECT, "r.lua"), record))
    assert change is not None
    assert (change.old_outcome, change.new_outcome) == ("QUEUED", "REJECTED")
    assert change.new_rejection == "550 5.7.1 not today"
    assert change.meta_keys == ()


def test_a_recorded_rejection_matches_the_same_rejection() -> None:
    policy = policy_from_source(POLICY_REJECT, "r.lua")
    record = {
        **decision(),
        "outcome": "REJECTED",
        "queue": None,
        "rejection": rejection(550, "not today"),
    }
    assert compare(record, recompute(policy, record)) is None


def test_unknown_protocol_is_unverifiable() -> None:
    policy = policy_from_source(POLICY_TENANT, "tenant.lua")
    with pytest.raises(UnverifiableDecision):
        recompute(policy, decision(reception_protocol="UUCP"))


def test_verify_report_totals_per_recorded_policy() -> None:
    report = VerifyReport(policy_hash="a" * 64)
    report.add(decision(policy_hash="a" * 64), None)
    changed = compare(
        recorded(policy_from_source(POLICY_TENANT, "t.lua"), meta={}),
        recompute(policy_from_source(POLICY_REJECT, "r.lua"), decision()),
    )
    report.add(decision(policy_hash="b" * 64), changed)
    report.add_unverifiable(decision(policy_hash="b" * 64))
    summary = report.to_json()
    assert (summary["checked"], summary["changed"], summary["unverifiable"]) == (2, 1, 1)
    same = {p["policy_hash"]: p["same_policy"] for p in summary["per_policy"]}
    assert same == {"a" * 64: True, "b" * 64: False}


# -- queue-config overrides --------------------------------------------------------------


def test_targets_normalize_domains_and_keep_queue_names() -> None:
    assert override_target("Example.COM") == "example.com"
    assert override_target("bücher.example") == "xn--bcher-kva.example"
    assert override_target("Shop@Example.com") == "Shop@Example.com"
    assert override_target("example.com!Relay") == "example.com!Relay"
    with pytest.raises(QueueConfigError):
        override_target("")


def test_mx_list_option_forms() -> None:
    assert parse_mx_list_option("mx.example.net") == "mx.example.net"
    assert parse_mx_list_option("mx1=10.0.0.1:2525") == {"name": "mx1", "addr": "10.0.0.1:2525"}


def test_override_fields_and_merge() -> None:
    fields = override_fields(
        {"retry_interval": "5m", "mx_list": ["a.example", "b=10.0.0.2"], "max_age": None}
    )
    assert fields == {
        "retry_interval": "5m",
        "protocol": {"smtp": {"mx_list": ["a.example", {"name": "b", "addr": "10.0.0.2"}]}},
    }
    merged = merged_override({"max_age": "1d", "egress_pool": "p"}, fields, unset=["egress_pool"])
    assert merged == {"max_age": "1d", **fields}
    config = QueueConfig.from_mapping(merged)
    assert config.retry_interval == timedelta(minutes=5)
    assert merged_override(merged, {}, unset=["mx_list"]) == {
        "max_age": "1d",
        "retry_interval": "5m",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"retry_interval": "soon"},
        {"max_message_rate": "lots"},
        {"protocol": {"smtp": {"mx_list": [{"name": "x", "addr": "not-an-ip"}]}}},
    ],
)
def test_bad_overrides_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(QueueConfigError):
        merged_override(None, fields)


def test_history_lists_field_changes_per_target() -> None:
    class Change:
        def __init__(self, target: str, config: dict[str, Any] | None) -> None:
            self.target, self.config = target, config

    changes = [
        Change("a.example", {"max_age": "1d"}),
        Change("b.example", {"max_age": "2d"}),
        Change("a.example", {"max_age": "3d", "egress_pool": "p"}),
        Change("a.example", None),
    ]
    diffs = [fields for _, fields in history_with_changes(changes)]
    assert diffs == [
        {"max_age": (None, "1d")},
        {"max_age": (None, "2d")},
        {"egress_pool": (None, "p"), "max_age": ("1d", "3d")},
        {"egress_pool": ("p", None), "max_age": ("3d", None)},
    ]
    assert field_changes(None, None) == {}
