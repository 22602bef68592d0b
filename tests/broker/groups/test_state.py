"""The classic group state machine, driven by interaction scripts (no I/O, no clock).

Proves: member ids and MEMBER_ID_REQUIRED (v4+), the initial delayed join and its
extension per new member, join completion and leader election, SyncGroup (followers
wait for the leader), heartbeats and session expiry, rebalance on join/leave/expiry,
static membership (same assignment back without a rebalance, FENCED_INSTANCE_ID for
the old id), fencing errors (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
REBALANCE_IN_PROGRESS, INCONSISTENT_GROUP_PROTOCOL), input validation
(INVALID_SESSION_TIMEOUT, INVALID_GROUP_ID), protocol selection by votes, simple
consumer commits, offset metadata limits, offset expiry and group deletion, and the
records the machine asks to persist (and `load` restoring them).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ottla.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
)
from ottla.broker.groups.state import (
    CoordinatorRecord,
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

E = ErrorCode
SESSION = 10_000
REBALANCE = 30_000
PROTOCOLS = (("range", b"sub"),)


class Script:
    """A group coordinator plus helpers that send requests and collect replies."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("initial_rebalance_delay_ms", 0)
        self.state = GroupCoordinatorState(GroupConfig(**config))
        self.now = 1_000_000
        self.replies: dict[int, JoinResult | SyncResult] = {}
        self.records: list[CoordinatorRecord] = []
        self._tokens = itertools.count(1)
        self._suffix = itertools.count(1)

    def _take(self, effects: Effects) -> Effects:
        for token, result in effects.replies:
            assert token not in self.replies, f"token {token} answered twice"
            self.replies[token] = result
        self.records += effects.records
        self.state.check_invariants()
        return effects

    def join(
        self,
        member_id: str = "",
        group: str = "g",
        instance: str | None = None,
        protocols: tuple[tuple[str, bytes], ...] = PROTOCOLS,
        session: int = SESSION,
        rebalance: int = REBALANCE,
        known_required: bool = False,
        protocol_type: str = "consumer",
        client: str = "c",
    ) -> int:
        token = next(self._tokens)
        request = JoinRequest(
            member_id=member_id,
            group_instance_id=instance,
            client_id=client,
            client_host="/127.0.0.1",
            session_timeout_ms=session,
            rebalance_timeout_ms=rebalance,
            protocol_type=protocol_type,
            protocols=protocols,
            require_known_member_id=known_required and not member_id and instance is None,
            new_member_suffix=str(next(self._suffix)),
        )
        self._take(self.state.join(group, request, token, self.now))
        return token

    def sync(
        self,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        group: str = "g",
        instance: str | None = None,
    ) -> int:
        token = next(self._tokens)
        effects = self.state.sync(
            group,
            generation,
            member_id,
            instance,
            None,
            None,
            list((assignments or {}).items()),
            token,
            self.now,
        )
        self._take(effects)
        return token

    def heartbeat(
        self, member_id: str, generation: int, group: str = "g", instance: str | None = None
    ) -> ErrorCode:
        error, effects = self.state.heartbeat(group, generation, member_id, instance, self.now)
        self._take(effects)
        return error

    def commit(
        self,
        member_id: str,
        generation: int,
        offsets: dict[tuple[str, int], int],
        group: str = "g",
        metadata: str = "",
    ) -> list[ErrorCode]:
        entries = [OffsetCommitEntry(t, p, o, metadata=metadata) for (t, p), o in offsets.items()]
        errors, effects = self.state.commit_offsets(
            group, generation, member_id, None, entries, self.now
        )
        self._take(effects)
        return errors

    def advance(self, ms: int) -> None:
        self.now += ms
        self._take(self.state.tick(self.now))

    def join_result(self, token: int) -> JoinResult:
        result = self.replies[token]
        assert isinstance(result, JoinResult)
        return result

    def sync_result(self, token: int) -> SyncResult:
        result = self.replies[token]
        assert isinstance(result, SyncResult)
        return result

    def group_state(self, group: str = "g") -> GroupState | None:
        summary = self.state.describe(group)
        return None if summary is None else summary.state

    def stable_group(self, count: int) -> tuple[list[str], int]:
        """`count` members joined and synced (each gets its id as its assignment)."""
        ids: list[str] = []
        results: list[JoinResult] = []
        for i in range(count):
            # A new member starts a rebalance; the others rejoin and it completes.
            tokens = [self.join(client=f"c{i}")] + [self.join(m) for m in ids]
            results = [self.join_result(t) for t in tokens]
            ids = [r.member_id for r in results]
        generation = results[0].generation_id
        leader = results[0].leader
        assert all(r.generation_id == generation for r in results)
        sync_tokens = {}
        for member_id in ids:
            if member_id != leader:
                sync_tokens[member_id] = self.sync(member_id, generation)
        sync_tokens[leader] = self.sync(leader, generation, {m: m.encode() for m in ids})
        for member_id, token in sync_tokens.items():
            assert self.sync_result(token) == SyncResult(
                E.none, member_id.encode(), "consumer", "range"
            )
        assert self.group_state() is GroupState.STABLE
        return ids, generation


def test_first_member_joins_and_becomes_leader_of_generation_1() -> None:
    s = Script()
    token = s.join(client="app")
    result = s.join_result(token)
    assert result.error is E.none
    assert result.member_id == "app-1"
    assert result.generation_id == 1
    assert result.leader == "app-1"
    assert result.protocol_name == "range"
    assert result.members == (("app-1", None, b"sub"),)
    assert s.group_state() is GroupState.COMPLETING_REBALANCE
    sync = s.sync("app-1", 1, {"app-1": b"assignment"})
    assert s.sync_result(sync).assignment == b"assignment"
    assert s.group_state() is GroupState.STABLE
    key, value = s.records[-1]
    assert key == GroupMetadataKey("g")
    assert isinstance(value, GroupMetadataValue)
    assert value.generation == 1 and value.members[0].assignment == b"assignment"


def test_member_id_required_then_rejoin() -> None:
    s = Script()
    first = s.join(known_required=True)
    result = s.join_result(first)
    assert result.error is E.member_id_required
    assert result.member_id == "c-1"
    assert s.group_state() is GroupState.EMPTY  # only a pending member
    second = s.join("c-1")
    assert s.join_result(second).error is E.none
    assert s.join_result(second).member_id == "c-1"


def test_pending_member_that_never_rejoins_is_forgotten() -> None:
    s = Script()
    s.join(known_required=True)
    s.advance(SESSION)
    assert s.state.describe("g") is None
    late = s.join("c-1")
    assert s.join_result(late).error is E.unknown_member_id


def test_initial_delayed_join_waits_for_a_quiet_delay_after_the_last_member() -> None:
    s = Script(initial_rebalance_delay_ms=3000)
    a = s.join(rebalance=10_000)
    s.advance(2000)
    assert a not in s.replies
    b = s.join(rebalance=10_000)
    s.advance(1000)  # the first delay ends; b joined 1000 ms ago: wait until 3000 after b
    assert a not in s.replies and b not in s.replies
    s.advance(1999)
    assert a not in s.replies
    s.advance(1)
    assert s.join_result(a).generation_id == 1
    assert s.join_result(b).generation_id == 1
    assert len(s.join_result(a).members) == 2


def test_members_starting_together_wait_one_delay() -> None:
    s = Script(initial_rebalance_delay_ms=3000)
    first = s.join(rebalance=60_000)
    s.advance(50)
    others = [s.join(rebalance=60_000) for _ in range(2)]
    s.advance(2950)  # 3000 after the first join: 2950 after the others
    assert first not in s.replies
    s.advance(50)  # one quiet delay after the last join, not two delays (Kafka: 6000)
    assert all(s.join_result(j).generation_id == 1 for j in [first, *others])


def test_initial_delay_is_capped_by_the_rebalance_timeout() -> None:
    s = Script(initial_rebalance_delay_ms=3000)
    a = s.join(rebalance=4000)
    for _ in range(6):  # a new member every 1000 ms
        s.advance(1000)
        if a in s.replies:
            break
        s.join(rebalance=4000)
    assert a in s.replies
    assert s.now - 1_000_000 <= 4000 + 1000


def test_followers_wait_for_the_leader_sync() -> None:
    s = Script()
    ids, generation = s.stable_group(3)
    assert len(ids) == 3
    # A rejoin by the leader starts a new rebalance; the others must rejoin too.
    leader = s.state.describe("g").leader  # type: ignore[union-attr]
    assert leader is not None
    rejoin = s.join(leader)
    assert s.group_state() is GroupState.PREPARING_REBALANCE
    assert s.heartbeat(ids[1], generation) is E.rebalance_in_progress
    followers = [s.join(m) for m in ids if m != leader]
    assert s.join_result(rejoin).generation_id == generation + 1
    assert all(s.join_result(t).members == () for t in followers)
    follower_sync = s.sync(ids[1] if ids[1] != leader else ids[2], generation + 1)
    assert follower_sync not in s.replies
    s.sync(leader, generation + 1, dict.fromkeys(ids, b"x"))
    assert s.sync_result(follower_sync).assignment == b"x"


def test_session_expiry_removes_a_silent_member_and_rebalances() -> None:
    s = Script()
    ids, generation = s.stable_group(2)
    s.advance(SESSION - 1)
    assert s.heartbeat(ids[0], generation) is E.none
    s.advance(1)  # ids[1] never heartbeat: expired
    assert s.group_state() is GroupState.PREPARING_REBALANCE
    assert s.heartbeat(ids[0], generation) is E.rebalance_in_progress
    token = s.join(ids[0])
    result = s.join_result(token)
    assert result.generation_id == generation + 1
    assert [m[0] for m in result.members] == [ids[0]]
    assert s.heartbeat(ids[1], generation) is E.unknown_member_id


def test_members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() -> None:
    s = Script()
    ids, generation = s.stable_group(2)
    summary = s.state.describe("g")
    assert summary is not None and summary.leader is not None
    leader = summary.leader
    other = next(m for m in ids if m != leader)
    token = s.join(leader)  # the leader's rejoin starts a rebalance
    for _ in range(REBALANCE // 5000 - 1):
        s.advance(5000)  # the other keeps heartbeating but never rejoins
        assert s.heartbeat(other, generation) is E.rebalance_in_progress
    s.advance(4999)
    assert token not in s.replies
    s.advance(1)
    assert s.join_result(token).generation_id == generation + 1
    assert [m.member_id for m in s.state.describe("g").members] == [leader]  # type: ignore[union-attr]


def test_leave_group_rebalances_and_last_leave_empties() -> None:
    s = Script()
    ids, _generation = s.stable_group(2)
    error, errors, effects = s.state.leave("g", [LeaveMember(ids[1])], s.now)
    s._take(effects)
    assert error is E.none and errors == [E.none]
    assert s.group_state() is GroupState.PREPARING_REBALANCE
    s.join_result(s.join(ids[0]))
    error, errors, effects = s.state.leave("g", [LeaveMember(ids[0]), LeaveMember("nobody")], s.now)
    s._take(effects)
    assert errors == [E.none, E.unknown_member_id]
    assert s.group_state() is GroupState.EMPTY


def test_fencing_errors() -> None:
    s = Script()
    ids, generation = s.stable_group(1)
    assert s.heartbeat(ids[0], generation + 1) is E.illegal_generation
    assert s.heartbeat("stranger", generation) is E.unknown_member_id
    assert s.heartbeat(ids[0], generation, group="other") is E.unknown_member_id
    assert s.commit(ids[0], generation - 1, {("t", 0): 5}) == [E.illegal_generation]
    assert s.commit("stranger", generation, {("t", 0): 5}) == [E.unknown_member_id]
    assert s.commit(ids[0], generation, {("t", 0): 5}) == [E.none]
    assert s.sync_result(s.sync(ids[0], generation + 5)).error is E.illegal_generation
    assert s.sync_result(s.sync("stranger", generation)).error is E.unknown_member_id
    # A commit to a group that does not exist with a real generation.
    assert s.commit("m", 3, {("t", 0): 5}, group="nope") == [E.illegal_generation]


def test_commit_during_completing_rebalance_is_rebalance_in_progress() -> None:
    s = Script()
    ids, generation = s.stable_group(2)
    leader = s.state.describe("g").leader  # type: ignore[union-attr]
    for member_id in sorted(ids, key=lambda m: m != leader):
        s.join(member_id)
    assert s.group_state() is GroupState.COMPLETING_REBALANCE
    assert s.commit(ids[0], generation + 1, {("t", 0): 1}) == [E.rebalance_in_progress]
    # During PreparingRebalance the current generation may still commit (revocation).
    s.join(ids[0], protocols=(("range", b"changed"),))
    assert s.group_state() is GroupState.PREPARING_REBALANCE
    assert s.commit(ids[0], generation + 1, {("t", 0): 1}) == [E.none]


def test_input_validation_leaves_the_group_consistent() -> None:
    s = Script()
    assert s.join_result(s.join(session=1)).error is E.invalid_session_timeout
    assert s.join_result(s.join(session=10**9)).error is E.invalid_session_timeout
    assert s.join_result(s.join(group="")).error is E.invalid_group_id
    assert s.join_result(s.join(protocols=())).error is E.inconsistent_group_protocol
    assert s.join_result(s.join(protocol_type="")).error is E.inconsistent_group_protocol
    assert s.state.groups == {}
    assert s.heartbeat("m", 1, group="") is E.invalid_group_id
    assert s.commit("", -1, {("t", 0): 1}, group="") == [E.invalid_group_id]
    assert s.state.delete_group("")[0] is E.invalid_group_id
    assert s.state.fetch_offsets("", None)[0] is E.invalid_group_id


def test_inconsistent_protocols_and_protocol_type() -> None:
    s = Script()
    s.stable_group(1)
    other = s.join(protocols=(("roundrobin", b""),))
    assert s.join_result(other).error is E.inconsistent_group_protocol
    wrong_type = s.join(protocol_type="connect")
    assert s.join_result(wrong_type).error is E.inconsistent_group_protocol
    assert s.group_state() is GroupState.STABLE


def test_protocol_selection_by_votes_among_common_protocols() -> None:
    s = Script(initial_rebalance_delay_ms=100)
    a = s.join(protocols=(("sticky", b"a"), ("range", b"a")))
    s.join(protocols=(("range", b"b"), ("sticky", b"b"), ("rr", b"b")))
    s.join(protocols=(("range", b"c"), ("sticky", b"c")))
    s.advance(100)  # all joined at once: one quiet delay
    result = s.join_result(a)
    assert result.protocol_name == "range"  # two votes against one
    assert [m[2] for m in result.members] == [b"a", b"b", b"c"]


def test_static_member_restart_gets_its_assignment_without_rebalance() -> None:
    s = Script()
    first = s.join(instance="i1", client="a")
    old_id = s.join_result(first).member_id
    assert old_id.startswith("i1-")
    second = s.join(instance="i2", client="b")
    s.join(old_id, instance="i1")
    other_id = s.join_result(second).member_id
    summary = s.state.describe("g")
    assert summary is not None
    generation, leader = summary.generation_id, summary.leader
    follower = other_id if leader == old_id else old_id
    s.sync(follower, generation, instance="i2" if follower == other_id else "i1")
    s.sync(leader, generation, {old_id: b"p0", other_id: b"p1"})  # type: ignore[arg-type]
    assert s.group_state() is GroupState.STABLE
    # i1 restarts: it rejoins with an empty member id and the same instance id.
    rejoin = s.join(instance="i1", client="a")
    result = s.join_result(rejoin)
    assert result.error is E.none
    assert result.generation_id == generation  # no rebalance
    assert result.member_id != old_id
    assert s.group_state() is GroupState.STABLE
    assert s.sync_result(s.sync(result.member_id, generation, instance="i1")).assignment == b"p0"
    # The old member id of the instance is fenced.
    assert s.heartbeat(old_id, generation, instance="i1") is E.fenced_instance_id
    assert s.commit(old_id, generation, {("t", 0): 1}) == [E.unknown_member_id]
    # The other member saw nothing.
    assert s.heartbeat(other_id, generation, instance="i2") is E.none


def test_static_leader_rejoin_is_told_to_skip_assignment() -> None:
    s = Script()
    token = s.join(instance="solo")
    member_id = s.join_result(token).member_id
    s.sync(member_id, 1, {member_id: b"a"})
    again = s.join(instance="solo")
    result = s.join_result(again)
    assert result.skip_assignment and result.generation_id == 1
    assert result.leader == result.member_id
    assert result.members == ((result.member_id, "solo", b"sub"),)


def test_static_member_rejoin_with_changed_subscription_rebalances() -> None:
    s = Script()
    member_id = s.join_result(s.join(instance="i")).member_id
    s.sync(member_id, 1, {member_id: b"a"})
    again = s.join(instance="i", protocols=(("range", b"other"),))
    assert s.join_result(again).generation_id == 2


def test_static_member_pending_join_is_fenced_by_its_replacement() -> None:
    s = Script(initial_rebalance_delay_ms=1000)
    first = s.join(instance="i")
    assert first not in s.replies
    s.join(instance="i")  # the same instance restarted while the first waits
    assert s.join_result(first).error is E.fenced_instance_id


def test_simple_consumer_commits_without_joining() -> None:
    s = Script()
    assert s.commit("", -1, {("t", 0): 7, ("t", 1): 9}, group="simple", metadata="m") == [
        E.none,
        E.none,
    ]
    assert s.group_state("simple") is GroupState.EMPTY
    error, offsets = s.state.fetch_offsets("simple", [("t", 0), ("t", 2)])
    assert error is E.none
    committed = offsets[("t", 0)]
    assert committed is not None and committed.offset == 7 and committed.metadata == "m"
    assert offsets[("t", 2)] is None
    _, everything = s.state.fetch_offsets("simple", None)
    assert sorted(everything) == [("t", 0), ("t", 1)]
    keys = [r[0] for r in s.records]
    assert OffsetCommitKey("simple", "t", 0) in keys
    # A simple commit is refused once the group has members.
    s.stable_group(1)
    assert s.commit("", -1, {("t", 0): 1}) == [E.unknown_member_id]


def test_offset_metadata_too_large_fails_only_that_partition() -> None:
    s = Script()
    errors, effects = s.state.commit_offsets(
        "g",
        -1,
        "",
        None,
        [OffsetCommitEntry("t", 0, 1, metadata="x" * 4097), OffsetCommitEntry("t", 1, 2)],
        s.now,
    )
    assert errors == [E.offset_metadata_too_large, E.none]
    assert len(effects.records) == 1


def test_offsets_of_an_empty_group_expire_and_the_group_goes() -> None:
    retention = 60_000
    s = Script(offsets_retention_ms=retention)
    ids, generation = s.stable_group(1)
    s.commit(ids[0], generation, {("t", 0): 3})
    s._take(s.state.leave("g", [LeaveMember(ids[0])], s.now)[2])
    assert s.group_state() is GroupState.EMPTY
    s.advance(retention - 1)
    assert s.state.fetch_offsets("g", [("t", 0)])[1][("t", 0)] is not None
    s.advance(1)
    assert s.state.describe("g") is None
    assert (OffsetCommitKey("g", "t", 0), None) in s.records
    assert (GroupMetadataKey("g"), None) in s.records


def test_delete_groups_only_empty() -> None:
    s = Script()
    ids, generation = s.stable_group(1)
    s.commit(ids[0], generation, {("t", 0): 3})
    assert s.state.delete_group("g")[0] is E.non_empty_group
    assert s.state.delete_group("missing")[0] is E.group_id_not_found
    s._take(s.state.leave("g", [LeaveMember(ids[0])], s.now)[2])
    error, effects = s.state.delete_group("g")
    assert error is E.none
    assert (OffsetCommitKey("g", "t", 0), None) in effects.records
    assert s.state.describe("g") is None


def test_offset_delete_refuses_subscribed_topics() -> None:
    s = Script()
    subscription = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x00"
    member_id = s.join_result(s.join(protocols=(("range", subscription),))).member_id
    s.sync(member_id, 1, {member_id: b""})
    s.commit(member_id, 1, {("t", 0): 1, ("u", 0): 2})
    error, errors, _ = s.state.delete_offsets("g", [("t", 0), ("u", 0)])
    assert error is E.none
    assert errors == [E.group_subscribed_to_topic, E.none]
    assert s.state.delete_offsets("nope", [("t", 0)])[0] is E.group_id_not_found


def test_deadlines_are_reported() -> None:
    s = Script()
    _ids, _ = s.stable_group(1)
    assert s.state.next_deadline_ms() == s.now + SESSION


def test_load_restores_a_stable_group_and_offsets() -> None:
    s = Script()
    ids, generation = s.stable_group(2)
    s.commit(ids[0], generation, {("t", 0): 42})
    group_value = next(v for k, v in reversed(s.records) if k == GroupMetadataKey("g"))
    assert isinstance(group_value, GroupMetadataValue)
    restored = GroupCoordinatorState(GroupConfig())
    restored.load("g", group_value, {("t", 0): OffsetCommitValue(42, -1, "", s.now)}, s.now)
    restored.check_invariants()
    summary = restored.describe("g")
    assert summary is not None and summary.state is GroupState.STABLE
    assert summary.generation_id == generation
    assert {m.member_id for m in summary.members} == set(ids)
    error, _ = restored.heartbeat("g", generation, ids[0], None, s.now)
    assert error is E.none
    assert restored.fetch_offsets("g", [("t", 0)])[1][("t", 0)].offset == 42  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [1, 2])
def test_group_max_size(size: int) -> None:
    s = Script(max_size=size)
    tokens = [s.join(client=f"c{i}", known_required=True) for i in range(size + 1)]
    errors = [s.join_result(t).error for t in tokens]
    assert errors == [E.member_id_required] * size + [E.group_max_size_reached]


def test_unload_answers_waiting_requests_not_coordinator_and_forgets_the_group() -> None:
    """Resignation of the group's `__consumer_offsets` partition (Kafka's onResignation):
    waiting JoinGroup and SyncGroup get NOT_COORDINATOR, other groups stay, nothing is
    written, and no deadline of the unloaded group fires afterwards."""
    s = Script()
    ids, generation = s.stable_group(2)
    s.commit(ids[0], generation, {("t", 0): 7}, group="g")
    other = s.join(group="h", client="x")
    assert s.join_result(other).error is E.none
    leader = s.state.describe("g").leader  # type: ignore[union-attr]
    assert leader is not None
    follower = next(m for m in ids if m != leader)
    rejoin = s.join(leader)  # a rebalance: the leader's JoinGroup waits for the follower
    assert rejoin not in s.replies
    written = len(s.records)
    effects = s._take(s.state.unload(["g", "unknown"]))
    assert effects.records == [] and len(s.records) == written
    assert s.join_result(rejoin) == JoinResult(E.not_coordinator, leader)
    assert s.state.describe("g") is None and s.state.describe("h") is not None
    assert s.heartbeat(follower, generation) is E.unknown_member_id
    s.advance(REBALANCE + SESSION)  # the unloaded group's deadlines are stale: no effect
    assert s.state.describe("g") is None
    # A SyncGroup waiting for the leader's assignment is answered too.
    t = Script()
    ids, generation = t.stable_group(2)
    leader = t.state.describe("g").leader  # type: ignore[union-attr]
    assert leader is not None
    follower = next(m for m in ids if m != leader)
    tokens = [t.join(leader), t.join(follower)]
    generation = t.join_result(tokens[0]).generation_id
    waiting = t.sync(follower, generation)
    assert waiting not in t.replies
    t._take(t.state.unload(["g"]))
    assert t.sync_result(waiting) == SyncResult(E.not_coordinator)
