"""Each scheduled queue's config: the policy's answer merged with operator overrides.

Overrides come from the compacted `queue-config` topic (key and `target` = a domain or an exact
queue name; a tombstone removes one). They apply field by field on top of the policy's config
(`core.domain.queue_config.merge_overrides`), the domain's first, then the exact queue name's,
so the exact one wins. Resolved configs are cached per queue and dropped whenever an override
changes, so a change applies to the next release.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..core.domain.queue_config import QueueConfig, QueueConfigError, merge_overrides
from ..core.domain.queue_name import QueueName, QueueNameError
from ..core.domain.token_bucket import MessageRate

log = logging.getLogger(__name__)

# The policy's get_queue_config for a parsed queue name.
PolicyQueueConfig = Callable[[QueueName], QueueConfig]


def default_queue_config(name: QueueName) -> QueueConfig:
    """For a deployment without a policy: KumoMTA's defaults for every queue."""
    return QueueConfig()


class QueueConfigResolver:
    """Resolved config per queue name; overrides are fed in by the `queue-config` reader."""

    def __init__(self, policy_config: PolicyQueueConfig) -> None:
        self._policy_config = policy_config
        self._overrides: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, QueueConfig] = {}
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
        """The merged config of `queue` (cached until an override changes)."""
        cached = self._resolved.get(queue)
        if cached is not None:
            return cached
        try:
            name: QueueName | None = QueueName.parse(queue)
        except QueueNameError:
            name = None
        config = self._policy_config(name) if name is not None else QueueConfig()
        # The domain's override first, then the exact queue name's (which therefore wins).
        targets = [name.domain] if name is not None else []
        if queue not in targets:
            targets.append(queue)
        for target in targets:
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
