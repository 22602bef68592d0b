"""Seeded random interaction with the group state machine; invariants after every event.

Proves: under any interleaving of joins (new, known, static, with MEMBER_ID_REQUIRED),
syncs, heartbeats, commits, leaves and clock advances, the machine keeps its
invariants (`check_invariants`: one generation per group, the leader is a member,
member ids and static instance ids unique, Stable members hold no waiting request,
Empty groups have no members), never answers a request twice, and every member of
a Stable group answered by a SyncGroup holds the current generation's assignment.
A failure prints its seed; replay with OTTLA_GROUP_SEED=<seed>.
"""

from __future__ import annotations

import os
import random

import pytest

from ottla.broker.groups.state import (
    Effects,
    GroupConfig,
    GroupCoordinatorState,
    GroupState,
    JoinRequest,
    JoinResult,
    LeaveMember,
    OffsetCommitEntry,
    SyncResult,
)
from ottla.protocol import ErrorCode

SEEDS = [int(os.environ["OTTLA_GROUP_SEED"])] if "OTTLA_GROUP_SEED" in os.environ else range(40)
GROUPS = ("a", "b")
INSTANCES = ("i1", "i2", "i3")


def _run(seed: int, steps: int = 400) -> None:
    rng = random.Random(seed)
    config = GroupConfig(
        initial_rebalance_delay_ms=rng.choice([0, 100, 3000]),
        min_session_timeout_ms=1000,
        max_session_timeout_ms=60_000,
        offsets_retention_ms=rng.choice([5000, 600_000]),
        max_size=rng.choice([3, 100]),
    )
    state = GroupCoordinatorState(config)
    now = 0
    token = 0
    answered: set[int] = set()
    waiting: dict[int, tuple[str, str]] = {}  # token -> (group, member id)
    known: dict[str, dict[str, None]] = {g: {} for g in GROUPS}
    generations: dict[str, int] = dict.fromkeys(GROUPS, 0)

    def take(effects: Effects) -> None:
        for answered_token, result in effects.replies:
            assert answered_token not in answered, f"seed {seed}: token answered twice"
            answered.add(answered_token)
            group, member_id = waiting.pop(answered_token)
            if isinstance(result, JoinResult) and result.member_id:
                if result.error in (ErrorCode.none, ErrorCode.member_id_required):
                    known[group].setdefault(result.member_id, None)
                if result.error is ErrorCode.none:
                    generations[group] = result.generation_id
            if isinstance(result, SyncResult) and result.error is ErrorCode.none:
                summary = state.describe(group)
                assert summary is not None and summary.state is GroupState.STABLE
                # The assignment the leader gave this member for the current generation.
                expected = f"{member_id}@{summary.generation_id}".encode()
                assert result.assignment in (b"", expected), f"seed {seed}: stale assignment"
        if effects.deadline_ms is not None:
            assert effects.deadline_ms == state.next_deadline_ms()
        state.check_invariants()

    for _ in range(steps):
        token += 1
        group = rng.choice(GROUPS)
        members = list(known[group])
        member = rng.choice(members) if members and rng.random() < 0.8 else ""
        generation = generations[group] + rng.choice([0, 0, 0, 0, -1, 1])
        action = rng.random()
        try:
            if action < 0.35:
                instance = rng.choice(INSTANCES) if rng.random() < 0.3 else None
                waiting[token] = (group, member)
                request = JoinRequest(
                    member_id=member,
                    group_instance_id=instance,
                    client_id="c",
                    client_host="/h",
                    session_timeout_ms=rng.choice([500, 2000, 10_000]),
                    rebalance_timeout_ms=rng.choice([1000, 5000]),
                    protocol_type="consumer",
                    protocols=rng.choice(
                        [(("range", b"1"),), (("rr", b"2"), ("range", b"3")), (("x", b""),)]
                    ),
                    require_known_member_id=rng.random() < 0.5 and instance is None,
                    new_member_suffix=str(token),
                )
                take(state.join(group, request, token, now))
            elif action < 0.55:
                waiting[token] = (group, member)
                assignments = [(m, f"{m}@{generation}".encode()) for m in members]
                take(
                    state.sync(group, generation, member, None, None, None, assignments, token, now)
                )
            elif action < 0.7:
                take(state.heartbeat(group, generation, member, None, now)[1])
            elif action < 0.8:
                entries = [OffsetCommitEntry("t", rng.randrange(3), rng.randrange(100))]
                take(state.commit_offsets(group, generation, member, None, entries, now)[1])
            elif action < 0.85:
                take(state.leave(group, [LeaveMember(member)], now)[2])
            elif action < 0.87:
                take(state.delete_group(group)[1])
            else:
                now += rng.choice([1, 100, 600, 3000, 11_000])
                take(state.tick(now))
        except AssertionError as error:
            raise AssertionError(f"seed {seed}: {error}") from error
        # Members of a Stable group that synced hold this generation's assignment.
        for name in GROUPS:
            summary = state.describe(name)
            if summary is None or summary.state is not GroupState.STABLE:
                continue
            ids = {m.member_id for m in summary.members}
            assert summary.leader in ids, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_interactions_keep_invariants(seed: int) -> None:
    _run(seed)
