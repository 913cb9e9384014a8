"""The egress domain model: KumoMTA's egress path config, sources, pools and round-robin."""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.durations import Rate
from relaystream.core.domain.egress import EgressPathConfig, Tls
from relaystream.core.domain.egress_source import (
    UNSPECIFIED_POOL,
    EgressPool,
    EgressPoolEntry,
    EgressSource,
    RoundRobinState,
    next_source,
    source_sequence,
)
from relaystream.core.domain.egress_values import CidrSet, EgressConfigError, LimitSpec


def test_defaults_are_kumomtas() -> None:
    config = EgressPathConfig()
    assert config.connection_limit == LimitSpec(32)
    assert config.enable_tls is Tls.OPPORTUNISTIC
    assert (config.smtp_port, config.max_ready, config.max_deliveries_per_connection) == (
        25,
        1024,
        1024,
    )
    assert config.max_recipients_per_batch == 100
    assert config.enable_pipelining and config.enable_rset and config.enable_mta_sts
    assert not config.enable_dane
    assert config.connect_timeout == timedelta(seconds=60)
    assert config.ehlo_timeout == config.data_dot_timeout == timedelta(seconds=300)
    assert config.idle_timeout == config.rset_timeout == timedelta(seconds=5)
    assert config.max_message_rate is None and config.max_connection_rate is None
    assert config.prohibited_hosts.contains(ipaddress.ip_address("127.0.0.5"))
    assert config.prohibited_hosts.contains(ipaddress.ip_address("::1"))
    assert not config.skip_hosts.networks
    assert EgressPathConfig.from_mapping({}) == config


def test_fields_parse_like_kumomta() -> None:
    config = EgressPathConfig.from_mapping(
        {
            "connection_limit": "local:1_000",
            "max_message_rate": "100/s",
            "max_connection_rate": "10/min",
            "additional_message_rate_throttles": {"provider": "1,000/hr,max_burst=50"},
            "additional_connection_limits": {"shared": 5},
            "enable_tls": "RequiredInsecure",
            "idle_timeout": "1m 30s",
            "connect_timeout": 12.5,
            "smtp_port": 2525,
            "ehlo_domain": "mta.example.com",
            "skip_hosts": ["10.0.0.0/8", "192.0.2.1"],
            "prohibited_hosts": [],
            "reconnect_strategy": "TerminateSession",
            "smtp_auth_plain_password": {"key_data": "secret"},
        }
    )
    assert config.connection_limit == LimitSpec(1000, force_local=True)
    assert config.max_message_rate == Rate(100, 1)
    assert config.max_connection_rate == Rate(10, 60)
    assert config.additional_message_rate_throttles == (("provider", Rate(1000, 3600, 50)),)
    assert config.additional_connection_limits == (("shared", LimitSpec(5)),)
    assert config.enable_tls.allows_insecure and not config.enable_tls.is_opportunistic
    assert config.idle_timeout == timedelta(seconds=90)
    assert config.connect_timeout == timedelta(seconds=12.5)
    assert config.skip_hosts.contains(ipaddress.ip_address("10.1.2.3"))
    assert not config.prohibited_hosts.networks
    mapping = config.to_mapping()
    assert EgressPathConfig.from_mapping(mapping) == config
    assert mapping["max_message_rate"] == "100/s"
    assert mapping["smtp_auth_plain_password"] == {"key_data": "secret"}
    assert config.to_mapping(redact=True)["smtp_auth_plain_password"] == {"key_data": "(redacted)"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"conection_limit": 3},
            "unknown field 'conection_limit' (did you mean 'connection_limit'?)",
        ),
        ({"suspended": True}, "unknown field 'suspended'"),
        ({"connection_limit": 0}, "field 'connection_limit': limit must be 1 or larger"),
        ({"max_message_rate": "100"}, "field 'max_message_rate': invalid rate '100'"),
        ({"max_message_rate": "0/s"}, "limit must be greater than 0"),
        ({"max_message_rate": 100}, "expected a throttle"),
        ({"enable_tls": "yes"}, "expected one of Opportunistic, OpportunisticInsecure, Required"),
        ({"idle_timeout": "600"}, "field 'idle_timeout': invalid duration '600'"),
        ({"smtp_port": 70000}, "field 'smtp_port': expected a whole number from 0 to 65535"),
        ({"enable_pipelining": "yes"}, "expected true or false"),
        ({"skip_hosts": ["10.0.0.1/8"]}, "invalid CIDR block '10.0.0.1/8'"),
        ({"additional_connection_limits": {"a": -1}}, "'a': limit must be 1 or larger"),
    ],
)
def test_bad_fields_are_errors_that_name_them(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EgressConfigError, match="egress path: ") as caught:
        EgressPathConfig.from_mapping(fields)
    assert message in str(caught.value)


rates = st.builds(
    lambda limit, unit, burst: f"{limit}/{unit}" + ("" if burst is None else f",max_burst={burst}"),
    st.integers(1, 10**9),
    st.sampled_from(["s", "sec", "m", "min", "h", "hr", "d", "5m"]),
    st.none() | st.integers(1, 1000),
)


@given(
    rate=rates,
    limit=st.integers(1, 10**6),
    port=st.integers(0, 65535),
    seconds=st.integers(0, 10**6),
)
def test_every_config_round_trips_through_its_mapping(
    rate: str, limit: int, port: int, seconds: int
) -> None:
    config = EgressPathConfig.from_mapping(
        {
            "max_message_rate": rate,
            "connection_limit": limit,
            "smtp_port": port,
            "idle_timeout": seconds,
            "additional_message_rate_throttles": {"x": rate},
        }
    )
    assert EgressPathConfig.from_mapping(config.to_mapping()) == config


def test_sources_accept_what_delivery_does_and_refuse_the_rest_clearly() -> None:
    source = EgressSource.from_mapping(
        {
            "name": "ip-1",
            "source_address": "127.0.0.2",
            "ehlo_domain": "a.example",
            "remote_port": 2525,
        }
    )
    assert source.source_address == ipaddress.ip_address("127.0.0.2")
    assert EgressSource.from_mapping(source.to_mapping()) == source
    with pytest.raises(EgressConfigError, match=r"'socks5_proxy_server' is not supported: .*SOCKS"):
        EgressSource.from_mapping({"name": "s", "socks5_proxy_server": "10.0.0.1:1080"})
    with pytest.raises(EgressConfigError, match="'ha_proxy_server': expected host:port"):
        EgressSource.from_mapping({"name": "s", "ha_proxy_server": "not a host"})
    with pytest.raises(EgressConfigError, match="'source_address': expected an IP address"):
        EgressSource.from_mapping({"name": "s", "source_address": "10.0.0.300"})
    with pytest.raises(EgressConfigError, match="unknown field 'source_adress'"):
        EgressSource.from_mapping({"name": "s", "source_adress": "10.0.0.3"})
    with pytest.raises(EgressConfigError, match=r"'name' .* is required"):
        EgressSource.from_mapping({"source_address": "10.0.0.3"})


def test_pools_take_entries_with_default_weight_one() -> None:
    pool = EgressPool.from_mapping(
        {"name": "p", "entries": [{"name": "a"}, {"name": "b", "weight": 3}]}
    )
    assert pool.entries == (EgressPoolEntry("a", 1), EgressPoolEntry("b", 3))
    assert pool.ttl == timedelta(seconds=60)
    assert EgressPool.from_mapping(pool.to_mapping()) == pool
    assert EgressPool.from_mapping({"name": "empty", "entries": {}}).entries == ()
    with pytest.raises(EgressConfigError, match="entry 1: unknown field 'wieght'"):
        EgressPool.from_mapping({"name": "p", "entries": [{"name": "a", "wieght": 2}]})
    with pytest.raises(EgressConfigError, match="weight: expected a whole number"):
        EgressPool.from_mapping({"name": "p", "entries": [{"name": "a", "weight": -2}]})
    assert UNSPECIFIED_POOL.entries == (EgressPoolEntry("unspecified", 1),)


def test_round_robin_matches_kumomtas_sequence() -> None:
    entries = [EgressPoolEntry("one", 5), EgressPoolEntry("two", 2), EgressPoolEntry("three", 3)]
    assert Counter(source_sequence(entries, 100)) == {"one": 50, "two": 20, "three": 30}
    assert next_source([EgressPoolEntry("a", 0)], RoundRobinState()) is None
    assert (
        source_sequence([EgressPoolEntry("only", 7), EgressPoolEntry("off", 0)], 3) == ["only"] * 3
    )


@given(weights=st.lists(st.integers(0, 12), min_size=1, max_size=6), cycles=st.integers(1, 4))
def test_round_robin_picks_each_source_in_proportion_to_its_weight(
    weights: list[int], cycles: int
) -> None:
    entries = [EgressPoolEntry(f"s{i}", weight) for i, weight in enumerate(weights)]
    usable = [entry for entry in entries if entry.weight]
    if not usable:
        assert source_sequence(entries, 5) == []
        return
    from math import gcd

    step = 0
    for entry in usable:
        step = gcd(step, entry.weight)
    cycle = sum(entry.weight // step for entry in usable)
    # Skip the first cycle (KumoMTA's state starts mid-cycle), then whole cycles are exact.
    picked = source_sequence(entries, cycle * (cycles + 1))[cycle:]
    counts = Counter(picked)
    for entry in entries:
        assert counts[entry.name] == cycles * entry.weight // step


def test_cidr_set_accepts_an_empty_lua_table() -> None:
    assert CidrSet.parse({}) == CidrSet()
