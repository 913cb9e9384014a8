"""Queue config resolution: policy config, then domain override, then exact queue override."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from relaystream.core.domain.queue_config import QueueConfig
from relaystream.core.domain.queue_name import QueueName
from relaystream.core.domain.token_bucket import MessageRate
from relaystream.core.policy import service_policy
from relaystream.core.runtime.settings import RoutingSettings, Settings
from relaystream.core.spool.entry import SpoolEntry
from relaystream.scheduling.config_resolver import (
    HOLD_RETRY_SECONDS,
    QueueConfigResolver,
    QueueConfigUnavailable,
    message_rate_of,
)
from relaystream.scheduling.policy_adapter import policy_queue_config
from relaystream.scheduling.state import SchedulerState


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


HOLDING_POLICY = """\
local kumo = require 'kumo'
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'smarthosted.example' then
    error('the smarthost table is unreadable')
  elseif domain == 'refused.example' then
    kumo.reject(500, 'no config for you')
  end
  return kumo.make_queue_config { retry_interval = '5m' }
end)
"""


def test_a_failing_get_queue_config_holds_the_queue_and_never_falls_back_to_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.lua"
    path.write_text(HOLDING_POLICY, encoding="utf-8")
    settings = Settings(routing=RoutingSettings(policy_path=path))
    clock = [1_000_000]
    resolver = QueueConfigResolver(
        policy_queue_config(service_policy(settings, None)), now_ms=lambda: clock[0]
    )
    state = SchedulerState(lease_ms=60_000)
    for number, queue in enumerate(("smarthosted.example", "refused.example", "fine.example")):
        state.apply_queued(SpoolEntry(f"m{number}", queue, 0, 0, 0, 0, number))

    def rate_of(queue: str) -> MessageRate | None:
        return message_rate_of(resolver.resolve(queue))

    released = state.take_due(clock[0], 10, rate_of)
    assert [entry.queue for entry in released] == ["fine.example"]
    for queue in ("smarthosted.example", "refused.example"):
        with pytest.raises(QueueConfigUnavailable):
            resolver.resolve(queue)
    # Held, not spinning: nothing is due before the policy is asked again, then it is.
    retry_at = clock[0] + int(HOLD_RETRY_SECONDS * 1000)
    assert state.next_wakeup(clock[0]) == retry_at
    clock[0] = retry_at
    assert state.take_due(clock[0], 10, rate_of) == []  # asked again: still failing, held
    assert state.next_wakeup(clock[0]) == retry_at + int(HOLD_RETRY_SECONDS * 1000)
