"""The Prometheus alert rules and Grafana dashboard in deploy/monitoring, checked offline:
promtool accepts the rules and their unit tests pass, every dashboard query parses, and every
metric they query is one the services export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

MONITORING = Path(__file__).parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "dashboard.json"
# Every module that defines metrics of a service (imported, they register them).
METRIC_MODULES = (
    "relaystream.core.kafka.metrics",
    "relaystream.core.runtime.kumo_metrics",
    "relaystream.ingest.metrics",
    "relaystream.routing.metrics",
    "relaystream.scheduling.metrics",
    "relaystream.delivery.metrics",
)
_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset",
                 "group_left", "group_right", "inf", "nan"}  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: ./scripts/bootstrap installs Debian's prometheus package"
    return found


def run_promtool(*args: str, cwd: Path = MONITORING) -> None:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, groupings and functions
    removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    text = re.sub(r"\boffset\s+[0-9a-z]+", "", text)
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()[:1]
        if following != "(" and match.group() not in _PROMQL_WORDS:
            names.add(match.group())
    return names


def exported_names() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count")}  # fmt: skip
    names = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    run_promtool("check", "rules", RULES.name)
    run_promtool("test", "rules", "alerts.test.yaml")


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: each query as a recording rule.
    rules = [{"record": f"dashboard:query{n}", "expr": e}
             for n, e in enumerate(dashboard_expressions())]  # fmt: skip
    (tmp_path / "dashboard_rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    run_promtool("check", "rules", "dashboard_rules.yaml", cwd=tmp_path)


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_queried_metric_is_exported(source: str) -> None:
    expressions = rule_expressions() if source == "alerts" else dashboard_expressions()
    queried = set().union(*(metric_names(e) for e in expressions))
    assert queried, "no metric found: the name extraction is broken"
    assert queried - exported_names() == set()


def test_metric_names_are_extracted_from_promql() -> None:
    expr = 'sum by (queue) (rate(total_messages_fail{service="x"}[5m])) / on(a) up offset 5m > 1e-9'
    assert metric_names(expr) == {"total_messages_fail", "up"}


def test_kumomta_names_are_exported_where_the_meaning_is_the_same() -> None:
    kumomta = {"scheduled_count", "scheduled_count_total", "scheduled_queue_count",
               "scheduled_by_domain", "ready_count", "connection_count", "total_connection_count",
               "total_messages_delivered", "total_messages_transfail", "total_messages_fail",
               "total_messages_received"}  # fmt: skip
    assert kumomta <= exported_names()
