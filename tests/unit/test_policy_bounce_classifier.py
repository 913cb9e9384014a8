"""kumo.configure_bounce_classifier in `init`: KumoMTA's rules files, read beside the policy,
configure the classifier of the services that write log records."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaystream.core.domain.bounce_class import BounceRulesError
from relaystream.core.domain.log_record import RecordType
from relaystream.core.domain.smtp_reply import SmtpResponse
from relaystream.core.policy import PolicyLoadError, policy_from_file, policy_from_source
from relaystream.core.policy.bounce_classifier import log_writer
from relaystream.core.runtime.settings import RuntimeSettings

NO_SUCH_USER = SmtpResponse.parse("550 5.1.1 no such user here\r\n")


def policy_calling(tmp_path: Path, call: str) -> Path:
    path = tmp_path / "policy.lua"
    path.write_text(f"local kumo = require 'kumo'\nkumo.on('init', function()\n  {call}\nend)\n")
    return path


def test_init_configures_the_classifier_with_files_beside_the_policy(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('[rules]\nGone = ["no such user"]\n')
    (tmp_path / "more.json").write_text('{"rules": {"Later": ["no such"]}}')
    policy = policy_from_file(
        policy_calling(
            tmp_path,
            "kumo.configure_bounce_classifier { files = { 'mine.toml', 'more.json' },"
            " cache_size = 2048 }",
        )
    )
    assert [name for name, _ in policy.bounce_rule_sets] == [
        str(tmp_path / "mine.toml"),
        str(tmp_path / "more.json"),
    ]
    writer = log_writer(RuntimeSettings(), policy)
    # The policy's rules come before the built-in ones (which say InvalidRecipient).
    assert writer.classifier.classify_record(RecordType.BOUNCE, NO_SUCH_USER) == "Gone"
    assert log_writer(RuntimeSettings()).classifier.classify(NO_SUCH_USER) == "InvalidRecipient"


def test_the_policys_rules_come_before_the_settings_files(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('[rules]\nFromPolicy = ["no such user"]\n')
    (tmp_path / "settings.toml").write_text('[rules]\nFromSettings = ["no such user"]\n')
    policy = policy_from_file(
        policy_calling(tmp_path, "kumo.configure_bounce_classifier { files = { 'policy.toml' } }")
    )
    runtime = RuntimeSettings(bounce_classifier_files=(tmp_path / "settings.toml",))
    assert log_writer(runtime, policy).classifier.classify(NO_SUCH_USER) == "FromPolicy"
    assert log_writer(runtime).classifier.classify(NO_SUCH_USER) == "FromSettings"


def test_without_the_call_the_policy_configures_nothing() -> None:
    assert policy_from_source("local kumo = require 'kumo'\n", "policy.lua").bounce_rule_sets == ()


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        ("kumo.configure_bounce_classifier { files = { 'absent.toml' } }", "cannot read"),
        ("kumo.configure_bounce_classifier { files = { 'bad.toml' } }", r"rules\.X: pattern"),
        ("kumo.configure_bounce_classifier { files = { 'rules.yaml' } }", "filename extension"),
        ("kumo.configure_bounce_classifier { files = 'bad.toml' }", "files must be a list"),
        ("kumo.configure_bounce_classifier { file = { 'bad.toml' } }", r"unknown field"),
        (
            "kumo.configure_bounce_classifier { files = {} }\n"
            "  kumo.configure_bounce_classifier { files = {} }",
            "already configured",
        ),
    ],
)
def test_a_bad_configuration_fails_the_load_at_the_policys_line(
    tmp_path: Path, call: str, complaint: str
) -> None:
    (tmp_path / "bad.toml").write_text('[rules]\nX = ["("]\n')
    (tmp_path / "rules.yaml").write_text("rules: {}\n")
    with pytest.raises(PolicyLoadError, match=rf"policy\.lua:\d+: .*{complaint}"):
        policy_from_file(policy_calling(tmp_path, call))


def test_a_settings_file_that_does_not_parse_stops_the_writer(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[rules\n")
    with pytest.raises(BounceRulesError, match=r"broken\.toml: not valid toml"):
        log_writer(RuntimeSettings(bounce_classifier_files=(broken,)))
