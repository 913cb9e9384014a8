"""Crash safety: `relaystream run routing` as a real process, SIGKILLed mid-stream, restarted.

Exactly once: after the restart every accepted id has exactly one committed QueuedMessage.
The batch whose transaction was open at the kill is aborted (outputs and offsets together)
and routed again by the restarted instance; read_committed readers never see its records.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from routing_support import (
    WAIT_SECONDS,
    accepted_message,
    committed_offsets,
    create_topics,
    end_offsets,
    produce_accepted,
    read_topic,
)
from service_process import ServiceProcess

from relaystream.core.kafka.topics import TopicSpec, partition_for_queue

MESSAGES = 3000
KILL_AFTER = 300
POLICY = """\
kumo.on('smtp_server_message_received', function(msg)
    msg:set_meta('routing_domain', 'my.smarthost.com')
end)
"""


async def wait_for_ids(bootstrap: str, topic: TopicSpec, ids: set[str]) -> None:
    """Until `topic` holds a record of every id in `ids` (duplicates count once)."""
    for _ in range(int(WAIT_SECONDS)):
        if {r.value["id"] for r in await read_topic(bootstrap, topic)} == ids:
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"not every id reached {topic.name}")


async def test_sigkill_mid_stream_routes_every_message_exactly_once(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, log_path: Path
) -> None:
    topics = await create_topics(kafka_bootstrap, topic_prefix)
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY, encoding="utf-8")
    messages = [accepted_message(f"r{i}@domain{i % 17}.example") for i in range(MESSAGES)]
    await produce_accepted(kafka_bootstrap, topics, messages)

    service = ServiceProcess(
        "routing",
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        log_path=log_path,
        settings={"RELAYSTREAM_ROUTING_POLICY_PATH": str(policy)},
    )
    try:
        service.start()
        await service.wait_ready()
        await read_topic(kafka_bootstrap, topics.queued, count=KILL_AFTER)
        service.kill()
        before_restart = await read_topic(kafka_bootstrap, topics.queued)
        assert len(before_restart) < MESSAGES, "killed too late: nothing in flight"

        service.start()
        await service.wait_ready()
        await wait_for_ids(kafka_bootstrap, topics.queued, {m["id"] for m in messages})
        assert service.terminate() == 0
        committed = await committed_offsets(
            kafka_bootstrap, topics.group_id("routing"), topics.accepted.name
        )
        assert committed == await end_offsets(kafka_bootstrap, topics.accepted)
        queued = await read_topic(kafka_bootstrap, topics.queued)  # everything, after the stop
    finally:
        service.close()

    for record in queued:
        assert record.partition == partition_for_queue(
            record.value["queue"], topics.queued.partitions
        )
    copies = Counter(record.value["id"] for record in queued)
    assert set(copies) == {m["id"] for m in messages}
    duplicated = {message_id: n for message_id, n in copies.items() if n != 1}
    assert duplicated == {}, f"{len(duplicated)} ids queued more than once"
