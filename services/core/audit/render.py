"""Decisions as an audit prints them: an aligned table line, one JSON object, or CSV rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..events.meta import MetaError, decode_meta

TABLE_HEADER = (
    f"{'DECIDED_AT':<24} {'ID':<32} {'OUTCOME':<9} {'POLICY':<12} {'RECIPIENT':<32} QUEUE"
)

CSV_COLUMNS = (
    "decided_at",
    "received_at",
    "id",
    "outcome",
    "queue",
    "campaign",
    "tenant",
    "domain",
    "routing_domain",
    "sender",
    "recipient",
    "reception_protocol",
    "rejection",
    "policy_hash",
    "policy_name",
)


def iso_time(moment: datetime) -> str:
    """UTC with milliseconds and a Z, as KumoMTA logs write times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rejection_text(response: Mapping[str, Any] | None) -> str | None:
    """An SMTP response as one line: `550 5.7.1 text` (without the enhanced code if none)."""
    if response is None:
        return None
    enhanced = response["enhanced_code"]
    status = (
        f"{enhanced['class']}.{enhanced['subject']}.{enhanced['detail']} "
        if enhanced is not None
        else ""
    )
    return f"{response['code']} {status}{response['content']}"


def table_line(decision: Mapping[str, Any]) -> str:
    queue = decision["queue"] or "-"
    if decision["outcome"] == "REJECTED":
        queue = rejection_text(decision["rejection"]) or "-"
    return (
        f"{iso_time(decision['decided_at']):<24} {decision['id']:<32} "
        f"{decision['outcome']:<9} {decision['policy_hash'][:12]:<12} "
        f"{decision['recipient']:<32} {queue}"
    )


def _meta_as_json(meta: Mapping[str, str]) -> dict[str, Any]:
    try:
        return decode_meta(meta)
    except MetaError:
        # Show a malformed record as it is rather than hide it from an audit.
        return dict(meta)


def to_json_object(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The whole decision as JSON: times in ISO 8601, meta values parsed from their JSON."""
    obj = dict(decision)
    obj["decided_at"] = iso_time(decision["decided_at"])
    obj["received_at"] = iso_time(decision["received_at"])
    obj["meta_before"] = _meta_as_json(decision["meta_before"])
    obj["meta_after"] = _meta_as_json(decision["meta_after"])
    return obj


def json_line(decision: Mapping[str, Any]) -> str:
    return json.dumps(to_json_object(decision), ensure_ascii=False, sort_keys=True)


def csv_row(decision: Mapping[str, Any]) -> list[str]:
    """The CSV_COLUMNS of a decision; absent values are empty cells."""
    values: dict[str, Any] = {
        **decision,
        "decided_at": iso_time(decision["decided_at"]),
        "received_at": iso_time(decision["received_at"]),
        "rejection": rejection_text(decision["rejection"]),
    }
    return ["" if values[column] is None else str(values[column]) for column in CSV_COLUMNS]
