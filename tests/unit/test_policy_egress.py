"""KumoMTA's egress surface in a policy: kumo.make_egress_path/source/pool, the events
get_egress_path_config, get_egress_source and get_egress_pool, and the policy-extras modules
shaping and sources with their TOML files, used the way KumoMTA's docs and examples do."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from relaystream.core.domain.durations import Rate
from relaystream.core.domain.egress import EgressPathConfig, Tls
from relaystream.core.domain.egress_source import (
    UNSPECIFIED_POOL,
    UNSPECIFIED_SOURCE,
    EgressPoolEntry,
)
from relaystream.core.domain.egress_values import LimitSpec
from relaystream.core.policy import (
    Policy,
    PolicyLoadError,
    PolicyRuntimeError,
    policy_from_file,
    policy_from_source,
)

HEADER = "local kumo = require 'kumo'\n"


def lua(body: str, base_dir: Path | None = None) -> Policy:
    return policy_from_source(HEADER + body, "policy.lua", base_dir=base_dir)


def load_error(body: str, base_dir: Path | None = None) -> str:
    with pytest.raises(PolicyLoadError) as caught:
        lua(body, base_dir)
    return str(caught.value)


# --- the constructors ------------------------------------------------------------------


def test_constructors_check_their_table_at_the_policy_line() -> None:
    assert "policy.lua:2: kumo.make_egress_path: egress path: unknown field 'conection_limit' " in (
        load_error("local p = kumo.make_egress_path { conection_limit = 3 }")
    )
    assert "policy.lua:3: kumo.make_egress_path: egress path: bad value for field 'enable_tls'" in (
        load_error("\nkumo.make_egress_path { enable_tls = 'Sometimes' }")
    )
    assert "policy.lua:2: kumo.make_egress_source: egress source 'ip-1': bad value for field " in (
        load_error("kumo.make_egress_source { name = 'ip-1', source_address = 'nowhere' }")
    )
    assert "'socks5_proxy_server' is not supported" in load_error(
        "kumo.make_egress_source { name = 's', socks5_proxy_server = '10.0.0.1:1080' }"
    )
    assert (
        "policy.lua:2: kumo.make_egress_pool: egress pool 'p': bad value for field 'entries'"
        in (load_error("kumo.make_egress_pool { name = 'p', entries = { { weight = 1 } } }"))
    )
    assert "policy.lua:2: kumo.make_egress_path: expected a table, got a string" in load_error(
        "kumo.make_egress_path 'fast'"
    )


def test_a_constructed_path_reads_like_kumomtas_object_and_cannot_be_changed() -> None:
    policy = lua(
        "local p = kumo.make_egress_path { connection_limit = 3, max_message_rate = '20/s' }\n"
        "assert(p.connection_limit == 3 and p.max_message_rate == '20/s')\n"
        "assert(p.enable_tls == 'Opportunistic' and p.smtp_port == 25 and p.idle_timeout == 5)\n"
        "local count = 0\n"
        "for key, value in pairs(p) do count = count + 1 end\n"
        "assert(count > 40, count)\n"
        "assert(not pcall(function() p.connection_limit = 99 end))\n"
        "assert(tostring(p) == 'EgressPathConfig')\n"
    )
    assert policy.get_egress_path_config("d.example", "unspecified", "mx.d.example") == (
        EgressPathConfig()
    )


# --- the events ----------------------------------------------------------------------


def test_get_egress_path_config_gets_kumomtas_arguments_and_its_result_is_the_config() -> None:
    policy = lua(
        "kumo.on('get_egress_path_config', function(domain, egress_source, site_name)\n"
        "  if site_name == 'mx.slow.example' and egress_source == 'ip-1' then\n"
        "    return kumo.make_egress_path {\n"
        "      connection_limit = 2, max_message_rate = '20/s', enable_tls = 'Required',\n"
        "      smtp_port = 2525, ehlo_domain = domain, idle_timeout = '1 minute',\n"
        "      additional_connection_limits = { ['shared-limit'] = 10 },\n"
        "    }\n"
        "  end\n"
        "  return kumo.make_egress_path {}\n"
        "end)\n"
    )
    config = policy.get_egress_path_config("slow.example", "ip-1", "mx.slow.example")
    assert config.connection_limit == LimitSpec(2)
    assert config.max_message_rate == Rate(20, 1)
    assert config.enable_tls is Tls.REQUIRED
    assert (config.smtp_port, config.ehlo_domain) == (2525, "slow.example")
    assert config.idle_timeout == timedelta(minutes=1)
    assert config.additional_connection_limits == (("shared-limit", LimitSpec(10)),)
    assert policy.get_egress_path_config("slow.example", "ip-2", "x") == EgressPathConfig()


@pytest.mark.parametrize(
    ("handler_body", "message"),
    [
        ("error('no shaping for ' .. domain)", "policy.lua:3: no shaping for smarthosted.example"),
        ("kumo.reject(421, 'not now')", "kumo.reject(421, 'not now')"),
        (
            "return { connection_limit = 3 }",
            "returned a table; expected kumo.make_egress_path{...}",
        ),
        ("return nil", "returned nothing (nil); expected kumo.make_egress_path{...}"),
        (
            "return kumo.make_egress_source { name = 'x' }",
            "returned a EgressSource; expected kumo.make_egress_path{...}",
        ),
        (
            "return kumo.make_egress_path { connection_limit = 'lots' }",
            "policy.lua:2: in the get_egress_path_config handler: kumo.make_egress_path: "
            "egress path: bad value for field 'connection_limit'",
        ),
    ],
)
def test_a_failing_get_egress_path_config_raises_and_never_gives_defaults(
    handler_body: str, message: str
) -> None:
    policy = lua(
        "kumo.on('get_egress_path_config', function(domain, egress_source, site_name)\n"
        f"  {handler_body}\n"
        "end)\n"
    )
    with pytest.raises(PolicyRuntimeError) as caught:
        policy.get_egress_path_config("smarthosted.example", "unspecified", "mx.example")
    assert message in str(caught.value)


def test_each_egress_event_takes_one_handler_as_in_kumomta() -> None:
    text = load_error(
        "kumo.on('get_egress_source', function(name) end)\n"
        "kumo.on('get_egress_source', function(name) end)\n"
    )
    assert "get_egress_source event already has a handler defined at policy.lua:2" in text


def test_sources_and_pools_come_from_their_handlers() -> None:
    policy = lua(
        "kumo.on('get_egress_source', function(source_name)\n"
        "  return kumo.make_egress_source {\n"
        "    name = source_name, source_address = '127.0.0.2', ehlo_domain = 'mta.example',\n"
        "  }\n"
        "end)\n"
        "kumo.on('get_egress_pool', function(pool_name)\n"
        "  return kumo.make_egress_pool {\n"
        "    name = pool_name, entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' } },\n"
        "  }\n"
        "end)\n"
    )
    source = policy.get_egress_source("ip-1")
    assert (source.name, source.ehlo_domain) == ("ip-1", "mta.example")
    assert source.source_address == ipaddress.ip_address("127.0.0.2")
    pool = policy.get_egress_pool("tenant-pool")
    assert pool.entries == (EgressPoolEntry("ip-1", 3), EgressPoolEntry("ip-2", 1))
    # KumoMTA's built-ins do not ask the handlers.
    assert policy.get_egress_source("unspecified") == UNSPECIFIED_SOURCE
    assert policy.get_egress_pool(None) == UNSPECIFIED_POOL


@pytest.mark.parametrize("kind", ["lua", "yaml"])
def test_without_handlers_only_kumomtas_builtins_exist(kind: str) -> None:
    policy = lua("") if kind == "lua" else policy_from_source("domains: []\n", "policy.yaml")
    assert policy.get_egress_path_config("d.example", "unspecified", "d.example") == (
        EgressPathConfig()
    )
    assert policy.get_egress_source("unspecified") == UNSPECIFIED_SOURCE
    assert policy.get_egress_pool("unspecified") == UNSPECIFIED_POOL
    with pytest.raises(PolicyRuntimeError, match="no get_egress_source handler"):
        policy.get_egress_source("ip-1")
    with pytest.raises(PolicyRuntimeError, match=r"egress pool 'warm': .* no get_egress_pool"):
        policy.get_egress_pool("warm")


# --- policy-extras.shaping -------------------------------------------------------------

SHAPING_TOML = """
[default]
connection_limit = 7
additional_message_rate_throttles = { everyone = "1000/h" }

["example.com"]
mx_rollup = false
max_message_rate = "100/s"
additional_message_rate_throttles = { mine = "10/s" }

["example.com".sources."ip-1"]
connection_limit = 2

# A literal destination rolls up to its address as site name (no DNS needed).
["[192.0.2.1]"]
enable_tls = "Required"
max_deliveries_per_connection = 5

["[192.0.2.1]".sources."ip-2"]
smtp_port = 2525
"""


def shaping_policy(tmp_path: Path, setup: str, *files: tuple[str, str]) -> Policy:
    for name, text in files:
        (tmp_path / name).write_text(text)
    (tmp_path / "init.lua").write_text(
        HEADER + "local shaping = require 'policy-extras.shaping'\n" + setup
    )
    return policy_from_file(tmp_path / "init.lua")


def test_shaping_merges_default_site_domain_and_source_entries(tmp_path: Path) -> None:
    policy = shaping_policy(
        tmp_path,
        "kumo.on('get_egress_path_config', shaping:setup { 'shaping.toml' })\n",
        ("shaping.toml", SHAPING_TOML),
    )
    domain = policy.get_egress_path_config("example.com", "ip-1", "mx.example.com")
    assert domain.connection_limit == LimitSpec(2)  # the domain's source entry wins
    assert domain.max_message_rate == Rate(100, 1)
    assert dict(domain.additional_message_rate_throttles) == {
        "everyone": Rate(1000, 3600),
        "mine": Rate(10, 1),
    }
    other_source = policy.get_egress_path_config("example.com", "ip-2", "mx.example.com")
    assert other_source.connection_limit == LimitSpec(7)
    # Any domain whose site is 192.0.2.1 gets the rolled-up entry.
    site = policy.get_egress_path_config("hosted.example", "ip-2", "192.0.2.1")
    assert site.enable_tls is Tls.REQUIRED
    assert (site.max_deliveries_per_connection, site.smtp_port) == (5, 2525)
    # shaping.lua asks for config refreshes by epoch, as KumoMTA's does.
    assert site.to_mapping()["refresh_strategy"] == "Epoch"


def test_the_kumomta_default_file_is_relaystreams_own(tmp_path: Path) -> None:
    with_default = shaping_policy(
        tmp_path, "kumo.on('get_egress_path_config', shaping:setup())\n"
    ).get_egress_path_config("nowhere.example", "unspecified", "mx.nowhere.example")
    assert with_default.connection_limit == LimitSpec(10)  # extras/shaping.toml [default]
    shaper_setup = (
        "local shaper = shaping:setup_with_automation {\n"
        "  no_default_files = true, extra_files = { 'shaping.json' },\n"
        "}\n"
        "kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n"
    )
    json_file = '{\n  // comments are allowed\n  "default": { "connection_limit": 3 }\n}\n'
    (tmp_path / "shaping.json").write_text(json_file)
    (tmp_path / "init.lua").write_text(
        HEADER + "local shaping = require 'policy-extras.shaping'\n" + shaper_setup
    )
    config = policy_from_file(tmp_path / "init.lua").get_egress_path_config(
        "nowhere.example", "unspecified", "mx.nowhere.example"
    )
    assert config.connection_limit == LimitSpec(3)


def test_replace_base_replaces_the_earlier_entry(tmp_path: Path) -> None:
    later = '["example.com"]\nmx_rollup = false\nreplace_base = true\nsmtp_port = 587\n'
    policy = shaping_policy(
        tmp_path,
        "local shaper = shaping:setup_with_automation {\n"
        "  no_default_files = true, extra_files = { 'shaping.toml', 'later.toml' } }\n"
        "kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n",
        ("shaping.toml", SHAPING_TOML),
        ("later.toml", later),
    )
    config = policy.get_egress_path_config("example.com", "ip-1", "mx.example.com")
    assert config.smtp_port == 587
    assert config.max_message_rate is None  # the first file's example.com fields are gone
    assert config.connection_limit == LimitSpec(7)  # [default] still applies


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '["example.com"]\nmx_rollup = false\nconection_limit = 3\n',
            "domain example.com: egress path: unknown field 'conection_limit'",
        ),
        (
            '["example.com"]\nmx_rollup = false\n["example.com".sources."ip-1"]\n'
            'enable_tls = "Always"\n',
            "domain example.com: source ip-1: egress path: bad value for field 'enable_tls'",
        ),
        ("[provider.google]\nmatch = []\n", "[provider] entries are not supported"),
        ('["example.com"]\nmx_rollup = "yes"\n', "mx_rollup must be true or false"),
    ],
)
def test_bad_shaping_data_is_an_error_at_setup(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        shaping_policy(
            tmp_path,
            "kumo.on('get_egress_path_config', shaping:setup { 'shaping.toml' })\n",
            ("shaping.toml", text),
        )
    assert message in str(caught.value)


def test_a_missing_shaping_file_is_an_error_at_setup(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"kumo.shaping.load: .*missing.toml: cannot read"):
        shaping_policy(
            tmp_path, "kumo.on('get_egress_path_config', shaping:setup { 'missing.toml' })\n"
        )


def test_tsa_automation_is_accepted_with_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = (
        '["example.com"]\nmx_rollup = false\n'
        '[["example.com".automation]]\nregex = "421 .*"\naction = "Suspend"\nduration = "1h"\n'
    )
    with caplog.at_level(logging.WARNING, logger="relaystream.policy"):
        shaping_policy(
            tmp_path,
            "local shaper = shaping:setup_with_automation {\n"
            "  no_default_files = true, extra_files = { 'shaping.toml' },\n"
            "  publish = { 'http://127.0.0.1:8008' }, subscribe = { 'http://127.0.0.1:8008' },\n"
            "}\n"
            "kumo.on('init', function() shaper.setup_publish() end)\n"
            "kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n",
            ("shaping.toml", rules),
        )
    warnings = [record.getMessage() for record in caplog.records]
    assert any("'example.com' has 1 automation rule(s)" in text for text in warnings), warnings
    assert any(
        "does not run TSA" in text and "publish http://127.0.0.1:8008" in text for text in warnings
    ), warnings


def test_shaping_is_set_up_once_and_skip_make_gives_the_fields(tmp_path: Path) -> None:
    assert "shaping module has already been configured" in load_error(
        "local shaping = require 'policy-extras.shaping'\n"
        "shaping:setup_with_automation { no_default_files = true }\n"
        "shaping:setup_with_automation { no_default_files = true }\n"
    )
    policy = shaping_policy(
        tmp_path,
        "local shaper = shaping:setup_with_automation {\n"
        "  no_default_files = true, extra_files = { 'shaping.toml' } }\n"
        "kumo.on('get_egress_path_config', function(domain, source, site)\n"
        "  local params = shaper.get_egress_path_config(domain, source, site, true)\n"
        "  params.connection_limit = params.connection_limit + 1\n"
        "  return kumo.make_egress_path(params)\n"
        "end)\n",
        ("shaping.toml", SHAPING_TOML),
    )
    config = policy.get_egress_path_config("example.com", "ip-9", "mx.example.com")
    assert config.connection_limit == LimitSpec(8)


# --- policy-extras.sources -------------------------------------------------------------

SOURCES_TOML = """
[source."ip-1"]
source_address = "127.0.0.2"
ehlo_domain = "one.example"

[source."ip-2"]
source_address = "127.0.0.3"

[pool."BestReputation"."ip-1"]

[pool."MediumReputation"."ip-1"]
weight = 2

[pool."MediumReputation"."ip-2"]
weight = 1

[pool."AlwaysSuspended"]
"""


def sources_policy(tmp_path: Path, text: str, more: str = "") -> Policy:
    (tmp_path / "sources.toml").write_text(text)
    (tmp_path / "init.lua").write_text(
        HEADER + "local sources = require 'policy-extras.sources'\n"
        "sources:setup { 'sources.toml'" + more + " }\n"
    )
    return policy_from_file(tmp_path / "init.lua")


def test_sources_toml_gives_the_sources_and_pools(tmp_path: Path) -> None:
    policy = sources_policy(
        tmp_path, SOURCES_TOML, ", { source = { ['ip-2'] = { ehlo_domain = 'two.example' } } }"
    )
    one = policy.get_egress_source("ip-1")
    assert (one.source_address, one.ehlo_domain) == (
        ipaddress.ip_address("127.0.0.2"),
        "one.example",
    )
    # A later file (here an inline table) merges over the source's fields.
    two = policy.get_egress_source("ip-2")
    assert (two.source_address, two.ehlo_domain) == (
        ipaddress.ip_address("127.0.0.3"),
        "two.example",
    )
    assert policy.get_egress_pool("MediumReputation").entries == (
        EgressPoolEntry("ip-1", 2),
        EgressPoolEntry("ip-2", 1),
    )
    assert policy.get_egress_pool("BestReputation").entries == (EgressPoolEntry("ip-1", 1),)
    assert policy.get_egress_pool("AlwaysSuspended").entries == ()
    with pytest.raises(PolicyRuntimeError, match="no pool named 'Unknown'"):
        policy.get_egress_pool("Unknown")
    with pytest.raises(PolicyRuntimeError, match="no source named 'ip-9'"):
        policy.get_egress_source("ip-9")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[pool."p"."ip-7"]\n', "pool 'p' names the source 'ip-7', which no sources file defines"),
        ('[source."s"]\nsource_adress = "10.0.0.1"\n', "unknown field 'source_adress'"),
        ('[source."s"]\nha_proxy_server = "10.0.0.9:5000"\n', "'ha_proxy_server' is not supported"),
        ('[source."s"]\n[pool."p"."s"]\nwieght = 2\n', "entry 's': unknown key 'wieght'"),
        ('[sources."s"]\n', "unknown key 'sources'"),
    ],
)
def test_bad_sources_data_is_an_error_at_setup(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        sources_policy(tmp_path, text)
    assert message in str(caught.value)
