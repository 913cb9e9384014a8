"""kumo.cidr.make_map and kumo.regex_set_map.new: the matching behind maps.lua's tables (IP
addresses against CIDR blocks, text against a set of RE2 patterns). The Lua side passes the
map's keys as JSON text; what is parsed from it is cached by that text."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from functools import lru_cache

from ..host import HostCallback, HostContext, HostError
from .regex import compiled

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PARSED_CACHE_SIZE = 64


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from '10.0.0.1', '10.0.0.1:25', '[10.0.0.1]', '[IPv6:::1]', '[::1]:25'."""
    if text.startswith("["):
        text = text[1:].partition("]")[0].removeprefix("IPv6:")
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def network_of(key: object) -> Network:
    if not isinstance(key, str):
        raise HostError(f"a CIDR map key must be an address or a CIDR block, got {key!r}")
    address = ip_of(key)
    try:
        return ipaddress.ip_network(key if address is None else address, strict=False)
    except ValueError as err:
        raise HostError(f"not an IP address or CIDR block: {key!r}") from err


@lru_cache(maxsize=_PARSED_CACHE_SIZE)
def networks(keys_json: str) -> tuple[tuple[Network, str], ...]:
    """The map's blocks, most specific first (a lookup takes the longest prefix)."""
    parsed = [(network_of(key), key) for key in json.loads(keys_json)]
    return tuple(sorted(parsed, key=lambda entry: -entry[0].prefixlen))


def cidr_match(keys_json: object, address_text: object) -> str | None:
    """The key whose block holds the address, or None."""
    if not isinstance(address_text, str):
        return None
    address = ip_of(address_text)
    if address is None:
        return None
    for network, key in networks(str(keys_json)):
        if address.version == network.version and address in network:
            return key
    return None


def regex_set_match(patterns_json: object, text: object) -> int | None:
    """The 1-based index of the first pattern that matches `text`, or None."""
    if not isinstance(text, str):
        return None
    for index, pattern in enumerate(json.loads(str(patterns_json)), start=1):
        if compiled(pattern).search(text) is not None:
            return index
    return None


def check_patterns(patterns_json: object) -> None:
    for pattern in json.loads(str(patterns_json)):
        compiled(pattern)


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    return {
        "maps_cidr_check": lambda key: str(network_of(key)),
        "maps_cidr_match": cidr_match,
        "maps_regex_set_check": check_patterns,
        "maps_regex_set_match": regex_set_match,
    }
