"""TLS modes of outbound SMTP (KumoMTA's `enable_tls`) and the client contexts they use.

| mode | STARTTLS | certificate |
|---|---|---|
| Opportunistic (default) | if the peer offers it | validated; a failure fails the connection |
| OpportunisticInsecure | if the peer offers it | not validated |
| Required | always; a peer without it fails the connection | validated |
| RequiredInsecure | always; a peer without it fails the connection | not validated |
| Disabled | never | |

A failed handshake leaves the session unusable, so it counts as a failed connection and the
next candidate address is tried: a validating mode never falls back to plain text.

An egress path's `tls_certificate` and `tls_private_key` (PEM) are the client certificate
presented during the handshake.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..core.domain.log_record import TlsDetails
from .x509_subject import CertificateError, subject_name


class TlsMode(StrEnum):
    OPPORTUNISTIC = "Opportunistic"
    OPPORTUNISTIC_INSECURE = "OpportunisticInsecure"
    REQUIRED = "Required"
    REQUIRED_INSECURE = "RequiredInsecure"
    DISABLED = "Disabled"

    @classmethod
    def parse(cls, text: str) -> TlsMode:
        """A mode by its KumoMTA name, case-insensitively."""
        for mode in cls:
            if mode.value.lower() == text.strip().lower():
                return mode
        names = ", ".join(mode.value for mode in cls)
        raise ValueError(f"unknown TLS mode {text!r}: expected one of {names}")

    @property
    def is_required(self) -> bool:
        return self in (TlsMode.REQUIRED, TlsMode.REQUIRED_INSECURE)

    @property
    def validates_certificate(self) -> bool:
        return self in (TlsMode.OPPORTUNISTIC, TlsMode.REQUIRED)

    def wants_starttls(self, offered: bool) -> bool:
        """Whether to send STARTTLS given what the peer's EHLO advertised."""
        if self is TlsMode.DISABLED:
            return False
        return offered or self.is_required


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate chain and its private key, PEM, as the egress path gives them."""

    certificate_pem: bytes
    private_key_pem: bytes = field(repr=False)

    def load_into(self, context: ssl.SSLContext) -> None:
        """Present this certificate from `context`; ValueError when the two do not make one.

        The ssl module loads a chain only from files: both go to a private temporary folder
        (mode 0700) that is removed at once."""
        with tempfile.TemporaryDirectory(prefix="relaystream-client-cert-") as folder:
            certificate, key = Path(folder) / "certificate.pem", Path(folder) / "key.pem"
            certificate.write_bytes(self.certificate_pem)
            key.touch(mode=0o600)
            key.write_bytes(self.private_key_pem)
            try:
                context.load_cert_chain(certificate, key, password=_no_passphrase)
            except ssl.SSLError as err:
                raise ValueError(
                    "tls_certificate and tls_private_key are not a PEM certificate and its "
                    f"private key: {err.reason or err}"
                ) from None


def _no_passphrase() -> bytes:
    # Without this callback OpenSSL would prompt on the terminal for an encrypted key's
    # passphrase (KumoMTA takes none either).
    raise ValueError("tls_private_key is encrypted: give the key without a passphrase")


def client_context(
    mode: TlsMode, ca_file: Path | None = None, certificate: ClientCertificate | None = None
) -> ssl.SSLContext:
    """The context for STARTTLS in `mode`; `ca_file` adds trust roots (private smarthosts),
    `certificate` is presented to the peer."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if mode.validates_certificate:
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certificate is not None:
        certificate.load_into(context)
    return context


def tls_details(session: ssl.SSLObject) -> TlsDetails | None:
    """Cipher, protocol version and the peer's subject of an established TLS session."""
    cipher, version = session.cipher(), session.version()
    if cipher is None or version is None:
        return None
    der = session.getpeercert(binary_form=True)
    try:
        subject = None if der is None else subject_name(der)
    except CertificateError:
        subject = None  # logged without it rather than failing a delivery over a log field
    return TlsDetails(cipher=cipher[0], protocol_version=version, peer_subject_name=subject)
