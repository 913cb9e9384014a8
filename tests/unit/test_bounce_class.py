"""Bounce classification (KumoMTA's model): rules files, first-match order, the built-in rules
against a fixture of real-looking provider replies."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.bounce_class import (
    CLASSIFIABLE_RECORD_TYPES,
    UNCATEGORIZED,
    UNCONFIGURED,
    BounceClass,
    BounceClassifier,
    BounceRulesError,
    parse_rules_file,
)
from relaystream.core.domain.bounce_rules_builtin import BUILTIN_RULE_SETS
from relaystream.core.domain.log_record import RecordType
from relaystream.core.domain.smtp_reply import SmtpResponse

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "provider_replies.toml"
REPLIES = tomllib.loads(FIXTURE.read_text())["reply"]
BUILTIN = BounceClassifier.compile(BUILTIN_RULE_SETS)

# KumoMTA's PreDefinedBounceClass (crates/bounce-classify), in its order.
KUMO_CLASSES = [
    "InvalidRecipient",
    "DNSFailure",
    "SpamBlock",
    "SpamContent",
    "ProhibitedAttachment",
    "RelayDenied",
    "AutoReply",
    "TransientFailure",
    "Subscribe",
    "Unsubscribe",
    "ChallengeResponse",
    "BadConfiguration",
    "BadConnection",
    "BadDomain",
    "ContentRelated",
    "InactiveMailbox",
    "InvalidSender",
    "MessageExpired",
    "NoAnswerFromHost",
    "PolicyRelated",
    "ProtocolErrors",
    "QuotaIssues",
    "RelayingIssues",
    "RoutingErrors",
    "SpamRelated",
    "VirusRelated",
    "AuthenticationFailed",
    "TooManyRecipients",
    "Uncategorized",
]


def test_the_classes_are_kumomtas() -> None:
    assert [c.value for c in BounceClass] == KUMO_CLASSES


def test_the_fixture_covers_the_large_providers() -> None:
    providers = {reply["provider"] for reply in REPLIES}
    assert {"gmail", "microsoft", "yahoo", "apple", "generic"} <= providers
    assert len(REPLIES) >= 25
    assert all(400 <= int(reply["reply"][:3]) < 600 for reply in REPLIES)


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: f"{r['provider']}:{r['reply'][:30]}")
def test_builtin_rules_classify_provider_replies(reply: dict[str, str]) -> None:
    response = SmtpResponse.parse(reply["reply"], "RCPT TO:<someone@example.org>")
    assert BUILTIN.classify(response) == reply["class"]


def test_builtin_labels_are_predefined_classes() -> None:
    labels = {label for _, rule_set in BUILTIN_RULE_SETS for label in rule_set}
    assert labels <= {c.value for c in BounceClass} - {UNCATEGORIZED}


TOML_RULES = """
[rules]
foo = ["woot", "aaa"]
bar = ["woot", "aaa", "bbb"]
"""
JSON_RULES = json.dumps(
    {"rules": {"second_file": ["bbb", "ccc"], "InvalidRecipient": [r"^550 5\.1\.1 "]}}
)


def test_first_matching_rule_wins_across_files_in_order() -> None:
    classifier = BounceClassifier.compile(
        [
            ("a.toml", parse_rules_file(TOML_RULES, "a.toml")),
            ("b.json", parse_rules_file(JSON_RULES, "b.json")),
        ]
    )
    assert classifier.classify_line("woot") == "foo"  # user-defined labels, as KumoMTA
    assert classifier.classify_line("xbbbx") == "bar"
    assert classifier.classify_line("ccc") == "second_file"
    assert classifier.classify_line("550 5.1.1 no") == "InvalidRecipient"
    assert classifier.classify_line("nothing") == UNCATEGORIZED


@pytest.mark.parametrize(
    ("name", "text", "complaint"),
    [
        ("rules.yaml", "rules: {}", "filename extension"),
        ("rules.toml", "[rules\n", "not valid toml"),
        ("rules.json", "{", "not valid json"),
        ("rules.toml", "[other]\nx = []", "exactly one table"),
        ("rules.toml", "[rules]\nx = 'one'", "rules.x must be a list of strings"),
        ("rules.json", '{"rules": {"x": [1]}}', "rules.x must be a list of strings"),
    ],
)
def test_malformed_rules_files_are_refused_with_the_reason(
    name: str, text: str, complaint: str
) -> None:
    with pytest.raises(BounceRulesError, match=complaint):
        parse_rules_file(text, name)


def test_a_pattern_that_does_not_compile_names_its_file_and_class() -> None:
    with pytest.raises(BounceRulesError, match=r"mine\.toml: rules\.SpamBlock: pattern '\('"):
        BounceClassifier.compile([("mine.toml", {"SpamBlock": ["("]})])


def test_only_failure_records_are_classified() -> None:
    response = SmtpResponse.parse("550 5.1.1 no such user\r\n")
    for kind in RecordType:
        expected = "InvalidRecipient" if kind in CLASSIFIABLE_RECORD_TYPES else UNCATEGORIZED
        assert BUILTIN.classify_record(kind, response) == expected
    assert UNCONFIGURED.classify(response) == UNCATEGORIZED


replies = st.builds(
    lambda code, enhanced, text: SmtpResponse.parse(f"{code} {enhanced}{text}\r\n"),
    st.integers(400, 599),
    st.sampled_from(["", "4.2.2 ", "5.1.1 ", "5.7.1 ", "4.7.0 "]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)


@given(replies)
def test_every_reply_gets_one_label_and_the_same_one_again(response: SmtpResponse) -> None:
    first = BUILTIN.classify(response)
    assert first in {c.value for c in BounceClass}
    assert BounceClassifier.compile(BUILTIN_RULE_SETS).classify(response) == first


@given(replies, st.text(min_size=1, max_size=10).filter(lambda s: s.strip() == s))
def test_rules_put_first_take_precedence_over_the_builtin_ones(
    response: SmtpResponse, label: str
) -> None:
    mine = ("mine.toml", {label: [r"^\d{3} "]})
    assert BounceClassifier.compile([mine, *BUILTIN_RULE_SETS]).classify(response) == label
