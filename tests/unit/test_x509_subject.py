"""The peer certificate's subject, read from DER as KumoMTA logs it (tls_peer_subject_name)."""

from __future__ import annotations

import contextlib
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.delivery.x509_subject import CertificateError, subject_name

# openssl req -x509 -newkey ec -subj "/C=US/ST=CA/L=San Francisco/O=Fort-Funston/OU=Mail/
#   CN=mx.example.org/emailAddress=me@example.org"
PEM = """\
-----BEGIN CERTIFICATE-----
MIICeDCCAh+gAwIBAgIUH6R65kzNBuC7yGl5YqkfcNnC4rcwCgYIKoZIzj0EAwIw
gZAxCzAJBgNVBAYTAlVTMQswCQYDVQQIDAJDQTEWMBQGA1UEBwwNU2FuIEZyYW5j
aXNjbzEVMBMGA1UECgwMRm9ydC1GdW5zdG9uMQ0wCwYDVQQLDARNYWlsMRcwFQYD
VQQDDA5teC5leGFtcGxlLm9yZzEdMBsGCSqGSIb3DQEJARYObWVAZXhhbXBsZS5v
cmcwIBcNMjYxMjAyMTU0ODM3WhgPMjEyNjExMDgxNTQ4MzdaMIGQMQswCQYDVQQG
EwJVUzELMAkGA1UECAwCQ0ExFjAUBgNVBAcMDVNhbiBGcmFuY2lzY28xFTATBgNV
BAoMDEZvcnQtRnVuc3RvbjENMAsGA1UECwwETWFpbDEXMBUGA1UEAwwObXguZXhh
bXBsZS5vcmcxHTAbBgkqhkiG9w0BCQEWDm1lQGV4YW1wbGUub3JnMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEyeHMN1Jtp8G4aWpamZV4OdK53PaB9MY9p/Lk2iVh
NiGvyMldvD8bDFvZ94z+zVXCQEdLytwYPNGuwbukordzEaNTMFEwHQYDVR0OBBYE
FIro4Lkz8Y1iyclL4pvwYXnWEyeDMB8GA1UdIwQYMBaAFIro4Lkz8Y1iyclL4pvw
YXnWEyeDMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgPCaFMrWg
sXYYVmhikAD6g87DxSR/IcvBrWNtdj1aEBICIDShxllJr249ilXCHl8S1eSUAJT8
S2mROgRwFwi5Swdo
-----END CERTIFICATE-----
"""
DER = ssl.PEM_cert_to_DER_cert(PEM)


def test_the_subject_in_certificate_order_with_openssl_short_names() -> None:
    assert subject_name(DER) == (
        "C=US",
        "ST=CA",
        "L=San Francisco",
        "O=Fort-Funston",
        "OU=Mail",
        "CN=mx.example.org",
        "emailAddress=me@example.org",
    )


@pytest.mark.parametrize("cut", [1, 10, 100, 200])
def test_a_truncated_certificate_is_refused(cut: int) -> None:
    with pytest.raises(CertificateError):
        subject_name(DER[:cut])


@given(st.binary(max_size=300))
def test_any_bytes_give_a_subject_or_certificate_error(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        subject_name(data)


@given(st.integers(0, len(DER) - 1), st.integers(0, 255))
def test_a_corrupted_certificate_gives_a_subject_or_certificate_error(
    index: int, byte: int
) -> None:
    corrupted = DER[:index] + bytes([byte]) + DER[index + 1 :]
    with contextlib.suppress(CertificateError):
        subject_name(corrupted)
