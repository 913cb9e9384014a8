"""kumo.digest: hashes and HMACs, each answered as a BinaryResult's fields (digest.lua): the
raw bytes and each encoding of kumo.encode."""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from ..host import HostCallback, HostContext, HostError
from .encode import bytes_arg, encodings

# KumoMTA's digest names -> hashlib's.
HASHES: dict[str, str] = {
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha512_256": "sha512_256",
    "sha3_256": "sha3_256",
    "sha3_384": "sha3_384",
    "sha3_512": "sha3_512",
}
HMACS = ("sha1", "sha224", "sha256", "sha384", "sha512")


def binary_result(data: bytes) -> dict[str, Any]:
    return {"bytes": data, **encodings(data)}


def hasher(name: str) -> Callable[[], Any]:
    if name == "sha512_256":
        return lambda: hashlib.new("sha512_256")
    return lambda: hashlib.new(name)


def digest(name: str) -> HostCallback:
    """Callback over (text, is_hex) pairs: digest.lua sends each argument so."""
    make = hasher(HASHES[name])

    def run(*parts: object) -> dict[str, Any]:
        state = make()
        for index in range(0, len(parts), 2):
            state.update(bytes_arg(parts[index], parts[index + 1]))
        return binary_result(state.digest())

    return run


def crc32(*parts: object) -> dict[str, Any]:
    value = 0
    for index in range(0, len(parts), 2):
        value = zlib.crc32(bytes_arg(parts[index], parts[index + 1]), value)
    return binary_result(value.to_bytes(4, "big"))


def hmac_digest(name: str, context: HostContext) -> HostCallback:
    def run(
        key_kind: object, key: object, key_is_hex: object, text: object, is_hex: object
    ) -> dict[str, Any]:
        if key_kind == "data":
            secret = bytes_arg(key, key_is_hex)
        elif key_kind == "file":
            secret = context.read_data_file(key).encode("utf-8")
        else:
            raise HostError(
                "the key must be { key_data = '...' } or a file name; other key sources "
                "(vault) are not available in relaystream"
            )
        return binary_result(hmac.new(secret, bytes_arg(text, is_hex), name).digest())

    return run


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    callbacks: dict[str, HostCallback] = {f"digest_{name}": digest(name) for name in HASHES}
    callbacks["digest_crc32"] = crc32
    for name in HMACS:
        callbacks[f"digest_hmac_{name}"] = hmac_digest(name, context)
    return callbacks
