"""docker-compose.yml follows the compose specification and agrees with the code."""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import json
import re
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from relaystream.cli.main import build_parser
from relaystream.core.kafka.fencing import BROKER_ABORT_CHECK_INTERVAL_MS
from relaystream.core.runtime.settings import (
    CONFIG_FILE_VARIABLE,
    Settings,
    known_environment_variables,
    load_settings,
)

from .manifests import ABORT_CHECK_INTERVAL, REPO_ROOT, compose, compose_service

SERVICES = ("ingest", "routing", "scheduling", "delivery")
KAFKA_IMAGE = "apache/kafka:4.1.1"


def compose_spec_validator() -> jsonschema.Draft7Validator:
    # The compose-spec schema as vendored by check-jsonschema (its `vendor.compose-spec`).
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendored / "compose-spec.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def mounted_files(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file in the repository, for `./file:/path:ro` bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = REPO_ROOT / source
    return mounts


def compose_settings(name: str) -> Settings:
    """What a service's settings module reads in its container: the mounted file and env."""
    service = compose_service(name)
    env = {key: str(value) for key, value in service.get("environment", {}).items()}
    config = mounted_files(service)[env.pop(CONFIG_FILE_VARIABLE)]
    # Interpolated at `docker compose up`; stands in for what the operator exports.
    env = {key: re.sub(r"\$\{[^}]*\}", "token", value) for key, value in env.items()}
    return load_settings(config, environ=env)


def grace_seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write stop_grace_period in seconds: {duration}"
    return float(match.group(1))


def test_compose_file_follows_the_compose_specification() -> None:
    errors = [error.message for error in compose_spec_validator().iter_errors(compose())]
    assert errors == []


def test_the_specification_check_rejects_an_unknown_key() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["ingest"]["comand"] = ["run", "ingest"]
    assert list(compose_spec_validator().iter_errors(broken)) != []


def test_kafka_is_a_single_kraft_node_of_the_tested_version() -> None:
    kafka = compose_service("kafka")
    assert kafka["image"] == KAFKA_IMAGE
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("ZOOKEEPER" in key for key in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_aborts_timed_out_transactions_as_often_as_routing_assumes() -> None:
    # The apache/kafka image turns KAFKA_A_B_C into the broker setting a.b.c.
    variable = "KAFKA_" + ABORT_CHECK_INTERVAL.upper().replace(".", "_")
    env = compose_service("kafka")["environment"]
    assert int(env[variable]) <= BROKER_ABORT_CHECK_INTERVAL_MS


def test_topic_job_runs_the_cli_against_the_configured_kafka() -> None:
    topics = compose_service("topics")
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert topics["restart"] == "no"
    args = build_parser().parse_args(topics["command"])
    assert (args.command, args.topics_command) == ("topics", "ensure")
    settings = compose_settings("routing")
    assert args.bootstrap == settings.runtime.kafka_bootstrap
    # The services read the prefix from the settings; the job creates topics with its own.
    assert args.prefix == settings.runtime.topic_prefix
    assert args.production is False  # one broker: the local preset's single replica


@pytest.mark.parametrize("name", SERVICES)
def test_services_run_their_entrypoint_after_the_topic_job(name: str) -> None:
    service = compose_service(name)
    assert service["command"] == ["run", name]
    assert service["build"] == {"context": ".", "dockerfile": "Containerfile"}
    assert service["image"] == compose_service("topics")["image"]
    assert service["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "/tmp" in service["tmpfs"]
    settings = compose_settings(name)
    assert settings.runtime.kafka_bootstrap == "kafka:9092"
    assert grace_seconds(service["stop_grace_period"]) >= (
        settings.runtime.shutdown_grace_seconds + 5
    )
    for path, source in mounted_files(service).items():
        assert source.is_file(), f"{source} mounted at {path} does not exist"
    assert settings.routing.policy_path is not None
    assert str(settings.routing.policy_path) in mounted_files(service)


def test_every_consumer_is_a_static_group_member() -> None:
    # A container restarted after a crash rejoins as the same member, without a rebalance.
    ids = {name: compose_settings(name).runtime.kafka_group_instance_id for name in SERVICES}
    assert None not in ids.values(), ids


def test_published_ports_listen_on_loopback_only() -> None:
    published = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            published.append((name, port))
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert ("ingest", "127.0.0.1:2525:2525") in published
    settings = compose_settings("ingest")
    assert f"127.0.0.1:{settings.ingest.smtp_port}:{settings.ingest.smtp_port}" in [
        p for n, p in published if n == "ingest"
    ]
    assert f"127.0.0.1:{settings.ingest.http_port}:{settings.ingest.http_port}" in [
        p for n, p in published if n == "ingest"
    ]


def test_environment_names_are_settings() -> None:
    known = known_environment_variables()
    used = set()
    for name in (*SERVICES, "topics"):
        used |= set(compose_service(name).get("environment", {}))
    assert used and sorted(used - known) == []


def test_http_api_token_must_be_supplied() -> None:
    token = compose_service("ingest")["environment"]["RELAYSTREAM_INGEST_API_TOKENS"]
    # `${VAR:?message}`: compose refuses to start without it; no default token ships.
    assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", token)
    assert compose_settings("ingest").ingest.api_tokens == ("token",)


def test_policy_routes_to_the_mail_sink() -> None:
    sink = compose_service("mailsink")
    listen = sink["command"][sink["command"].index("-l") + 1]
    port = listen.rpartition(":")[2]
    policy = (REPO_ROOT / "deploy" / "policy.lua").read_text(encoding="utf-8")
    assert f"'mailsink:{port}'" in policy
    assert compose_service("delivery")["depends_on"]["mailsink"] == {"condition": "service_healthy"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_mail_sink_command_receives_mail() -> None:
    # The compose command, run here on loopback instead of 0.0.0.0 inside the container.
    sink = compose_service("mailsink")
    assert sink["entrypoint"] == ["python", "-m", "aiosmtpd"]
    command = list(sink["command"])
    port = _free_port()
    command[command.index("-l") + 1] = f"127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiosmtpd",
        *command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(_send_when_listening, port)
        assert process.stdout is not None
        output = await asyncio.wait_for(process.stdout.readuntil(b"END MESSAGE"), timeout=20)
        assert b"Subject: compose sink check" in output
    finally:
        process.terminate()
        await process.wait()


def _send_when_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.sendmail(
                    "sender@example.com",
                    ["rcpt@example.net"],
                    "Subject: compose sink check\r\n\r\nhello\r\n",
                )
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
