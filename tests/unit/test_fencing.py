"""Routing's exactly-once against zombies rests on an inequality between four settings
(core/kafka/fencing.py): changing one of them without the others must fail here."""

from hypothesis import given
from hypothesis import strategies as st

from relaystream.core.kafka.consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from relaystream.core.kafka.fencing import (
    BROKER_ABORT_CHECK_INTERVAL_MS,
    LOOP_TRANSACTION_TIMEOUT_MS,
    zombie_is_fenced,
)


def test_routing_settings_fence_a_silent_instance() -> None:
    assert zombie_is_fenced(
        transaction_timeout_ms=LOOP_TRANSACTION_TIMEOUT_MS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        broker_abort_check_interval_ms=BROKER_ABORT_CHECK_INTERVAL_MS,
    )


def test_the_settings_before_the_fix_did_not() -> None:
    # A 30 s transaction timeout with a 30 s session: the group could reassign first.
    assert not zombie_is_fenced(
        transaction_timeout_ms=30_000,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )


@given(
    transaction=st.integers(1, 120_000),
    session=st.integers(1, 120_000),
    heartbeat=st.integers(1, 60_000),
    check=st.integers(1, 60_000),
    more=st.integers(1, 60_000),
)
def test_longer_waits_for_the_abort_never_make_it_safe(
    transaction: int, session: int, heartbeat: int, check: int, more: int
) -> None:
    def fenced(transaction: int, session: int, heartbeat: int, check: int) -> bool:
        return zombie_is_fenced(
            transaction_timeout_ms=transaction,
            session_timeout_ms=session,
            heartbeat_interval_ms=heartbeat,
            broker_abort_check_interval_ms=check,
        )

    if not fenced(transaction, session, heartbeat, check):
        assert not fenced(transaction + more, session, heartbeat, check)
        assert not fenced(transaction, session, heartbeat, check + more)
        assert not fenced(transaction, session, heartbeat + more, check)
    else:
        assert fenced(transaction, session + more, heartbeat, check)
    # The session must outlast the abort: equal is not enough.
    assert not fenced(transaction, transaction + check + heartbeat, heartbeat, check)
