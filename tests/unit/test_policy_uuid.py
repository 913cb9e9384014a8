"""kumo.uuid: new_v1/v4/v6/v7 and parse, each a Uuid with KumoMTA's fields."""

from __future__ import annotations

import uuid

import pytest
from lua_policy_eval import error_of, meta_of, value_of


def test_kumomtas_uuid_object_example() -> None:
    meta = meta_of(
        "local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'\n"
        "msg:set_meta('s', tostring(u))\n"
        "for _, k in ipairs { 'hyphenated', 'simple', 'braced', 'urn' } do "
        "msg:set_meta(k, u[k]) end\n"
        "msg:set_meta('bytes', u.bytes == '\\x69\\x99\\x46\\x30\\x3e\\x27\\x11\\xef\\x91\\xfc"
        "\\xcc\\x28\\xaa\\x0a\\x5c\\x5a')\n"
        "msg:set_meta('b64', kumo.encode.base64url_nopad_encode(u.bytes))\n"
        "msg:set_meta('braced_parse', kumo.uuid.parse(u.braced) == u)"
    )
    assert meta == {
        "s": "69994630-3e27-11ef-91fc-cc28aa0a5c5a",
        "hyphenated": "69994630-3e27-11ef-91fc-cc28aa0a5c5a",
        "simple": "699946303e2711ef91fccc28aa0a5c5a",
        "braced": "{69994630-3e27-11ef-91fc-cc28aa0a5c5a}",
        "urn": "urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a",
        "bytes": True,
        "b64": "aZlGMD4nEe-R_MwoqgpcWg",
        "braced_parse": True,
    }


@pytest.mark.parametrize("version", [1, 4, 6, 7])
def test_new_uuids_have_their_version_and_the_rfc_variant_and_differ(version: int) -> None:
    meta = meta_of(
        f"msg:set_meta('a', kumo.uuid.new_v{version}().hyphenated)\n"
        f"msg:set_meta('b', kumo.uuid.new_v{version}().hyphenated)"
    )
    first, second = uuid.UUID(str(meta["a"])), uuid.UUID(str(meta["b"]))
    assert first.version == version == second.version
    assert first.variant == uuid.RFC_4122
    assert first != second


def test_v7_uuids_sort_by_creation_time() -> None:
    assert (
        value_of(
            "(function() local a = kumo.uuid.new_v7().simple; kumo.time.sleep(0.002); "
            "return a < kumo.uuid.new_v7().simple end)()"
        )
        is True
    )


def test_parse_refuses_what_is_not_a_uuid() -> None:
    assert error_of("kumo.uuid.parse 'nope'") == "policy.lua:3: not a UUID: 'nope'"
