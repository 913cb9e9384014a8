"""kumo.time and kumo.sleep: Time and TimeDelta with KumoMTA's fields and metamethods, and a
sleep that never outlasts the policy call's deadline."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lua_policy_eval import error_of, meta_of, value_of
from prometheus_client import REGISTRY


def test_a_time_has_kumomtas_fields() -> None:
    meta = meta_of(
        "local t = kumo.time.with_ymd_hms(2024, 2, 29, 13, 4, 5)\n"
        "local early = kumo.time.with_ymd_hms(2000, 1, 2, 3, 4, 5)\n"
        "msg:set_meta('early', early.rfc2822)\n"
        "msg:set_meta('fields', { t.year, t.month, t.day, t.hour, t.minute, t.second })\n"
        "msg:set_meta('unix', t.unix_timestamp)\n"
        "msg:set_meta('millis', t.unix_timestamp_millis)\n"
        "msg:set_meta('rfc3339', t.rfc3339)\n"
        "msg:set_meta('rfc2822', t.rfc2822)\n"
        "msg:set_meta('text', tostring(t))\n"
        "msg:set_meta('format', t:format '%H:%M:%S')"
    )
    assert meta == {
        "fields": [2024, 2, 29, 13, 4, 5],
        "unix": 1709211845,
        "millis": 1709211845000,
        "rfc3339": "2024-02-29T13:04:05+00:00",
        "rfc2822": "Thu, 29 Feb 2024 13:04:05 +0000",
        "text": "2024-02-29 13:04:05 UTC",
        "format": "13:04:05",
        "early": "Sun, 2 Jan 2000 03:04:05 +0000",
    }


def test_times_parse_from_rfc3339_rfc2822_and_a_timestamp_and_compare() -> None:
    meta = meta_of(
        "local a = kumo.time.parse_rfc3339 '2024-02-29T14:04:05+01:00'\n"
        "local b = kumo.time.parse_rfc2822 'Thu, 29 Feb 2024 13:04:05 +0000'\n"
        "local c = kumo.time.from_unix_timestamp(1709211845)\n"
        "msg:set_meta('same', a == b and b == c)\n"
        "msg:set_meta('later', (c + kumo.time.parse_duration '1s') > c)"
    )
    assert meta == {"same": True, "later": True}


def test_now_is_the_current_time_and_elapsed_a_delta_since() -> None:
    before = time.time()
    meta = meta_of(
        "local now = kumo.time.now()\n"
        "msg:set_meta('unix', now.unix_timestamp)\n"
        "msg:set_meta('elapsed', now.elapsed.seconds)"
    )
    assert int(before) <= int(meta["unix"]) <= time.time() + 1  # type: ignore[call-overload]
    assert 0 <= meta["elapsed"] < 60  # type: ignore[operator]


def test_kumomtas_timedelta_example_and_arithmetic() -> None:
    meta = meta_of(
        "local delta1 = kumo.time.parse_duration(20)\n"
        "local delta2 = kumo.time.parse_duration '10 seconds'\n"
        "msg:set_meta('diff', (delta2 - delta1).seconds)\n"
        "msg:set_meta('sum', (delta1 + delta2).milliseconds)\n"
        "msg:set_meta('human', tostring(kumo.time.parse_duration '5m'))\n"
        "msg:set_meta('negative', kumo.time.parse_duration(-1.5).microseconds)\n"
        "local t0 = kumo.time.from_unix_timestamp(0)\n"
        "msg:set_meta('between', (t0 + delta1 - t0).seconds)"
    )
    assert meta == {
        "diff": -10,
        "sum": 30_000,
        "human": "5m",
        "negative": -1_500_000,
        "between": 20,
    }


@settings(max_examples=25, deadline=None)
@given(seconds=st.integers(min_value=0, max_value=10**9))
def test_a_duration_string_and_its_seconds_agree(seconds: int) -> None:
    meta = meta_of(
        f"local d = kumo.time.parse_duration({seconds})\n"
        "msg:set_meta('back', kumo.time.parse_duration(d.human).seconds)"
    )
    assert meta["back"] == seconds


def test_bad_values_are_policy_errors_at_the_line() -> None:
    assert error_of("kumo.time.parse_duration 'soon'").startswith(
        "policy.lua:3: invalid duration 'soon'"
    )
    assert error_of("kumo.time.with_ymd_hms(2023, 2, 29, 0, 0, 0)").startswith(
        "policy.lua:3: invalid date or time"
    )
    assert error_of("local x = kumo.time.now() + 1").startswith(
        "policy.lua:3: kumo.time: cannot add these values"
    )


def test_sleep_sleeps_within_the_deadline_and_refuses_to_outlast_it() -> None:
    started = time.monotonic()
    assert value_of("(function() kumo.time.sleep(0.05); kumo.sleep(0.01); return 1 end)()") == 1
    assert time.monotonic() - started >= 0.06
    started = time.monotonic()
    message = error_of("kumo.time.sleep(30)")
    assert message.startswith("policy.lua:3: kumo.time.sleep(30): longer than what is left of ")
    assert time.monotonic() - started < 5  # refused at once, not slept


def test_a_timer_reports_its_seconds_and_feeds_the_latency_histogram() -> None:
    labels = {"label": "lookup"}
    before = REGISTRY.get_sample_value("relaystream_policy_user_latency_seconds_count", labels)
    meta = meta_of(
        "local timer = kumo.time.start_timer 'lookup'\n"
        "kumo.time.sleep(0.01)\n"
        "msg:set_meta('seconds', timer:done())\n"
        "do local closing <close> = kumo.time.start_timer 'lookup' end"
    )
    assert 0.01 <= meta["seconds"] < 5  # type: ignore[operator]
    after = REGISTRY.get_sample_value("relaystream_policy_user_latency_seconds_count", labels)
    assert after == (before or 0) + 2


@pytest.mark.parametrize("field", ["hour", "rfc3339"])
def test_time_values_cannot_be_forged_from_a_plain_table(field: str) -> None:
    # The value lives outside the table: a table with the metatable's name is not a Time.
    assert value_of(f"rawget(kumo.time.now(), '{field}')") is None
