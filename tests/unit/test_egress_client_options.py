"""The egress path's client options (issue 19): tls_certificate / tls_private_key, AUTH PLAIN
(smtp_auth_plain_*), use_lmtp and ip_lookup_strategy, as kumo.make_egress_path checks them
and as delivery turns them into session options (delivery/egress.py)."""

from __future__ import annotations

import base64
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from relaystream.core.domain.egress import EgressPathConfig, IpLookupStrategy
from relaystream.core.domain.egress_source import UNSPECIFIED
from relaystream.core.domain.egress_values import EgressConfigError
from relaystream.core.policy import Policy, PolicyRuntimeError, policy_from_source
from relaystream.core.runtime.settings import DeliverySettings
from relaystream.delivery.egress import (
    EgressDefaults,
    EgressPath,
    EgressPathUnusable,
    EgressResolver,
    EgressUnavailable,
)
from relaystream.delivery.smtp_session import PlainAuth

DEFAULTS = EgressDefaults.from_settings(DeliverySettings(ehlo_name="relay.example"))


def egress_policy(body: str, base_dir: Path | None = None) -> Policy:
    """A policy whose get_egress_path_config answers `kumo.make_egress_path { body }`."""
    return policy_from_source(
        "local kumo = require 'kumo'\n"
        "kumo.on('get_egress_path_config', function(domain, source, site)\n"
        f"  return kumo.make_egress_path {{ {body} }}\n"
        "end)\n",
        "policy.lua",
        base_dir=base_dir,
    )


def path_config(body: str, base_dir: Path | None = None) -> EgressPathConfig:
    return egress_policy(body, base_dir).get_egress_path_config(
        "example.com", UNSPECIFIED, "mx.example.com"
    )


def derive(config: EgressPathConfig) -> EgressPath:
    return EgressPath.derive(DEFAULTS.source, config, DEFAULTS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "tls_certificate = { vault_mount = 'secret', vault_path = 'tls/cert' },"
            " tls_private_key = '/k.pem'",
            "policy.lua:2: in the get_egress_path_config handler: kumo.make_egress_path: "
            "egress path: bad value for field 'tls_certificate': keys from HashiCorp Vault are "
            "not available in relaystream",
        ),
        (
            "smtp_auth_plain_username = 'u',"
            " smtp_auth_plain_password = { event_name = 'get_pw', event_args = {} }",
            "field 'smtp_auth_plain_password': keys from an event (event_name) are not available",
        ),
        (
            "tls_certificate = '/etc/cert.pem'",
            "tls_certificate and tls_private_key go together",
        ),
        (
            "tls_private_key = { key_data = 'k' }",
            "tls_certificate and tls_private_key go together",
        ),
        ("ip_lookup_strategy = 'Ipv4thenIpv6'", "field 'ip_lookup_strategy'"),
    ],
)
def test_what_delivery_cannot_use_is_an_error_at_the_call(body: str, message: str) -> None:
    with pytest.raises(PolicyRuntimeError) as caught:
        path_config(body)
    assert message in str(caught.value)


def test_ip_lookup_strategy_names_and_default_are_kumomtas() -> None:
    assert EgressPathConfig().ip_lookup_strategy is IpLookupStrategy.IPV4_AND_IPV6
    names = {"Ipv4Only", "Ipv6Only", "Ipv4AndIpv6", "Ipv6ThenIpv4", "Ipv4ThenIpv6"}
    for name in names:
        config = EgressPathConfig.from_mapping({"ip_lookup_strategy": name})
        assert config.ip_lookup_strategy.value == name
    with pytest.raises(EgressConfigError):
        EgressPathConfig.from_mapping({"ip_lookup_strategy": "Ipv4"})


def test_relative_files_are_the_policys_and_inline_keys_stay(tmp_path: Path) -> None:
    config = path_config(
        "tls_certificate = 'tls/cert.pem', tls_private_key = { key_data = 'KEY' },"
        " smtp_auth_plain_username = 'u', smtp_auth_plain_password = '/run/secrets/pw'",
        base_dir=tmp_path,
    )
    assert config.tls_certificate == str(tmp_path / "tls" / "cert.pem")
    assert config.tls_private_key == {"key_data": "KEY"}
    assert config.smtp_auth_plain_password == "/run/secrets/pw"


def test_auth_lmtp_and_timeout_become_session_options(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_bytes(b"from a file\n")
    inline = derive(
        path_config(
            "smtp_auth_plain_username = 'daniel',"
            " smtp_auth_plain_password = { key_data = 'tiger' },"
            " allow_smtp_auth_plain_without_tls = true, use_lmtp = true, auth_timeout = '7s'"
        )
    )
    assert inline.options.auth == PlainAuth("daniel", "tiger", allow_without_tls=True)
    assert inline.options.lmtp and inline.options.greeting == b"LHLO"
    assert inline.options.timeouts.of("auth") == 7.0
    from_file = derive(
        path_config(
            "smtp_auth_plain_username = 'daniel', smtp_auth_plain_password = 'pw',"
            " allow_smtp_auth_plain_without_valid_certificate = true",
            base_dir=tmp_path,
        )
    )
    # As KumoMTA: the file's bytes as they are.
    assert from_file.options.auth == PlainAuth(
        "daniel", "from a file\n", allow_without_valid_certificate=True
    )
    no_password = derive(path_config("smtp_auth_plain_username = 'daniel'"))
    assert no_password.options.auth == PlainAuth("daniel", "")


def test_unset_options_add_nothing_to_a_session() -> None:
    options = derive(EgressPathConfig()).options
    assert (options.auth, options.tls_context, options.lmtp) == (None, None, False)
    assert options.greeting == b"EHLO"


def test_plain_auth_initial_response_is_rfc_4616() -> None:
    response = PlainAuth("tim", "tanstaaftanstaaf").initial_response()
    assert base64.b64decode(response) == b"\0tim\0tanstaaftanstaaf"
    assert "tanstaaf" not in repr(PlainAuth("tim", "tanstaaftanstaaf"))


def _self_signed(directory: Path) -> tuple[bytes, bytes]:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=client.test",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (directory / "cert.pem").read_bytes(), (directory / "key.pem").read_bytes()


def test_a_client_certificate_gives_the_path_its_own_tls_context(tmp_path: Path) -> None:
    _, key = _self_signed(tmp_path)
    path = derive(
        path_config(
            f"tls_certificate = 'cert.pem', tls_private_key = {{ key_data = [[{key.decode()}]] }}",
            base_dir=tmp_path,
        )
    )
    assert path.options.tls_context is not None
    assert path.options.tls_context.verify_mode == ssl.CERT_REQUIRED


def test_an_encrypted_key_is_refused_not_prompted_for(tmp_path: Path) -> None:
    _, key = _self_signed(tmp_path)
    loaded = serialization.load_pem_private_key(key, password=None)
    encrypted = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "encrypted.pem").write_bytes(encrypted)
    config = path_config(
        "tls_certificate = 'cert.pem', tls_private_key = 'encrypted.pem'", base_dir=tmp_path
    )
    with pytest.raises(EgressPathUnusable, match="tls_private_key is encrypted"):
        derive(config)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "tls_certificate = 'missing.pem', tls_private_key = 'missing.key'",
            "tls_certificate: cannot read",
        ),
        (
            "tls_certificate = { key_data = 'not pem' }, tls_private_key = { key_data = 'x' }",
            "are not a PEM certificate and its private key",
        ),
        ("smtp_auth_plain_username = 'u', smtp_auth_plain_password = 'gone'", "cannot read"),
    ],
)
def test_an_unusable_secret_holds_the_message_and_is_logged(
    tmp_path: Path, body: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    egress = EgressResolver(egress_policy(body, tmp_path), DEFAULTS)
    with (
        caplog.at_level(logging.WARNING, logger="relaystream.delivery.egress"),
        pytest.raises(EgressUnavailable) as caught,
    ):
        egress.path("example.com", DEFAULTS.source, "mx.example.com")
    assert reason in str(caught.value)
    assert (caught.value.response.code, str(caught.value.response.enhanced_code)) == (451, "4.3.0")
    assert any(reason in str(getattr(r, "error", "")) for r in caplog.records)


def test_the_client_options_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    policy = policy_from_source(
        "local kumo = require 'kumo'\n"
        "kumo.on('get_egress_path_config', function(domain, source, site)\n"
        "  return kumo.make_egress_path { use_lmtp = true, ip_lookup_strategy = 'Ipv4Only',\n"
        "    smtp_auth_plain_username = 'u', smtp_auth_plain_password = { key_data = 'p' },\n"
        "    allow_smtp_auth_plain_without_tls = true, auth_timeout = '9s' }\n"
        "end)\n",
        "policy.lua",
    )
    with caplog.at_level(logging.WARNING, logger="relaystream.delivery.egress"):
        path = EgressResolver(policy, DEFAULTS).path("example.com", DEFAULTS.source, "mx.example")
    assert path.config.ip_lookup_strategy is IpLookupStrategy.IPV4_ONLY
    assert [r.getMessage() for r in caplog.records] == []
