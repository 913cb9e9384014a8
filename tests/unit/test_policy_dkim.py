"""kumo.dkim signers, msg:dkim_sign and policy-extras.dkim_sign: parameters checked where the
policy makes the signer, keys read once per ttl, and the extras module's data file checked at
setup. (That the signatures verify is tests/integration/test_dkim_verified.py, with OpenDKIM.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relaystream.core.policy import (
    PolicyAccepted,
    PolicyFailed,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    PolicyResult,
    policy_from_file,
)
from relaystream.core.policy.namespaces import dkim

DATA = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: s\r\n\r\nbody\r\n"
MESSAGE = PolicyMessage("m", "a@example.org", "b@example.com", {}, data=DATA)
NO_ENCRYPTION = serialization.NoEncryption()


@pytest.fixture(scope="module")
def key_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (folder / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NO_ENCRYPTION
        )
    )
    (folder / "ed.pem").write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NO_ENCRYPTION
        )
    )
    return folder


def run(folder: Path, top: str, body: str, message: PolicyMessage = MESSAGE) -> PolicyResult:
    policy = folder / "policy.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n" + top + "\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy_from_file(policy).on_message_received("ESMTP", message)


def failure(folder: Path, body: str, message: PolicyMessage = MESSAGE) -> str:
    result = run(folder, "", body, message)
    assert isinstance(result, PolicyFailed), result
    return result.message


SIGNER = "kumo.dkim.rsa_sha256_signer { domain = 'example.org', selector = 's', %s }"


def test_a_signer_per_message_reads_its_key_once_per_ttl(key_folder: Path) -> None:
    body = "msg:dkim_sign(" + SIGNER % "headers = { 'From' }, key = 'rsa.pem', ttl = 123" + ")"
    policy = key_folder / "per-message.lua"
    policy.write_text("kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n")
    loaded = policy_from_file(policy)
    before = dkim.KEY_CACHE.loads
    for _ in range(3):
        result = loaded.on_message_received("ESMTP", MESSAGE)
        assert isinstance(result, PolicyAccepted) and result.data is not None
        assert result.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert dkim.KEY_CACHE.loads == before + 1
    # Another ttl is another cache entry (KumoMTA keys its cache by source and ttl).
    other = body.replace("ttl = 123", "ttl = '2 mins'")
    assert isinstance(run(key_folder, "", other), PolicyAccepted)
    assert dkim.KEY_CACHE.loads == before + 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("headers = { 'From' }", "key is required"),
        ("key = 'rsa.pem', headers = { 'To' }", "headers must include From"),
        ("key = 'rsa.pem', headers = { 'From' }, colour = 1", "unknown parameter(s) colour"),
        ("key = 'missing.pem', headers = { 'From' }", "cannot read DKIM key"),
        ("key = 'ed.pem', headers = { 'From' }", "rsa_sha256_signer needs an RSA private key"),
        ("key = { vault_mount = 'secret', vault_path = 'dkim' }, headers = { 'From' }", "Vault"),
        (
            "key = 'rsa.pem', headers = { 'From' }, body_canonicalization = 'Loose'",
            "'Relaxed' or 'Simple'",
        ),
        ("key = 'rsa.pem', headers = { 'From' }, ttl = 'soon'", "ttl:"),
    ],
)
def test_bad_signer_parameters_fail_where_the_signer_is_made(
    key_folder: Path, params: str, expected: str
) -> None:
    text = failure(key_folder, "local signer = " + SIGNER % params)
    assert "policy.lua:4:" in text and "kumo.dkim.rsa_sha256_signer" in text
    assert expected in text, text


def test_dkim_sign_wants_a_signer_and_the_whole_message(key_folder: Path) -> None:
    assert "expected a signer" in failure(key_folder, "msg:dkim_sign({})")
    headers_only = PolicyMessage("m", "a@example.org", "b@example.com", {}, headers="From: a@b\r\n")
    signer = SIGNER % "key = 'rsa.pem', headers = { 'From' }"
    text = failure(key_folder, f"msg:dkim_sign({signer})", headers_only)
    assert "msg:dkim_sign: only the message's headers are available here" in text


def test_over_signing_lists_each_header_once_more_than_the_message_has_it() -> None:
    spec = dkim.SignerSpec(
        dkim.RSA_SHA256,
        "d",
        "s",
        ("From", "To", "Subject", "from"),
        dkim.KeySource(None, b""),
        300.0,
        over_sign=True,
    )
    assert dkim.effective_headers(spec, ["Received", "From", "To", "to"]) == [
        "From",
        "From",
        "To",
        "To",
        "To",
        "Subject",
    ]


EXTRAS = (
    "local dkim_sign = require 'policy-extras.dkim_sign'\n"
    "local dkim_signer = dkim_sign:setup { %s }\n"
)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[base]\nselector = 1\n", "[base]: selector must be a string"),
        ('[domain."x.org"]\nfilename = "k"\n', "no selector, and no default selector"),
        ('[base]\nselector = "s"\nadditional_signatures = ["ESP"]\n', "no [signature] block"),
        ('[base]\nvault_mount = "secret"\n', "keys from HashiCorp Vault are not"),
        ('[domain."x.org"]\nselector = "s"\nalgo = "rsa"\n', "algo must be 'sha256' or"),
        ('[domain."x.org"]\nselector = "s"\npolicy = "SignOnlyIfInDNS"\n', "policy must be"),
        ('[signatures."x"]\n', "unknown section signatures"),
    ],
)
def test_dkim_sign_data_files_are_checked_at_setup(
    key_folder: Path, toml: str, expected: str
) -> None:
    (key_folder / "dkim_data.toml").write_text(toml)
    with pytest.raises(PolicyLoadError, match=r"policy-extras\.dkim_sign") as caught:
        run(key_folder, EXTRAS % "'dkim_data.toml'", "")
    assert expected in str(caught.value)


def test_dkim_sign_setup_runs_once_and_rejects_mail_without_from(key_folder: Path) -> None:
    inline = "{ base = { selector = 's', headers = { 'From' } } }"
    with pytest.raises(PolicyLoadError, match="setup has already been called"):
        run(key_folder, EXTRAS % inline + "dkim_sign:setup { }\n", "")
    no_from = PolicyMessage("m", "a@example.org", "b@example.com", {}, data=b"Subject: s\r\n\r\nx")
    result = run(key_folder, EXTRAS % inline, "dkim_signer(msg)", no_from)
    assert isinstance(result, PolicyRejected)
    assert result.response.startswith("552 5.6.0 DKIM signing requires a From header")
    # A From domain with no [domain] block and no additional signature: left unsigned.
    unsigned = run(key_folder, EXTRAS % inline, "dkim_signer(msg)")
    assert isinstance(unsigned, PolicyAccepted) and unsigned.data is None
