"""Each scheduled queue's config: the policy's answer merged with operator overrides.

Overrides come from the compacted `queue-config` topic (key and `target` = a domain or an exact
queue name; a tombstone removes one). They apply field by field on top of the policy's config
(`core.domain.queue_config.merge_overrides`), the domain's first, then the exact queue name's,
so the exact one wins. Resolved configs are cached per queue and dropped whenever an override
changes, so a change applies to the next release.

A policy whose get_queue_config fails for a queue (an error, kumo.reject, its deadline, fields
QueueConfig refuses) gives that queue no config at all: never KumoMTA's defaults, which could
send smarthosted mail to the public MX. The queue's messages are held, as a transient failure:
`resolve` raises QueueConfigUnavailable, the scheduler releases none of them, and the policy is
asked again after HOLD_RETRY_SECONDS (logged each time).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..core.domain.queue_config import QueueConfig, QueueConfigError, merge_overrides
from ..core.domain.queue_name import QueueName, QueueNameError, override_targets
from ..core.domain.token_bucket import MessageRate

log = logging.getLogger(__name__)

# The policy's get_queue_config for a parsed queue name; raises QueueConfigFailed.
PolicyQueueConfig = Callable[[QueueName], QueueConfig]
# How long a queue whose config failed is held before the policy is asked again.
HOLD_RETRY_SECONDS = 10.0


class QueueConfigFailed(Exception):
    """The policy's get_queue_config failed for a queue; the message says how."""


class QueueConfigUnavailable(Exception):
    """A queue has no config (its get_queue_config failed): hold its messages until
    `retry_at_ms`, then ask again."""

    def __init__(self, queue: str, reason: str, retry_at_ms: int) -> None:
        super().__init__(f"queue {queue}: no config: {reason}")
        self.queue = queue
        self.reason = reason
        self.retry_at_ms = retry_at_ms


def default_queue_config(name: QueueName) -> QueueConfig:
    """For a deployment without a policy: KumoMTA's defaults for every queue."""
    return QueueConfig()


class QueueConfigResolver:
    """Resolved config per queue name; overrides are fed in by the `queue-config` reader."""

    def __init__(
        self,
        policy_config: PolicyQueueConfig,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._policy_config = policy_config
        self._now_ms = now_ms
        self._overrides: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, QueueConfig] = {}
        # Queues whose config failed: (when to ask the policy again, why).
        self._failed: dict[str, tuple[int, str]] = {}
        self.version = 0

    def set_override(self, target: str, config_json: str | None) -> None:
        """Apply one `queue-config` record (None: a tombstone). Raises ValueError for an
        invalid one (not JSON, not an object, or a field QueueConfig refuses), changing
        nothing."""
        if config_json is None:
            self._overrides.pop(target, None)
        else:
            try:
                config = json.loads(config_json)
                if not isinstance(config, dict):
                    raise ValueError("config is not a JSON object")
                QueueConfig.from_mapping(config)  # validates every field
            except (json.JSONDecodeError, QueueConfigError) as error:
                raise ValueError(f"invalid queue-config override: {error}") from error
            self._overrides[target] = config
        self._resolved.clear()
        self.version += 1

    def bump_epoch(self) -> None:
        """KumoMTA's config epoch bump: every queue's config is asked of the policy again
        (at its next release)."""
        self._resolved.clear()
        self.version += 1

    def resolve(self, queue: str) -> QueueConfig:
        """The merged config of `queue` (cached until an override changes). Raises
        QueueConfigUnavailable while the policy's get_queue_config fails for it."""
        cached = self._resolved.get(queue)
        if cached is not None:
            return cached
        failed = self._failed.get(queue)
        if failed is not None and self._now_ms() < failed[0]:
            raise QueueConfigUnavailable(queue, failed[1], failed[0])
        try:
            name: QueueName | None = QueueName.parse(queue)
        except QueueNameError:
            name = None
        try:
            config = self._policy_config(name) if name is not None else QueueConfig()
        except QueueConfigFailed as error:
            retry_at = self._now_ms() + int(HOLD_RETRY_SECONDS * 1000)
            self._failed[queue] = (retry_at, str(error))
            log.warning(
                "get_queue_config failed: the queue's messages are held, not released with "
                "default config; asking again later",
                extra={"queue": queue, "error": str(error), "retry_in_s": HOLD_RETRY_SECONDS},
            )
            raise QueueConfigUnavailable(queue, str(error), retry_at) from error
        self._failed.pop(queue, None)
        for target in override_targets(queue):
            override = self._overrides.get(target)
            if override is not None:
                config = merge_overrides(config, override)
        self._resolved[queue] = config
        return config


def message_rate_of(config: QueueConfig) -> MessageRate | None:
    """The queue's `max_message_rate` as a token-bucket rate (None: unthrottled)."""
    rate = config.max_message_rate
    if rate is None:
        return None
    return MessageRate.from_rate(rate)
