"""kumo.configure_bounce_classifier: the rules files KumoMTA's `init` names, read (relative to
the policy's folder, as every data file a policy names) and compiled at the call. The rule sets
are kept in the host context's `configured` table; `Policy.bounce_rule_sets` hands them to the
service, whose log writer classifies with them (core/policy/bounce_classifier.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ...domain.bounce_class import BounceClassifier, BounceRulesError, RuleSet, parse_rules_file
from ..host import HostCallback, HostContext, HostError

CONFIGURED_KEY = "bounce_classifier"
# KumoMTA's parameters besides `files`: thread pool and cache sizes of its classifier. Accepted
# and unused here (classification is a cached in-process lookup).
_TUNING_PARAMETERS = frozenset(
    {"back_pressure", "pool_size", "cache_size", "uncategorized_cache_size"}
)


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    def configure(params_json: object) -> None:
        if CONFIGURED_KEY in context.configured:
            # As KumoMTA: the classifier is configured once.
            raise HostError("kumo.configure_bounce_classifier: classifier already configured")
        params = json.loads(str(params_json))
        if not isinstance(params, dict):
            raise HostError("kumo.configure_bounce_classifier: expected a table {files = {...}}")
        unknown = sorted(set(params) - _TUNING_PARAMETERS - {"files"})
        if unknown:
            raise HostError(f"kumo.configure_bounce_classifier: unknown field(s) {unknown}")
        files = params.get("files")
        # An empty Lua table encodes as an empty JSON object.
        if files == {}:
            files = []
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise HostError("kumo.configure_bounce_classifier: files must be a list of paths")
        rule_sets: list[tuple[str, RuleSet]] = []
        try:
            for name in files:
                path = str(context.data_path(name))
                rule_sets.append((path, parse_rules_file(context.read_data_file(name), path)))
            BounceClassifier.compile(rule_sets)  # a pattern that does not compile fails here
        except BounceRulesError as err:
            raise HostError(f"kumo.configure_bounce_classifier: {err}") from err
        context.configured[CONFIGURED_KEY] = tuple(rule_sets)

    return {"configure_bounce_classifier": configure}


def configured_bounce_rules(context: HostContext) -> tuple[tuple[str, RuleSet], ...]:
    """The rule sets the policy configured at load, in order (none: an empty tuple)."""
    configured = context.configured.get(CONFIGURED_KEY, ())
    assert isinstance(configured, tuple)  # only `configure` above writes this key
    return configured
