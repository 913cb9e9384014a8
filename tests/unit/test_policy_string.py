"""kumo.string: KumoMTA's string functions, with its documented examples and arguments."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lua_policy_eval import error_of, meta_of, value_of


def lua_string(text: str) -> str:
    """A Lua string literal for `text` (JSON's escapes are Lua's for these characters)."""
    return json.dumps(text, ensure_ascii=False)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "kumo.string.split('Mary had a little lamb', ' ')",
            ["Mary", "had", "a", "little", "lamb"],
        ),
        ("kumo.string.splitn('Mary had a little lamb', 3, ' ')", ["Mary", "had", "a little lamb"]),
        (
            "kumo.string.rsplit('Mary had a little lamb', ' ')",
            ["lamb", "little", "a", "had", "Mary"],
        ),
        ("kumo.string.rsplitn('Mary had a little lamb', 3, ' ')", ["lamb", "little", "Mary had a"]),
        ("kumo.string.split_whitespace(' Mary  had\\ta\\n')", ["Mary", "had", "a"]),
        ("kumo.string.split_ascii_whitespace('a  b\\tc')", ["a", "b", "c"]),
        ("kumo.string.trim '\\n Hello\\tworld\\t\\n'", "Hello\tworld"),
        ("kumo.string.trim_start '  x  '", "x  "),
        ("kumo.string.trim_end '  x  '", "  x"),
        ("kumo.string.replace('this is old', 'old', 'new')", "this is new"),
        ("kumo.string.replacen('foo foo 123 foo', 'foo', 'new', 2)", "new new 123 foo"),
        ("kumo.string.starts_with('hello world', 'hello')", True),
        ("kumo.string.ends_with('hello world', 'hello')", False),
        ("kumo.string.psl_domain 'www.example.com'", "example.com"),
        ("kumo.string.psl_domain 'a.b.example.co.uk'", "example.co.uk"),
        ("kumo.string.psl_suffix 'www.example.com'", "com"),
        ("kumo.string.wrap 'hello'", "hello"),
        (
            "kumo.string.wrap(string.rep('A', 200), 75, 100)",
            "A" * 100 + "\r\n\t" + "A" * 100,
        ),
        (
            "kumo.string.wrap(string.rep('hello there ', 10), 75, 100)",
            "hello there hello there hello there hello there hello there hello there\r\n"
            "\thello there hello there hello there hello there",
        ),
    ],
)
def test_kumomtas_documented_examples(expression: str, expected: object) -> None:
    assert value_of(expression) == expected


@settings(max_examples=30, deadline=None)
@given(
    text=st.text(alphabet="ab,; ", max_size=20),
    separator=st.sampled_from([",", ";", "ab", " "]),
)
def test_split_and_rsplit_give_every_piece_between_separators(text: str, separator: str) -> None:
    meta = meta_of(
        f"msg:set_meta('split', kumo.string.split({lua_string(text)}, {lua_string(separator)}))\n"
        f"msg:set_meta('rsplit', kumo.string.rsplit({lua_string(text)}, {lua_string(separator)}))"
    )
    assert meta["split"] == text.split(separator)
    assert meta["rsplit"] == list(reversed(text.split(separator)))


def test_require_kumo_string_is_the_namespace() -> None:
    assert value_of("require('kumo.string') == kumo.string") is True


def test_eval_template_escapes_by_the_template_name_as_kumomta_does() -> None:
    meta = meta_of(
        "local eval = kumo.string.eval_template\n"
        "msg:set_meta('json', eval('x.json', '{{ name }}', { name = 'John' }))\n"
        "msg:set_meta('html', kumo.string.eval_template('x.html', '{{ v }}', { v = '<b>' }))\n"
        "msg:set_meta('text', kumo.string.eval_template('x.txt', "
        "'{% for d in domains %}{{ d }} {% endfor %}', { domains = { 'a', 'b' } }))"
    )
    assert meta == {"json": '"John"', "html": "&lt;b&gt;", "text": "a b "}


def test_a_template_error_and_an_endless_template_are_policy_errors_at_the_line() -> None:
    assert error_of("kumo.string.eval_template('x.txt', '{{ oops(', {})").startswith(
        "policy.lua:3: template x.txt: "
    )
    endless = error_of(
        "kumo.string.eval_template('x.txt', "
        "'{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}', {})"
    )
    assert "out of fuel" in endless


def test_a_template_output_over_16_mib_is_a_policy_error_and_stops_the_render() -> None:
    # 2,000 writes of 10 KB: 20 MB within the fuel. The render stops at the limit: the
    # unknown function after the loop is never reached.
    error = error_of(
        "kumo.string.eval_template('x.txt', "
        "'{% for i in range(2000) %}{{ big }}{% endfor %}{{ nosuch() }}', "
        "{ big = string.rep('z', 10000) })"
    )
    assert error == "policy.lua:3: template x.txt: its output exceeds 16777216 characters"
    # The template's own text repeated by a loop is not an expression: checked at the end.
    raw = error_of(
        "kumo.string.eval_template('x.txt', "
        "'{% for i in range(20000) %}' .. string.rep('y', 1000) .. '{% endfor %}', {})"
    )
    assert raw == "policy.lua:3: template x.txt: its output exceeds 16777216 characters"


def test_normalize_smtp_response_is_refused_with_its_reason() -> None:
    assert error_of("kumo.string.normalize_smtp_response('550 no')") == (
        "policy.lua:3: kumo.string.normalize_smtp_response: not available in relaystream: its "
        "tokenizer (dictionary words, hashes, ...) is KumoMTA's own; relaystream does not "
        "imitate it"
    )


def test_a_wrong_argument_is_a_policy_error_at_its_line() -> None:
    assert error_of("kumo.string.split({}, ',')").startswith(
        "policy.lua:3: expected a string, got "
    )
    assert error_of("kumo.string.splitn('a', -1, ',')") == (
        "policy.lua:3: expected a count (a whole number, 0 or more), got -1"
    )
    assert error_of("kumo.string.trim('\\xff')") == "policy.lua:3: argument 1 is not UTF-8 text"


def test_a_replace_too_large_to_hold_is_refused_before_it_is_built() -> None:
    # An empty pattern matches between every character: 4 KB by 5 KB would be 20 MB.
    error = error_of("kumo.string.replace(string.rep('a', 4000), '', string.rep('b', 5000))")
    assert error.startswith("policy.lua:3: the result would be 20009000 characters, more than")
    assert value_of("kumo.string.replace('a.b.c', '.', '-')") == "a-b-c"
    assert value_of("kumo.string.replacen('a.b.c', '.', '-', 1)") == "a-b.c"
    assert value_of("kumo.string.replace('ab', '', '-')") == "-a-b-"
