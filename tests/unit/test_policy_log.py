"""kumo.log_error/warn/info/debug and kumo.available_parallelism."""

from __future__ import annotations

import logging
import os

import pytest
from lua_policy_eval import meta_of, value_of


@pytest.mark.parametrize(
    ("function", "level"),
    [
        ("log_error", logging.ERROR),
        ("log_warn", logging.WARNING),
        ("log_info", logging.INFO),
        ("log_debug", logging.DEBUG),
    ],
)
def test_a_policy_log_line_has_its_level_text_and_location(
    function: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "relaystream.policy")
    meta_of(f"kumo.{function}('Logging something', true, false, 42, nil, 1.5)")
    (record,) = [r for r in caplog.records if r.name == "relaystream.policy"]
    assert record.levelno == level
    assert record.getMessage() == "policy.lua:3: Logging something true false 42 nil 1.5"
    assert record.__dict__["policy_location"] == "policy.lua:3"


def test_available_parallelism_is_the_cpus_this_process_may_use() -> None:
    assert value_of("kumo.available_parallelism()") == len(os.sched_getaffinity(0))


def test_available_parallelism_takes_kumomtas_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUMO_AVAILABLE_PARALLELISM", "7")
    assert value_of("kumo.available_parallelism()") == 7
