"""Why a consume-transform-produce instance that lost its partitions cannot commit them after.

aiokafka 0.14's `send_offsets_to_transaction` sends TxnOffsetCommit v0, which carries no group
generation or member id (KIP-447's fencing is not available): the group coordinator accepts a
transactional offset commit from a member it has expelled. A routing instance gives its
partitions up in one of two ways, and each is safe for its own reason:

- It takes part in the rebalance: its `on_partitions_revoked` (transactional_loop.py) waits for
  the open transaction to end, so the next owner reads offsets that include it.
- It is expelled because it went silent (its event loop stalled, or it was cut off): its last
  heartbeat was at most `heartbeat_interval` before its open transaction began, so the group
  gives its partitions away no earlier than `session_timeout - heartbeat_interval` after that
  transaction began. The broker's transaction coordinator aborts a transaction open longer than
  `transaction.timeout.ms`, checking every `transaction.abort.timed.out.transaction.cleanup.
  interval.ms`, and the abort bumps the producer epoch, so the zombie's later commit is refused.

Hence `zombie_is_fenced`: transaction timeout + broker abort check + heartbeat interval <
session timeout. tests/unit/test_fencing.py asserts it over the real constants, and
tests/integration/test_routing_fencing.py shows the broker refusing the zombie's commit.

The rule alone does not cover an instance that stalls before its transaction began at the
broker (while it transforms a batch), or that keeps reaching the brokers but not its group
coordinator: nothing would be open to abort. `transact` (transactional_loop.py) closes it with
a generation-checked offset commit before each transaction commit; the integration test runs
both cases.
"""

from __future__ import annotations

# The broker's transaction.abort.timed.out.transaction.cleanup.interval.ms, as every broker we
# configure sets it (Kafka's default, made explicit in the k8s Kafka resources and compose; the
# tests check that). A broker checking less often breaks the invariant above.
BROKER_ABORT_CHECK_INTERVAL_MS = 10_000
# The transaction timeout of every consume-transform-produce loop (routing, ingest's submit
# loop): the broker aborts a transaction left open this long. Readers (read_committed) of the
# loop's outputs wait for such a transaction until then.
LOOP_TRANSACTION_TIMEOUT_MS = 15_000


def zombie_is_fenced(
    *,
    transaction_timeout_ms: int,
    session_timeout_ms: int,
    heartbeat_interval_ms: int,
    broker_abort_check_interval_ms: int = BROKER_ABORT_CHECK_INTERVAL_MS,
) -> bool:
    """True when the broker aborts a silent member's open transaction before the group can
    give that member's partitions to another (see the module doc)."""
    latest_abort = transaction_timeout_ms + broker_abort_check_interval_ms
    earliest_reassignment = session_timeout_ms - heartbeat_interval_ms
    return latest_abort < earliest_reassignment
