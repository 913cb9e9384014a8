"""Delivery's ready-queue states on the compacted `ready-queues` topic: encode, apply, read.

Key = ready queue name (`source->site@smtp_client`), value = a `ReadyQueueState` event; a
tombstone says the queue is gone. Each delivery process publishes the states of its pools
(services/delivery/ready_queue_publisher.py); the admin API follows the topic and answers
`ready-q-states` and `inspect-ready-q` for the whole deployment. A state past its
`expires_at` is not reported: its process stopped without writing the tombstone.
"""

from __future__ import annotations

from typing import cast

from ..events.codec import DecodeError, decode
from ..events.records import ReadyQueueState
from .dead_letter import RecordRejected

# The state names a ready queue may be in (KumoMTA's ready-q-states names; the message-rate
# one is relaystream's). `suspended` is an operator's suspend-ready-q rule.
CONNECTION_LIMITED = "connection_limited"
CONNECTION_RATE_THROTTLED = "connection_rate_throttled"
MESSAGE_RATE_THROTTLED = "message_rate_throttled"
SUSPENDED = "suspended"


def _millis(state: ReadyQueueState) -> int:
    return int(state["expires_at"].timestamp() * 1000)


class ReadyQueueStates:
    """The latest state of each ready queue, as the topic holds it."""

    def __init__(self) -> None:
        self._by_name: dict[str, ReadyQueueState] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record: a state replaces its queue's, a tombstone removes it. Raises
        DecodeError (or ValueError for a key that is not its state's name); the key's
        state is removed all the same, as compaction keeps that record."""
        name = key.decode("utf-8", "replace") if key is not None else None
        if name is not None:
            self._by_name.pop(name, None)
        if value is None:
            return
        _, record = decode(value, "ReadyQueueState")
        state = cast(ReadyQueueState, record)
        if state["name"] != name:
            raise ValueError(f"record key {name!r} is not its ready queue {state['name']!r}")
        self._by_name[state["name"]] = state

    def apply_or_reject(self, key: bytes | None, value: bytes | None) -> None:
        """`apply` for a topic follower: an invalid record raises RecordRejected."""
        try:
            self.apply(key, value)
        except (DecodeError, ValueError) as error:
            kind = "decode" if isinstance(error, DecodeError) else "validation"
            raise RecordRejected(str(error), kind) from error

    def current(self, now_ms: int) -> dict[str, ReadyQueueState]:
        """The states not expired at `now_ms`, by ready queue name."""
        return {n: s for n, s in sorted(self._by_name.items()) if _millis(s) > now_ms}
