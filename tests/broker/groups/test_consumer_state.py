"""The KIP-848 consumer group machine, driven by interaction scripts (no I/O, no clock).

Proves: a first member joins and gets every partition (epochs 1/1/1, the records
Kafka writes); revoke before assign with two members (the newcomer waits in
UNRELEASED_PARTITIONS until the owner reports the revocation); a third member
joining balances 2/2/2; leave (-1) and static leave (-2) and the static rejoin that
keeps the assignment; session expiry on the timer; fencing (FENCED_MEMBER_EPOCH,
the previous-epoch grace, UNKNOWN_MEMBER_ID, UNRELEASED_INSTANCE_ID,
FENCED_INSTANCE_ID); request validation (INVALID_REQUEST, UNSUPPORTED_ASSIGNOR,
INVALID_REGULAR_EXPRESSION); new partitions trigger a new target; regex
subscriptions; the uniform (sticky, balanced) and range assignors; classic vs
consumer groups (GROUP_ID_NOT_FOUND, INCONSISTENT_GROUP_PROTOCOL, conversion of
empty groups, the type in ListGroups); offset commits checked against member
epochs (STALE_MEMBER_EPOCH); and a reload from the persisted records.
"""

from __future__ import annotations

import uuid

from ottla.broker.groups.consumer_records import (
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupKey,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupTargetAssignmentMetadataValue,
    ConsumerGroupValue,
    decode_consumer_key,
    decode_consumer_value,
    encode_consumer_key,
    encode_consumer_value,
)
from ottla.broker.groups.consumer_state import (
    ConsumerGroupConfig,
    HeartbeatRequest,
    HeartbeatResult,
    MemberState,
    TopicInfo,
    range_assign,
    uniform_assign,
)
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
    JoinRequest,
    OffsetCommitEntry,
)
from ottla.protocol import ErrorCode

E = ErrorCode
T = uuid.UUID(int=1)
U = uuid.UUID(int=2)
SESSION = 45_000


class Script:
    """A coordinator with consumer groups, and helpers that heartbeat as a client would."""

    def __init__(self, **config: int) -> None:
        consumer = ConsumerGroupConfig(session_timeout_ms=SESSION, heartbeat_interval_ms=5000)
        self.state = GroupCoordinatorState(
            GroupConfig(initial_rebalance_delay_ms=0, consumer=consumer, **config)
        )
        self.now = 1_000_000
        self.topics = {"t": TopicInfo(T, "t", 6), "u": TopicInfo(U, "u", 4)}
        self.records: list[CoordinatorRecord] = []
        self.owned: dict[str, set[tuple[uuid.UUID, int]]] = {}
        self.epochs: dict[str, int] = {}

    def _take(self, effects: Effects) -> Effects:
        self.records += effects.records
        self.state.check_invariants()
        return effects

    def hb(
        self,
        member: str,
        epoch: int | None = None,
        *,
        names: tuple[str, ...] | None = None,
        regex: str | None = None,
        owned: set[tuple[uuid.UUID, int]] | bool | None = True,
        instance: str | None = None,
        assignor: str | None = None,
        rebalance: int = -1,
        group: str = "g",
    ) -> HeartbeatResult:
        """A heartbeat; by default at the member's epoch reporting what it owns."""
        if epoch is None:
            epoch = self.epochs.get(member, 0)
        if owned is True:
            owned = self.owned.get(member, set()) if epoch > 0 else set()
        partitions = None
        if isinstance(owned, set):
            by_topic: dict[uuid.UUID, list[int]] = {}
            for topic_id, index in sorted(owned):
                by_topic.setdefault(topic_id, []).append(index)
            partitions = tuple((t, tuple(ps)) for t, ps in by_topic.items())
        request = HeartbeatRequest(
            member_id=member,
            member_epoch=epoch,
            instance_id=instance,
            rebalance_timeout_ms=rebalance,
            subscribed_topic_names=names,
            subscribed_topic_regex=regex,
            server_assignor=assignor,
            owned=partitions,
            client_id="client",
            client_host="/127.0.0.1",
        )
        result, effects = self.state.consumer_heartbeat(group, request, self.topics, self.now)
        self._take(effects)
        if result.error is E.none:
            self.epochs[member] = result.member_epoch
            if result.assignment is not None:
                self.owned[member] = {(t, p) for t, ps in result.assignment for p in ps}
        return result

    def join(self, member: str, names: tuple[str, ...] = ("t",), **kw: object) -> HeartbeatResult:
        return self.hb(member, 0, names=names, owned=set(), rebalance=30_000, **kw)  # type: ignore[arg-type]

    def mine(self, member: str, topic: uuid.UUID = T) -> set[int]:
        return {p for t, p in self.owned.get(member, set()) if t == topic}

    def settle(self, *members: str, rounds: int = 5) -> None:
        for _ in range(rounds):
            for member in members:
                assert self.hb(member).error is E.none

    def consumer(self, group: str = "g") -> object:
        summary = self.state.consumer_describe(group)[2]
        assert summary is not None
        return summary

    def tick(self, advance_ms: int) -> Effects:
        self.now += advance_ms
        return self._take(self.state.tick(self.now))


def _member_state(script: Script, member: str) -> MemberState:
    group = script.state.groups["g"].consumer
    assert group is not None
    return group.members[member].state


def test_first_member_gets_every_partition_and_the_records_kafka_writes() -> None:
    s = Script()
    result = s.join("a")
    assert result.error is E.none and result.member_id == "a"
    assert result.member_epoch == 1 and result.heartbeat_interval_ms == 5000
    assert s.mine("a") == set(range(6))
    kinds = [type(k).__name__ for k, _ in s.records]
    assert kinds == [
        "ConsumerGroupMemberMetadataKey",
        "ConsumerGroupPartitionMetadataKey",
        "ConsumerGroupMetadataKey",
        "ConsumerGroupTargetAssignmentMemberKey",
        "ConsumerGroupTargetAssignmentMetadataKey",
        "ConsumerGroupCurrentMemberAssignmentKey",
    ]
    assert (ConsumerGroupMetadataKey("g"), ConsumerGroupMetadataValue(1)) in s.records
    summary = s.state.consumer_describe("g")[2]
    assert summary is not None and summary.state == "Stable"
    assert (summary.group_epoch, summary.assignment_epoch, summary.assignor_name) == (
        1,
        1,
        "uniform",
    )
    # A plain heartbeat changes nothing and carries no assignment.
    s.records.clear()
    again = s.hb("a", owned=None)
    assert again.member_epoch == 1 and again.assignment is None and not s.records


def test_revoke_before_assign_with_two_members() -> None:
    s = Script()
    s.join("a")
    joined = s.join("b")
    # b is at the new epoch but every partition it should get is still a's.
    assert joined.member_epoch == 2 and s.mine("b") == set()
    assert _member_state(s, "b") is MemberState.UNRELEASED_PARTITIONS
    # a learns its new target: it keeps 3 and must revoke 3 before moving to epoch 2.
    told = s.hb("a", owned=None)
    assert told.member_epoch == 1 and len(s.mine("a")) == 3
    assert _member_state(s, "a") is MemberState.UNREVOKED_PARTITIONS
    assert s.state.consumer_describe("g")[2].state == "Reconciling"  # type: ignore[union-attr]
    # Until a reports the revocation, b gets nothing.
    assert s.hb("b").assignment is None and s.mine("b") == set()
    s.owned["a"] = {(T, p) for p in s.mine("a")}
    done = s.hb("a")
    assert done.member_epoch == 2 and _member_state(s, "a") is MemberState.STABLE
    got = s.hb("b")
    assert got.member_epoch == 2 and s.mine("b") == set(range(6)) - s.mine("a")
    assert s.state.consumer_describe("g")[2].state == "Stable"  # type: ignore[union-attr]


def test_a_third_member_joining_balances_two_each() -> None:
    s = Script()
    s.join("a")
    s.join("b")
    s.settle("a", "b")
    before = {m: s.mine(m) for m in "ab"}
    s.join("c")
    s.settle("a", "b", "c")
    assert sorted(len(s.mine(m)) for m in "abc") == [2, 2, 2]
    assert set().union(*(s.mine(m) for m in "abc")) == set(range(6))
    # Sticky: a and b only gave partitions away.
    assert s.mine("a") <= before["a"] and s.mine("b") <= before["b"]
    assert {s.epochs[m] for m in "abc"} == {3}


def test_leave_frees_partitions_for_the_others() -> None:
    s = Script()
    s.join("a")
    s.join("b")
    s.settle("a", "b")
    left = s.hb("a", -1)
    assert left.error is E.none and left.member_epoch == -1
    tombstones = {type(k).__name__ for k, v in s.records if v is None}
    assert "ConsumerGroupMemberMetadataKey" in tombstones
    assert "ConsumerGroupCurrentMemberAssignmentKey" in tombstones
    got = s.hb("b")
    assert got.member_epoch == 3 and s.mine("b") == set(range(6))
    assert s.hb("a", 2).error is E.unknown_member_id


def test_session_expiry_removes_a_silent_member() -> None:
    s = Script()
    s.join("a")
    s.join("b")
    s.settle("a", "b")
    assert s.state.next_deadline_ms() == s.now + SESSION
    s.now += SESSION - 1000
    s.hb("b")
    effects = s.tick(1000)  # a's session ends; b's was renewed
    assert effects.deadline_ms == s.now + SESSION - 1000
    group = s.state.groups["g"].consumer
    assert group is not None and set(group.members) == {"b"}
    s.hb("b")
    assert s.mine("b") == set(range(6))
    s.tick(SESSION)
    assert s.state.consumer_describe("g")[2].state == "Empty"  # type: ignore[union-attr]


def test_fencing_errors() -> None:
    s = Script()
    s.join("a")
    assert s.hb("a", 2).error is E.fenced_member_epoch
    assert s.hb("stranger", 1).error is E.unknown_member_id
    assert s.hb("a", 1, group="nope").error is E.unknown_member_id
    s.join("b")
    s.settle("a", "b")
    assert s.epochs["a"] == 2
    # The previous epoch is accepted when the member owns a subset of its assignment
    # (it missed the response that bumped it) ...
    assert s.hb("a", 1).error is E.none
    # ... and fenced otherwise.
    assert s.hb("a", 1, owned={(T, p) for p in range(6)}).error is E.fenced_member_epoch
    assert s.hb("a", 0, owned={(T, 0)}, rebalance=1, names=("t",)).error is E.invalid_request
    # Static members.
    assert s.join("c", instance="i").error is E.none
    assert s.join("d", instance="i").error is E.unreleased_instance_id
    assert s.hb("a", s.epochs["a"], instance="i").error is E.fenced_instance_id


def test_static_member_leaves_and_its_new_incarnation_keeps_the_assignment() -> None:
    s = Script()
    s.join("a", instance="i1")
    s.join("b", instance="i2")
    s.settle("a", "b")
    held, epoch = s.mine("a"), s.epochs["a"]
    left = s.hb("a", -2, instance="i1")
    assert left.error is E.none and left.member_epoch == -2
    assert s.hb("b").member_epoch == epoch  # no rebalance for b
    back = s.join("a2", instance="i1")
    assert back.error is E.none and back.member_epoch == epoch
    assert {p for t, ps in back.assignment or () for p in ps} == held
    assert s.hb("a", epoch).error is E.unknown_member_id
    # A static member gone for good (-1) is removed.
    assert s.hb("b", -1, instance="i2").member_epoch == -1
    s.settle("a2")
    assert s.mine("a2") == set(range(6))


def test_invalid_requests() -> None:
    s = Script()
    assert s.hb("", 0, names=("t",), owned=set(), rebalance=1).error is E.invalid_request
    assert s.hb("a", 0, owned=set(), rebalance=1).error is E.invalid_request  # no subscription
    assert s.hb("a", 0, names=("t",), owned=set()).error is E.invalid_request  # no timeout
    assert s.join("a", group="").error is E.invalid_request
    assert s.join("a", assignor="sticky").error is E.unsupported_assignor
    assert s.join("a", names=(), regex="(").error is E.invalid_regular_expression
    assert s.hb("a", 3).error is E.unknown_member_id
    assert not s.state.groups


def test_new_partitions_trigger_a_new_target_assignment() -> None:
    s = Script()
    s.join("a")
    s.join("b")
    s.settle("a", "b")
    s.topics["t"] = TopicInfo(T, "t", 8)
    s.settle("a", "b")
    assert s.epochs["a"] == 3
    assert sorted(len(s.mine(m)) for m in "ab") == [4, 4]
    assert s.mine("a") | s.mine("b") == set(range(8))


def test_regex_subscription_and_topic_mix() -> None:
    s = Script()
    s.join("a", names=(), regex="t|u")
    s.join("b", names=("u",))
    s.settle("a", "b")
    assert s.mine("a") == set(range(6)) and s.mine("b", U) | s.mine("a", U) == set(range(4))
    assert abs(len(s.owned["a"]) - len(s.owned["b"])) <= 6
    assert s.mine("b") == set()  # b does not subscribe to t


def test_assignors() -> None:
    topics = {"t": TopicInfo(T, "t", 7)}
    subs = {m: frozenset({"t"}) for m in ("m1", "m2", "m3")}
    ranged = range_assign(subs, topics, {})
    assert ranged == {
        "m1": frozenset({(T, 0), (T, 1), (T, 2)}),
        "m2": frozenset({(T, 3), (T, 4)}),
        "m3": frozenset({(T, 5), (T, 6)}),
    }
    uniform = uniform_assign(subs, topics, {})
    assert sorted(len(v) for v in uniform.values()) == [2, 2, 3]
    # Sticky: with a fourth member, the others only give partitions away.
    subs4 = dict(subs, m4=frozenset({"t"}))
    again = uniform_assign(subs4, topics, uniform)
    assert sorted(len(v) for v in again.values()) == [1, 2, 2, 2]
    assert all(again[m] <= uniform[m] for m in subs)
    s = Script()
    s.join("a", assignor="range")
    assert s.state.consumer_describe("g")[2].assignor_name == "range"  # type: ignore[union-attr]


def _classic_join(s: Script, group: str) -> ErrorCode:
    request = JoinRequest(
        member_id="",
        group_instance_id=None,
        client_id="c",
        client_host="/h",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000,
        protocol_type="consumer",
        protocols=(("range", b""),),
        require_known_member_id=False,
        new_member_suffix="1",
    )
    effects = s.state.join(group, request, 1, s.now)
    s._take(effects)
    return effects.replies[0][1].error if effects.replies else E.none


def test_a_group_is_classic_or_consumer() -> None:
    s = Script()
    s.join("a", group="cg")
    assert _classic_join(s, "cg") is E.inconsistent_group_protocol
    _classic_join(s, "classic")
    assert s.join("x", group="classic").error is E.group_id_not_found
    assert s.state.consumer_describe("classic")[0] is E.group_id_not_found
    types = {g.group_id: (g.group_type, g.state_name) for g in s.state.list_groups()}
    assert types["cg"] == ("consumer", "Stable") and types["classic"][0] == "classic"
    # An empty classic group (offsets only) becomes a consumer group, offsets kept.
    entry = OffsetCommitEntry("t", 0, 42)
    s.state.commit_offsets("simple", -1, "", None, [entry], s.now)
    assert s.join("m", group="simple").error is E.none
    assert s.state.fetch_offsets("simple", [("t", 0)])[1][("t", 0)].offset == 42  # type: ignore[union-attr]
    # An empty consumer group becomes classic on a JoinGroup.
    s.hb("m", -1, group="simple")
    assert _classic_join(s, "simple") is E.none


def test_offset_commits_check_member_epochs() -> None:
    s = Script()
    s.join("a")
    entry = [OffsetCommitEntry("t", 0, 5)]
    assert s.state.commit_offsets("g", 1, "a", None, entry, s.now)[0] == [E.none]
    assert s.state.commit_offsets("g", 0, "a", None, entry, s.now)[0] == [E.stale_member_epoch]
    assert s.state.commit_offsets("g", 2, "a", None, entry, s.now)[0] == [E.stale_member_epoch]
    assert s.state.commit_offsets("g", 1, "zz", None, entry, s.now)[0] == [E.unknown_member_id]
    assert s.state.commit_offsets("g", -1, "", None, entry, s.now)[0] == [E.unknown_member_id]
    assert s.state.validate_offset_fetch("g", None, -1) is E.none
    assert s.state.validate_offset_fetch("g", "a", 1) is E.none
    assert s.state.validate_offset_fetch("g", "a", 7) is E.stale_member_epoch
    s.hb("a", -1)
    assert s.state.commit_offsets("g", -1, "", None, entry, s.now)[0] == [E.none]


def test_reload_from_records_continues_the_group() -> None:
    s = Script()
    s.join("a")
    s.join("b", instance="i")
    s.settle("a", "b")
    s.join("c")
    s.hb("a", owned=None)  # a is now revoking
    latest: dict[ConsumerGroupKey, ConsumerGroupValue] = {}
    for key, value in s.records:
        if isinstance(key, OffsetCommitKey | GroupMetadataKey):
            continue
        decoded_key = decode_consumer_key(encode_consumer_key(key))
        assert decoded_key == key
        if value is None:
            latest.pop(decoded_key, None)
        else:
            assert not isinstance(value, OffsetCommitValue | GroupMetadataValue)
            raw = encode_consumer_value(value)
            latest[decoded_key] = decode_consumer_value(decoded_key, raw)
    assert (
        any(isinstance(k, ConsumerGroupCurrentMemberAssignmentKey) for k in latest)
        and ConsumerGroupTargetAssignmentMetadataValue(3) in latest.values()
    )
    before = s.state.consumer_describe("g")[2]
    fresh = Script()
    fresh.state.load_consumer("g", latest, s.now)
    fresh.state.check_invariants()
    assert fresh.state.consumer_describe("g")[2] == before
    fresh.owned, fresh.epochs = s.owned, s.epochs
    fresh.owned["a"] = {(T, p) for p in fresh.mine("a")}
    fresh.settle("a", "b", "c")
    assert sorted(len(fresh.mine(m)) for m in "abc") == [2, 2, 2]
