"""The routing service through a real broker: MessageAccepted in; decisions, spool and log out.

The founding document's snippets (tests/policies/seed_*.lua are the same texts) decide the
queue; the queued record must land on the queue's partition. Rejections, policy failures and
poison records must not stop the service. Records of an aborted ingest transaction are never
routed; a batch whose transaction aborts leaves nothing behind and is routed again, once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from routing_support import (
    QUEUE_PARTITIONS,
    Read,
    committed_offsets,
    create_topics,
    end_offsets,
    produce_accepted,
    produce_accepted_in_transaction,
    produce_raw,
    read_topic,
)
from routing_support import accepted_message as accepted

from relaystream.core.kafka.admin import describe_topics
from relaystream.core.kafka.topics import (
    CONTENT_MAX_MESSAGE_BYTES,
    TopicCatalog,
    TopicSpec,
    partition_for_queue,
)
from relaystream.core.policy import content_hash
from relaystream.core.runtime.service import EXIT_FAILED, EXIT_OK, ServiceRuntime, run_service
from relaystream.core.runtime.settings import HostPort, RoutingSettings, RuntimeSettings, Settings
from relaystream.routing.service import SERVICE

ROUTING_DOMAIN = """\
kumo.on('smtp_server_message_received', function(msg)
    msg:set_meta('routing_domain', 'my.smarthost.com')
end)
"""
QUEUE_REWRITE = """\
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'my.smarthost.com')
end)
"""
QUEUE_LITERAL = """\
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', '[20.83.209.56]')
end)
"""
# Behaviour by recipient user: drop -> null queue, reject -> kumo.reject, boom -> a Lua
# error, spin -> an endless loop (instruction budget), anyone else -> tenant "acme".
BY_RECIPIENT = """\
kumo.on('smtp_server_message_received', function(msg)
  local user = msg:recipient().user
  if user == 'drop' then
    msg:set_meta('queue', 'null')
  elseif user == 'reject' then
    kumo.reject(550, '5.7.1 not from here')
  elseif user == 'boom' then
    error('policy bug')
  elseif user == 'spin' then
    while true do end
  else
    msg:set_meta('tenant', 'acme')
  end
end)
"""


def routing_settings(bootstrap: str, prefix: str, policy: Path) -> Settings:
    return Settings(
        runtime=RuntimeSettings(
            kafka_bootstrap=bootstrap, topic_prefix=prefix, http_bind=HostPort("127.0.0.1", 0)
        ),
        routing=RoutingSettings(policy_path=policy),
    )


@asynccontextmanager
async def routing_service(
    bootstrap: str, prefix: str, policy: Path
) -> AsyncIterator[ServiceRuntime]:
    settings = routing_settings(bootstrap, prefix, policy)
    runtimes: list[ServiceRuntime] = []
    started = asyncio.Event()

    def ready(runtime: ServiceRuntime) -> None:
        runtimes.append(runtime)
        started.set()

    service = asyncio.create_task(
        run_service(SERVICE, settings, handle_signals=False, runtime_ready=ready)
    )
    try:
        await started.wait()
        yield runtimes[0]
    finally:
        if runtimes:
            runtimes[0].request_shutdown("test over")
        assert await asyncio.wait_for(service, 60) == EXIT_OK


@pytest.fixture
async def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicCatalog:
    return await create_topics(kafka_bootstrap, topic_prefix)


@pytest.fixture
def policy_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(source: str) -> Path:
        path = tmp_path / "policy.lua"
        path.write_text(source, encoding="utf-8")
        return path

    return write


def by_id(records: list[Read]) -> dict[str, Read]:
    return {record.value["id"]: record for record in records}


@pytest.mark.parametrize(
    ("policy", "recipient", "meta", "queue", "components"),
    [
        pytest.param(
            ROUTING_DOMAIN,
            "rcpt@Example.COM",
            {"tenant": "acme", "campaign": "spring"},
            "spring:acme@example.com!my.smarthost.com",
            ("spring", "acme", "example.com", "my.smarthost.com"),
            id="routing_domain-keeps-tenant-and-campaign",
        ),
        pytest.param(
            ROUTING_DOMAIN,
            "rcpt@example.com",
            {},
            "example.com!my.smarthost.com",
            (None, None, "example.com", "my.smarthost.com"),
            id="routing_domain",
        ),
        pytest.param(
            QUEUE_REWRITE,
            "rcpt@example.com",
            {"tenant": "acme", "campaign": "spring"},
            "my.smarthost.com",
            (None, None, "my.smarthost.com", None),
            id="queue-rewrite",
        ),
        pytest.param(
            QUEUE_LITERAL,
            "rcpt@example.com",
            {},
            "[20.83.209.56]",
            (None, None, "[20.83.209.56]", None),
            id="queue-literal",
        ),
    ],
)
async def test_founding_document_snippets_route_to_their_queue(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
    policy: str,
    recipient: str,
    meta: dict[str, Any],
    queue: str,
    components: tuple[str | None, ...],
) -> None:
    message = accepted(recipient, meta=meta)
    await produce_accepted(kafka_bootstrap, topics, [message])
    async with routing_service(kafka_bootstrap, topic_prefix, policy_file(policy)):
        (queued,) = await read_topic(kafka_bootstrap, topics.queued, count=1)
        (decision,) = await read_topic(kafka_bootstrap, topics.decisions, count=1)
        (reception,) = await read_topic(kafka_bootstrap, topics.log, count=1)

    assert queued.key == message["id"].encode()
    assert queued.partition == partition_for_queue(queue, QUEUE_PARTITIONS)
    assert queued.value["queue"] == queue
    assert queued.value["recipient"] == recipient
    assert queued.value["content"] == message["content"]
    assert queued.value["created_at"] == message["received_at"]
    assert queued.value["due_at"] == message["received_at"]
    assert queued.value["attempts"] == 0
    assert queued.value["last_response"] is None
    assert queued.value["meta"]["reception_protocol"] == '"ESMTP"'

    d = decision.value
    assert decision.key == message["id"].encode()
    assert d["outcome"] == "QUEUED"
    assert d["queue"] == queue
    assert (d["campaign"], d["tenant"], d["domain"], d["routing_domain"]) == components
    assert d["meta_before"] == message["meta"]
    assert d["meta_after"] == queued.value["meta"]
    assert d["headers"].startswith("From: sender@origin.example\r\nSubject: hello\r\n")
    assert d["policy_hash"] == content_hash(policy)
    assert d["policy_name"] == "policy.lua"
    assert d["rejection"] is None

    r = reception.value
    assert r["type"] == "Reception"
    assert (r["id"], r["queue"], r["recipients"]) == (message["id"], queue, [recipient])
    assert r["response"]["code"] == 250
    assert r["timestamp"] == message["received_at"]
    assert r["reception_protocol"] == "ESMTP"


async def test_discard_reject_policy_failures_and_poison_do_not_stop_the_service(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
) -> None:
    # All on one partition (produced in this order, one key) would be ideal; ids differ, so
    # "goes on" is shown by the later messages being routed at all.
    drop = accepted("drop@example.com")
    reject = accepted("reject@example.com")
    boom = accepted("boom@example.com")
    spin = accepted("spin@example.com")
    fine = accepted("fine@example.com")
    await produce_accepted(kafka_bootstrap, topics, [drop, reject, boom, spin])
    await produce_raw(kafka_bootstrap, topics.accepted.name, b"poison", b"not an event")
    await produce_accepted(kafka_bootstrap, topics, [fine])

    async with routing_service(kafka_bootstrap, topic_prefix, policy_file(BY_RECIPIENT)):
        decisions = by_id(await read_topic(kafka_bootstrap, topics.decisions, count=5))
        logs = by_id(await read_topic(kafka_bootstrap, topics.log, count=5))
        dead = await read_topic(kafka_bootstrap, topics.dead_letter, count=3)
        queued = await read_topic(kafka_bootstrap, topics.queued, count=1, idle_seconds=1.0)

    assert [q.value["id"] for q in queued] == [fine["id"]]
    assert queued[0].value["queue"] == "acme@example.com"

    assert decisions[drop["id"]].value["outcome"] == "DISCARDED"
    assert decisions[drop["id"]].value["queue"] == "null"
    assert logs[drop["id"]].value["type"] == "Reception"
    assert logs[drop["id"]].value["queue"] == "null"

    rejected = decisions[reject["id"]].value
    assert rejected["outcome"] == "REJECTED"
    assert rejected["queue"] is None
    expected_response = {
        "code": 550,
        "enhanced_code": {"class": 5, "subject": 7, "detail": 1},
        "content": "not from here",
        "command": None,
    }
    assert rejected["rejection"] == expected_response
    assert logs[reject["id"]].value["type"] == "Rejection"
    assert logs[reject["id"]].value["response"] == expected_response

    for failed in (boom, spin):
        decision = decisions[failed["id"]].value
        assert decision["outcome"] == "REJECTED"
        assert decision["rejection"]["code"] == 451
        assert decision["rejection"]["enhanced_code"] == {"class": 4, "subject": 3, "detail": 0}
        assert logs[failed["id"]].value["type"] == "Rejection"

    assert decisions[fine["id"]].value["outcome"] == "QUEUED"

    kinds = sorted((d.value["error_type"], d.value["key"]) for d in dead)
    assert kinds == sorted(
        [
            ("decode", b"poison"),
            ("policy", boom["id"].encode()),
            ("policy", spin["id"].encode()),
        ]
    )
    poison = next(d.value for d in dead if d.value["error_type"] == "decode")
    assert poison["value"] == b"not an event"
    assert poison["source_topic"] == topics.accepted.name
    assert poison["service"] == "routing"


async def test_graceful_stop_commits_and_a_restart_routes_only_new_messages(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
) -> None:
    policy = policy_file(ROUTING_DOMAIN)
    first = [accepted(f"r{i}@example.com") for i in range(50)]
    await produce_accepted(kafka_bootstrap, topics, first)
    async with routing_service(kafka_bootstrap, topic_prefix, policy):
        await read_topic(kafka_bootstrap, topics.queued, count=len(first))
    assert await committed_offsets(
        kafka_bootstrap, topics.group_id("routing"), topics.accepted.name
    ) == await end_offsets(kafka_bootstrap, topics.accepted)

    second = [accepted(f"s{i}@example.com") for i in range(10)]
    await produce_accepted(kafka_bootstrap, topics, second)
    async with routing_service(kafka_bootstrap, topic_prefix, policy):
        queued = await read_topic(
            kafka_bootstrap, topics.queued, count=len(first) + len(second), idle_seconds=2.0
        )
    ids = [q.value["id"] for q in queued]
    assert sorted(ids) == sorted(m["id"] for m in [*first, *second])


async def test_records_of_an_aborted_accepted_transaction_are_never_routed(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
) -> None:
    aborted = [accepted(f"a{i}@example.com") for i in range(3)]
    committed = [accepted(f"c{i}@example.com") for i in range(3)]
    await produce_accepted_in_transaction(kafka_bootstrap, topics, aborted, commit=False)
    await produce_accepted_in_transaction(kafka_bootstrap, topics, committed, commit=True)
    # The aborted records are in the log: a read_uncommitted reader would route them.
    assert sum((await end_offsets(kafka_bootstrap, topics.accepted)).values()) >= 6

    async with routing_service(kafka_bootstrap, topic_prefix, policy_file(ROUTING_DOMAIN)):
        await read_topic(kafka_bootstrap, topics.queued, count=len(committed))
        # Time to route the aborted records too, were they read.
        queued = await read_topic(kafka_bootstrap, topics.queued, idle_seconds=2.0)
        decisions = await read_topic(kafka_bootstrap, topics.decisions)

    expected = sorted(m["id"] for m in committed)
    assert sorted(q.value["id"] for q in queued) == expected
    assert sorted(d.value["id"] for d in decisions) == expected


async def test_a_refused_output_aborts_the_batch_which_is_routed_again_exactly_once(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
) -> None:
    # `queued` refuses the large message's QueuedMessage; its decision and log record, and
    # the small message's records, would fit. aiokafka would commit them all but the refused
    # one: the service must abort instead and stop, and its restart route the batch again.
    await set_max_message_bytes(kafka_bootstrap, topics.queued, 4096)
    large = accepted("large@example.com")
    large["content"] = b"Subject: large\r\n\r\n" + os.urandom(16 * 1024)  # incompressible
    small = accepted("small@example.com")
    await produce_accepted(kafka_bootstrap, topics, [large, small])

    policy = policy_file(ROUTING_DOMAIN)
    settings = routing_settings(kafka_bootstrap, topic_prefix, policy)
    failed = run_service(SERVICE, settings, handle_signals=False)
    try:
        assert await asyncio.wait_for(failed, 120) == EXIT_FAILED
    except TimeoutError:
        committed = await read_topic(kafka_bootstrap, topics.decisions)
        pytest.fail(f"the service is still running; decisions committed: {len(committed)}")
    # Nothing of the aborted batch is visible: not even the large message's decision.
    stuck = await read_topic(kafka_bootstrap, topics.decisions)
    assert large["id"] not in {d.value["id"] for d in stuck}

    await set_max_message_bytes(kafka_bootstrap, topics.queued, CONTENT_MAX_MESSAGE_BYTES)
    async with routing_service(kafka_bootstrap, topic_prefix, policy):
        await read_topic(kafka_bootstrap, topics.queued, count=2, idle_seconds=2.0)
        decisions = await read_topic(kafka_bootstrap, topics.decisions)
        logs = await read_topic(kafka_bootstrap, topics.log)
        queued = await read_topic(kafka_bootstrap, topics.queued)

    for records in (decisions, logs, queued):
        assert Counter(r.value["id"] for r in records) == {large["id"]: 1, small["id"]: 1}


async def set_max_message_bytes(bootstrap: str, topic: TopicSpec, size: int) -> None:
    """Sets the topic's limit and waits until the broker applies it: the controller answers
    AlterConfigs before the broker replays the change, and on a busy broker a produce sent in
    between is still judged by the old limit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {**topic.configs(), "max.message.bytes": str(size)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic.name, configs)])
    finally:
        await admin.close()
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        described = await describe_topics(bootstrap, [topic.name])
        applied = described[topic.name].configs.get("max.message.bytes")
        if applied == str(size):
            return
        assert asyncio.get_running_loop().time() < deadline, (
            f"{topic.name}: max.message.bytes still {applied}, not {size}, after 30 s"
        )
        await asyncio.sleep(0.1)


# Slow only for a sender-controlled Subject: the fault run's header parse (cubic in C).
SLOW_FOR_ONE_SUBJECT = """\
kumo.on('smtp_server_message_received', function(msg)
  local subject = msg:get_first_named_header_value('Subject') or ''
  local a, b, c = subject:match('^(.-):(.-):(.-);$')
  msg:set_meta('tenant', a or 'acme')
end)
"""


async def test_a_policy_past_its_deadline_fails_that_message_and_routes_the_others(
    kafka_bootstrap: str,
    topic_prefix: str,
    topics: TopicCatalog,
    policy_file: Callable[[str], Path],
) -> None:
    slow = accepted("slow@example.com", subject=":" * 3000)
    fine = [accepted(f"user{i}@example.com") for i in range(3)]
    await produce_accepted(kafka_bootstrap, topics, [fine[0], slow, *fine[1:]])

    async with routing_service(kafka_bootstrap, topic_prefix, policy_file(SLOW_FOR_ONE_SUBJECT)):
        decisions = by_id(await read_topic(kafka_bootstrap, topics.decisions, count=4))
        dead = await read_topic(kafka_bootstrap, topics.dead_letter, count=1, idle_seconds=1.0)
        queued = await read_topic(kafka_bootstrap, topics.queued, count=3, idle_seconds=1.0)

    assert sorted(q.value["id"] for q in queued) == sorted(m["id"] for m in fine)
    assert all(q.value["queue"] == "acme@example.com" for q in queued)
    failed = decisions[slow["id"]].value
    assert failed["outcome"] == "REJECTED"
    assert failed["rejection"]["code"] == 451
    assert [d.value["key"] for d in dead] == [slow["id"].encode()]
    assert dead[0].value["error_type"] == "policy"
    # The reason names the deadline, the policy file and line (default deadline: 1 s).
    assert dead[0].value["reason"] == (
        "policy timeout: policy.lua:3: policy call exceeded its deadline of 1 s"
    )
