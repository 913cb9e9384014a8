"""`relaystream route`, and the devkit's sample policy running in the engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from relaystream.cli.main import main
from relaystream.core.policy import PolicyAccepted, PolicyMessage, policy_from_file
from relaystream_devkit.dev import sample_policy_path

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def route_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    with pytest.raises(SystemExit) as exited:
        main(["route", *argv, "--json"])
    code = exited.value.code
    assert isinstance(code, int)
    return code, json.loads(capsys.readouterr().out)


def test_routing_domain_queue_and_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = route_json(
        capsys,
        "--policy", str(POLICIES / "seed_routing_domain.lua"),
        "--sender", "alice@example.org",
        "--recipient", "bob@Example.COM",
        "--meta", "tenant=acme",
        "--meta", "campaign=",
        "--meta", 'x_list=[1, "a"]',
    )  # fmt: skip
    assert code == 0
    assert report["outcome"] == "accepted"
    assert report["meta"] == {
        "tenant": "acme",
        "campaign": "",
        "x_list": [1, "a"],
        "routing_domain": "my.smarthost.com",
    }
    assert report["queue"] == {
        "name": ":acme@example.com!my.smarthost.com",
        "campaign": "",
        "tenant": "acme",
        "domain": "example.com",
        "routing_domain": "my.smarthost.com",
        "null_queue": False,
    }
    assert report["queue_config_source"] == "defaults"
    config = report["queue_config"]
    assert isinstance(config, dict)
    assert config["retry_interval"] == 1200
    assert config["max_age"] == 7 * 24 * 3600
    policy = report["policy"]
    assert isinstance(policy, dict)
    assert (
        policy["content_hash"]
        == policy_from_file(POLICIES / "seed_routing_domain.lua").content_hash
    )


def test_mx_list_from_get_queue_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = route_json(
        capsys,
        "--policy", str(POLICIES / "seed_mx_list.lua"),
        "--sender", "",
        "--recipient", "someone@domain.to.be.smart.hosted",
    )  # fmt: skip
    assert code == 0
    assert report["queue_config_source"] == "policy"
    config = report["queue_config"]
    assert isinstance(config, dict)
    assert config["protocol"] == {
        "smtp": {"mx_list": ["smart.host.local", {"name": "mx.example.com", "addr": "10.0.0.1"}]}
    }


def test_queue_rewrite_to_a_literal(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = route_json(
        capsys,
        "--policy", str(POLICIES / "seed_queue_literal.lua"),
        "--sender", "a@b.example",
        "--recipient", "c@d.example",
        "--meta", "tenant=ignored",
    )  # fmt: skip
    assert code == 0
    queue = report["queue"]
    assert isinstance(queue, dict)
    assert queue["name"] == "[20.83.209.56]"
    assert queue["tenant"] is None
    assert queue["domain"] == "[20.83.209.56]"


def test_rejection_exits_1_and_shows_the_response(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = route_json(
        capsys,
        "--policy", str(POLICIES / "declarative.yaml"),
        "--sender", "a@b.example",
        "--recipient", "c@blocked.example",
    )  # fmt: skip
    assert code == 1
    assert report["outcome"] == "rejected"
    assert report["response"] == "550 5.7.1 we do not deliver there"


def test_headers_reach_the_policy_and_http_protocol_picks_its_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = route_json(
        capsys,
        "--policy", str(sample_policy_path()),
        "--sender", "a@b.example",
        "--recipient", "c@d.example",
        "--header", "X-Tenant: from-header",
        "--protocol", "HTTP",
    )  # fmt: skip
    assert code == 0
    queue = report["queue"]
    assert isinstance(queue, dict)
    assert queue["name"] == "from-header@d.example![127.0.0.1]:2526"


def test_text_output_and_bad_input_through_the_installed_command(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "relaystream")]
    ok = subprocess.run(
        [*command, "route", "--policy", str(POLICIES / "seed_queue_rewrite.lua"),
         "--sender", "a@b.example", "--recipient", "c@d.example"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "my.smarthost.com" in ok.stdout
    assert "queue_config (from defaults)" in ok.stdout

    broken = tmp_path / "policy.lua"
    broken.write_text("kumo.on('smtp_server_message_received', function(msg)\n  msg:set_meta(\n")
    failed = subprocess.run(
        [*command, "route", "--policy", str(broken), "--sender", "", "--recipient", "c@d.example"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode == 2
    assert "policy.lua:3:" in failed.stderr


def test_sample_policy_smarthosts_to_the_sink() -> None:
    policy = policy_from_file(sample_policy_path())
    result = policy.on_message_received(
        "ESMTP", PolicyMessage("m", "a@b.example", "c@d.example", {}, "X-Tenant: t1\r\n")
    )
    assert result == PolicyAccepted({"tenant": "t1", "routing_domain": "[127.0.0.1]:2526"})
    assert policy.get_queue_config("d.example", "t1", None, "[127.0.0.1]:2526") == {
        "retry_interval": "1m",
        "max_age": "2h",
    }


def test_a_kumomta_style_policy_loads_and_says_what_it_does_not_run(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "relaystream")]
    env = {**os.environ, "POLICY_TEST_SMARTHOST": "relay.example"}
    routed = subprocess.run(
        [*command, "route", "--policy", str(POLICIES / "kumomta_init.lua"),
         "--sender", "a@b.example", "--recipient", "c@d.example", "--json"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert routed.returncode == 0, routed.stderr
    report = json.loads(routed.stdout)
    assert report["queue"]["name"] == "d.example!relay.example"
    # pre_init ran at load: its timestamp reached the message handler.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["meta"]["policy_started_at"])
    lines = routed.stderr.splitlines()
    # get_egress_path_config runs now: no "does not run" warning for it.
    assert not [line for line in lines if "get_egress_path_config" in line], lines
    # One line per configuration call, however often the policy makes it (define_spool: 2).
    for call, line, instead in [
        ("start_esmtp_listener", 14, "the SMTP listener is ingest's"),
        ("start_http_listener", 18, "the HTTP listener is ingest's"),
        ("define_spool", 22, "Kafka is the spool"),
        ("configure_local_logs", 27, "the log topic is the log"),
    ]:
        prefix = f"relaystream route: INFO kumomta_init.lua:{line}: kumo.{call}: accepted, "
        matching = [text for text in lines if f"kumo.{call}:" in text]
        assert len(matching) == 1, lines
        assert matching[0].startswith(prefix), matching
        assert instead in matching[0]
