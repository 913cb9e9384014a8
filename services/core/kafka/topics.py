"""Every Kafka topic of relaystream, declared once: name, partitions, replicas and configs.

`declare_topics(TopicSettings(...))` gives the catalogue; services read names from it
(`topics.queued.name`), `relaystream topics ensure` creates what is missing and reports drift.
`deployment_topics(prefix)` is the catalogue of one deployment, the one every service (through
the runtime), the CLI and the tests take names from: topic names, consumer groups and
transactional ids all start with the deployment's `topic_prefix`, taken as it is. An empty
prefix means names without a prefix (`accepted`, group `routing`); the setting's default is
DEFAULT_PREFIX.

`queued`, `attempts` and `outcomes` are co-partitioned by scheduled-queue name: the scheduler
instance that owns partition p of `queued` also consumes partition p of `outcomes` and produces
to partition p of `attempts`. They therefore take their partition count from one field,
`TopicSettings.queue_partitions`, so they cannot differ. `partition_for_queue` is the partition
of a queue in all three, the same one Kafka's default partitioner picks for the queue name as key.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

DEFAULT_PREFIX = "relaystream."

# Mail content travels in submit, accepted, queued and attempts (and in dead letters of those).
# Ingest limits message size below this, leaving room for the envelope and metadata.
CONTENT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Kafka's own default for topics that carry no mail content.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 + 12

_DAY_MS = 24 * 60 * 60 * 1000
RETAIN_FOREVER_MS = -1


class CleanupPolicy(StrEnum):
    COMPACT = "compact"
    DELETE = "delete"
    # The latest record per key, and none older than the retention.
    COMPACT_DELETE = "compact,delete"


class TopicRole(StrEnum):
    """What a topic is for; the value is the topic's name without the prefix."""

    SUBMIT = "submit"
    ACCEPTED = "accepted"
    DECISIONS = "decisions"
    QUEUED = "queued"
    ATTEMPTS = "attempts"
    OUTCOMES = "outcomes"
    QUEUE_CONFIG = "queue-config"
    ADMIN = "admin"
    READY_QUEUES = "ready-queues"
    LOG = "log"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class TopicSettings:
    """How big and how replicated the topics are; `local()` and `production()` are the presets."""

    prefix: str = DEFAULT_PREFIX
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # The one partition count of queued, attempts and outcomes (co-partitioned by queue name).
    queue_partitions: int = 6
    # submit, accepted, decisions, log and dead-letter.
    partitions: int = 6
    # queue-config, admin and ready-queues: small, read whole by every instance, ordered in
    # one partition.
    control_partitions: int = 1
    # Per-topic config overrides by role, e.g. a small segment.ms for tests.
    extra_configs: Mapping[TopicRole, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        if self.replication_factor < 1:
            raise ValueError(f"replication_factor must be >= 1, got {self.replication_factor}")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise ValueError(
                f"min_insync_replicas must be between 1 and replication_factor "
                f"({self.replication_factor}), got {self.min_insync_replicas}"
            )
        for name in ("queue_partitions", "partitions", "control_partitions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def local(cls, prefix: str = DEFAULT_PREFIX) -> TopicSettings:
        return cls(prefix=prefix, replication_factor=1, min_insync_replicas=1)

    @classmethod
    def production(cls, prefix: str = DEFAULT_PREFIX) -> TopicSettings:
        return cls(
            prefix=prefix,
            replication_factor=3,
            min_insync_replicas=2,
            queue_partitions=12,
            partitions=12,
        )


@dataclass(frozen=True)
class TopicSpec:
    role: TopicRole
    name: str
    partitions: int
    replication_factor: int
    cleanup_policy: CleanupPolicy
    retention_ms: int
    max_message_bytes: int
    min_insync_replicas: int
    extra_configs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def configs(self) -> dict[str, str]:
        """The topic-level configs to create the topic with (and to compare against)."""
        return {
            "cleanup.policy": self.cleanup_policy.value,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(self.min_insync_replicas),
            **self.extra_configs,
        }


@dataclass(frozen=True)
class TopicCatalog:
    """All topics of one deployment, one attribute per role, and the deployment's prefix."""

    prefix: str
    submit: TopicSpec
    accepted: TopicSpec
    decisions: TopicSpec
    queued: TopicSpec
    attempts: TopicSpec
    outcomes: TopicSpec
    queue_config: TopicSpec
    admin: TopicSpec
    ready_queues: TopicSpec
    log: TopicSpec
    dead_letter: TopicSpec

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(
            (
                self.submit,
                self.accepted,
                self.decisions,
                self.queued,
                self.attempts,
                self.outcomes,
                self.queue_config,
                self.admin,
                self.ready_queues,
                self.log,
                self.dead_letter,
            )
        )

    def group_id(self, name: str) -> str:
        """The consumer group `name` of this deployment (e.g. "routing"): deployments that
        share a cluster under different prefixes never join each other's groups."""
        return f"{self.prefix}{name}"

    def transactional_id(self, service: str, instance: str) -> str:
        """A producer's transactional id: stable per instance, so a restarted instance fences
        its predecessor, and scoped to the deployment like the groups."""
        return f"{self.prefix}{service}-{instance}"

    def by_role(self, role: TopicRole) -> TopicSpec:
        for spec in self:
            if spec.role is role:
                return spec
        raise KeyError(role)  # unreachable: every role has a field


# role -> (cleanup policy, retention, max message bytes). Retention of delete topics: long
# enough to replay a week of traffic (submit, accepted, attempts, outcomes) or to audit
# (log, dead-letter); compacted topics keep their latest value per key forever, except
# `decisions`: one per message ever routed would grow without end, so it keeps the log's
# audit horizon (30 days), and `audit` answers for that window.
AUDIT_HORIZON_MS = 30 * _DAY_MS
_DECLARATIONS: Mapping[TopicRole, tuple[CleanupPolicy, int, int]] = MappingProxyType(
    {
        TopicRole.SUBMIT: (CleanupPolicy.DELETE, 7 * _DAY_MS, CONTENT_MAX_MESSAGE_BYTES),
        TopicRole.ACCEPTED: (CleanupPolicy.DELETE, 7 * _DAY_MS, CONTENT_MAX_MESSAGE_BYTES),
        TopicRole.DECISIONS: (
            CleanupPolicy.COMPACT_DELETE,
            AUDIT_HORIZON_MS,
            DEFAULT_MAX_MESSAGE_BYTES,
        ),
        TopicRole.QUEUED: (CleanupPolicy.COMPACT, RETAIN_FOREVER_MS, CONTENT_MAX_MESSAGE_BYTES),
        TopicRole.ATTEMPTS: (CleanupPolicy.DELETE, 7 * _DAY_MS, CONTENT_MAX_MESSAGE_BYTES),
        TopicRole.OUTCOMES: (CleanupPolicy.DELETE, 7 * _DAY_MS, DEFAULT_MAX_MESSAGE_BYTES),
        TopicRole.QUEUE_CONFIG: (
            CleanupPolicy.COMPACT,
            RETAIN_FOREVER_MS,
            DEFAULT_MAX_MESSAGE_BYTES,
        ),
        TopicRole.ADMIN: (CleanupPolicy.COMPACT, RETAIN_FOREVER_MS, DEFAULT_MAX_MESSAGE_BYTES),
        # Delivery's ready-queue states by name: the latest per queue; a tombstone (or the
        # state's own expiry) when the queue is gone.
        TopicRole.READY_QUEUES: (
            CleanupPolicy.COMPACT,
            RETAIN_FOREVER_MS,
            DEFAULT_MAX_MESSAGE_BYTES,
        ),
        TopicRole.LOG: (CleanupPolicy.DELETE, AUDIT_HORIZON_MS, DEFAULT_MAX_MESSAGE_BYTES),
        # A dead letter carries the failed event's bytes, which may be a whole mail: kept
        # until an operator drops or re-injects it (a tombstone on its id, the key), never
        # expired, since an expired one of accepted mail would be mail lost.
        TopicRole.DEAD_LETTER: (
            CleanupPolicy.COMPACT,
            RETAIN_FOREVER_MS,
            CONTENT_MAX_MESSAGE_BYTES,
        ),
    }
)

_CO_PARTITIONED = frozenset({TopicRole.QUEUED, TopicRole.ATTEMPTS, TopicRole.OUTCOMES})
_CONTROL = frozenset({TopicRole.QUEUE_CONFIG, TopicRole.ADMIN, TopicRole.READY_QUEUES})


def _partitions_for(role: TopicRole, settings: TopicSettings) -> int:
    if role in _CO_PARTITIONED:
        return settings.queue_partitions
    if role in _CONTROL:
        return settings.control_partitions
    return settings.partitions


def declare_topic(role: TopicRole, settings: TopicSettings) -> TopicSpec:
    cleanup_policy, retention_ms, max_message_bytes = _DECLARATIONS[role]
    return TopicSpec(
        role=role,
        name=f"{settings.prefix}{role.value}",
        partitions=_partitions_for(role, settings),
        replication_factor=settings.replication_factor,
        cleanup_policy=cleanup_policy,
        retention_ms=retention_ms,
        max_message_bytes=max_message_bytes,
        min_insync_replicas=settings.min_insync_replicas,
        extra_configs=MappingProxyType(dict(settings.extra_configs.get(role, {}))),
    )


def declare_topics(settings: TopicSettings | None = None) -> TopicCatalog:
    settings = settings or TopicSettings()
    return TopicCatalog(
        prefix=settings.prefix,
        submit=declare_topic(TopicRole.SUBMIT, settings),
        accepted=declare_topic(TopicRole.ACCEPTED, settings),
        decisions=declare_topic(TopicRole.DECISIONS, settings),
        queued=declare_topic(TopicRole.QUEUED, settings),
        attempts=declare_topic(TopicRole.ATTEMPTS, settings),
        outcomes=declare_topic(TopicRole.OUTCOMES, settings),
        queue_config=declare_topic(TopicRole.QUEUE_CONFIG, settings),
        admin=declare_topic(TopicRole.ADMIN, settings),
        ready_queues=declare_topic(TopicRole.READY_QUEUES, settings),
        log=declare_topic(TopicRole.LOG, settings),
        dead_letter=declare_topic(TopicRole.DEAD_LETTER, settings),
    )


def deployment_topics(prefix: str) -> TopicCatalog:
    """The topics, groups and transactional ids of the deployment whose `topic_prefix` is
    `prefix`, taken exactly: "" means no prefix, never the default. Partition counts are the
    local layout's; services ask the broker for the real ones."""
    return declare_topics(TopicSettings(prefix=prefix))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) as a signed 32-bit int."""
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    mask = 0xFFFFFFFF
    length = len(data)
    h = (seed ^ length) & mask
    body = length - length % 4
    for k in struct.unpack_from(f"<{body // 4}I", data):
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    remaining = length % 4
    # Java's switch falls through from the highest remaining byte down; bytes are signed in
    # Java but `& 0xff` makes them unsigned, as here.
    if remaining == 3:
        h ^= data[body + 2] << 16
    if remaining >= 2:
        h ^= data[body + 1] << 8
    if remaining >= 1:
        h ^= data[body]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def key_hash(key: bytes) -> int:
    """What Kafka's default partitioner takes modulo the partition count for a non-null key."""
    # Utils.toPositive: clear the sign bit (not abs()).
    return murmur2(key) & 0x7FFFFFFF


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return key_hash(key) % partitions


@lru_cache(maxsize=65_536)  # few distinct queues carry most of the mail
def partition_for_queue(queue_name: str, partitions: int) -> int:
    """The partition of a scheduled queue in queued, attempts and outcomes."""
    return partition_for_key(queue_name.encode("utf-8"), partitions)
