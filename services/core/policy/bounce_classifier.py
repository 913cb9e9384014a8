"""The bounce classifier a service uses: rules files read and compiled, then the built-in rules.

`kumo.configure_bounce_classifier{files = {...}}` and the `bounce_classifier_files` setting
name the same thing; a file that cannot be read or compiled stops the service at start-up with
the file and the reason (a classifier silently missing rules would mislabel every bounce).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..domain.bounce_class import BounceClassifier, BounceRulesError, RuleSet, parse_rules_file
from ..domain.bounce_rules_builtin import BUILTIN_RULE_SETS
from ..domain.log_writer import LogWriter
from ..runtime.settings import RuntimeSettings


def read_rules_files(files: Sequence[Path]) -> list[tuple[str, RuleSet]]:
    rule_sets: list[tuple[str, RuleSet]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BounceRulesError(f"{path}: cannot read bounce rules: {error}") from None
        rule_sets.append((str(path), parse_rules_file(text, str(path))))
    return rule_sets


def load_classifier(files: Sequence[Path], *, builtin_rules: bool = True) -> BounceClassifier:
    """The files' rules in order, then (unless turned off) relaystream's built-in ones."""
    rule_sets = read_rules_files(files)
    if builtin_rules:
        rule_sets.extend(BUILTIN_RULE_SETS)
    return BounceClassifier.compile(rule_sets)


def log_writer(runtime: RuntimeSettings) -> LogWriter:
    """The stamp of this node's log records, from the settings."""
    return LogWriter(
        nodeid=runtime.resolved_node_id(),
        classifier=load_classifier(
            runtime.bounce_classifier_files,
            builtin_rules=runtime.bounce_classifier_builtin_rules,
        ),
    )
