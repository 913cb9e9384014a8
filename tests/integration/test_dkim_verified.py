"""DKIM signing by policy (kumo.dkim signers, msg:dkim_sign, policy-extras.dkim_sign), checked
by an independent verifier: OpenDKIM's test mode (`opendkim -t`, Debian's opendkim; libopendkim
on OpenSSL), given the public keys as its TestPublicKeys file: the records a domain would
publish in DNS. Debian 12's Mail::DKIM has no Ed25519, so it cannot check both algorithms.
The keys are generated here; nothing in the verification path is relaystream's or dkimpy's."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relaystream.core.policy import PolicyAccepted, PolicyMessage, policy_from_file

# One verdict in OpenDKIM's Authentication-Results: "dkim=pass header.d=... header.a=...".
AUTH_RESULT = re.compile(r"dkim=(\w+)[^;]*?header\.d=(\S+)[^;]*?header\.a=(\S+)")
MESSAGE_DATA = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: quarterly report\r\n"
    b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <r1@example.test>\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
    b"Regards,   Alice\r\n"
)


@dataclass(frozen=True)
class Keys:
    folder: Path
    rsa_pem: bytes  # PKCS#1 ("RSA PRIVATE KEY"), as openssl genrsa writes it
    ed25519_pem: bytes  # PKCS#8 PEM
    ed25519_der: bytes  # PKCS#8 DER


def rsa_record(key: rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def ed25519_record(key: ed25519.Ed25519PrivateKey) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(public).decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("dkim")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    made = Keys(
        folder,
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, none
        ),
        ed_key.private_bytes(serialization.Encoding.PEM, pkcs8, none),
        ed_key.private_bytes(serialization.Encoding.DER, pkcs8, none),
    )
    (folder / "rsa.pem").write_bytes(made.rsa_pem)
    (folder / "ed.der").write_bytes(made.ed25519_der)
    # The TXT records each domain publishes, as OpenDKIM reads them in test mode.
    published = {
        "rsa1._domainkey.example.test": rsa_record(rsa_key),
        "rsa1._domainkey.mail.example.test": rsa_record(rsa_key),
        "ed1._domainkey.example.test": ed25519_record(ed_key),
        "esp._domainkey.esp.test": ed25519_record(ed_key),
    }
    (folder / "public-keys").write_text(
        "".join(f"{name} {record}\n" for name, record in published.items())
    )
    (folder / "opendkim.conf").write_text(
        f"Mode v\nSyslog no\nTestPublicKeys {folder / 'public-keys'}\n"
    )
    return made


def verify(keys: Keys, message: bytes) -> list[str]:
    """OpenDKIM's verdict on each signature, sorted: "DOMAIN ALGORITHM RESULT"."""
    opendkim = shutil.which("opendkim") or "/usr/sbin/opendkim"
    message_file = keys.folder / "message.eml"
    message_file.write_bytes(message)
    done = subprocess.run(
        [opendkim, "-x", str(keys.folder / "opendkim.conf"), "-t", str(message_file), "-vv"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    verdicts = [f"{d} {a} {result}" for result, d, a in AUTH_RESULT.findall(done.stdout)]
    assert verdicts, done.stdout + done.stderr
    return sorted(verdicts)


def signed(policy_file: Path, data: bytes = MESSAGE_DATA) -> bytes:
    message = PolicyMessage("m1", "alice@example.test", "bob@example.com", {}, data=data)
    result = policy_from_file(policy_file).on_message_received("ESMTP", message)
    assert isinstance(result, PolicyAccepted), result
    assert result.data is not None
    return result.data


def write_policy(keys: Keys, body: str) -> Path:
    policy = keys.folder / f"policy-{abs(hash(body))}.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "kumo.on('smtp_server_message_received', function(msg)\n" + body + "\nend)\n"
    )
    return policy


def test_an_rsa_signature_made_at_reception_verifies(keys: Keys) -> None:
    policy = write_policy(
        keys,
        """
  local signer = kumo.dkim.rsa_sha256_signer {
    domain = msg:from_header().domain,
    selector = 'rsa1',
    headers = { 'From', 'To', 'Subject' },
    key = 'rsa.pem',
  }
  msg:dkim_sign(signer)
""",
    )
    data = signed(policy)
    assert data.startswith(b"DKIM-Signature: ")
    assert data.endswith(MESSAGE_DATA)
    assert verify(keys, data) == ["example.test rsa-sha256 pass"]
    # The verifier does check: the same signature on an altered body fails.
    altered = data.replace(b"figures", b"numbers")
    assert verify(keys, altered)[0].startswith("example.test rsa-sha256 fail")


def test_an_ed25519_signature_from_key_data_verifies(keys: Keys) -> None:
    pem = keys.ed25519_pem.decode()
    policy = write_policy(
        keys,
        f"""
  msg:dkim_sign(kumo.dkim.ed25519_signer {{
    domain = 'example.test',
    selector = 'ed1',
    headers = {{ 'From', 'Subject', 'Date', 'Message-ID' }},
    key = {{ key_data = [[{pem}]] }},
  }})
""",
    )
    assert verify(keys, signed(policy)) == ["example.test ed25519-sha256 pass"]


def test_oversigned_expiring_simple_signatures_verify_and_block_added_headers(keys: Keys) -> None:
    policy = write_policy(
        keys,
        """
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = 'example.test', selector = 'ed1', key = 'ed.der',
    headers = { 'From', 'To', 'Subject', 'Reply-To' },
    over_sign = true, expiration = 3600,
    header_canonicalization = 'Simple', body_canonicalization = 'Simple',
  })
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'example.test', selector = 'rsa1', key = 'rsa.pem',
    headers = { 'From', 'To' }, body_length = true, ttl = '5 mins',
  })
""",
    )
    data = signed(policy)
    fields = re.findall(rb"DKIM-Signature:.*?\r\n(?=\S)", data, re.DOTALL)
    ed_field = b" ".join(next(f for f in fields if b"a=ed25519-sha256" in f).split())
    # From and To appear once, Subject once, Reply-To not at all: each is signed once more.
    assert b"h=from : from : to : to : subject : subject : reply-to;" in ed_field
    assert b" x=" in ed_field and b"c=simple/simple" in ed_field
    assert verify(keys, data) == [
        "example.test ed25519-sha256 pass",
        "example.test rsa-sha256 pass",
    ]
    # A second Subject breaks the over-signed signature only.
    forged = data.replace(b"Subject: quarterly", b"Subject: forged\r\nSubject: quarterly")
    assert verify(keys, forged) == [
        "example.test ed25519-sha256 fail",
        "example.test rsa-sha256 pass",
    ]


def test_policy_extras_dkim_sign_signs_for_the_from_domain_and_additional_signatures(
    keys: Keys,
) -> None:
    (keys.folder / "dkim_data.toml").write_text(
        f"""
[base]
selector = "rsa1"
headers = ["From", "To", "Subject", "Date"]
over_sign = true
additional_signatures = ["ESP"]

[domain."*.example.test"]
filename = "{keys.folder / "rsa.pem"}"

[domain."example.test"]
filename = "rsa.pem"

[signature."ESP"]
domain = "esp.test"
selector = "esp"
algo = "ed25519"
filename = "ed.der"
policy = "Always"
"""
    )
    policy = keys.folder / "extras.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "local dkim_sign = require 'policy-extras.dkim_sign'\n"
        "local dkim_signer = dkim_sign:setup { 'dkim_data.toml' }\n"
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:append_header('X-Tenant', 'acme')\n"
        "  dkim_signer(msg)\n"
        "end)\n"
    )
    assert verify(keys, signed(policy)) == [
        "esp.test ed25519-sha256 pass",
        "example.test rsa-sha256 pass",
    ]
    # A subdomain takes the wildcard block, and signs as itself.
    sub = MESSAGE_DATA.replace(b"alice@example.test", b"alice@mail.example.test")
    assert verify(keys, signed(policy, sub)) == [
        "esp.test ed25519-sha256 pass",
        "mail.example.test rsa-sha256 pass",
    ]
    # Only the additional signature for a From domain without a [domain] block.
    other = MESSAGE_DATA.replace(b"alice@example.test", b"alice@elsewhere.test")
    assert verify(keys, signed(policy, other)) == ["esp.test ed25519-sha256 pass"]
