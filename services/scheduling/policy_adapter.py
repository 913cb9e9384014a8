"""The policy's `get_queue_config`, loaded from the scheduling (or routing) policy file.

The policy answers with queue-config fields (or None: no opinion); they become a `QueueConfig`
over KumoMTA's defaults. A policy that fails or answers nonsense for a queue leaves that queue
on the defaults (logged) rather than stopping every other queue's releases.
"""

from __future__ import annotations

import logging

from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import QueueName
from ..core.policy import Policy
from .config_resolver import PolicyQueueConfig, default_queue_config

log = logging.getLogger(__name__)


def policy_queue_config(policy: Policy | None) -> PolicyQueueConfig:
    if policy is None:
        return default_queue_config

    def queue_config(name: QueueName) -> QueueConfig:
        try:
            fields = policy.get_queue_config(
                name.domain, name.tenant, name.campaign, name.routing_domain
            )
            return QueueConfig() if fields is None else QueueConfig.from_mapping(fields)
        except Exception as error:  # a policy runtime error or invalid fields
            log.warning(
                "get_queue_config failed: using defaults",
                extra={"queue": name.format(), "error": repr(error)},
            )
            return QueueConfig()

    return queue_config
