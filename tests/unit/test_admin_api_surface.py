"""The admin API's surface without a broker: its routes against the published OpenAPI
document, who may call it, and the pure helpers behind its process routes."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge

from relaystream.core.domain.admin_rules import AdminRuleCounts
from relaystream.core.runtime.log_filter import LogFilterError, apply_log_filter, parse_log_filter
from relaystream.core.runtime.metrics_json import metrics_json
from relaystream.core.runtime.settings import Settings
from relaystream.scheduling.admin_api import AdminApi, openapi_text
from relaystream.scheduling.admin_auth import AdminAuth
from relaystream.scheduling.ports import AdminApiPort

OPENAPI = Path(__file__).parents[2] / "services" / "scheduling" / "admin_openapi.json"


def served_routes() -> set[tuple[str, str]]:
    # Building the app touches no scheduler attribute: a placeholder port will do.
    api = AdminApi(cast(AdminApiPort, object()), Settings())
    return {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_route_is_in_the_openapi_document_and_every_documented_one_is_served() -> None:
    document = json.loads(OPENAPI.read_text())
    documented = {(verb, path) for path, ops in document["paths"].items() for verb in ops}
    assert served_routes() == documented
    assert json.loads(openapi_text()) == document  # what the server serves is the file


def test_every_schema_reference_resolves() -> None:
    text = OPENAPI.read_text()
    schemas = json.loads(text)["components"]["schemas"]
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name


LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def test_trusted_hosts_need_no_credentials_others_need_a_token_or_a_basic_user() -> None:
    auth = AdminAuth(("tok",), ("ops:pw",), (*LOOPBACK, ipaddress.ip_network("10.1.0.0/16")))
    assert auth.allows("127.0.0.1", "")
    assert auth.allows("::1", "")
    assert auth.allows("::ffff:127.0.0.1", "")
    assert auth.allows("10.1.2.3", "")
    assert not auth.allows("10.2.0.1", "")
    assert not auth.allows(None, "")
    assert auth.allows("192.0.2.1", "Bearer tok")
    assert not auth.allows("192.0.2.1", "Bearer tok2")
    assert auth.allows("192.0.2.1", basic("ops:pw"))
    assert not auth.allows("192.0.2.1", basic("ops:wrong"))
    assert not auth.allows("192.0.2.1", "Basic !!not-base64")
    assert not auth.allows("192.0.2.1", "Basic tok")


def test_without_credentials_configured_only_trusted_hosts_pass() -> None:
    auth = AdminAuth((), (), LOOPBACK)
    assert auth.allows("127.0.0.1", "")
    assert not auth.allows("192.0.2.1", "Bearer ")
    assert not auth.allows("192.0.2.1", basic(":"))
    assert not AdminAuth(("tok",), (), ()).allows("127.0.0.1", "")


def test_log_filter_directives() -> None:
    directives = parse_log_filter("info, kumod=trace ,relaystream.delivery=warn")
    assert [(d.logger, d.level) for d in directives] == [
        ("", logging.INFO),
        ("relaystream", logging.DEBUG),
        ("relaystream.delivery", logging.WARNING),
    ]
    for bad in ("", "kumod=loud", "=info", "verbose"):
        with pytest.raises(LogFilterError):
            parse_log_filter(bad)


def test_a_refused_filter_changes_no_logger() -> None:
    logger = logging.getLogger("relaystream.test_filter")
    logger.setLevel(logging.INFO)
    with pytest.raises(LogFilterError):
        apply_log_filter("relaystream.test_filter=debug,x=nonsense")
    assert logger.level == logging.INFO
    apply_log_filter("relaystream.test_filter=error")
    assert logger.level == logging.ERROR


def test_metrics_json_has_kumomta_shape() -> None:
    registry = CollectorRegistry()
    Gauge("scheduled_count", "waiting", ["queue"], registry=registry).labels("a.example").set(3)
    Gauge("plain", "no labels", registry=registry).set(1.5)
    Counter("c", "a counter", ["x", "y"], registry=registry).labels("1", "2").inc(4)
    document = metrics_json(registry)
    assert document["scheduled_count"] == {
        "help": "waiting",
        "type": "gauge",
        "value": {"queue": {"a.example": 3.0}},
    }
    assert document["plain"]["value"] == 1.5
    assert document["c_total"]["value"] == {"x": {"1": {"y": {"2": 4.0}}}}


@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["q1", "q2"]))))
def test_rule_counts_add_up(events: list[tuple[str, str]]) -> None:
    counts = AdminRuleCounts()
    for rule_id, queue in events:
        counts.add(rule_id, queue)
    for rule_id in "ab":
        mine = [q for r, q in events if r == rule_id]
        assert counts.total(rule_id) == len(mine)
        assert counts.of(rule_id) == {q: mine.count(q) for q in set(mine)}
    counts.keep_only({"a"})
    assert counts.of("b") == {}
