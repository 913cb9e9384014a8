"""kumo.digest: hashes over every argument (strings as bytes, other values as JSON) and HMACs
with a key source, each a BinaryResult with KumoMTA's fields."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from lua_policy_eval import error_of, meta_of, value_of


def test_kumomtas_binary_result_example() -> None:
    meta = meta_of(
        "local d = kumo.digest.sha1 'hello'\n"
        "msg:set_meta('str', tostring(d) == d.hex)\n"
        "msg:set_meta('bytes', d.bytes == '\\xaa\\xf4\\xc6\\x1d\\xdc\\xc5\\xe8\\xa2\\xda\\xbe"
        "\\xde\\x0f\\x3b\\x48\\x2c\\xd9\\xae\\xa9\\x43\\x4d')\n"
        "for _, k in ipairs { 'hex', 'base32', 'base32_nopad', 'base32hex', 'base64', "
        "'base64_nopad', 'base64url', 'base64url_nopad' } do msg:set_meta(k, d[k]) end"
    )
    assert meta == {
        "str": True,
        "bytes": True,
        "hex": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "base32": "VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N",
        "base32_nopad": "VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N",
        "base32hex": "LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD",
        "base64": "qvTGHdzF6KLavt4PO0gs2a6pQ00=",
        "base64_nopad": "qvTGHdzF6KLavt4PO0gs2a6pQ00",
        "base64url": "qvTGHdzF6KLavt4PO0gs2a6pQ00=",
        "base64url_nopad": "qvTGHdzF6KLavt4PO0gs2a6pQ00",
    }


@pytest.mark.parametrize(
    "name", ["sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_512", "sha512_256"]
)
def test_each_hash_covers_every_argument_strings_as_bytes_others_as_json(name: str) -> None:
    got = value_of(f"kumo.digest.{name}('a\\xff', 'b', 42, {{ 1, 2 }}).hex")
    expected = hashlib.new(
        name, b"a\xff" + b"b" + b"42" + json.dumps([1, 2]).replace(" ", "").encode()
    )
    assert got == expected.hexdigest()


def test_crc32_is_the_zip_checksum() -> None:
    assert value_of("kumo.digest.crc32('hello').hex") == "3610a686"


def test_kumomtas_hmac_example_with_key_data_and_a_key_file(tmp_path: Path) -> None:
    assert value_of("kumo.digest.hmac_sha256({ key_data = 'your key' }, 'your message').hex") == (
        "87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c"
    )
    (tmp_path / "hmac.key").write_text("file key")
    meta = meta_of(
        "msg:set_meta('x', kumo.digest.hmac_sha512('hmac.key', 'm').hex)", base_dir=tmp_path
    )
    assert meta["x"] == hmac.new(b"file key", b"m", "sha512").hexdigest()


def test_a_vault_key_is_refused_clearly() -> None:
    assert error_of("kumo.digest.hmac_sha1({ vault_path = 'x' }, 'm')").startswith(
        "policy.lua:3: the key must be { key_data = '...' } or a file name; other key sources "
        "(vault) are not available in relaystream"
    )
