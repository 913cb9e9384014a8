"""Shaping data (KumoMTA's shaping.toml) merged and looked up: pure, no DNS."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.domain.shaping import (
    CheckLevel,
    Shaping,
    ShapingError,
    ShapingFile,
    SiteLookup,
)

SITES = {
    "gmail.com": SiteLookup("(alt1|alt2).gmail-smtp-in.l.google.com"),
    "googlemail.com": SiteLookup("(alt1|alt2).gmail-smtp-in.l.google.com"),
    "broken.example": SiteLookup(error="SERVFAIL"),
    "nomail.example": SiteLookup(null_mx=True),
}
GOOGLE = "(alt1|alt2).gmail-smtp-in.l.google.com"


def merged(*files: dict[str, object], **levels: CheckLevel) -> Shaping:
    parsed = [ShapingFile.parse(f"file{index}", data) for index, data in enumerate(files)]
    return Shaping.merge(parsed, SITES, **levels)


def test_rollup_domains_share_their_site_and_merge_in_file_order() -> None:
    shaping = merged(
        {"gmail.com": {"connection_limit": 5, "max_message_rate": "100/s"}},
        {"googlemail.com": {"connection_limit": 3}},
    )
    # A Workspace domain at Google's MX gets the site's entry, merged from both domains.
    params = shaping.get_egress_path_config("workspace.example", "ip-1", GOOGLE)
    assert params == {"connection_limit": 3, "max_message_rate": "100/s"}
    assert shaping.get_egress_path_config("gmail.com", "ip-1", "elsewhere") == {}


def test_lookup_order_is_default_site_domain_then_sources() -> None:
    shaping = merged(
        {
            "default": {"connection_limit": 1, "smtp_port": 1, "idle_timeout": "1s"},
            "gmail.com": {
                "connection_limit": 2,
                "smtp_port": 2,
                "sources": {"a": {"smtp_port": 20}},
            },
            "d.example": {
                "mx_rollup": False,
                "connection_limit": 3,
                "sources": {"a": {"connection_limit": 30}},
            },
        }
    )
    assert shaping.get_egress_path_config("d.example", "a", GOOGLE) == {
        "connection_limit": 30,
        "smtp_port": 20,
        "idle_timeout": "1s",
    }
    assert shaping.get_egress_path_config("d.example", "b", GOOGLE) == {
        "connection_limit": 3,
        "smtp_port": 2,
        "idle_timeout": "1s",
    }


def test_unresolvable_rollup_entries_are_left_out_and_reported_at_their_level() -> None:
    files = (
        {"broken.example": {"connection_limit": 2}, "nomail.example": {"connection_limit": 2}},
    )
    quiet = merged(*files)
    assert (quiet.warnings, quiet.errors, quiet.by_site) == ([], [], {})
    loud = merged(*files, dns_fail=CheckLevel.WARN, null_mx=CheckLevel.ERROR)
    assert loud.warnings == [
        "MX lookup for broken.example failed (SERVFAIL); its shaping entry is ignored"
    ]
    assert loud.errors == [
        "domain nomail.example has a null MX and cannot be used with mx_rollup = true; "
        "its shaping entry is ignored"
    ]


def test_a_single_label_entry_is_flagged_as_an_unquoted_toml_name() -> None:
    # [gmail.com] without quotes is the table gmail holding a table com: an unknown field.
    with pytest.raises(ShapingError, match="domain gmail: egress path: unknown field 'com'"):
        merged({"gmail": {"mx_rollup": False, "com": {"connection_limit": 2}}})
    warned = merged({"localhost": {"mx_rollup": False, "connection_limit": 2}})
    assert "entry 'localhost' is a single DNS label" in warned.warnings[0]


def test_referenced_sources_and_automation_are_reported() -> None:
    shaping = merged(
        {
            "gmail.com": {
                "sources": {"ip-1": {}},
                "automation": [{"regex": "421", "action": "Suspend"}],
            },
            "d.example": {"mx_rollup": False, "sources": {"ip-1": {}, "ip-2": {}}},
        }
    )
    assert shaping.referenced_sources() == {
        "ip-1": ["domain:d.example", f"site:{GOOGLE}"],
        "ip-2": ["domain:d.example"],
    }
    assert shaping.automation_rules() == [(GOOGLE, 1)]


fields = st.fixed_dictionaries(
    {},
    optional={
        "connection_limit": st.integers(1, 100),
        "smtp_port": st.integers(1, 65535),
        "enable_tls": st.sampled_from(["Opportunistic", "Required", "Disabled"]),
        "additional_connection_limits": st.dictionaries(
            st.sampled_from(["a", "b", "c"]), st.integers(1, 9), max_size=3
        ),
    },
)


@given(first=fields, second=fields, replace=st.booleans())
def test_a_later_file_wins_field_by_field_and_limits_merge_by_name(
    first: dict[str, object], second: dict[str, object], replace: bool
) -> None:
    later = {**second, "mx_rollup": False, "replace_base": replace}
    shaping = merged({"d.example": {**first, "mx_rollup": False}}, {"d.example": later})
    params = shaping.get_egress_path_config("d.example", "s", "site")
    if replace:
        assert params == second
        return
    expected = {**first, **second}
    limits = {
        **first.get("additional_connection_limits", {}),  # type: ignore[dict-item]
        **second.get("additional_connection_limits", {}),  # type: ignore[dict-item]
    }
    if "additional_connection_limits" in first and "additional_connection_limits" in second:
        expected["additional_connection_limits"] = limits
    assert params == expected
