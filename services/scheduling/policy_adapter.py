"""The policy's `get_queue_config`, loaded from the scheduling (or routing) policy file.

TODO(core.policy): import `Policy` directly once core/policy lands; until then it is looked up
at run time so this package type-checks without it. The expected API (pipeline design):
`Policy.load(path)` and `policy.get_queue_config(domain, tenant, campaign, routing_domain)`
returning a `QueueConfig`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core.domain.queue_config import QueueConfig
from ..core.domain.queue_name import QueueName
from ..core.runtime.settings import Settings
from .config_resolver import PolicyQueueConfig, default_queue_config


def policy_queue_config(settings: Settings) -> PolicyQueueConfig:
    path = settings.scheduling.policy_path or settings.routing.policy_path
    if path is None:
        return default_queue_config
    policy_module: Any = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.core.policy")
    policy = policy_module.Policy.load(path)

    def queue_config(name: QueueName) -> QueueConfig:
        config = policy.get_queue_config(
            name.domain, name.tenant, name.campaign, name.routing_domain
        )
        return config if isinstance(config, QueueConfig) else QueueConfig.from_mapping(config)

    return queue_config
