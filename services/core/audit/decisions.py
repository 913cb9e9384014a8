"""Which recorded routing decisions an audit selects, and what it counts about them.

`DecisionFilter.candidate_test` looks at the raw record bytes before anything is decoded: an Avro
string is its UTF-8 bytes behind a length, so a value the filter names must appear verbatim in
the record. Most records of a filtered replay are thus rejected at the cost of a substring
search; only candidates are decoded and checked exactly with `matches`. `batch_test` applies
the same reasoning to a whole uncompressed record batch (its records' keys and values lie in it
verbatim), so a replay skips most batches of a narrow filter without making their records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _ascii_lower(text: str) -> bytes:
    # DNS names compare without ASCII case; bytes.lower() folds exactly that, nothing more.
    return text.encode("utf-8").lower()


@dataclass(frozen=True)
class DecisionFilter:
    """Every field set must match (AND). `domain` and `routing_domain` compare without ASCII
    case (DNS names); `tenant`, `campaign`, `queue` and `message_id` exactly."""

    domain: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    queue: str | None = None
    routing_domain: str | None = None
    message_id: str | None = None

    def _needles(self) -> tuple[bytes | None, tuple[bytes, ...], tuple[bytes, ...]]:
        """What a matching record's bytes must hold: its key, values verbatim, values in any
        ASCII case (compared with the record's bytes lowered)."""
        key = None if self.message_id is None else self.message_id.encode("utf-8")
        exact = tuple(v.encode("utf-8") for v in (self.tenant, self.campaign, self.queue) if v)
        folded = tuple(_ascii_lower(v) for v in (self.domain, self.routing_domain) if v)
        return key, exact, folded

    def candidate_test(self) -> Callable[[bytes | None, bytes], bool] | None:
        """A test on a raw record's (key, value) that is False only when the record cannot
        match (a necessary condition, no decoding); None when every record is a candidate."""
        key, exact, folded = self._needles()
        if key is None and not exact and not folded:
            return None

        def could_match(record_key: bytes | None, value: bytes) -> bool:
            if key is not None and record_key is not None and record_key != key:
                return False
            for needle in exact:
                if needle not in value:
                    return False
            if folded:
                lowered = value.lower()
                for needle in folded:
                    if needle not in lowered:
                        return False
            return True

        return could_match

    def batch_test(self) -> Callable[[bytes, int, int], bool] | None:
        """A test on `data[start:end]`, the bytes of an uncompressed record batch, that is False
        only when no record in it can match (a matching decision holds its id and every value
        named verbatim, the folded ones in any case); None when any batch may hold a match."""
        key, exact, folded = self._needles()
        verbatim = exact if key is None else (key, *exact)  # the id is a field of the value
        if not verbatim and not folded:
            return None

        def could_hold_match(data: bytes, start: int, end: int) -> bool:
            for needle in verbatim:
                if data.find(needle, start, end) < 0:
                    return False
            if folded:
                lowered = data[start:end].lower()
                for needle in folded:
                    if needle not in lowered:
                        return False
            return True

        return could_hold_match

    def matches(self, decision: Mapping[str, Any]) -> bool:
        """Whether a decoded RoutingDecision matches every field set."""
        if self.message_id is not None and decision["id"] != self.message_id:
            return False
        for name in ("tenant", "campaign", "queue"):
            wanted = getattr(self, name)
            if wanted is not None and decision[name] != wanted:
                return False
        for name in ("domain", "routing_domain"):
            wanted = getattr(self, name)
            recorded = decision[name]
            if wanted is not None and (
                recorded is None or _ascii_lower(recorded) != _ascii_lower(wanted)
            ):
                return False
        return True


NO_QUEUE = "(none)"


@dataclass
class DecisionSummary:
    """Counts over the decisions an audit printed: per queue, per policy, per outcome."""

    read: int = 0  # records replayed, matching or not
    matched: int = 0
    per_queue: Counter[str] = field(default_factory=Counter)
    per_policy: Counter[str] = field(default_factory=Counter)  # policy hash
    per_outcome: Counter[str] = field(default_factory=Counter)
    policy_names: dict[str, str] = field(default_factory=dict)  # hash -> last name seen

    def add(self, decision: Mapping[str, Any]) -> None:
        self.matched += 1
        self.per_queue[decision["queue"] or NO_QUEUE] += 1
        policy_hash = decision["policy_hash"]
        self.per_policy[policy_hash] += 1
        self.policy_names[policy_hash] = decision["policy_name"]
        self.per_outcome[decision["outcome"]] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": True,
            "read": self.read,
            "matched": self.matched,
            "per_outcome": dict(self.per_outcome.most_common()),
            "per_queue": dict(self.per_queue.most_common()),
            "per_policy": [
                {"policy_hash": h, "policy_name": self.policy_names[h], "decisions": n}
                for h, n in self.per_policy.most_common()
            ],
        }

    def to_lines(self) -> list[str]:
        lines = [f"{self.matched} decisions matched of {self.read} read"]
        if self.per_outcome:
            outcomes = ", ".join(f"{name} {n}" for name, n in self.per_outcome.most_common())
            lines.append(f"outcomes: {outcomes}")
        if self.per_queue:
            lines.append("per queue:")
            lines += [f"  {n:>10}  {queue}" for queue, n in self.per_queue.most_common()]
        if self.per_policy:
            lines.append("per policy (sha256):")
            lines += [
                f"  {n:>10}  {h}  {self.policy_names[h]}" for h, n in self.per_policy.most_common()
            ]
        return lines
