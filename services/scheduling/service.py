"""The scheduling service: its declaration (`SERVICE`) and main; the runtime runs it.

The loop is `scheduler.Scheduler`; each owned `queued` partition is a
`partition.PartitionScheduler`, built on assignment (rebuild.py) and kept across rebalances
that leave it here.
"""

from __future__ import annotations

from ..core.kafka.topics import TopicRole
from ..core.policy import service_policy
from ..core.policy.bounce_classifier import log_writer
from ..core.runtime.service import ServiceRuntime, ServiceSpec
from .admin_api import start_admin_api
from .policy_adapter import policy_queue_config
from .scheduler import SERVICE_NAME, Scheduler


async def main(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    policy = service_policy(settings, settings.scheduling.policy_path)
    scheduler = Scheduler(
        settings,
        policy_config=policy_queue_config(policy),
        log_writer=log_writer(settings.runtime, policy),
    )

    async def rebuilt() -> bool:
        return scheduler.ready

    runtime.health.add_readiness_check("rebuilt", rebuilt)
    runtime.health.set_ready(True)
    own = settings.scheduling
    api = None
    if own.admin_api_enabled:
        api = await start_admin_api(scheduler, settings)
    try:
        await scheduler.run(runtime.shutdown_requested)
    finally:
        if api is not None:
            await api.cleanup()


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    main=main,
    groups={SERVICE_NAME: (TopicRole.QUEUED, TopicRole.OUTCOMES)},
    # The rebuild reads the recent attempts; followers read the operator's control topics.
    reads=(TopicRole.ATTEMPTS, TopicRole.QUEUE_CONFIG, TopicRole.ADMIN, TopicRole.READY_QUEUES),
    produces=(TopicRole.ATTEMPTS, TopicRole.QUEUED, TopicRole.LOG, TopicRole.DEAD_LETTER),
)
