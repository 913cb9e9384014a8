"""`relaystream run NAME` goes through the one service runtime, for every service alike.

Each service, started as the manifests and `relaystream dev` start it, writes only JSON log
lines of one shape (INFO included), warns about a `RELAYSTREAM_*` variable that names no
setting, logs the topics and groups it declared under the deployment's names, becomes ready,
and on SIGTERM drains and exits 0. Scheduling used to skip all of it (plain-text warnings only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from routing_support import create_topics
from service_process import ServiceProcess

from relaystream_devkit.broker import free_loopback_ports

SERVICES = ("ingest", "routing", "scheduling", "delivery")
UNKNOWN_VARIABLE = "RELAYSTREAM_NO_SUCH_SETTING"
# The fields every record has (core/runtime/logging.py).
RECORD_FIELDS = {"ts", "level", "service", "logger", "msg"}
GROUPS = {
    "ingest": {"ingest-submit": ["submit"]},
    "routing": {"routing": ["accepted"]},
    "scheduling": {"scheduling": ["queued", "outcomes"]},
    "delivery": {"delivery": ["attempts"]},
}


def records(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}\n{path.read_text(errors='replace')}")
    return parsed


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_starts_logs_and_stops_through_the_runtime(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, service: str
) -> None:
    log_path = tmp_path / "service.log"
    await create_topics(kafka_bootstrap, topic_prefix)
    smtp_port, http_port, admin_port = free_loopback_ports(3)
    process = ServiceProcess(
        service,
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={
            UNKNOWN_VARIABLE: "1",
            "RELAYSTREAM_INGEST_SMTP_PORT": str(smtp_port),
            "RELAYSTREAM_INGEST_HTTP_PORT": str(http_port),
            "RELAYSTREAM_SCHEDULING_ADMIN_API_PORT": str(admin_port),
        },
    )
    try:
        process.start()
        await process.wait_ready()
        assert process.terminate() == 0
    finally:
        process.close()

    logged = records(log_path)
    assert all(record.keys() >= RECORD_FIELDS for record in logged), logged
    assert {record["service"] for record in logged} == {service}
    messages = {record["msg"] for record in logged if record["level"] == "INFO"}
    assert {"starting", "health endpoint listening", "service stopped"} <= messages
    [warning] = [r for r in logged if r["msg"] == "ignoring an unknown RELAYSTREAM_ variable"]
    assert warning["level"] == "WARNING"
    assert warning["variable"] == UNKNOWN_VARIABLE
    [starting] = [r for r in logged if r["msg"] == "starting"]
    assert starting["groups"] == {
        f"{topic_prefix}{group}": [f"{topic_prefix}{topic}" for topic in topics]
        for group, topics in GROUPS[service].items()
    }
    assert f"{topic_prefix}dead-letter" in starting["produces"]
