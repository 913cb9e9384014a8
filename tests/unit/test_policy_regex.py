"""kumo.regex: compile and escape, and the Regex methods, with KumoMTA's documented examples
(named groups as `(?<name>...)`, replacements as `$name`), in linear time."""

from __future__ import annotations

import time

from lua_policy_eval import error_of, meta_of, value_of


def test_kumomtas_documented_examples() -> None:
    meta = meta_of(
        "local re = kumo.regex.compile \"'([^']+)'\\\\s+\\\\((\\\\d{4})\\\\)\"\n"
        "local cap = re:captures \"Not my favorite movie: 'Citizen Kane' (1941).\"\n"
        "msg:set_meta('cap', { cap[0], cap[1], cap[2] })\n"
        "local named = kumo.regex.compile \"'(?<title>[^']+)'\\\\s+\\\\((?<year>\\\\d{4})\\\\)\"\n"
        "local ncap = named:captures \"Not my favorite movie: 'Citizen Kane' (1941).\"\n"
        "msg:set_meta('named', { ncap.title, ncap.year })\n"
        "msg:set_meta('is_match', kumo.regex.compile('oo'):is_match 'foo')\n"
        "msg:set_meta('find', kumo.regex.compile('o+'):find 'fooood')\n"
        "msg:set_meta('find_all', kumo.regex.compile('\\\\b\\\\w{13}\\\\b'):find_all "
        "'Retroactively relinquishing remunerations is reprehensible.')\n"
        "msg:set_meta('replace', kumo.regex.compile('[^01]+'):replace('1078910', ''))\n"
        "msg:set_meta('swap', kumo.regex.compile('(?P<last>[^,\\\\s]+),\\\\s+(?P<first>\\\\S+)')"
        ":replace('Springsteen, Bruce', '$first $last'))\n"
        "msg:set_meta('all', kumo.regex.compile('a'):replace_all('banana', '${0}$$'))\n"
        "msg:set_meta('n', kumo.regex.compile('a'):replacen('banana', 2, 'o'))\n"
        "msg:set_meta('split', kumo.regex.compile('[ \\\\t]+'):split 'a b \\t  c\\td    e')\n"
        "msg:set_meta('none', kumo.regex.compile('z'):captures 'abc' == nil)"
    )
    assert meta == {
        "cap": ["'Citizen Kane' (1941)", "Citizen Kane", "1941"],
        "named": ["Citizen Kane", "1941"],
        "is_match": True,
        "find": "oooo",
        "find_all": ["Retroactively", "relinquishing", "remunerations", "reprehensible"],
        "replace": "1010",
        "swap": "Bruce Springsteen",
        "all": "ba$na$na$",
        "n": "bonona",
        "split": ["a", "b", "c", "d", "e"],
        "none": True,
    }


def test_escape_makes_a_literal() -> None:
    assert value_of("kumo.regex.compile(kumo.regex.escape 'a.b*c'):is_match 'a.b*c'") is True
    assert value_of("kumo.regex.compile(kumo.regex.escape 'a.b*c'):is_match 'axbbc'") is False


def test_an_invalid_pattern_is_a_policy_error_at_the_line() -> None:
    assert error_of("kumo.regex.compile '(unclosed'").startswith(
        "policy.lua:3: invalid regular expression '(unclosed'"
    )


def test_a_pattern_that_backtracks_exponentially_elsewhere_matches_at_once() -> None:
    # RE2 is linear: a policy's pattern cannot hold the service past the call's deadline.
    started = time.monotonic()
    assert (
        value_of(
            "kumo.regex.compile('(a|aa|aaa|aaaa)*(b|c)$'):is_match(string.rep('a', 20000) .. 'x')"
        )
        is False
    )
    assert time.monotonic() - started < 5
