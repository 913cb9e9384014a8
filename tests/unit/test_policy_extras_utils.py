"""policy-extras.policy_utils: the helpers KumoMTA's policies use, the way its docs use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyFailed,
    PolicyMessage,
    PolicyResult,
    policy_from_file,
)

MESSAGE = PolicyMessage("m-1", "alice@example.org", "450-bob@example.com", {})


def run(tmp_path: Path, body: str) -> PolicyResult:
    (tmp_path / "init.lua").write_text(
        "local kumo = require 'kumo'\n"
        "local utils = require 'policy-extras.policy_utils'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy_from_file(tmp_path / "init.lua").on_message_received("ESMTP", MESSAGE)


def meta_of(tmp_path: Path, body: str) -> dict[str, object]:
    result = run(tmp_path, body)
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def test_merging_as_the_queue_management_guide_does(tmp_path: Path) -> None:
    meta = meta_of(
        tmp_path,
        """
  local params = { max_age = '5 minutes', retry_interval = '10 minutes',
                   nested = { a = 1, b = { c = 2 } } }
  utils.merge_into({ max_age = '1 hour' }, params)
  utils.merge_into(nil, params)
  local deep = { nested = { a = 1, b = { c = 2 } } }
  utils.recursive_merge_into({ nested = { b = { d = 3 } }, extra = true }, deep)
  msg:set_meta('params', params)
  msg:set_meta('deep', deep)
""",
    )
    assert meta["params"] == {
        "max_age": "1 hour",
        "retry_interval": "10 minutes",
        "nested": {"a": 1, "b": {"c": 2}},
    }
    assert meta["deep"] == {"nested": {"a": 1, "b": {"c": 2, "d": 3}}, "extra": True}


def test_table_and_string_helpers(tmp_path: Path) -> None:
    meta = meta_of(
        tmp_path,
        """
  local keys = utils.table_keys { x = 1, y = 2 }
  table.sort(keys)
  local ip, port = utils.split_ip_port '[::1]:25'
  local ip4, port4 = utils.split_ip_port '10.0.0.1:2525'
  msg:set_meta('result', {
    contains = utils.table_contains({ 'a', 'b' }, 'b'),
    contains_nil = utils.table_contains({ 'a' }, nil),
    keys = keys,
    empty = utils.table_is_empty {},
    not_empty = utils.table_is_empty { 1 },
    starts = utils.starts_with(msg:recipient().user, '450-'),
    ends = utils.ends_with('mx.example.com', '.example.com'),
    not_ends = utils.ends_with('example.com', '.example.com'),
    split = { ip, port, ip4, port4 },
    equal = utils.equals({ a = { 1, 2 } }, { a = { 1, 2 } }),
    unequal = utils.equals({ a = { 1, 2 } }, { a = { 1 } }),
    dumped = utils.dumps { foo = 'bar', [1] = true },
  })
""",
    )
    assert meta["result"] == {
        "contains": True,
        "contains_nil": False,
        "keys": ["x", "y"],
        "empty": True,
        "not_empty": False,
        "starts": True,
        "ends": True,
        "not_ends": False,
        "split": ["::1", "25", "10.0.0.1", "2525"],
        "equal": True,
        "unequal": False,
        "dumped": '{\n  [1] = true,\n  ["foo"] = "bar"\n}',
    }


def test_load_json_or_toml_file_picks_the_format_by_name(tmp_path: Path) -> None:
    (tmp_path / "data.toml").write_text("[a]\nb = 1\n")
    (tmp_path / "data.json").write_text('{"a": {"b": 2}}')
    meta = meta_of(
        tmp_path,
        """
  msg:set_meta('toml', utils.load_json_or_toml_file('data.toml').a.b)
  msg:set_meta('json', utils.load_json_or_toml_file('data.json').a.b)
  msg:set_meta('inline', utils.load_json_or_toml_file({ a = 3 }).a)
""",
    )
    assert meta == {"toml": 1, "json": 2, "inline": 3}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("utils.assert_eq({ 1 }, { 2 }, 'lists')", "init.lua:4: lists. expected\n[1]\n == \n[2]"),
        ("utils.assert_ne('a', 'a')", 'init.lua:4: expected\n"a"\n != \n"a"'),
        ("utils.assert_matches('abc', '^b')", 'init.lua:4: expected\n "abc"\n to match\n "^b"'),
    ],
)
def test_assertions_fail_at_the_policy_line(tmp_path: Path, body: str, error: str) -> None:
    result = run(tmp_path, body)
    assert isinstance(result, PolicyFailed), result
    assert result.message.startswith(error), result.message
