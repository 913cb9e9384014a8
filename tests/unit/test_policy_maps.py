"""kumo.cidr.make_map, kumo.domain_map.new and kumo.regex_set_map.new, with KumoMTA's
documented examples."""

from __future__ import annotations

import pytest
from lua_policy_eval import error_of, meta_of


def test_a_cidr_map_matches_addresses_in_its_blocks_longest_first() -> None:
    meta = meta_of(
        "local cmap = kumo.cidr.make_map {\n"
        "  ['127.0.0.0/24'] = 'loopback', ['10.0.0.0/24'] = 'lan' }\n"
        "cmap['10.0.0.42'] = 'one host'\n"
        "cmap['::1'] = 'v6'\n"
        "msg:set_meta('r', { cmap['127.0.0.1:25'], cmap['10.0.0.1'], cmap['10.0.0.42'],"
        " cmap['[::1]:25'], cmap['[127.0.0.9]'], cmap['100.0.0.100'] == nil,"
        " cmap['not.set'] == nil })"
    )
    assert meta["r"] == ["loopback", "lan", "one host", "v6", "loopback", True, True]


def test_a_cidr_map_refuses_a_key_that_is_not_a_block() -> None:
    assert error_of("kumo.cidr.make_map()['nope'] = 1") == (
        "policy.lua:3: not an IP address or CIDR block: 'nope'"
    )


def test_kumomtas_domain_map_example() -> None:
    meta = meta_of(
        "local dmap = kumo.domain_map.new { ['*.woot.com'] = 123, ['example.com'] = 24 }\n"
        "dmap['*.example.com'] = 42\n"
        "dmap['explicit.example.com'] = 'explicit'\n"
        "msg:set_meta('r', { dmap['lemon.example.com'], dmap['example.com'],"
        " dmap['woot.com'] == nil, dmap['aa.woot.com'], dmap['a.b.woot.com'],"
        " dmap['Explicit.Example.com'] })"
    )
    assert meta["r"] == [42, 24, True, 123, 123, "explicit"]


def test_kumomtas_regex_set_map_example() -> None:
    meta = meta_of(
        "local map = kumo.regex_set_map.new { hello = 'hello', bye = 'bye', later = 'bye',"
        " ['Good day'] = 'hello' }\n"
        "msg:set_meta('r', { map['hello there'], map['goodbye'], map['see you later'],"
        " map['not.set'] == nil })"
    )
    assert meta["r"] == ["hello", "bye", "bye", True]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("kumo.regex_set_map.new { ['('] = 1 }", "policy.lua:3: invalid regular expression '('"),
        (
            "kumo.regex_set_map.new { a = 1 }['b'] = 2",
            "policy.lua:3: kumo.regex_set_map: the map cannot change once made",
        ),
    ],
)
def test_a_regex_set_map_checks_its_patterns_and_cannot_change(body: str, error: str) -> None:
    assert error_of(body).startswith(error)
