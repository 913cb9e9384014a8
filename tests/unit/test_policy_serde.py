"""kumo.serde and its older top-level names: data files and text in JSON, TOML and YAML, as
KumoMTA policies read their shaping, queue and source tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyLoadError,
    PolicyMessage,
    policy_from_file,
    policy_from_source,
)
from relaystream.core.policy.host import MAX_DATA_FILE_BYTES
from relaystream.core.policy.namespaces.serde import strip_json_comments

MESSAGE = PolicyMessage("msg-1", "alice@example.org", "bob@example.com", {})


def meta_of(body: str, base_dir: Path | None = None) -> dict[str, object]:
    source = (
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    result = policy_from_source(source, "policy.lua", base_dir=base_dir).on_message_received(
        "ESMTP", MESSAGE
    )
    assert isinstance(result, PolicyAccepted), result
    return dict(result.meta)


def test_a_toml_file_beside_the_policy_loads_by_its_relative_name(tmp_path: Path) -> None:
    (tmp_path / "shaping.toml").write_text(
        '["gmail.com"]\nmax_connection_rate = "100/min"\nconnection_limit = 5\n'
        "[default]\nstarted = 1979-05-27T07:32:00Z\n"
    )
    policy = tmp_path / "init.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "local shaping = kumo.toml_load('shaping.toml')\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('limit', shaping['gmail.com'].connection_limit)\n"
        "  msg:set_meta('rate', shaping['gmail.com'].max_connection_rate)\n"
        "  msg:set_meta('started', shaping.default.started)\n"
        "end)\n"
    )
    result = policy_from_file(policy).on_message_received("ESMTP", MESSAGE)
    assert isinstance(result, PolicyAccepted)
    assert result.meta["limit"] == 5
    assert result.meta["rate"] == "100/min"
    # TOML dates reach Lua as text: Lua has no date type.
    assert result.meta["started"] == "1979-05-27T07:32:00+00:00"


def test_json_files_may_carry_comments_as_in_kumomta(tmp_path: Path) -> None:
    (tmp_path / "queues.json").write_text(
        '{\n  /* tenants */ "tenant": "acme", // the default\n'
        '  # shell style too\n  "url": "http://x/#not-a-comment"\n}\n'
    )
    meta = meta_of(
        "local q = kumo.serde.json_load('queues.json')\n"
        "msg:set_meta('tenant', q.tenant); msg:set_meta('url', q.url)",
        tmp_path,
    )
    assert meta["tenant"] == "acme"
    assert meta["url"] == "http://x/#not-a-comment"


def test_yaml_parses_and_encodes() -> None:
    meta = meta_of(
        "local v = kumo.serde.yaml_parse('a: [1, 2]\\nb: {c: d}\\n')\n"
        "msg:set_meta('b', v.b.c); msg:set_meta('n', #v.a)\n"
        "msg:set_meta('y', kumo.serde.yaml_encode({x = 1}))"
    )
    assert meta["b"] == "d"
    assert meta["n"] == 2
    assert meta["y"] == "x: 1\n"


def test_toml_encode_writes_tables_and_refuses_a_bare_list() -> None:
    meta = meta_of(
        "msg:set_meta('t', kumo.toml_encode({name = 'a', sub = {port = 25}}))\n"
        "local ok, err = pcall(kumo.serde.toml_encode, {1, 2})\n"
        "msg:set_meta('err', err)"
    )
    assert meta["t"] == 'name = "a"\n\n[sub]\nport = 25\n'
    assert "policy.lua:4: " in str(meta["err"])
    assert "top level" in str(meta["err"])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("kumo.toml_load('missing.toml')", "cannot read"),
        ("kumo.toml_parse('a = ')", "invalid TOML"),
        ("kumo.json_parse('{')", "invalid JSON"),
        ("kumo.serde.json_load(42)", "expected a file name"),
        ("kumo.serde.json_encode({f = print})", "json_encode: a function cannot be represented"),
    ],
)
def test_a_bad_file_or_text_fails_at_the_policy_line(tmp_path: Path, call: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as raised:
        policy_from_source(f"local kumo = require 'kumo'\n{call}\n", "init.lua", base_dir=tmp_path)
    assert str(raised.value).startswith("init.lua:2: ")
    assert error in str(raised.value)


def test_a_data_file_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text(" " * (MAX_DATA_FILE_BYTES + 1))
    with pytest.raises(PolicyLoadError, match="larger than"):
        policy_from_source("require('kumo').json_load('big.json')", "init.lua", base_dir=tmp_path)


JSON_VALUES = st.recursive(
    st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES)
def test_json_text_survives_parse_and_encode(value: object) -> None:
    text = json.dumps({"v": value})
    meta = meta_of(
        f"msg:set_meta('out', kumo.serde.json_encode(kumo.serde.json_parse({json.dumps(text)})))"
    )
    assert json.loads(str(meta["out"])) == {"v": value}


def test_json_null_is_nil_in_lua() -> None:
    meta = meta_of(
        "local v = kumo.json_parse('{\"a\": null, \"b\": 1}')\nmsg:set_meta('a_is_nil', v.a == nil)"
    )
    assert meta["a_is_nil"] is True


@given(st.text(alphabet='{}[]"\\/*#\n ab:,', max_size=40))
def test_stripping_comments_keeps_strings_and_length(text: str) -> None:
    stripped = strip_json_comments(text)
    assert len(stripped) == len(text)
    # Whatever JSON parses without comments parses the same after stripping.
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return
    if "/" not in text and "#" not in text:
        assert json.loads(stripped) == parsed


def load_error(call: str, base_dir: Path) -> str:
    with pytest.raises(PolicyLoadError) as raised:
        policy_from_source(f"local kumo = require 'kumo'\n{call}\n", "init.lua", base_dir=base_dir)
    return str(raised.value)


def test_yaml_aliases_are_refused_so_a_small_file_cannot_expand_to_millions(
    tmp_path: Path,
) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(7)
    )
    (tmp_path / "bomb.yaml").write_text(bomb)
    assert "aliases (*name) are not supported" in load_error(
        "kumo.serde.yaml_load('bomb.yaml')", tmp_path
    )


def test_a_yaml_set_reaches_lua_as_a_list_not_a_python_object() -> None:
    meta = meta_of(
        "local v = kumo.serde.yaml_parse('!!set {a: null}')\n"
        "msg:set_meta('t', type(v)); msg:set_meta('first', v[1])"
    )
    assert meta == {"t": "table", "first": "a"}


def test_a_result_larger_than_the_lua_state_can_take_is_an_error_not_a_crash(
    tmp_path: Path,
) -> None:
    (tmp_path / "big.json").write_text("[" + ",".join(["0"] * 300_000) + "]")
    assert "result too large for the policy" in load_error(
        "kumo.serde.json_load('big.json')", tmp_path
    )


@pytest.mark.parametrize("path", ["/proc/self/status", "/dev/null", "/sys/kernel/hostname"])
def test_the_process_own_files_are_not_policy_data(tmp_path: Path, path: str) -> None:
    assert "not policy data" in load_error(f"kumo.serde.json_load('{path}')", tmp_path)


def test_the_settings_file_is_not_readable_from_a_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "relaystream.yaml"
    settings.write_text("admin_api_tokens: [s3cr3t]\n")
    monkeypatch.setenv("RELAYSTREAM_CONFIG", str(settings))
    error = load_error("kumo.serde.yaml_load('relaystream.yaml')", tmp_path)
    assert "settings file is not readable" in error
    assert "s3cr3t" not in error


def test_a_fifo_is_refused_instead_of_blocking_the_policy(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    assert "not a regular file" in load_error("kumo.serde.json_load('pipe.json')", tmp_path)
