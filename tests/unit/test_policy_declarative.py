"""Declarative (YAML) policies behind the same Policy interface."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.policy import (
    Policy,
    PolicyAccepted,
    PolicyLoadError,
    PolicyMessage,
    PolicyRejected,
    policy_from_file,
    policy_from_source,
)
from relaystream.core.policy.declarative import DeclarativePolicy

POLICY_PATH = Path(__file__).resolve().parents[1] / "policies" / "declarative.yaml"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return policy_from_file(POLICY_PATH)


def receive(policy: Policy, sender: str, recipient: str, **meta: object) -> object:
    return policy.on_message_received(
        "ESMTP",
        PolicyMessage("m", sender, recipient, dict(meta)),
    )


def test_load_picks_the_declarative_kind_by_extension_and_hashes_the_text(policy: Policy) -> None:
    assert isinstance(policy, DeclarativePolicy)
    assert policy.name == "declarative.yaml"
    assert policy.content_hash == hashlib.sha256(POLICY_PATH.read_bytes()).hexdigest()


def test_routing_domain_and_meta_for_a_matching_tenant(policy: Policy) -> None:
    result = receive(policy, "a@b.org", "user@EXAMPLE.com", tenant="acme")
    assert result == PolicyAccepted(
        {
            "tenant": "acme",
            "routing_domain": "my.smarthost.com",
            "campaign": "spring",
            "x_source": "yaml",
        }
    )


def test_no_match_leaves_meta_unchanged(policy: Policy) -> None:
    assert receive(policy, "a@b.org", "user@example.com", tenant="other") == PolicyAccepted(
        {"tenant": "other"}
    )


def test_sender_glob_and_subdomain_wildcard(policy: Policy) -> None:
    hit = receive(policy, "News@Partner.Example", "u@mx.example.net")
    assert hit == PolicyAccepted({"queue": "[20.83.209.56]"})
    assert receive(policy, "a@elsewhere.example", "u@mx.example.net") == PolicyAccepted({})
    # "*.example.net" means subdomains only.
    assert receive(policy, "x@partner.example", "u@example.net") == PolicyAccepted({})


def test_reject(policy: Policy) -> None:
    assert receive(policy, "a@b.org", "u@blocked.example") == PolicyRejected(
        550, "5.7.1 we do not deliver there"
    )
    assert isinstance(receive(policy, "a@b.org", "u@deep.blocked.example"), PolicyRejected)


def test_queue_config_first_matching_entry_with_a_config(policy: Policy) -> None:
    assert policy.get_queue_config("domain.to.be.smart.hosted", None, None, None) == {
        "protocol": {
            "smtp": {
                "mx_list": ["smart.host.local", {"name": "mx.example.com", "addr": "10.0.0.1"}]
            }
        }
    }
    config = policy.get_queue_config("example.com", "acme", "spring", "my.smarthost.com")
    assert config == {"max_age": "1h", "retry_interval": "5m"}
    assert QueueConfig.from_mapping(config).max_age.total_seconds() == 3600
    assert policy.get_queue_config("other.example", None, None, None) is None


def test_returned_config_is_a_copy(policy: Policy) -> None:
    config = policy.get_queue_config("example.com", None, None, None)
    assert isinstance(config, dict)
    config["max_age"] = "2d"
    assert policy.get_queue_config("example.com", None, None, None) == {
        "max_age": "1h",
        "retry_interval": "5m",
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "domains:\n  - domain: a.example\n    routng_domain: x\n",
            r"^p.yaml:2: unknown key 'routng_domain'",
        ),
        ("domains:\n  - tenant: x\n", r"^p.yaml:2: 'domain' must be"),
        (
            "domains:\n  - domain: a.example\n\n    queue_config: {max_age: forever}\n",
            r"^p.yaml:2: queue_config: bad value for field 'max_age'",
        ),
        (
            "domains:\n  - domain: a.example\n    queue_config: {colour: blue}\n",
            r"^p.yaml:2: queue_config: unknown field 'colour'",
        ),
        (
            "domains:\n  - domain: a.example\n    sender: '*@x'\n    queue_config: {}\n",
            "cannot have a queue_config",
        ),
        ("domains:\n  - domain: a.example\n    reject: {code: 250}\n", "reject code"),
        ("domains: [\n", r"^p.yaml:2: "),
        ("routes: []\n", "unknown top-level key 'routes'"),
    ],
)
def test_load_errors_name_file_and_line(text: str, error: str) -> None:
    with pytest.raises(PolicyLoadError, match=error):
        policy_from_source(text, "p.yaml")


def test_an_empty_file_routes_nothing() -> None:
    policy = policy_from_source("", "empty.yml")
    assert receive(policy, "a@b.c", "d@e.f", tenant="t") == PolicyAccepted({"tenant": "t"})
    assert policy.get_queue_config("e.f", None, None, None) is None
