"""`relaystream bench`'s decisions that need no run: whether Postfix can use the state
directory, the exit status, and the shape of the `--json` summary line."""

from __future__ import annotations

import dataclasses
import json
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream_devkit.bench import (
    BenchOptions,
    BenchReport,
    PostfixDirectoryError,
    RunResult,
    broker_log_lines,
    check_postfix_directory,
    exit_status,
    summaries,
)
from relaystream_devkit.bench_log import TopicGrowth
from relaystream_devkit.bench_measure import ProcessUsage
from relaystream_devkit.bench_postfix import (
    DirectoryAccess,
    first_unsearchable,
    postfix_problem,
    unreachable_problem,
)

POSTFIX_UID = 102
POSTFIX_GROUPS = {105}
ROOT = 0


def directory(path: str, mode: int, uid: int = ROOT, gid: int = ROOT) -> DirectoryAccess:
    return DirectoryAccess(Path(path), stat.S_IFDIR | mode, uid, gid)


def test_a_private_folder_on_the_way_blocks_postfix_and_is_named() -> None:
    way = [
        directory("/", 0o755),
        directory("/home", 0o755),
        directory("/home/me", 0o700),  # the case of the issue: a private folder
        directory("/home/me/bench/postfix", 0o755),
    ]
    assert first_unsearchable(way, POSTFIX_UID, POSTFIX_GROUPS) == way[2]


@pytest.mark.parametrize(
    ("private", "reachable"),
    [
        (directory("/home/me", 0o711), True),  # others may pass through
        (directory("/home/me", 0o710, gid=105), True),  # postfix's group may
        (directory("/home/me", 0o701, gid=105), False),  # the group's bit decides for a member
        (directory("/home/me", 0o700, uid=POSTFIX_UID), True),  # owned by postfix
        (directory("/home/me", 0o077, uid=POSTFIX_UID), False),  # the owner's bit decides
    ],
)
def test_owner_then_group_then_others_decide(private: DirectoryAccess, reachable: bool) -> None:
    way = [directory("/", 0o755), private]
    blocked = first_unsearchable(way, POSTFIX_UID, POSTFIX_GROUPS)
    assert (blocked is None) is reachable


@given(st.lists(st.integers(min_value=0, max_value=0o777), min_size=1, max_size=6))
def test_root_enters_anything_and_others_x_everywhere_lets_anyone_in(modes: list[int]) -> None:
    way = [directory(f"/d{index}", mode) for index, mode in enumerate(modes)]
    assert first_unsearchable(way, ROOT, set()) is None
    opened = [directory(f"/d{index}", mode | 0o001) for index, mode in enumerate(modes)]
    assert first_unsearchable(opened, POSTFIX_UID, POSTFIX_GROUPS) is None
    closed = [directory(f"/d{index}", mode & ~0o111) for index, mode in enumerate(modes)]
    assert first_unsearchable(closed, POSTFIX_UID, POSTFIX_GROUPS) == closed[0]


def test_the_problem_names_the_folder_its_mode_and_the_fixes() -> None:
    # Not under tmp_path: pytest's own base folder is private (0700) too.
    with tempfile.TemporaryDirectory() as made:  # 0700, like a private home folder
        private = Path(made)
        state = private / "bench" / "postfix"
        state.mkdir(parents=True)
        stranger = private.stat().st_uid + 4242  # neither owns it nor is in its group
        problem = unreachable_problem(state, stranger, set())
        assert problem is not None
        assert f"may not enter {private} (mode 0700" in problem
        assert "--state-dir" in problem and f"chmod o+x {private}" in problem
        private.chmod(0o711)
        assert unreachable_problem(state, stranger, set()) is None


@pytest.mark.skipif(postfix_problem() is not None, reason="needs Postfix installed, as root")
def test_the_bench_refuses_a_state_dir_postfix_cannot_reach_before_starting(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(PostfixDirectoryError, match="may not enter"):
        check_postfix_directory(private / "bench" / "postfix")


def usage(name: str, cpu_seconds: float) -> ProcessUsage:
    return ProcessUsage(name=name, cpu_seconds=cpu_seconds, peak_rss_kib=1024)


def run(system: str, rate: float, cpu: dict[str, float], delivered: int = 100) -> RunResult:
    return RunResult(
        system=system,
        scenario="1rcpt-10k",
        messages=100,
        recipients_expected=100,
        recipients_delivered=delivered,
        injection_rate=rate,
        end_to_end_rate=rate,
        latency_ms={"p50": 1.0, "p95": 2.0, "p99": 3.0},
        latency_source="test",
        latency_samples=100,
        stage_ms={},
        usage=[usage(name, seconds) for name, seconds in cpu.items()],
    )


OPTIONS = BenchOptions(state_dir=Path("/nonexistent"), concurrency=32, sink="smtp-sink")
OWN_CPU = {"ingest": 0.03, "routing": 0.02, "scheduling": 0.02, "delivery": 0.04, "broker": 0.05}


def test_the_summary_has_one_line_per_scenario_with_medians_per_system() -> None:
    report = BenchReport(
        options={},
        runs=[  # alternating, as the bench runs them
            run("relaystream", 800.0, {**OWN_CPU, "sink": 0.9}),
            run("postfix", 500.0, {"postfix": 0.28, "sink": 0.9}),
            run("relaystream", 900.0, {**OWN_CPU, "sink": 0.9}),
            run("postfix", 400.0, {"postfix": 0.26, "sink": 0.9}),
            run("relaystream", 850.0, {**OWN_CPU, "sink": 0.9}),
            run("postfix", 425.0, {"postfix": 0.27, "sink": 0.9}),
        ],
    )
    [summary] = summaries(report, OPTIONS, "abc123")
    line = json.dumps(summary, separators=(",", ":"))
    assert "\n" not in line and json.loads(line) == summary
    assert summary == {
        "scenario": "1rcpt-10k",
        "median_ratio": 2.0,  # pairs 1.6, 2.25, 2.0
        "median_msgs_per_s": {"relaystream": 850.0, "postfix": 425.0},
        # services and broker, not the sink: 0.16 s per 100 messages
        "cpu_s_per_1000_msgs": {"relaystream": 1.6, "postfix": 2.7},
        "repeats": 3,
        "messages": 100,
        "concurrency": 32,
        "sink": "smtp-sink",
        "complete": True,
        "commit": "abc123",
    }


def test_without_a_comparison_the_ratio_is_null_and_an_incomplete_run_shows() -> None:
    report = BenchReport(options={}, runs=[run("relaystream", 800.0, OWN_CPU, delivered=99)])
    [summary] = summaries(report, OPTIONS, None)
    assert summary["median_ratio"] is None and summary["complete"] is False
    assert summary["median_msgs_per_s"] == {"relaystream": 800.0}


def test_a_comparison_asked_for_but_not_run_fails_the_bench() -> None:
    own_only = BenchReport(options={}, runs=[run("relaystream", 800.0, OWN_CPU)])
    assert exit_status(own_only, OPTIONS) == 0
    compared = BenchOptions(state_dir=Path("/nonexistent"), compare_postfix=True)
    assert exit_status(own_only, compared) == 1
    both = BenchReport(options={}, runs=[*own_only.runs, run("postfix", 400.0, {"postfix": 1})])
    assert exit_status(both, compared) == 0
    assert exit_status(BenchReport(options={}), OPTIONS) == 1


def test_the_broker_log_lines_give_medians_per_message_per_topic_and_in_all() -> None:
    def logged(accepted_bytes: int, markers: int) -> RunResult:
        result = run("relaystream", 800.0, OWN_CPU)
        return dataclasses.replace(
            result,
            broker_log=[
                TopicGrowth("accepted", accepted_bytes, 4, 100, 0, 0, 4),
                TopicGrowth("decisions", 10_000, 20, 100, markers, 10, 0),
            ],
        )

    lines = broker_log_lines([logged(1_000_000, 10), logged(2_000_000, 30), logged(3_000_000, 20)])
    # 100 messages a run; medians: accepted 20,000 B, markers 0.2, all 20,100 B
    assert lines[0].strip() == (
        "broker log per message: 20100 bytes, 2.00 records, 0.20 transaction markers, 0.24 batches"
    )
    assert " ".join(lines[1].split()) == (
        "accepted 20000 B 1.00 rec 0.00 mark 0.04 batch (0.04 compressed)"
    )
    assert lines[2].split()[:3] == ["decisions", "100", "B"]
    # Postfix, or a deployment the bench did not start: no lines
    assert broker_log_lines([run("postfix", 400.0, {"postfix": 1})]) == []
