"""A follower's fetch session sets idle partitions aside (broker/fetch_sessions.py).

Proves, on a real leader `Partition` and `FetchSession`: a partition whose in-sync
follower holds its whole log leaves the session's fetch set (`visit`) once marked idle,
and the follower stays caught up on it through the session's fetch clock alone, past
`replica.lag.time.max.ms`; a lagging or out-of-sync follower may not set it aside; an
append puts it back and wakes the session's parked fetch; a high-watermark or ISR move
puts it back without waking, and its next append then wakes the parked fetch, once;
the follower listing it again folds the clock in; a closed session is never woken; a
partition the session forgets stops counting its fetches.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ottla.broker.fetch_sessions import FetchSession, SessionPartition
from ottla.broker.partitions import Partition, ReplicaManager
from ottla.protocol import Record, build_batch
from ottla.storage import LogConfig

LAG_MS = 1000
KEY = ("orders", 0)


def _batch() -> bytes:
    return bytes(build_batch([Record(key=None, value=b"v")], base_timestamp=1))


def _leader(tmp_path: Path, isr: tuple[int, ...] = (1, 2, 3)) -> Partition:
    replicas = ReplicaManager(tmp_path)
    partition = replicas.open_partition("orders", 0, uuid.uuid4(), LogConfig(), {}, 0, now_ms=0)
    partition.become_leader(1, 0, (1, 2, 3), isr, 0, now_ms=0)
    return partition


def _session(wakes: list[int]) -> FetchSession:
    session = FetchSession(7, 1, owner=None)
    session.set_partitions(
        {KEY: SessionPartition(0, 1 << 20), ("orders", 1): SessionPartition(0, 1)}
    )
    session.waker = lambda: wakes.append(1)
    return session


async def test_an_idle_partition_leaves_the_fetch_set_and_its_follower_stays_in_sync(
    tmp_path: Path,
) -> None:
    partition = _leader(tmp_path)
    wakes: list[int] = []
    session = _session(wakes)
    for follower in (2, 3):
        partition.follower_fetched(follower, 0, now_ms=10)
    assert partition.mark_idle(session, 2)
    assert list(session.visit()) == [("orders", 1)]
    state = partition.replication
    assert state is not None
    # Only the session's other fetches arrive, well past the lag allowance.
    session.clock.last_fetch_ms = 10 + 5 * LAG_MS
    assert state.out_of_sync_replicas(10 + 5 * LAG_MS + 1, LAG_MS) == (3,)

    partition.append_records(_batch(), now_ms=20)  # new records: back, and woken now
    assert KEY in session.visit()
    assert wakes == [1]
    caught_up = state.followers[2]
    assert caught_up.idle_clock is None
    assert caught_up.last_caught_up_ms == 10 + 5 * LAG_MS  # the clock, folded in


async def test_a_lagging_or_out_of_sync_follower_keeps_the_partition(tmp_path: Path) -> None:
    partition = _leader(tmp_path, isr=(1, 2))
    partition.append_records(_batch(), now_ms=5)
    session = _session([])
    partition.follower_fetched(2, 0, now_ms=10)  # behind the log end offset (1)
    assert not partition.mark_idle(session, 2)
    partition.follower_fetched(3, 1, now_ms=10)  # caught up, but not in the ISR
    assert not partition.mark_idle(session, 3)
    partition.follower_fetched(2, 1, now_ms=11)
    assert partition.mark_idle(session, 2)


async def test_watermark_and_isr_moves_bring_it_back_without_a_wake(tmp_path: Path) -> None:
    partition = _leader(tmp_path)
    partition.append_records(_batch(), now_ms=5)
    wakes: list[int] = []
    session = _session(wakes)
    partition.follower_fetched(2, 1, now_ms=10)
    assert partition.mark_idle(session, 2)
    partition.follower_fetched(3, 1, now_ms=11)  # the high watermark moves to 1
    assert partition.high_watermark == 1
    assert KEY in session.visit() and wakes == []
    assert partition.mark_idle(session, 2)
    partition.update_leader_isr((1, 2, 3), (1, 2), 1, now_ms=12)
    assert KEY in session.visit() and wakes == []
    # The session's parked fetch had not parked on the partition (it was idle): the
    # partition's next append wakes it all the same, once.
    partition.append_records(_batch(), now_ms=13)
    assert wakes == [1]
    partition.append_records(_batch(), now_ms=14)
    assert wakes == [1]


async def test_listing_it_again_folds_the_clock_and_a_closed_session_is_not_woken(
    tmp_path: Path,
) -> None:
    partition = _leader(tmp_path)
    wakes: list[int] = []
    session = _session(wakes)
    partition.follower_fetched(2, 0, now_ms=10)
    assert partition.mark_idle(session, 2)
    session.clock.last_fetch_ms = 500
    partition.follower_fetched(2, 0, now_ms=600)  # listed again
    state = partition.replication
    assert state is not None
    assert state.followers[2].idle_clock is None
    assert state.followers[2].last_caught_up_ms == 600
    assert partition.mark_idle(session, 2)
    session.closed = True
    partition.append_records(_batch(), now_ms=700)
    assert wakes == []
    assert KEY not in session.visit()


async def test_a_forgotten_partition_stops_counting_the_sessions_fetches(
    tmp_path: Path,
) -> None:
    partition = _leader(tmp_path)
    session = _session([])
    partition.follower_fetched(2, 0, now_ms=10)
    partition.follower_fetched(3, 0, now_ms=10)
    assert partition.mark_idle(session, 2)
    session.clock.last_fetch_ms = 400
    session.forget(KEY)
    partition.session_forgot(session)  # the follower's fetch listed it as forgotten
    session.clock.last_fetch_ms = 10 + 5 * LAG_MS  # its other partitions go on
    state = partition.replication
    assert state is not None
    assert state.followers[2].last_caught_up_ms == 400
    assert state.out_of_sync_replicas(10 + 5 * LAG_MS, LAG_MS) == (2, 3)
