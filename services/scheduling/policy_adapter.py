"""The policy's `get_queue_config`, loaded from the scheduling (or routing) policy file.

The policy answers with queue-config fields (or None: no opinion); they become a `QueueConfig`
over KumoMTA's defaults. A policy that fails for a queue (an error, kumo.reject, its deadline)
or answers fields QueueConfig refuses raises QueueConfigFailed: the resolver holds that queue
(config_resolver.py) rather than falling back to the defaults, and every other queue goes on.
"""

from __future__ import annotations

import logging

from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import QueueName
from ..core.policy import Policy
from .config_resolver import PolicyQueueConfig, QueueConfigFailed, default_queue_config

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
            raise QueueConfigFailed(str(error) or repr(error)) from error

    return queue_config
