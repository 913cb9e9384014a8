"""kumo.encode: base32/base32hex/base64/base64url (padded and not) and hex, both ways, on
binary strings too, and character sets."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lua_policy_eval import error_of, meta_of, value_of

CODECS = (
    "base32",
    "base32_nopad",
    "base32hex",
    "base32hex_nopad",
    "base64",
    "base64_nopad",
    "base64url",
    "base64url_nopad",
    "hex",
)


def lua_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\x{byte:02x}" for byte in data) + '"'


@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=40))
def test_every_codec_round_trips_any_bytes(data: bytes) -> None:
    body = "".join(
        f"msg:set_meta('{name}', kumo.encode.{name}_decode(kumo.encode.{name}_encode("
        f"{lua_bytes(data)})) == {lua_bytes(data)})\n"
        for name in CODECS
    )
    assert meta_of(body) == dict.fromkeys(CODECS, True)


def test_encodings_are_the_standard_ones() -> None:
    data = b"\xfb\xff hello"
    meta = meta_of(
        "".join(
            f"msg:set_meta('{name}', kumo.encode.{name}_encode({lua_bytes(data)}))\n"
            for name in CODECS
        )
    )
    assert meta["base64"] == base64.b64encode(data).decode()
    assert meta["base64url_nopad"] == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert meta["base32"] == base64.b32encode(data).decode()
    assert meta["base32hex_nopad"] == base64.b32hexencode(data).decode().rstrip("=")
    assert meta["hex"] == data.hex()


def test_invalid_input_to_a_decoder_is_a_policy_error_at_the_line() -> None:
    assert error_of("kumo.encode.base64_decode '!!!'").startswith("policy.lua:3: invalid base64")
    assert error_of("kumo.encode.hex_decode 'abc'").startswith("policy.lua:3: invalid hex")


def test_charsets_convert_to_and_from_utf8() -> None:
    assert value_of("kumo.encode.charset_decode('iso-8859-1', '\\xe9t\\xe9')") == "été"
    assert value_of("kumo.encode.charset_encode('iso-8859-1', 'été') == '\\xe9t\\xe9'") is True
    assert error_of("kumo.encode.charset_decode('no-such-set', 'x')") == (
        "policy.lua:3: unknown charset 'no-such-set'"
    )


@pytest.mark.parametrize("name", ["base64_encode", "hex_decode"])
def test_a_decoded_or_encoded_value_is_a_lua_string(name: str) -> None:
    assert value_of(f"type(kumo.encode.{name} '00')") == "string"
