"""The log writer a service uses: its node id and its bounce classifier, compiled from the
rules files `kumo.configure_bounce_classifier{files = {...}}` named in the policy's `init`, those
of the `bounce_classifier_files` setting, then the built-in rules.

A file that cannot be read or compiled stops the service at start-up with the file and the
reason (a classifier silently missing rules would mislabel every bounce).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..domain.bounce_class import BounceClassifier, BounceRulesError, RuleSet, parse_rules_file
from ..domain.bounce_rules_builtin import BUILTIN_RULE_SETS
from ..domain.log_writer import LogWriter
from ..runtime.settings import RuntimeSettings
from .base import Policy


def read_rules_files(files: Sequence[Path]) -> list[tuple[str, RuleSet]]:
    rule_sets: list[tuple[str, RuleSet]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BounceRulesError(f"{path}: cannot read bounce rules: {error}") from None
        rule_sets.append((str(path), parse_rules_file(text, str(path))))
    return rule_sets


def log_writer(runtime: RuntimeSettings, policy: Policy | None = None) -> LogWriter:
    """The stamp of this node's log records: the rules files the policy's `init` configured
    (kumo.configure_bounce_classifier), then those the settings name, then the built-in ones."""
    rule_sets = [*(policy.bounce_rule_sets if policy is not None else ())]
    rule_sets.extend(read_rules_files(runtime.bounce_classifier_files))
    if runtime.bounce_classifier_builtin_rules:
        rule_sets.extend(BUILTIN_RULE_SETS)
    return LogWriter(
        nodeid=runtime.resolved_node_id(), classifier=BounceClassifier.compile(rule_sets)
    )
