"""The subject name of a peer's certificate, from its DER bytes, as KumoMTA logs it
(`tls_peer_subject_name`: one `KEY=value` per attribute, in certificate order).

Python's ssl module gives the parsed subject only for a certificate it validated; in the
insecure TLS modes it gives just the DER bytes, so this reads the few DER structures needed
(Certificate -> tbsCertificate -> subject) instead of adding a crypto library.
"""

from __future__ import annotations

_SEQUENCE, _SET, _OID, _EXPLICIT_VERSION = 0x30, 0x31, 0x06, 0xA0

# Attribute names as in KumoMTA's documentation (OpenSSL's short names).
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}

# String types of attribute values and how their bytes decode.
_STRING_ENCODINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString, as OpenSSL shows it
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


class CertificateError(ValueError):
    """Bytes that are not a DER certificate this reader understands."""


def _element(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, contents, offset after the element) of the DER element at `offset`."""
    if offset + 2 > len(data):
        raise CertificateError("truncated element")
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or offset + size > len(data):
            raise CertificateError("unsupported length")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    end = offset + length
    if end > len(data):
        raise CertificateError("truncated element")
    return tag, data[offset:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    children: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        tag, contents, offset = _element(data, offset)
        children.append((tag, contents))
    return children


def _oid(contents: bytes) -> str:
    if not contents:
        raise CertificateError("empty object identifier")
    first = contents[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in contents[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(part) for part in parts)


def subject_name(der: bytes) -> tuple[str, ...]:
    """`("C=US", "O=Example", "CN=mx.example.org")`; CertificateError if `der` is no
    certificate."""
    tag, certificate, _ = _element(der, 0)
    if tag != _SEQUENCE:
        raise CertificateError("not a certificate")
    tbs_tag, tbs = _children(certificate)[0]
    fields = _children(tbs)
    if tbs_tag != _SEQUENCE or not fields:
        raise CertificateError("no tbsCertificate")
    if fields[0][0] == _EXPLICIT_VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[4][0] != _SEQUENCE:
        raise CertificateError("no subject")
    names: list[str] = []
    for rdn_tag, rdn in _children(fields[4][1]):
        if rdn_tag != _SET:
            raise CertificateError("malformed subject")
        for attribute_tag, attribute in _children(rdn):
            parts = _children(attribute)
            if attribute_tag != _SEQUENCE or len(parts) != 2 or parts[0][0] != _OID:
                raise CertificateError("malformed subject attribute")
            oid = _oid(parts[0][1])
            value_tag, value = parts[1]
            encoding = _STRING_ENCODINGS.get(value_tag)
            text = value.decode(encoding, "replace") if encoding else value.hex()
            names.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={text}")
    return tuple(names)
