"""Proves the leader-side replication state (cluster/replication.py): the high watermark
is the minimum log end offset over the ISR, never passes any ISR member, never decreases;
followers leave the ISR after `replica.lag.time.max.ms` without catching up and may
join once they reach the high watermark and the leader's epoch start; acks=all
completes only once the high watermark passes the batch, with NOT_ENOUGH_REPLICAS_AFTER_APPEND
when the ISR shrank below min.insync.replicas. Interaction scripts, then a seeded random
run checking the invariants after every event (a failure prints its seed)."""

from __future__ import annotations

import random

import pytest

from ottla.cluster.replication import LeaderState
from ottla.protocol import ErrorCode

LAG_MS = 1000


def leader(isr: tuple[int, ...] = (1, 2, 3), hw: int = 0, epoch_start: int = 0) -> LeaderState:
    return LeaderState(1, (1, 2, 3), isr, 0, hw, epoch_start, now_ms=0)


def test_high_watermark_waits_for_every_isr_member() -> None:
    state = leader()
    assert not state.leader_appended(10)
    assert state.high_watermark == 0
    assert not state.follower_fetched(2, 10, 10, now_ms=5)  # 3 is not heard from yet
    assert state.follower_fetched(3, 4, 10, now_ms=6)
    assert state.high_watermark == 4
    assert state.follower_fetched(3, 10, 10, now_ms=7)
    assert state.high_watermark == 10


def test_single_member_isr_high_watermark_is_the_log_end_offset() -> None:
    state = LeaderState(1, (1,), (1,), 0, 0, 0, now_ms=0)
    assert state.leader_appended(7)
    assert state.high_watermark == 7
    assert state.acks_all_result(6, 1) is ErrorCode.none


def test_high_watermark_never_decreases() -> None:
    state = leader(hw=5)
    state.follower_fetched(2, 8, 8, now_ms=1)
    state.follower_fetched(3, 8, 8, now_ms=1)
    assert state.high_watermark == 8
    state.follower_fetched(2, 3, 8, now_ms=2)  # a restarted follower fetching low
    assert state.high_watermark == 8


def test_lagging_follower_leaves_and_rejoins_the_isr() -> None:
    state = leader()
    state.leader_appended(10)
    state.follower_fetched(2, 10, 10, now_ms=100)
    state.follower_fetched(3, 2, 10, now_ms=100)
    assert state.out_of_sync_replicas(900, LAG_MS) == ()
    assert state.out_of_sync_replicas(1050, LAG_MS) == (3,)
    state.update_isr((1, 2, 3), (1, 2), 1, 10, now_ms=1200)
    assert state.high_watermark == 10
    assert not state.can_join_isr(3)
    state.follower_fetched(3, 9, 10, now_ms=1300)
    assert not state.can_join_isr(3)
    state.follower_fetched(3, 10, 10, now_ms=1400)
    assert state.can_join_isr(3)
    assert not state.can_join_isr(2)  # already a member


def test_caught_up_as_of_the_previous_fetch() -> None:
    state = leader()
    state.follower_fetched(2, 0, 10, now_ms=100)  # leader end 10 at this fetch
    state.leader_appended(20)
    state.follower_fetched(2, 10, 20, now_ms=1050)  # reached the end of the previous one
    assert state.followers[2].last_caught_up_ms == 100
    state.follower_fetched(2, 20, 20, now_ms=1060)
    assert state.followers[2].last_caught_up_ms == 1060


def test_leader_never_leaves_its_isr() -> None:
    state = leader()
    assert 1 not in state.out_of_sync_replicas(10**9, LAG_MS)


def test_joining_needs_the_leader_epoch_start() -> None:
    state = leader(isr=(1, 2), hw=0, epoch_start=50)
    state.leader_appended(60)
    state.follower_fetched(3, 40, 60, now_ms=1)
    assert state.high_watermark == 0  # 2 not heard from
    assert not state.can_join_isr(3)  # above the HW but below the epoch start
    state.follower_fetched(3, 55, 60, now_ms=2)
    assert state.can_join_isr(3)


def test_acks_all() -> None:
    state = leader()
    state.leader_appended(5)
    assert state.enough_replicas(2)
    assert state.acks_all_result(4, 2) is None
    state.follower_fetched(2, 5, 5, now_ms=1)
    state.follower_fetched(3, 5, 5, now_ms=1)
    assert state.acks_all_result(4, 2) is ErrorCode.none
    assert state.acks_all_result(5, 2) is None
    state.leader_appended(6)
    state.update_isr((1, 2, 3), (1,), 2, 6, now_ms=2)
    assert not state.enough_replicas(2)
    assert state.acks_all_result(5, 2) is ErrorCode.not_enough_replicas_after_append


def test_removed_replica_is_forgotten_and_unknown_fetcher_ignored() -> None:
    state = leader()
    state.update_isr((1, 2), (1, 2), 1, 0, now_ms=0)
    assert 3 not in state.followers
    assert not state.follower_fetched(3, 10, 10, now_ms=1)


@pytest.mark.parametrize("seed", range(40))
def test_random_invariants(seed: int) -> None:
    rng = random.Random(seed)
    replicas = (1, 2, 3, 4)
    state = LeaderState(1, replicas, replicas, 0, 0, 0, now_ms=0)
    follower_end = dict.fromkeys(replicas[1:], 0)
    leader_end = 0
    now = 0
    previous_hw = 0
    for step in range(400):
        now += rng.randint(0, 300)
        event = rng.random()
        if event < 0.35:
            leader_end += rng.randint(1, 5)
            state.leader_appended(leader_end)
        elif event < 0.8:
            replica = rng.choice(replicas[1:])
            follower_end[replica] = rng.randint(follower_end[replica], leader_end)
            state.follower_fetched(replica, follower_end[replica], leader_end, now)
        elif event < 0.9:
            out = state.out_of_sync_replicas(now, LAG_MS)
            if out:
                isr = tuple(r for r in state.isr if r not in out)
                state.update_isr(replicas, isr, state.partition_epoch + 1, leader_end, now)
        else:
            joining = [r for r in replicas if state.can_join_isr(r)]
            if joining:
                isr = (*state.isr, joining[0])
                state.update_isr(replicas, isr, state.partition_epoch + 1, leader_end, now)
        hw = state.high_watermark
        context = f"seed={seed} step={step}"
        assert hw >= previous_hw, context
        assert hw <= leader_end, context
        assert 1 in state.isr, context
        for replica in state.isr:
            if replica != 1 and state.followers[replica].log_end_offset >= 0:
                # members that joined after the HW was set may only be ahead of it
                assert hw <= follower_end[replica] or replica not in state.isr, context
        previous_hw = hw
