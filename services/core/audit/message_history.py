"""Why one message went where it went: its recorded reception, decision and attempts in order.

`MessageHistory` joins what the topics recorded about one message id: the accepted event (the
reception handler ingest ran, with its inputs), the routing decision, the queue-config
overrides in force when it was decided and when each attempt was released (replayed from the
`queue-config` history), each attempt's request (the queue config it used) and log record
(outcome, response, site, egress pool and source), and the other log records (rebinds,
expiry, admin bounces). Pure: the records are read by core.kafka.message_records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..domain.log_record import json_values
from ..domain.queue_name import override_targets
from .queue_config_changes import OverrideChange
from .render import iso_time, rejection_text

# Log record types that end a message's life, and the disposition each means.
_FINAL = {
    "Delivery": "delivered",
    "Bounce": "bounced",
    "AdminBounce": "bounced by an operator",
    "Expiration": "expired",
    "Rejection": "rejected",
}
# Log records of an attempt: written by delivery, which names its delivery protocol.
_ATTEMPT_TYPES = frozenset({"Delivery", "TransientFailure", "Bounce"})

COMPACTION_NOTE = (
    "overrides are replayed from the compacted queue-config topic: a target's superseded "
    "records may be gone, never its latest"
)


class TimedChange(OverrideChange, Protocol):
    """A queue-config change with its time (core.kafka.queue_config_store.ConfigChange)."""

    @property
    def at(self) -> datetime: ...

    @property
    def updated_by(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


def overrides_in_force(
    changes: Iterable[TimedChange], queue: str, at: datetime
) -> dict[str, dict[str, Any]]:
    """target -> {config, set_at, updated_by, reason} of each override that applied to `queue`
    at `at`, in the order the scheduler merges them (the domain's, then the queue's)."""
    targets = override_targets(queue)
    state: dict[str, TimedChange] = {}
    for change in changes:
        if change.target not in targets or change.at > at:
            continue
        if change.config is None:
            state.pop(change.target, None)
        else:
            state[change.target] = change
    return {
        target: {
            "config": dict(state[target].config or {}),
            "set_at": iso_time(state[target].at),
            "updated_by": state[target].updated_by,
            "reason": state[target].reason,
        }
        for target in targets
        if target in state
    }


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(value / 1000, UTC)


def _response(response: Mapping[str, Any] | None) -> str | None:
    return None if response is None else " ".join((rejection_text(response) or "").split())


@dataclass
class MessageHistory:
    message_id: str
    accepted: Mapping[str, Any] | None = None
    decision: Mapping[str, Any] | None = None
    log_records: Sequence[Mapping[str, Any]] = ()
    requests: Sequence[Mapping[str, Any]] = ()
    config_changes: Sequence[TimedChange] = ()

    @property
    def found(self) -> bool:
        return self.accepted is not None or self.decision is not None or bool(self.log_records)

    def recipients(self) -> set[str]:
        """Every recipient address the records name (before and after the handler)."""
        found: set[str] = set()
        for record in (self.accepted, self.decision):
            if record is not None:
                found.add(record["recipient"])
        if self.decision is not None and self.decision.get("recipient_after"):
            found.add(self.decision["recipient_after"])
        if self.accepted is not None:
            run = self.accepted.get("reception_policy")
            if run is not None and run.get("recipient_before"):
                found.add(run["recipient_before"])
        for log in self.log_records:
            found.update(log["recipients"])
        return found

    def queues(self) -> set[str]:
        """The scheduled queues the message was in (its decision's, and any rebind's)."""
        found = {log["queue"] for log in self.log_records if log["queue"]}
        if self.decision is not None and self.decision["queue"]:
            found.add(self.decision["queue"])
        return found

    def _reception(self) -> dict[str, Any] | None:
        accepted, decision = self.accepted, self.decision
        source = accepted if accepted is not None else decision
        if source is None:
            return None
        run = None if accepted is None else accepted.get("reception_policy")
        # The envelope as received: what the handler was given (accepted holds what it left).
        sender = (run and run["sender_before"]) or source["sender"]
        recipient = (run and run["recipient_before"]) or source["recipient"]
        reception: dict[str, Any] = {
            "received_at": iso_time(_time(source["received_at"])),
            "reception_protocol": source["reception_protocol"],
            "sender": sender,
            "recipient": recipient,
            "transaction_id": None if accepted is None else accepted.get("transaction_id"),
        }
        if run is not None:
            reception["policy"] = {
                "stage": "ingest",
                "name": run["policy_name"],
                "hash": run["policy_hash"],
                "inputs": {
                    "sender": sender,
                    "recipient": recipient,
                    "meta": json_values(run["meta_before"]),
                    "headers_changed": run["headers_before"] is not None,
                },
                "rejection": _response(run["rejection"]),
                "failure": run["failure"],
            }
        elif decision is not None:
            reception["policy"] = {
                "stage": decision["reception_stage"] or "routing",
                "name": decision["policy_name"],
                "hash": decision["policy_hash"],
                "inputs": {
                    "sender": decision["sender"],
                    "recipient": decision["recipient"],
                    "meta": json_values(decision["meta_before"]),
                },
            }
        return reception

    def _decision(self) -> dict[str, Any] | None:
        decision = self.decision
        if decision is None:
            return None
        decided_at = _time(decision["decided_at"])
        queue = decision["queue"]
        return {
            "decided_at": iso_time(decided_at),
            "outcome": decision["outcome"],
            "queue": queue,
            "reception_stage": decision["reception_stage"] or "routing",
            "policy_name": decision["policy_name"],
            "policy_hash": decision["policy_hash"],
            "tenant": decision["tenant"],
            "campaign": decision["campaign"],
            "domain": decision["domain"],
            "routing_domain": decision["routing_domain"],
            "sender_after": decision["sender_after"],
            "recipient_after": decision["recipient_after"],
            "meta_after": json_values(decision["meta_after"]),
            "rejection": _response(decision["rejection"]),
            "overrides_in_force": {}
            if queue is None
            else overrides_in_force(self.config_changes, queue, decided_at),
        }

    def _attempts(self) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
        """The attempts (request and delivery's log record joined on queue and number) and
        the log records that are no attempt's."""
        attempts: dict[tuple[str, int], dict[str, Any]] = {}
        for request in self.requests:
            released_at = _time(request["released_at"])
            try:
                queue_config: Any = json.loads(request["queue_config"])
            except ValueError:
                queue_config = request["queue_config"]
            attempts[(request["queue"], request["attempt"])] = {
                "number": request["attempt"] + 1,
                "queue": request["queue"],
                "released_at": iso_time(released_at),
                "queue_config": queue_config,
                "overrides_in_force": overrides_in_force(
                    self.config_changes, request["queue"], released_at
                ),
            }
        others: list[Mapping[str, Any]] = []
        for log in self.log_records:
            if log["type"] not in _ATTEMPT_TYPES or log["delivery_protocol"] is None:
                others.append(log)
                continue
            key = (log["queue"], log["num_attempts"])
            attempt = attempts.setdefault(
                key,
                {
                    "number": log["num_attempts"] + 1,
                    "queue": log["queue"],
                    "released_at": None,
                    "queue_config": None,
                    "overrides_in_force": overrides_in_force(
                        self.config_changes, log["queue"], _time(log["timestamp"])
                    ),
                },
            )
            peer = log["peer_address"]
            source = log["source_address"]
            attempt.update(
                {
                    "completed_at": iso_time(_time(log["timestamp"])),
                    "outcome": log["type"],
                    "response": _response(log["response"]),
                    "bounce_classification": log["bounce_classification"],
                    "site": log["site"],
                    "egress_pool": log["egress_pool"],
                    "egress_source": log["egress_source"],
                    "peer": None if peer is None else f"{peer['name']} [{peer['addr']}]",
                    "source_address": None if source is None else source["address"],
                }
            )
        ordered = sorted(
            attempts.values(),
            key=lambda a: (a.get("released_at") or a.get("completed_at") or "", a["number"]),
        )
        return ordered, others

    def _final(self) -> dict[str, Any]:
        for log in reversed(self.log_records):
            disposition = _FINAL.get(log["type"])
            if disposition is not None:
                return {
                    "disposition": disposition,
                    "at": iso_time(_time(log["timestamp"])),
                    "record": log["type"],
                    "response": _response(log["response"]),
                }
        if self.decision is not None and self.decision["outcome"] != "QUEUED":
            outcome = str(self.decision["outcome"]).lower()
            return {
                "disposition": outcome,
                "at": iso_time(_time(self.decision["decided_at"])),
                "record": "RoutingDecision",
                "response": _response(self.decision["rejection"]),
            }
        last = self.log_records[-1] if self.log_records else None
        return {
            "disposition": "accepted, not yet routed"
            if self.decision is None
            else "queued, not yet delivered",
            "at": None if last is None else iso_time(_time(last["timestamp"])),
            "record": None if last is None else last["type"],
            "response": None if last is None else _response(last["response"]),
        }

    def notes(self) -> list[str]:
        """What the answer cannot show, and why."""
        found = []
        if self.accepted is None and self.decision is not None:
            found.append(
                "no accepted event near the reception in `accepted` (its retention is 7 days): "
                "the reception policy's inputs are the decision's"
            )
        if self.config_changes:
            found.append(COMPACTION_NOTE)
        return found

    def to_json(self) -> dict[str, Any]:
        attempts, others = self._attempts()
        return {
            "id": self.message_id,
            "reception": self._reception(),
            "decision": self._decision(),
            "attempts": attempts,
            "events": [
                {
                    "at": iso_time(_time(log["timestamp"])),
                    "type": log["type"],
                    "queue": log["queue"],
                    "response": _response(log["response"]),
                }
                for log in others
            ],
            "final": self._final(),
            "notes": self.notes(),
        }


def _overrides_lines(overrides: Mapping[str, Mapping[str, Any]], indent: str) -> list[str]:
    if not overrides:
        return [f"{indent}overrides in force: none"]
    lines = [f"{indent}overrides in force:"]
    for target, override in overrides.items():
        who = f" by {override['updated_by']}" if override["updated_by"] else ""
        why = f" ({override['reason']})" if override["reason"] else ""
        config = json.dumps(override["config"], sort_keys=True)
        lines.append(f"{indent}  {target}: {config}  set {override['set_at']}{who}{why}")
    return lines


def timeline(history: Mapping[str, Any]) -> list[str]:
    """`MessageHistory.to_json()` as readable lines, in time order."""
    pad = " " * 26
    lines = [f"message {history['id']}"]
    reception = history["reception"]
    if reception is not None:
        txn = reception["transaction_id"]
        lines.append(
            f"{reception['received_at']:<25} received over {reception['reception_protocol']}"
            f" from <{reception['sender']}> for <{reception['recipient']}>"
            + (f", transaction {txn}" if txn else "")
        )
        policy = reception.get("policy")
        if policy is not None:
            lines.append(
                f"{pad}reception policy {policy['name']} sha256:{policy['hash'][:16]}"
                f" ran at {policy['stage']}"
            )
            inputs = policy["inputs"]
            lines.append(
                f"{pad}  inputs: sender <{inputs['sender']}>, recipient <{inputs['recipient']}>"
            )
            lines.append(f"{pad}  meta: {json.dumps(inputs['meta'], sort_keys=True)}")
            if policy.get("rejection"):
                failure = f" (policy failure: {policy['failure']})" if policy["failure"] else ""
                lines.append(f"{pad}  refused: {policy['rejection']}{failure}")
    decision = history["decision"]
    if decision is not None:
        target = decision["queue"] if decision["queue"] else decision["rejection"] or "-"
        lines.append(
            f"{decision['decided_at']:<25} routing {decision['outcome']} -> {target}"
            f"  (reception stage {decision['reception_stage']};"
            f" policy {decision['policy_name']} sha256:{decision['policy_hash'][:16]})"
        )
        changed = [
            f"{what} <{decision[f'{what}_after']}>"
            for what in ("sender", "recipient")
            if decision[f"{what}_after"]
        ]
        if changed:
            lines.append(f"{pad}the handler set the {', '.join(changed)}")
        lines.append(f"{pad}meta after: {json.dumps(decision['meta_after'], sort_keys=True)}")
        if decision["queue"]:
            lines += _overrides_lines(decision["overrides_in_force"], pad)
    entries: list[tuple[str, list[str]]] = []
    for attempt in history["attempts"]:
        at = attempt["released_at"] or attempt.get("completed_at") or ""
        text = [f"{at:<25} attempt {attempt['number']} released from {attempt['queue']}"]
        if attempt["queue_config"] is not None:
            config = json.dumps(attempt["queue_config"], sort_keys=True)
            text.append(f"{pad}queue config: {config}")
        text += _overrides_lines(attempt["overrides_in_force"], pad)
        if "outcome" in attempt:
            text.append(
                f"{attempt['completed_at']:<25} attempt {attempt['number']} {attempt['outcome']}:"
                f" {attempt['response']}"
            )
            failed = attempt["outcome"] != "Delivery"
            text.append(
                f"{pad}site {attempt['site'] or '-'}, pool {attempt['egress_pool'] or '-'},"
                f" source {attempt['egress_source'] or '-'}, peer {attempt['peer'] or '-'}"
                + (f", class {attempt['bounce_classification']}" if failed else "")
            )
        entries.append((at, text))
    for event in history["events"]:
        if event["type"] in ("Reception",):
            continue  # the reception and decision above say it
        entries.append(
            (
                event["at"],
                [f"{event['at']:<25} {event['type']} in {event['queue']}: {event['response']}"],
            )
        )
    for _, text in sorted(entries, key=lambda entry: entry[0]):
        lines += text
    final = history["final"]
    when = f" at {final['at']}" if final["at"] else ""
    reply = f": {final['response']}" if final["response"] else ""
    lines.append(f"final: {final['disposition']}{when}{reply}")
    lines += [f"note: {note}" for note in history["notes"]]
    return lines
