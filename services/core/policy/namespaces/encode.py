"""kumo.encode: base16/32/64 encodings and character sets. Strings a policy passes may be
binary: encode.lua sends one that is not UTF-8 as hex (`bytes_arg` reads either form), and
Python returns bytes, which reach Lua as the raw string."""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Callable, Mapping

from ..host import HostCallback, HostContext, HostError


def bytes_arg(text: object, is_hex: object = False) -> bytes:
    """The bytes of a Lua string as encode.lua's `host_bytes` sent it."""
    if not isinstance(text, str):
        raise HostError(f"expected a string, got {type(text).__name__}")
    return bytes.fromhex(text) if is_hex else text.encode("utf-8")


def _pad(text: bytes, block: int) -> bytes:
    return text + b"=" * (-len(text) % block)


# name -> (encode, decode), on bytes; decoders take the text without padding requirements.
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "base32": (base64.b32encode, lambda data: base64.b32decode(_pad(data, 8), casefold=True)),
    "base32hex": (
        base64.b32hexencode,
        lambda data: base64.b32hexdecode(_pad(data, 8), casefold=True),
    ),
    "base64": (base64.b64encode, lambda data: base64.b64decode(_pad(data, 4), validate=True)),
    "base64url": (
        base64.urlsafe_b64encode,
        lambda data: base64.b64decode(_pad(data, 4), altchars=b"-_", validate=True),
    ),
    "hex": (lambda data: binascii.hexlify(data), binascii.unhexlify),
}


def encodings(data: bytes) -> dict[str, str]:
    """Every encoding of `data`, padded and (`_nopad`) not: BinaryResult's fields."""
    out: dict[str, str] = {}
    for name, (encode, _) in CODECS.items():
        text = encode(data).decode("ascii")
        out[name] = text
        if name != "hex":
            out[f"{name}_nopad"] = text.rstrip("=")
    return out


def encoder(name: str, padded: bool) -> HostCallback:
    encode = CODECS[name][0]

    def run(text: object, is_hex: object = False) -> str:
        encoded = encode(bytes_arg(text, is_hex)).decode("ascii")
        return encoded if padded else encoded.rstrip("=")

    return run


def decoder(name: str, padded: bool) -> HostCallback:
    decode = CODECS[name][1]

    def run(text: object) -> bytes:
        if not isinstance(text, str):
            raise HostError(f"expected a string, got {type(text).__name__}")
        data = text.strip().encode("ascii", "replace")
        if padded and name != "hex" and len(data) % (8 if name.startswith("base32") else 4):
            raise HostError(f"invalid {name}: the length is not a multiple of the block")
        try:
            return decode(data)
        except (binascii.Error, ValueError) as err:
            raise HostError(f"invalid {name}: {err}") from err

    return run


def charset_decode(charset: object, text: object, is_hex: object = False) -> str:
    try:
        return bytes_arg(text, is_hex).decode(str(charset))
    except LookupError as err:
        raise HostError(f"unknown charset {charset!r}") from err
    except UnicodeDecodeError as err:
        raise HostError(f"not valid {charset}: {err.reason} at byte {err.start}") from err


def charset_encode(charset: object, text: object) -> bytes:
    if not isinstance(text, str):
        raise HostError(f"expected a string, got {type(text).__name__}")
    try:
        codecs.lookup(str(charset))
        return text.encode(str(charset))
    except LookupError as err:
        raise HostError(f"unknown charset {charset!r}") from err
    except UnicodeEncodeError as err:
        raise HostError(f"cannot encode as {charset}: {err.reason}") from err


def host_callbacks(context: HostContext) -> Mapping[str, HostCallback]:
    callbacks: dict[str, HostCallback] = {
        "encode_charset_decode": charset_decode,
        "encode_charset_encode": charset_encode,
    }
    for name in CODECS:
        variants = (("", True),) if name == "hex" else (("", True), ("_nopad", False))
        for suffix, padded in variants:
            callbacks[f"encode_{name}{suffix}_encode"] = encoder(name, padded)
            callbacks[f"encode_{name}{suffix}_decode"] = decoder(name, padded)
    return callbacks
