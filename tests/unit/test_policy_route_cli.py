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
    # get_egress_path_config runs: its config is in the report, and no warning names it.
    assert not [line for line in lines if "get_egress_path_config" in line], lines
    assert report["egress"]["source"]["name"] == "unspecified"
    assert report["egress"]["path_config"]["enable_tls"] == "Opportunistic"
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


def test_route_shows_the_egress_pool_source_and_path_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sources.toml").write_text(
        '[source."ip-1"]\nsource_address = "127.0.0.2"\nehlo_domain = "one.example"\n'
        '[source."ip-2"]\nsource_address = "127.0.0.3"\n'
        '[pool."warm"."ip-1"]\nweight = 1\n[pool."warm"."ip-2"]\nweight = 3\n'
    )
    (tmp_path / "shaping.toml").write_text(
        '["[192.0.2.7]"]\nconnection_limit = 2\nmax_message_rate = "20/s"\n'
        '["[192.0.2.7]".sources."ip-2"]\nenable_tls = "Required"\n'
        'smtp_auth_plain_password = { key_data = "hunter2" }\n'
    )
    policy = tmp_path / "init.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "local sources = require 'policy-extras.sources'\n"
        "local shaping = require 'policy-extras.shaping'\n"
        "sources:setup { 'sources.toml' }\n"
        "local shaper = shaping:setup_with_automation {\n"
        "  no_default_files = true, extra_files = { 'shaping.toml' } }\n"
        "kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n"
        "kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)\n"
        "  return kumo.make_queue_config { egress_pool = 'warm' }\n"
        "end)\n"
    )
    code, report = route_json(
        capsys,
        "--policy", str(policy),
        "--sender", "a@b.example",
        "--recipient", "c@[192.0.2.7]",
    )  # fmt: skip
    assert code == 0, report
    egress = report["egress"]
    assert isinstance(egress, dict)
    assert egress["pool"] == {
        "name": "warm",
        "entries": [{"name": "ip-1", "weight": 1}, {"name": "ip-2", "weight": 3}],
        "ttl": 60,
    }
    # KumoMTA's weighted round-robin picks ip-2 first from a fresh state.
    assert egress["source"]["name"] == "ip-2"
    assert egress["source"]["source_address"] == "127.0.0.3"
    assert egress["site_name"] == "192.0.2.7"
    path = egress["path_config"]
    assert (path["connection_limit"], path["max_message_rate"]) == (2, "20/s")
    assert path["enable_tls"] == "Required"
    assert path["smtp_auth_plain_password"] == {"key_data": "(redacted)"}

    # --site-name names the site instead; text output shows the same sections.
    assert main_text(["--policy", str(policy), "--sender", "", "--recipient", "c@d.example",
                      "--site-name", "mx.d.example"], capsys) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "  pool           warm: ip-1 (weight 1), ip-2 (weight 3)\n" in text
    assert "  source         ip-2 (source_address 127.0.0.3, ttl 60)\n" in text
    assert "  site_name      mx.d.example\n" in text
    assert "egress_path_config\n  connection_limit" in text
    assert "hunter2" not in text


def test_route_fails_when_get_egress_path_config_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "init.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "kumo.on('get_egress_path_config', function(domain, source, site)\n"
        "  kumo.reject(421, 'no path to ' .. domain)\n"
        "end)\n"
    )
    code, report = route_json(
        capsys, "--policy", str(policy), "--sender", "", "--recipient", "c@[192.0.2.7]"
    )
    assert code == 1
    assert report["outcome"] == "failed"
    assert report["error"] == "get_egress_path_config: kumo.reject(421, 'no path to [192.0.2.7]')"


def main_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["route", *argv])
    code = exited.value.code
    assert isinstance(code, int)
    return code


LISTENER_DOMAINS_POLICY = """\
local kumo = require 'kumo'
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'send.example' and listener == '192.0.2.10:25' then
    return kumo.make_listener_domain { relay_from = { '10.0.0.0/24' } }
  elseif domain == 'closed.example' then
    kumo.reject(550, '5.7.1 not here')
  end
end)
"""


def test_route_shows_the_listener_domains_and_the_relaying_decision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(LISTENER_DOMAINS_POLICY)
    common = ("--policy", str(policy), "--listener", "192.0.2.10:25", "--site-name", "s")
    code, report = route_json(
        capsys, *common, "--sender", "a@send.example", "--recipient", "b@x.org",
        "--client", "10.0.0.9",
    )  # fmt: skip
    assert code == 0
    section = report["listener_domain"]
    assert isinstance(section, dict)
    assert section["sender"] == {
        "domain": "send.example",
        "listener_domain": {
            "relay_to": False,
            "relay_from": ["10.0.0.0/24"],
            "log_oob": "Ignore",
            "log_arf": "Ignore",
        },
    }
    assert section["recipient"] == {"domain": "x.org", "listener_domain": None}
    assert (section["relays"], section["relay_from"], section["relay_to"]) == (True, True, False)
    _, elsewhere = route_json(
        capsys, *common, "--sender", "a@send.example", "--recipient", "b@x.org",
        "--client", "10.0.1.9",
    )  # fmt: skip
    assert isinstance(elsewhere["listener_domain"], dict)
    assert elsewhere["listener_domain"]["relays"] is False
    # kumo.reject in get_listener_domain: ingest's answer at RCPT, nothing further.
    code, rejected = route_json(
        capsys, *common, "--sender", "a@x.org", "--recipient", "b@closed.example"
    )
    assert code == 1
    assert rejected["outcome"] == "rejected"
    assert rejected["response"] == "550 5.7.1 not here"
    assert "queue" not in rejected
