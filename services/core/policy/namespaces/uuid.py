"""kumo.uuid: new_v1, new_v4, new_v6, new_v7 and parse, each answered as a Uuid's fields
(uuid.lua): bytes, hyphenated, simple, braced, urn."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..host import HostCallback, HostContext, HostError

# 100 ns intervals between the Gregorian epoch (1582-10-15) and the Unix epoch.
_GREGORIAN_OFFSET = 0x01B21DD213814000


def fields(value: uuid.UUID) -> dict[str, Any]:
    return {
        "bytes": value.bytes,
        "hyphenated": str(value),
        "simple": value.hex,
        "braced": "{" + str(value) + "}",
        "urn": value.urn,
    }


def new_v6() -> uuid.UUID:
    """RFC 9562 version 6: v1's timestamp, most significant bits first, random node."""
    timestamp = time.time_ns() // 100 + _GREGORIAN_OFFSET
    time_high_mid = (timestamp >> 12) & 0xFFFF_FFFF_FFFF
    time_low = timestamp & 0x0FFF
    value = (time_high_mid << 80) | (0x6 << 76) | (time_low << 64)
    value |= (0b10 << 62) | secrets.randbits(62)
    return uuid.UUID(int=value)


def new_v7() -> uuid.UUID:
    """RFC 9562 version 7: Unix milliseconds, then random bits."""
    value = ((time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF) << 80
    value |= (0x7 << 76) | (secrets.randbits(12) << 64)
    value |= (0b10 << 62) | secrets.randbits(62)
    return uuid.UUID(int=value)


def parse(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        raise HostError(f"expected a string, got {type(text).__name__}")
    try:
        return fields(uuid.UUID(text.strip()))
    except ValueError as err:
        raise HostError(f"not a UUID: {text!r}") from err


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "uuid_new_v1": lambda: fields(uuid.uuid1(node=secrets.randbits(48) | (1 << 40))),
        "uuid_new_v4": lambda: fields(uuid.uuid4()),
        "uuid_new_v6": lambda: fields(new_v6()),
        "uuid_new_v7": lambda: fields(new_v7()),
        "uuid_parse": parse,
    }
