"""Bounce classification, KumoMTA's model (its bounce-classify crate and
`kumo.configure_bounce_classifier`): rule sets map a class label to regular expressions; a reply
is rendered on one line (`550 5.1.1 text`, `SmtpResponse.to_single_line`) and takes the label of
the first rule, in the order the sets were given, that matches anywhere in it; no match is
`Uncategorized`. Labels beyond KumoMTA's predefined ones are allowed, as there.

Rules files are KumoMTA's: a `[rules]` table (TOML) or a `"rules"` object (JSON) of
label -> list of patterns. Patterns are Python `re` syntax, searched case-sensitively unless
they say `(?i)`; the common subset of Rust's `regex` (what KumoMTA compiles) means the same.
Pure: parsing takes the file's text; reading it is the caller's business.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .log_record import RecordType
from .smtp_reply import SmtpResponse

# A rule set: label -> patterns, in order (the body of one rules file).
RuleSet = Mapping[str, Sequence[str]]

# As KumoMTA, results are cached by reply line: the same few replies recur endlessly.
_CACHE_SIZE = 4096


class BounceClass(enum.Enum):
    """KumoMTA's predefined classes, its names and order."""

    INVALID_RECIPIENT = "InvalidRecipient"
    DNS_FAILURE = "DNSFailure"
    SPAM_BLOCK = "SpamBlock"
    SPAM_CONTENT = "SpamContent"
    PROHIBITED_ATTACHMENT = "ProhibitedAttachment"
    RELAY_DENIED = "RelayDenied"
    AUTO_REPLY = "AutoReply"
    TRANSIENT_FAILURE = "TransientFailure"
    SUBSCRIBE = "Subscribe"
    UNSUBSCRIBE = "Unsubscribe"
    CHALLENGE_RESPONSE = "ChallengeResponse"
    BAD_CONFIGURATION = "BadConfiguration"
    BAD_CONNECTION = "BadConnection"
    BAD_DOMAIN = "BadDomain"
    CONTENT_RELATED = "ContentRelated"
    INACTIVE_MAILBOX = "InactiveMailbox"
    INVALID_SENDER = "InvalidSender"
    MESSAGE_EXPIRED = "MessageExpired"
    NO_ANSWER_FROM_HOST = "NoAnswerFromHost"
    POLICY_RELATED = "PolicyRelated"
    PROTOCOL_ERRORS = "ProtocolErrors"
    QUOTA_ISSUES = "QuotaIssues"
    RELAYING_ISSUES = "RelayingIssues"
    ROUTING_ERRORS = "RoutingErrors"
    SPAM_RELATED = "SpamRelated"
    VIRUS_RELATED = "VirusRelated"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    TOO_MANY_RECIPIENTS = "TooManyRecipients"
    UNCATEGORIZED = "Uncategorized"


UNCATEGORIZED = BounceClass.UNCATEGORIZED.value

# KumoMTA's RecordType::is_bounce_classifiable: the reply came from (or stands for) a failed
# delivery; receptions, deliveries, rebinds and delays keep `Uncategorized`.
CLASSIFIABLE_RECORD_TYPES = frozenset(
    {
        RecordType.BOUNCE,
        RecordType.TRANSIENT_FAILURE,
        RecordType.EXPIRATION,
        RecordType.ADMIN_BOUNCE,
        RecordType.REJECTION,
    }
)


class BounceRulesError(ValueError):
    """A rules file or rule that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class BounceRule:
    label: str
    pattern: re.Pattern[str]


def parse_rules_file(text: str, name: str) -> dict[str, list[str]]:
    """The rule set of a KumoMTA rules file; `name` ends in `.toml` or `.json` (as there)."""
    if name.endswith(".toml"):
        load: Callable[[str], Any] = tomllib.loads
    elif name.endswith(".json"):
        load = json.loads
    else:
        raise BounceRulesError(
            f"{name}: classifier files must have either .toml or .json filename extension"
        )
    try:
        document = load(text)
    except ValueError as error:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise BounceRulesError(f"{name}: not valid {name.rsplit('.', 1)[-1]}: {error}") from None
    return rule_set_of(document, name)


def rule_set_of(document: object, name: str) -> dict[str, list[str]]:
    """Checks the shape `{"rules": {label: [pattern, ...]}}` and returns the rules."""
    if not isinstance(document, dict) or set(document) != {"rules"}:
        raise BounceRulesError(f"{name}: expected exactly one table, `rules`")
    rules = document["rules"]
    if not isinstance(rules, dict):
        raise BounceRulesError(f"{name}: `rules` must map class labels to lists of patterns")
    checked: dict[str, list[str]] = {}
    for label, patterns in rules.items():
        if not label:
            raise BounceRulesError(f"{name}: a class label is empty")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise BounceRulesError(f"{name}: rules.{label} must be a list of strings")
        checked[label] = list(patterns)
    return checked


class BounceClassifier:
    """Rule sets compiled in order; `classify` gives the first matching rule's label."""

    def __init__(self, rules: Sequence[BounceRule]) -> None:
        self.rules = tuple(rules)
        self._classify_line = lru_cache(maxsize=_CACHE_SIZE)(self._first_match)

    @classmethod
    def compile(cls, rule_sets: Iterable[tuple[str, RuleSet]]) -> BounceClassifier:
        """From (source name, rule set) pairs; a pattern that does not compile is refused
        with its source, label and the compiler's complaint."""
        compiled: list[BounceRule] = []
        for source, rule_set in rule_sets:
            for label, patterns in rule_set.items():
                for pattern in patterns:
                    try:
                        compiled.append(BounceRule(label, re.compile(pattern)))
                    except re.error as error:
                        raise BounceRulesError(
                            f"{source}: rules.{label}: pattern {pattern!r}: {error}"
                        ) from None
        return cls(compiled)

    def _first_match(self, line: str) -> str:
        for rule in self.rules:
            if rule.pattern.search(line):
                return rule.label
        return UNCATEGORIZED

    def classify_line(self, line: str) -> str:
        return self._classify_line(line)

    def classify(self, response: SmtpResponse) -> str:
        return self._classify_line(response.to_single_line())

    def classify_record(self, kind: RecordType, response: SmtpResponse) -> str:
        """The `bounce_classification` of a log record of this type with this response."""
        if kind not in CLASSIFIABLE_RECORD_TYPES:
            return UNCATEGORIZED
        return self.classify(response)


UNCONFIGURED = BounceClassifier(())
