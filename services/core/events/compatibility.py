"""Which evolution promise each event makes, checked by tests/unit/test_schema_evolution.py.

BACKWARD: the current schema reads every released version (new reader, old writer); all our
services upgrade their readers before any writer ships. FULL adds FORWARD: every released
version reads the current schema (old reader, new writer), for events that parties we do not
deploy read or write: `MessageSubmitted` (upstream applications publish it with their own
copy of the schema) and `LogRecord` (downstream log consumers read it).
"""

from __future__ import annotations

from enum import Enum


class Compatibility(Enum):
    BACKWARD = "BACKWARD"
    FULL = "FULL"


FULL_EVENTS = frozenset({"MessageSubmitted", "LogRecord"})


def compatibility_of(event_name: str) -> Compatibility:
    return Compatibility.FULL if event_name in FULL_EVENTS else Compatibility.BACKWARD
