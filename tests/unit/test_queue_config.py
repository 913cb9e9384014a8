"""Queue config: KumoMTA defaults, strict fields, mx_list entries, JSON, overrides."""

import ipaddress
import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.durations import Rate
from relaystream.core.domain.queue_config import (
    MxListName,
    MxListResolved,
    QueueConfig,
    QueueConfigError,
    merge_overrides,
    parse_mx_list_entry,
)


def test_defaults_are_kumomta_defaults() -> None:
    config = QueueConfig.from_mapping({})
    assert config == QueueConfig()
    assert config.retry_interval == timedelta(minutes=20)
    assert config.max_retry_interval is None
    assert config.max_age == timedelta(days=7)
    assert config.egress_pool is None
    assert config.max_message_rate is None
    assert config.mx_list is None
    assert config.reap_interval == timedelta(minutes=10)
    assert config.refresh_interval == timedelta(minutes=1)
    assert config.provider_name is None


def test_fields_are_parsed() -> None:
    config = QueueConfig.from_mapping(
        {
            "retry_interval": "10m",
            "max_retry_interval": 3600,
            "max_age": "2 days",
            "egress_pool": "pool-a",
            "max_message_rate": "100/s",
            "provider_name": "yahoo",
        }
    )
    assert config.retry_interval == timedelta(minutes=10)
    assert config.max_retry_interval == timedelta(hours=1)
    assert config.max_age == timedelta(days=2)
    assert config.egress_pool == "pool-a"
    assert config.max_message_rate == Rate(100, 1)
    assert config.provider_name == "yahoo"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"retry_intervl": "10m"}, "unknown field 'retry_intervl'"),
        ({"strategy": "SingletonTimerWheel"}, "unsupported field 'strategy'"),
        ({"retry_interval": "soon"}, "bad value for field 'retry_interval'"),
        ({"max_age": "600"}, "bad value for field 'max_age'"),
        ({"max_message_rate": 100}, "bad value for field 'max_message_rate'"),
        ({"max_message_rate": "100/fortnight"}, "bad value for field 'max_message_rate'"),
        ({"egress_pool": 3}, "bad value for field 'egress_pool'"),
        ({"protocol": {"maildir_path": "/tmp"}}, "protocol.maildir_path: not available"),
        ({"protocol": {"lmtp": {}}}, "unknown field 'protocol.lmtp'"),
        ({"protocol": {"smtp": {"mx_lst": []}}}, "unknown field 'protocol.smtp.mx_lst'"),
        ({"protocol": {"smtp": {"mx_list": "a.example"}}}, "expected a list"),
        ({"protocol": "smtp"}, "expected a table"),
        ({"protocol": {"smtp": {"mx_list": [42]}}}, "bad mx_list entry"),
        ({"protocol": {"smtp": {"mx_list": [{"name": "x"}]}}}, "needs string 'name' and 'addr'"),
        ({"protocol": {"smtp": {"mx_list": [{"name": "x", "addr": "a", "p": 1}]}}}, "unknown"),
        ({"protocol": {"smtp": {"mx_list": [{"name": "x", "addr": "mx.example"}]}}}, "not an IP"),
        ({"protocol": {"smtp": {"mx_list": [{"name": "x", "addr": "::1:25:"}]}}}, "not an IP"),
        ({"protocol": {"smtp": {"mx_list": ["[10.0.0.1"]}}}, "malformed literal"),
        ({"protocol": {"smtp": {"mx_list": ["[::1]:100"]}}}, "malformed literal"),
    ],
)
def test_errors_name_the_field(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(QueueConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        QueueConfig.from_mapping(mapping)


V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("value", "entry", "label"),
    [
        (
            "smart.host.local",
            MxListName("smart.host.local", "smart.host.local"),
            "smart.host.local",
        ),
        ("Smart.Host:2525", MxListName("Smart.Host:2525", "smart.host", 2525), "Smart.Host:2525"),
        ("[10.0.0.1]", MxListName("[10.0.0.1]", "10.0.0.1", None, V4("10.0.0.1")), "[10.0.0.1]"),
        ("[IPv6:::1]", MxListName("[IPv6:::1]", "::1", None, V6("::1")), "[IPv6:::1]"),
        ("[::1]", MxListName("[::1]", "::1", None, V6("::1")), "[::1]"),
        ("10.0.0.2", MxListName("10.0.0.2", "10.0.0.2", None, V4("10.0.0.2")), "10.0.0.2"),
        ("10.0.0.2:26", MxListName("10.0.0.2:26", "10.0.0.2", 26, V4("10.0.0.2")), "10.0.0.2:26"),
        ("::1", MxListName("::1", "::1", None, V6("::1")), "::1"),
        (
            {"name": "mx.example.com", "addr": "10.0.0.1"},
            MxListResolved("mx.example.com", V4("10.0.0.1")),
            "10.0.0.1",
        ),
        (
            {"name": "mx.example.com", "addr": "10.0.0.1:25"},
            MxListResolved("mx.example.com", V4("10.0.0.1"), 25),
            "10.0.0.1:25",
        ),
        ({"name": "l", "addr": "[::1]:100"}, MxListResolved("l", V6("::1"), 100), "[::1]:100"),
        ({"name": "l", "addr": "[::1]"}, MxListResolved("l", V6("::1")), "::1"),
        ({"name": "l", "addr": "::1"}, MxListResolved("l", V6("::1")), "::1"),
        (
            {"name": "l", "addr": "[10.0.0.1]:25"},
            MxListResolved("l", V4("10.0.0.1"), 25),
            "10.0.0.1:25",
        ),
    ],
)
def test_mx_list_entries(value: object, entry: object, label: str) -> None:
    parsed = parse_mx_list_entry(value)
    assert parsed == entry
    assert parsed.label == label


def test_mx_list_site_name_joins_labels() -> None:
    config = QueueConfig.from_mapping(
        {
            "protocol": {
                "smtp": {
                    "mx_list": [
                        "smart.host.local",
                        {"name": "mx.example.com", "addr": "10.0.0.1"},
                    ]
                }
            }
        }
    )
    assert config.mx_list_site_name == "mx_list:smart.host.local,10.0.0.1"
    assert QueueConfig().mx_list_site_name is None


def test_empty_mx_list_means_mx_resolution() -> None:
    assert QueueConfig.from_mapping({"protocol": {"smtp": {"mx_list": []}}}).mx_list is None
    assert QueueConfig.from_mapping({"protocol": {"smtp": {"mx_list": {}}}}).mx_list is None
    assert QueueConfig.from_mapping({"protocol": {"smtp": {}}}).mx_list is None


def test_json_round_trip_of_a_full_config() -> None:
    config = QueueConfig.from_mapping(
        {
            "retry_interval": "90s",
            "max_retry_interval": "1.5h",
            "max_age": 1.25,
            "egress_pool": "p",
            "max_message_rate": "local:10/5m,max_burst=3",
            "protocol": {"smtp": {"mx_list": ["a.example:25", {"name": "n", "addr": "[::1]:100"}]}},
            "provider_name": "prov",
        }
    )
    text = config.to_json()
    assert json.loads(text)["retry_interval"] == 90
    assert QueueConfig.from_json(text) == config


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_from_json_errors(text: str) -> None:
    with pytest.raises(QueueConfigError):
        QueueConfig.from_json(text)


_durations = st.integers(min_value=0, max_value=10**9).map(lambda s: timedelta(seconds=s))


@given(
    retry_interval=_durations,
    max_retry_interval=st.none() | _durations,
    max_age=_durations,
    egress_pool=st.none() | st.text(max_size=8),
    rate=st.none()
    | st.builds(Rate, st.integers(1, 10**6), st.sampled_from([1, 60, 3600, 86400, 7])),
)
def test_json_round_trip_property(
    retry_interval: timedelta,
    max_retry_interval: timedelta | None,
    max_age: timedelta,
    egress_pool: str | None,
    rate: Rate | None,
) -> None:
    config = QueueConfig(
        retry_interval=retry_interval,
        max_retry_interval=max_retry_interval,
        max_age=max_age,
        egress_pool=egress_pool,
        max_message_rate=rate,
    )
    assert QueueConfig.from_json(config.to_json()) == config


def test_merge_overrides_field_by_field() -> None:
    base = QueueConfig.from_mapping(
        {
            "retry_interval": "5m",
            "egress_pool": "a",
            "protocol": {"smtp": {"mx_list": ["x.example"]}},
        }
    )
    merged = merge_overrides(base, {"egress_pool": "b", "max_age": "1h"})
    assert merged.retry_interval == timedelta(minutes=5)
    assert merged.egress_pool == "b"
    assert merged.max_age == timedelta(hours=1)
    assert merged.mx_list == base.mx_list


def test_merge_overrides_null_resets_to_default() -> None:
    base = QueueConfig.from_mapping({"retry_interval": "5m", "egress_pool": "a"})
    merged = merge_overrides(base, {"retry_interval": None, "egress_pool": None, "protocol": None})
    assert merged == QueueConfig()


def test_merge_overrides_rejects_unknown_fields() -> None:
    with pytest.raises(QueueConfigError, match="unknown field 'max_ag'"):
        merge_overrides(QueueConfig(), {"max_ag": "1h"})
