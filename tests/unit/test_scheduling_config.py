"""Queue config resolution: policy config, then domain override, then exact queue override."""

from __future__ import annotations

from datetime import timedelta

import pytest

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.domain.token_bucket import MessageRate
from relaystream.scheduling.config_resolver import QueueConfigResolver, message_rate_of


def policy(name: QueueName) -> QueueConfig:
    return QueueConfig(retry_interval=timedelta(minutes=5), egress_pool=f"pool-{name.domain}")


def test_policy_config_without_overrides() -> None:
    resolver = QueueConfigResolver(policy)
    config = resolver.resolve("camp:tenant@example.com")
    assert config.retry_interval == timedelta(minutes=5)
    assert config.egress_pool == "pool-example.com"


def test_domain_override_applies_to_every_queue_of_the_domain_and_exact_wins() -> None:
    resolver = QueueConfigResolver(policy)
    resolver.set_override("example.com", '{"retry_interval": "2s", "max_message_rate": "5/s"}')
    resolver.set_override("t@example.com", '{"retry_interval": "7s"}')
    plain = resolver.resolve("example.com")
    assert plain.retry_interval == timedelta(seconds=2)
    assert plain.egress_pool == "pool-example.com"  # field by field
    tenant = resolver.resolve("t@example.com")
    assert tenant.retry_interval == timedelta(seconds=7)
    assert message_rate_of(tenant) == MessageRate(5, 1000)
    assert resolver.resolve("other.example").retry_interval == timedelta(minutes=5)


def test_tombstone_and_invalid_override() -> None:
    resolver = QueueConfigResolver(policy)
    resolver.set_override("example.com", '{"retry_interval": "2s"}')
    assert resolver.resolve("example.com").retry_interval == timedelta(seconds=2)
    # Refused, changing nothing (the reader dead-letters the record and removes the target).
    with pytest.raises(ValueError, match="no_such_field"):
        resolver.set_override("example.com", '{"no_such_field": 1}')
    with pytest.raises(ValueError, match="not a JSON object"):
        resolver.set_override("example.com", "[1]")
    assert resolver.resolve("example.com").retry_interval == timedelta(seconds=2)
    resolver.set_override("example.com", None)
    assert resolver.resolve("example.com").retry_interval == timedelta(minutes=5)
