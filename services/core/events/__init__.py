"""The event contracts: Avro single-object encoding over `schemas/*.avsc`.

    from relaystream.core.events import encode, decode, DecodeError
    value = encode("MessageAccepted", record)          # bytes for Kafka
    name, record = decode(value, expected="MessageAccepted")

How to change a contract (the tests in tests/unit/test_schema_evolution.py enforce it):

1. Edit `schemas/<Name>.avsc`. Allowed: add a field WITH a default; remove a field that has
   a default; add an enum symbol (BACKWARD events only); add a union branch; widen
   int -> long -> float -> double; edit docs. Not allowed: rename or retype a field, add a
   field without a default, drop an enum symbol or union branch. FULL events
   (`compatibility.FULL_EVENTS`: MessageSubmitted, LogRecord) must also stay readable by
   every released schema: old readers ignore new fields and fill removed ones from their
   defaults, and they cannot read a new enum symbol.
2. Update `records.py` (the TypedDict) to match; a test compares them.
3. Release it: `.venv/bin/python -m relaystream.core.events.release schemas` writes
   `schemas/released/<Name>/v<N+1>.avsc`, a frozen self-contained copy. Never edit a
   released file: decoding finds writers by the fingerprint of these copies, so records
   written with any released version stay readable. A test fails while a current schema
   is unreleased, so no service can write records with a schema that is not frozen.
"""

from .codec import (
    DecodeError,
    EncodeError,
    decode,
    decode_with,
    encode,
    encode_with,
    registry,
    schema_names,
)
from .meta import MetaError, decode_meta, encode_meta
from .registry import SchemaRegistry, SchemaVersion

__all__ = [
    "DecodeError",
    "EncodeError",
    "MetaError",
    "SchemaRegistry",
    "SchemaVersion",
    "decode",
    "decode_meta",
    "decode_with",
    "encode",
    "encode_meta",
    "encode_with",
    "registry",
    "schema_names",
]
