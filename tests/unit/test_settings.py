"""Settings: file plus environment, environment wins, errors name the key and the reason."""

import ipaddress
from pathlib import Path

import pytest

from relaystream.core.kafka import producer, topics
from relaystream.core.policy import PolicyLimits
from relaystream.core.runtime.settings import (
    KAFKA_COMPRESSION_CODECS,
    HostPort,
    InvalidLineEndings,
    SettingsError,
    known_environment_variables,
    load_settings,
    render_settings_table,
    unknown_environment_variables,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings.runtime.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.runtime.topic_prefix == topics.DEFAULT_PREFIX
    assert settings.runtime.kafka_linger_ms == producer.LINGER_MS
    assert settings.runtime.kafka_compression == "none"
    assert settings.routing.policy_deadline_seconds == PolicyLimits().deadline_seconds
    assert settings.ingest.smtp_port == 2525
    assert settings.delivery.allow_loopback is False
    assert settings.delivery.nameservers == ()


def test_yaml_file_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "relaystream.yaml",
        "kafka_bootstrap: kafka-0:9092\n"
        "topic_prefix: staging.\n"
        "ingest:\n  smtp_port: 25\n  max_recipients: 10\n"
        "delivery:\n  nameservers: ['127.0.0.1:5353']\n  allow_loopback: true\n",
    )
    settings = load_settings(
        path,
        environ={"RELAYSTREAM_INGEST_SMTP_PORT": "2526", "RELAYSTREAM_TOPIC_PREFIX": "prod."},
    )
    assert settings.runtime.kafka_bootstrap == "kafka-0:9092"
    assert settings.runtime.topic_prefix == "prod."
    assert settings.ingest.smtp_port == 2526
    assert settings.ingest.max_recipients == 10
    assert settings.delivery.nameservers == (HostPort("127.0.0.1", 5353),)
    assert settings.delivery.allow_loopback is True


def test_toml_file_named_by_relaystream_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "relaystream.toml",
        'log_level = "debug"\nhttp_bind = "0.0.0.0:8080"\n\n'
        '[ingest]\nrelay_networks = ["10.0.0.0/8"]\n',
    )
    settings = load_settings(environ={"RELAYSTREAM_CONFIG": str(path)})
    assert settings.runtime.log_level == "DEBUG"
    assert settings.runtime.http_bind == HostPort("0.0.0.0", 8080)
    assert settings.ingest.relay_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_environment_lists_are_comma_separated() -> None:
    settings = load_settings(
        environ={
            "RELAYSTREAM_INGEST_RELAY_NETWORKS": "192.0.2.0/24, 2001:db8::/32",
            "RELAYSTREAM_DELIVERY_NAMESERVERS": "127.0.0.1:5353,[::1]:5353,::1",
            "RELAYSTREAM_INGEST_API_TOKENS": "alpha,beta",
        }
    )
    assert [str(n) for n in settings.ingest.relay_networks] == ["192.0.2.0/24", "2001:db8::/32"]
    assert settings.delivery.nameservers == (
        HostPort("127.0.0.1", 5353),
        HostPort("::1", 5353),
        HostPort("::1", 53),
    )
    assert settings.ingest.api_tokens == ("alpha", "beta")


def test_empty_variable_clears_an_optional_file_value(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "routing:\n  policy_path: /etc/policy.lua\n")
    assert load_settings(path, environ={}).routing.policy_path == Path("/etc/policy.lua")
    cleared = load_settings(path, environ={"RELAYSTREAM_ROUTING_POLICY_PATH": ""})
    assert cleared.routing.policy_path is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "RELAYSTREAM_INGEST_SMTP_PORT",
            "abc",
            "RELAYSTREAM_INGEST_SMTP_PORT: expected an integer 1-65535, got 'abc'",
        ),
        (
            "RELAYSTREAM_INGEST_SMTP_PORT",
            "70000",
            "RELAYSTREAM_INGEST_SMTP_PORT: expected an integer 1-65535, got '70000'",
        ),
        (
            "RELAYSTREAM_DELIVERY_ALLOW_LOOPBACK",
            "maybe",
            "RELAYSTREAM_DELIVERY_ALLOW_LOOPBACK: expected true or false, got 'maybe'",
        ),
        (
            "RELAYSTREAM_LOG_LEVEL",
            "loud",
            "RELAYSTREAM_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "RELAYSTREAM_HTTP_BIND",
            "0.0.0.0",
            "RELAYSTREAM_HTTP_BIND: expected host:port, got '0.0.0.0'",
        ),
        (
            "RELAYSTREAM_INGEST_RELAY_NETWORKS",
            "10.0.0.0/8,nonsense",
            "RELAYSTREAM_INGEST_RELAY_NETWORKS: expected a list of IP networks",
        ),
        (
            "RELAYSTREAM_SHUTDOWN_GRACE_SECONDS",
            "-1",
            "RELAYSTREAM_SHUTDOWN_GRACE_SECONDS: expected a number of seconds >= 0",
        ),
        (
            "RELAYSTREAM_KAFKA_BOOTSTRAP",
            "",
            "RELAYSTREAM_KAFKA_BOOTSTRAP: expected a non-empty string, got ''",
        ),
        (
            "RELAYSTREAM_KAFKA_COMPRESSION",
            "brotli",
            "RELAYSTREAM_KAFKA_COMPRESSION: expected one of none, gzip, snappy, lz4, zstd, "
            "got 'brotli'",
        ),
    ],
)
def test_bad_environment_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value})
    assert str(caught.value).startswith(message)


def test_bad_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "ingest:\n  max_recipients: lots\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == (
        f"{path}: ingest.max_recipients: expected an integer 1-1000000, got 'lots'"
    )


def test_booleans_are_not_integers_in_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "ingest:\n  smtp_port: true\n")
    with pytest.raises(SettingsError, match=r"ingest\.smtp_port: expected an integer"):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "ingest:\n  smtp_prot: 25\n",
            "unknown key 'ingest.smtp_prot' (did you mean 'ingest.smtp_port'?)",
        ),
        ("kafka_bootstrp: x:1\n", "unknown key 'kafka_bootstrp' (did you mean 'kafka_bootstrap'?)"),
        ("mailer:\n  x: 1\n", "unknown key 'mailer'"),
        ("ingest: 5\n", "ingest: expected a mapping of settings"),
        ("- a\n- b\n", "expected a mapping at the top level"),
    ],
)
def test_file_structure_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "c.yaml", text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == f"{path}: {message}"


def test_unreadable_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the settings file"):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(SettingsError, match=r"must end in \.yaml, \.yml or \.toml"):
        load_settings(write(tmp_path, "c.ini", "x=1"), environ={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(write(tmp_path, "c.toml", "x = [1,"), environ={})


def test_tls_certificate_and_key_go_together() -> None:
    with pytest.raises(SettingsError, match="set both or neither"):
        load_settings(environ={"RELAYSTREAM_INGEST_TLS_CERT": "/tls/cert.pem"})
    both = load_settings(
        environ={
            "RELAYSTREAM_INGEST_TLS_CERT": "/tls/cert.pem",
            "RELAYSTREAM_INGEST_TLS_KEY": "/tls/key.pem",
        }
    )
    assert both.ingest.tls_key == Path("/tls/key.pem")


def test_known_environment_variables_cover_the_table() -> None:
    names = known_environment_variables()
    assert {
        "RELAYSTREAM_CONFIG",
        "RELAYSTREAM_KAFKA_BOOTSTRAP",
        "RELAYSTREAM_TOPIC_PREFIX",
        "RELAYSTREAM_HTTP_BIND",
        "RELAYSTREAM_LOG_LEVEL",
        "RELAYSTREAM_INGEST_SMTP_PORT",
        "RELAYSTREAM_DELIVERY_NAMESERVERS",
    } <= names
    table = render_settings_table()
    assert all(f"`{name}`" in table for name in names - {"RELAYSTREAM_CONFIG"})


def test_unknown_relaystream_variables_are_listed_not_fatal() -> None:
    environ = {"RELAYSTREAM_INGEST_PORT": "tcp://10.0.0.1:25", "RELAYSTREAM_LOG_LEVEL": "INFO"}
    assert load_settings(environ=environ).runtime.log_level == "INFO"
    assert unknown_environment_variables(environ) == ["RELAYSTREAM_INGEST_PORT"]


def test_kafka_compression_takes_kafkas_codec_names_in_any_case() -> None:
    for codec in KAFKA_COMPRESSION_CODECS:
        settings = load_settings(environ={"RELAYSTREAM_KAFKA_COMPRESSION": codec.upper()})
        assert settings.runtime.kafka_compression == codec


def test_an_empty_topic_prefix_is_allowed() -> None:
    assert load_settings(environ={"RELAYSTREAM_TOPIC_PREFIX": ""}).runtime.topic_prefix == ""


def test_invalid_line_endings_takes_kumomtas_names_deny_by_default() -> None:
    variable = "RELAYSTREAM_INGEST_SMTP_INVALID_LINE_ENDINGS"
    assert load_settings(environ={}).ingest.smtp_invalid_line_endings is InvalidLineEndings.DENY
    for text, mode in [("Fix", InvalidLineEndings.FIX), ("allow", InvalidLineEndings.ALLOW)]:
        assert load_settings(environ={variable: text}).ingest.smtp_invalid_line_endings is mode
    with pytest.raises(SettingsError, match=f"{variable}: expected one of Deny, Allow, Fix"):
        load_settings(environ={variable: "yes"})
    assert f"| `{variable}` | `ingest.smtp_invalid_line_endings` | `Deny` |" in (
        render_settings_table()
    )
