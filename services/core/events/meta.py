"""The `meta` maps of the events: string keys, each value a JSON text (as KumoMTA's meta).

Avro has no "any JSON" type; a map of JSON texts keeps meta open-ended while every language
can still read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# allow_nan=False: NaN and Infinity are not JSON, other languages would reject them. One
# encoder for the process: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class MetaError(ValueError):
    """A meta value that is not JSON (on encode: not serialisable; on decode: not parseable)."""


def encode_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """Each value as compact JSON text; raises MetaError for a value JSON cannot express."""
    encoded: dict[str, str] = {}
    for key, value in meta.items():
        try:
            encoded[key] = _ENCODER.encode(value)
        except (TypeError, ValueError) as exc:
            raise MetaError(f"meta {key!r}: {exc}") from exc
    return encoded


def decode_meta(meta: Mapping[str, str]) -> dict[str, Any]:
    """Each JSON text parsed; raises MetaError naming the key whose value is not JSON."""
    decoded: dict[str, Any] = {}
    for key, text in meta.items():
        try:
            decoded[key] = json.loads(text)
        except ValueError as exc:
            raise MetaError(f"meta {key!r} is not JSON: {exc}") from exc
    return decoded
