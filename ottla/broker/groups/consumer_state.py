"""Consumer groups of the KIP-848 rebalance protocol (PURE: time arrives as `now_ms`).

A `ConsumerGroup` is driven by ConsumerGroupHeartbeat requests and timer ticks; the
classic `GroupCoordinatorState` owns it (a group is either classic or consumer, and
both kinds share the committed offsets) and forwards those inputs. Each call appends
the records to persist in `__consumer_offsets` (`consumer_records.py` layouts) to a
list and returns the answer; `deadline_ms()` is the group's next timer.

Rules (Kafka 4's GroupMetadataManager, ConsumerGroup and CurrentAssignmentBuilder):

- Epochs. The *group epoch* is bumped whenever the group's subscription changes: a
  member joins, leaves or is fenced, changes its subscribed topic names, regex or
  server assignor, or the partitions of a subscribed topic change (metadata is
  compared at every heartbeat). A bump computes a new *target assignment* at once
  with the group's assignor (the one most members ask for; default `uniform`); its
  epoch, the *assignment epoch*, then equals the group epoch. Each member has a
  *member epoch* <= the assignment epoch, and moves to the target by reconciling.
- Reconciliation (revoke before assign), per member, at each of its heartbeats:
  partitions in its current assignment but not in its target are *pending
  revocation*: the member keeps its epoch (state UNREVOKED_PARTITIONS) until a
  heartbeat reports owned partitions without them (or the rebalance timeout fences
  it). Then (or at once when nothing is to be revoked) it moves to the assignment
  epoch and is given the target partitions no other member still holds (assigned
  or pending revocation); the rest stay *unreleased* (state UNRELEASED_PARTITIONS)
  and are handed over at a later heartbeat, once freed. So no partition is ever in
  the current assignments of two members.
- Joining: member epoch 0. v1 clients choose their member id (a UUID); for v0 an
  empty id gets one from the coordinator. A rejoin (epoch 0) of a known member
  keeps it and its assignment (it reported owning nothing). A static member
  (instance id) that left with epoch -2 is replaced by the new member id, which
  inherits its epoch and assignments (no group epoch bump); an instance id still
  held by a live member is UNRELEASED_INSTANCE_ID.
- Fencing: an unknown member id is UNKNOWN_MEMBER_ID; an instance id held by
  another member FENCED_INSTANCE_ID; an epoch above the member's, or below it
  unless it is the previous epoch and the reported partitions are a subset of the
  current assignment (the member missed the last response), FENCED_MEMBER_EPOCH.
  Fenced members rejoin with epoch 0.
- Leaving: epoch -1 removes the member; -2 (static members) keeps its place and
  assignment until its session expires or its instance rejoins.
- Liveness: a member not heard from within `group.consumer.session.timeout.ms` is
  removed, as is one that does not revoke within its rebalance timeout.
- Offsets: commits and fetches naming a member must carry its current member epoch
  (else STALE_MEMBER_EPOCH; unknown member: UNKNOWN_MEMBER_ID); epoch -1 without a
  member id (admin tools) is accepted only while the group has no members.

Member transition table (state, event -> state):

    (new)                  heartbeat epoch 0, nothing held elsewhere -> STABLE
    (new)                  heartbeat epoch 0, target held elsewhere  -> UNRELEASED_PARTITIONS
    STABLE                 new target, must give up partitions       -> UNREVOKED_PARTITIONS
    STABLE                 new target, nothing to give up            -> STABLE / UNRELEASED
    UNREVOKED_PARTITIONS   heartbeat reports the revocation done     -> STABLE / UNRELEASED
    UNRELEASED_PARTITIONS  heartbeat, partitions freed               -> STABLE
    any                    leave (-1), session or rebalance timeout  -> (removed)
    any (static)           leave (-2)                                -> member epoch -2, kept

Group states (reported): Empty (no members), Assigning (target behind the group
epoch; never observable here, the target is computed at once), Reconciling (a
member is not yet at the assignment epoch or not STABLE), Stable.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from ottla.broker.groups.consumer_records import (
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupKey,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataKey,
    ConsumerGroupPartitionMetadataValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
    ConsumerGroupValue,
    TopicPartitions,
)
from ottla.protocol import ErrorCode

__all__ = [
    "ASSIGNORS",
    "ConsumerGroup",
    "ConsumerGroupConfig",
    "ConsumerGroupSummary",
    "ConsumerMember",
    "ConsumerRecord",
    "HeartbeatRequest",
    "HeartbeatResult",
    "MemberState",
    "TopicInfo",
    "flatten",
    "grouped",
    "range_assign",
    "uniform_assign",
    "validate_heartbeat",
]

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2

# A partition: (topic id, partition index).
TP = tuple[uuid.UUID, int]
ConsumerRecord = tuple[ConsumerGroupKey, ConsumerGroupValue | None]


class MemberState(IntEnum):
    """Kafka's MemberState codes (stored in ConsumerGroupCurrentMemberAssignment)."""

    UNREVOKED_PARTITIONS = 0
    UNRELEASED_PARTITIONS = 1
    STABLE = 2
    UNKNOWN = 127


@dataclass(frozen=True)
class ConsumerGroupConfig:
    """Kafka's `group.consumer.*` settings."""

    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    max_size: int = 2**31 - 1
    assignors: tuple[str, ...] = ("uniform", "range")


@dataclass(frozen=True)
class TopicInfo:
    topic_id: uuid.UUID
    name: str
    partitions: int


@dataclass(frozen=True)
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat; None fields did not change since the last one."""

    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: TopicPartitions | None = None
    client_id: str = ""
    client_host: str = ""
    version: int = 1
    new_member_id: str = ""  # the coordinator's choice for a v0 member without an id


@dataclass(frozen=True)
class HeartbeatResult:
    error: ErrorCode
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: TopicPartitions | None = None


@dataclass(frozen=True)
class ConsumerMemberSummary:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    assignment: TopicPartitions
    target_assignment: TopicPartitions


@dataclass(frozen=True)
class ConsumerGroupSummary:
    group_id: str
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor_name: str
    members: tuple[ConsumerMemberSummary, ...]


def flatten(partitions: TopicPartitions | None) -> frozenset[TP]:
    if not partitions:
        return frozenset()
    return frozenset((topic_id, int(p)) for topic_id, ps in partitions for p in ps)


def grouped(partitions: Iterable[TP]) -> TopicPartitions:
    by_topic: dict[uuid.UUID, list[int]] = {}
    for topic_id, partition in partitions:
        by_topic.setdefault(topic_id, []).append(partition)
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(by_topic.items(), key=lambda i: i[0]))


@lru_cache(maxsize=256)
def _pattern(regex: str) -> re.Pattern[str] | None:
    try:
        return re.compile(regex)
    except re.error:
        return None


def validate_heartbeat(request: HeartbeatRequest, config: ConsumerGroupConfig) -> str | None:
    """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid: the INVALID_REQUEST message."""
    if request.instance_id == "":
        return "InstanceId can't be empty."
    if request.rack_id == "":
        return "RackId can't be empty."
    epoch = request.member_epoch
    if epoch == 0:
        if request.version >= 1 and not request.member_id:
            return "MemberId can't be empty."
        if request.rebalance_timeout_ms == -1:
            return "RebalanceTimeoutMs must be provided in first request."
        if request.owned is None or flatten(request.owned):
            return "TopicPartitions must be empty when (re-)joining."
        if request.subscribed_topic_names is None and request.subscribed_topic_regex is None:
            return "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
    elif not request.member_id:
        return "MemberId can't be empty."
    elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH and request.instance_id is None:
        return "InstanceId can't be null."
    elif epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
        return f"MemberEpoch is invalid: {epoch}."
    return None


# -- assignors (PURE functions of the subscriptions and the previous target) ----------------

Subscriptions = Mapping[str, frozenset[str]]  # member id -> subscribed topic names
Assignor = Callable[
    [Subscriptions, Mapping[str, TopicInfo], Mapping[str, frozenset[TP]]],
    dict[str, frozenset[TP]],
]


def uniform_assign(
    subscriptions: Subscriptions,
    topics: Mapping[str, TopicInfo],
    previous: Mapping[str, frozenset[TP]],
) -> dict[str, frozenset[TP]]:
    """Kafka's UniformAssignor: balanced (counts differ by at most one when every member
    subscribes to the same topics) and sticky (partitions stay with their owner)."""
    members = sorted(subscriptions)
    result: dict[str, set[TP]] = {m: set() for m in members}
    if not members:
        return {}
    topic_of: dict[TP, str] = {}
    for name in sorted({t for subs in subscriptions.values() for t in subs if t in topics}):
        info = topics[name]
        for index in range(info.partitions):
            topic_of[(info.topic_id, index)] = name
    owner: dict[TP, str] = {}
    for member in members:
        for tp in sorted(previous.get(member, ())):
            topic = topic_of.get(tp)
            if topic is not None and topic in subscriptions[member] and tp not in owner:
                owner[tp] = member
                result[member].add(tp)
    homogeneous = len({subscriptions[m] for m in members}) == 1
    if homogeneous:
        base, extra = divmod(len(topic_of), len(members))
        ranked = sorted(members, key=lambda m: (-len(result[m]), m))
        capacity = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
        for member in members:
            kept = sorted(result[member])
            for tp in kept[capacity[member] :]:
                result[member].discard(tp)
                del owner[tp]
        free = iter(tp for tp in sorted(topic_of) if tp not in owner)
        for member in members:
            while len(result[member]) < capacity[member]:
                tp = next(free)
                owner[tp] = member
                result[member].add(tp)
        return {m: frozenset(result[m]) for m in members}
    eligible = {
        tp: [m for m in members if name in subscriptions[m]] for tp, name in topic_of.items()
    }
    for tp in sorted(topic_of):
        if tp not in owner:
            chosen = min(eligible[tp], key=lambda m: (len(result[m]), m))
            owner[tp] = chosen
            result[chosen].add(tp)
    for _ in range(len(topic_of) + 1):  # each move lowers the sum of squared counts
        moved = False
        for tp in sorted(topic_of):
            current = owner[tp]
            best = min(eligible[tp], key=lambda m: (len(result[m]), m))
            if len(result[best]) < len(result[current]) - 1:
                result[current].discard(tp)
                result[best].add(tp)
                owner[tp] = best
                moved = True
        if not moved:
            break
    return {m: frozenset(result[m]) for m in members}


def range_assign(
    subscriptions: Subscriptions,
    topics: Mapping[str, TopicInfo],
    previous: Mapping[str, frozenset[TP]],
) -> dict[str, frozenset[TP]]:
    """Kafka's RangeAssignor: per topic, its subscribers (by member id) take consecutive
    ranges, the first `partitions % members` one partition more."""
    result: dict[str, set[TP]] = {m: set() for m in subscriptions}
    for name in sorted({t for subs in subscriptions.values() for t in subs if t in topics}):
        info = topics[name]
        subscribers = sorted(m for m, subs in subscriptions.items() if name in subs)
        base, extra = divmod(info.partitions, len(subscribers))
        start = 0
        for index, member in enumerate(subscribers):
            count = base + (1 if index < extra else 0)
            result[member].update((info.topic_id, p) for p in range(start, start + count))
            start += count
    return {m: frozenset(ps) for m, ps in result.items()}


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform_assign, "range": range_assign}


# -- members and the group ---------------------------------------------------------------------


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = 300_000
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: frozenset[TP] = frozenset()
    pending_revocation: frozenset[TP] = frozenset()
    session_deadline_ms: int = 0
    revocation_deadline_ms: int | None = None

    def subscribes(self, name: str) -> bool:
        if name in self.subscribed_topic_names:
            return True
        if self.subscribed_topic_regex is not None:
            pattern = _pattern(self.subscribed_topic_regex)
            return pattern is not None and pattern.fullmatch(name) is not None
        return False

    def metadata_value(self) -> ConsumerGroupMemberMetadataValue:
        return ConsumerGroupMemberMetadataValue(
            instance_id=self.instance_id,
            rack_id=self.rack_id,
            client_id=self.client_id,
            client_host=self.client_host,
            subscribed_topic_names=self.subscribed_topic_names,
            subscribed_topic_regex=self.subscribed_topic_regex,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            server_assignor=self.server_assignor,
        )

    def assignment_value(self) -> ConsumerGroupCurrentMemberAssignmentValue:
        return ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=self.member_epoch,
            previous_member_epoch=self.previous_member_epoch,
            state=int(self.state),
            assigned_partitions=grouped(self.assigned),
            partitions_pending_revocation=grouped(self.pending_revocation),
        )


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, frozenset[TP]] = field(default_factory=dict)
    # Who holds each partition (in its assigned partitions or pending revocation).
    owners: dict[TP, str] = field(default_factory=dict)
    # Metadata of the subscribed topics the target was computed from.
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    # The last CurrentMemberAssignment written per member (so only changes are written).
    persisted: dict[str, ConsumerGroupCurrentMemberAssignmentValue] = field(
        default_factory=dict, repr=False
    )

    # -- queries ---------------------------------------------------------------------------

    @property
    def state_name(self) -> str:
        if not self.members:
            return "Empty"
        if self.assignment_epoch < self.group_epoch:
            return "Assigning"
        for member in self.members.values():
            if member.member_epoch != self.assignment_epoch or member.state != MemberState.STABLE:
                return "Reconciling"
        return "Stable"

    def preferred_assignor(self, config: ConsumerGroupConfig) -> str:
        votes: dict[str, int] = {}
        for member in self.members.values():
            if member.server_assignor is not None:
                votes[member.server_assignor] = votes.get(member.server_assignor, 0) + 1
        if not votes:
            return config.assignors[0]
        return min(votes, key=lambda name: (-votes[name], name))

    def deadline_ms(self) -> int | None:
        deadlines = [m.session_deadline_ms for m in self.members.values()]
        deadlines += [
            m.revocation_deadline_ms
            for m in self.members.values()
            if m.revocation_deadline_ms is not None
        ]
        return min(deadlines, default=None)

    def subscribed_topic_names(self) -> set[str]:
        return {name for m in self.members.values() for name in m.subscribed_topic_names}

    def summary(self, config: ConsumerGroupConfig) -> ConsumerGroupSummary:
        members = tuple(
            ConsumerMemberSummary(
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed_topic_names,
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=grouped(m.assigned),
                target_assignment=grouped(self.target.get(m.member_id, frozenset())),
            )
            for m in self.members.values()
        )
        return ConsumerGroupSummary(
            group_id=self.group_id,
            state=self.state_name,
            group_epoch=self.group_epoch,
            assignment_epoch=self.assignment_epoch,
            assignor_name=self.preferred_assignor(config),
            members=members,
        )

    def validate_offset_request(self, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetCommit/OffsetFetch of a member: Kafka's ConsumerGroup.validateOffset*."""
        if member_epoch < 0 and not member_id:
            return ErrorCode.none if not self.members else ErrorCode.unknown_member_id
        member = self.members.get(member_id or "")
        if member is None:
            return ErrorCode.unknown_member_id
        if member_epoch != member.member_epoch:
            return ErrorCode.stale_member_epoch
        return ErrorCode.none

    # -- ConsumerGroupHeartbeat ------------------------------------------------------------

    def heartbeat(
        self,
        request: HeartbeatRequest,
        topics: Mapping[str, TopicInfo],
        config: ConsumerGroupConfig,
        now_ms: int,
        records: list[ConsumerRecord],
    ) -> HeartbeatResult:
        """One (validated) heartbeat; `topics` are the cluster's non-internal topics."""
        if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
            return self._leave(request, config, now_ms, records)
        member_id = request.member_id or request.new_member_id
        member = self.members.get(member_id)
        owned = flatten(request.owned) if request.owned is not None else None
        new_member = False
        if request.member_epoch == 0:
            instance = request.instance_id
            holder = self.static_members.get(instance) if instance is not None else None
            if holder is not None and holder != member_id:
                old = self.members[holder]
                if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                    return HeartbeatResult(
                        ErrorCode.unreleased_instance_id,
                        f"Static member {instance} is still in the group as {holder}.",
                    )
                member = self._replace_static(old, member_id, records)
            elif member is None:
                if len(self.members) >= config.max_size:
                    return HeartbeatResult(
                        ErrorCode.group_max_size_reached,
                        f"The consumer group has reached its maximum capacity of "
                        f"{config.max_size} members.",
                    )
                member = ConsumerMember(
                    member_id, rebalance_timeout_ms=request.rebalance_timeout_ms
                )
                new_member = True
            elif member.instance_id != instance and member.instance_id is not None:
                return HeartbeatResult(ErrorCode.fenced_instance_id, "The instance id changed.")
            elif member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                member.member_epoch = member.previous_member_epoch  # back under the same id
        else:
            if member is None:
                return HeartbeatResult(
                    ErrorCode.unknown_member_id, f"Member {member_id} is not a member."
                )
            instance = request.instance_id
            if instance is not None and self.static_members.get(instance) != member_id:
                return HeartbeatResult(
                    ErrorCode.fenced_instance_id, f"Instance {instance} is held by another member."
                )
            if not self._epoch_valid(member, request.member_epoch, owned):
                return HeartbeatResult(
                    ErrorCode.fenced_member_epoch,
                    f"The member epoch {request.member_epoch} is not "
                    f"the current epoch {member.member_epoch}.",
                )
        bump = self._update_member(member, request, new_member, records)
        if new_member:
            self.members[member_id] = member
            if member.instance_id is not None:
                self.static_members[member.instance_id] = member_id
        if self._refresh_topics(topics, records):
            bump = True
        if bump:
            self._bump(records)
        if self.assignment_epoch < self.group_epoch:
            self._compute_target(config, records)
        before = member.assigned
        self._reconcile(member, owned if request.member_epoch != 0 else frozenset(), now_ms)
        self._record_assignment(member, records)
        member.session_deadline_ms = now_ms + config.session_timeout_ms
        full = (
            request.rebalance_timeout_ms != -1
            and (
                request.subscribed_topic_names is not None
                or request.subscribed_topic_regex is not None
            )
            and request.owned is not None
        )
        changed = member.assigned != before or new_member
        return HeartbeatResult(
            ErrorCode.none,
            member_id=member_id,
            member_epoch=member.member_epoch,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            assignment=grouped(member.assigned) if full or changed else None,
        )

    @staticmethod
    def _epoch_valid(member: ConsumerMember, received: int, owned: frozenset[TP] | None) -> bool:
        """Kafka's throwIfMemberEpochIsInvalid."""
        if received == member.member_epoch:
            return True
        if received > member.member_epoch:
            return False
        # The member may have missed the response that bumped its epoch.
        return (
            received == member.previous_member_epoch
            and owned is not None
            and owned <= member.assigned
        )

    def _update_member(
        self,
        member: ConsumerMember,
        request: HeartbeatRequest,
        new_member: bool,
        records: list[ConsumerRecord],
    ) -> bool:
        """Apply the request's changed fields; True when the subscription changed."""
        before = member.metadata_value()
        subscription_before = (
            member.subscribed_topic_names,
            member.subscribed_topic_regex,
            member.server_assignor,
        )
        if request.instance_id is not None:
            member.instance_id = request.instance_id
        if request.rack_id is not None:
            member.rack_id = request.rack_id
        if request.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = request.rebalance_timeout_ms
        if request.subscribed_topic_names is not None:
            member.subscribed_topic_names = tuple(sorted(set(request.subscribed_topic_names)))
        if request.subscribed_topic_regex is not None:
            member.subscribed_topic_regex = request.subscribed_topic_regex or None
        if request.server_assignor is not None:
            member.server_assignor = request.server_assignor
        if request.client_id:
            member.client_id = request.client_id
        if request.client_host:
            member.client_host = request.client_host
        if new_member or member.metadata_value() != before:
            key = ConsumerGroupMemberMetadataKey(self.group_id, member.member_id)
            records.append((key, member.metadata_value()))
        subscription_after = (
            member.subscribed_topic_names,
            member.subscribed_topic_regex,
            member.server_assignor,
        )
        return new_member or subscription_after != subscription_before

    def _resolve(self, available: Mapping[str, TopicInfo]) -> dict[str, TopicInfo]:
        """The subscribed topics among `available` (names and regexes of all members)."""
        wanted = {n: available[n] for n in self.subscribed_topic_names() if n in available}
        regexes = {m.subscribed_topic_regex for m in self.members.values()}
        for regex in regexes - {None}:
            assert regex is not None
            pattern = _pattern(regex)
            if pattern is None:
                continue
            for name in available:
                if name not in wanted and pattern.fullmatch(name):
                    wanted[name] = available[name]
        return wanted

    def _refresh_topics(
        self, available: Mapping[str, TopicInfo], records: list[ConsumerRecord]
    ) -> bool:
        """Re-read the subscribed topics' metadata; True (and a record) when it changed."""
        resolved = self._resolve(available)
        if resolved == self.topics:
            return False
        self.topics = resolved
        value = ConsumerGroupPartitionMetadataValue(
            tuple((i.topic_id, i.name, i.partitions) for _, i in sorted(resolved.items()))
        )
        records.append((ConsumerGroupPartitionMetadataKey(self.group_id), value))
        return True

    def _bump(self, records: list[ConsumerRecord]) -> None:
        self.group_epoch += 1
        key = ConsumerGroupMetadataKey(self.group_id)
        records.append((key, ConsumerGroupMetadataValue(self.group_epoch)))

    def _compute_target(self, config: ConsumerGroupConfig, records: list[ConsumerRecord]) -> None:
        subscriptions = {
            m.member_id: frozenset(n for n in self.topics if m.subscribes(n))
            for m in self.members.values()
        }
        assignor = ASSIGNORS[self.preferred_assignor(config)]
        target = assignor(subscriptions, self.topics, self.target)
        for member_id in sorted(target):
            if self.target.get(member_id) != target[member_id] or member_id not in self.target:
                member_key = ConsumerGroupTargetAssignmentMemberKey(self.group_id, member_id)
                value = ConsumerGroupTargetAssignmentMemberValue(grouped(target[member_id]))
                records.append((member_key, value))
        self.target = dict(target)
        self.assignment_epoch = self.group_epoch
        key = ConsumerGroupTargetAssignmentMetadataKey(self.group_id)
        records.append((key, ConsumerGroupTargetAssignmentMetadataValue(self.assignment_epoch)))

    # -- reconciliation (Kafka's CurrentAssignmentBuilder) ---------------------------------

    def _reconcile(self, member: ConsumerMember, owned: frozenset[TP] | None, now_ms: int) -> None:
        state = member.state
        if member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            return
        if state == MemberState.STABLE:
            if member.member_epoch != self.assignment_epoch:
                self._next_assignment(member, owned)
        elif state == MemberState.UNREVOKED_PARTITIONS:
            # Without a report of owned partitions the member still owns the revoked ones.
            if owned is not None and not member.pending_revocation & owned:
                self._next_assignment(member, owned)
        else:
            self._next_assignment(member, owned)
        if member.state == MemberState.UNREVOKED_PARTITIONS:
            if state != MemberState.UNREVOKED_PARTITIONS or member.revocation_deadline_ms is None:
                member.revocation_deadline_ms = now_ms + member.rebalance_timeout_ms
        else:
            member.revocation_deadline_ms = None

    def _next_assignment(self, member: ConsumerMember, owned: frozenset[TP] | None) -> None:
        target = self.target.get(member.member_id, frozenset())
        keep = member.assigned & target
        revoke = member.assigned - target
        if owned is not None:
            revoke &= owned  # partitions it no longer owns are revoked already
        wanted = target - member.assigned
        free = frozenset(
            tp for tp in wanted if self.owners.get(tp, member.member_id) == member.member_id
        )
        if revoke:
            self._set_current(member, keep, revoke)
            member.state = MemberState.UNREVOKED_PARTITIONS
            return
        if member.member_epoch != self.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = self.assignment_epoch
        self._set_current(member, keep | free, frozenset())
        member.state = (
            MemberState.UNRELEASED_PARTITIONS if len(free) < len(wanted) else MemberState.STABLE
        )

    def _set_current(
        self, member: ConsumerMember, assigned: frozenset[TP], pending: frozenset[TP]
    ) -> None:
        for tp in member.assigned | member.pending_revocation:
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]
        member.assigned, member.pending_revocation = assigned, pending
        for tp in assigned | pending:
            assert self.owners.get(tp) is None, f"{tp} held by {self.owners[tp]}"
            self.owners[tp] = member.member_id

    def _record_assignment(self, member: ConsumerMember, records: list[ConsumerRecord]) -> None:
        value = member.assignment_value()
        if value != self.persisted.get(member.member_id):
            self.persisted[member.member_id] = value
            key = ConsumerGroupCurrentMemberAssignmentKey(self.group_id, member.member_id)
            records.append((key, value))

    # -- leaving, fencing, static members --------------------------------------------------

    def _leave(
        self,
        request: HeartbeatRequest,
        config: ConsumerGroupConfig,
        now_ms: int,
        records: list[ConsumerRecord],
    ) -> HeartbeatResult:
        member = self.members.get(request.member_id)
        instance = request.instance_id
        if instance is not None:
            holder = self.static_members.get(instance)
            if holder is None:
                return HeartbeatResult(
                    ErrorCode.unknown_member_id, f"Instance id {instance} is unknown."
                )
            if holder != request.member_id:
                return HeartbeatResult(
                    ErrorCode.fenced_instance_id, f"Instance {instance} is held by {holder}."
                )
        if member is None:
            return HeartbeatResult(
                ErrorCode.unknown_member_id, f"Member {request.member_id} is not a member."
            )
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH and member.instance_id:
            if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                member.previous_member_epoch = member.member_epoch
                member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH
                member.revocation_deadline_ms = None
                self._record_assignment(member, records)
        else:
            self.remove_member(member.member_id, config, records)
        return HeartbeatResult(
            ErrorCode.none,
            member_id=request.member_id,
            member_epoch=request.member_epoch,
            heartbeat_interval_ms=0,
        )

    def _replace_static(
        self, old: ConsumerMember, member_id: str, records: list[ConsumerRecord]
    ) -> ConsumerMember:
        """A static member's new incarnation takes the old one's place and assignment."""
        assigned, pending = old.assigned, old.pending_revocation
        target = self.target.get(old.member_id, frozenset())
        self._forget(old, records)
        member = ConsumerMember(
            member_id=member_id,
            instance_id=old.instance_id,
            rack_id=old.rack_id,
            client_id=old.client_id,
            client_host=old.client_host,
            subscribed_topic_names=old.subscribed_topic_names,
            subscribed_topic_regex=old.subscribed_topic_regex,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            server_assignor=old.server_assignor,
            member_epoch=old.previous_member_epoch,
            previous_member_epoch=old.previous_member_epoch,
            state=old.state,
        )
        self.members[member_id] = member
        assert old.instance_id is not None
        self.static_members[old.instance_id] = member_id
        self._set_current(member, assigned, pending)
        self.target[member_id] = target
        key = ConsumerGroupMemberMetadataKey(self.group_id, member_id)
        records.append((key, member.metadata_value()))
        target_key = ConsumerGroupTargetAssignmentMemberKey(self.group_id, member_id)
        records.append((target_key, ConsumerGroupTargetAssignmentMemberValue(grouped(target))))
        return member

    def _forget(self, member: ConsumerMember, records: list[ConsumerRecord]) -> None:
        """Drop a member and tombstone its records (no epoch bump)."""
        self._set_current(member, frozenset(), frozenset())
        del self.members[member.member_id]
        if member.instance_id is not None:
            self.static_members.pop(member.instance_id, None)
        self.target.pop(member.member_id, None)
        self.persisted.pop(member.member_id, None)
        member_id = member.member_id
        records.append((ConsumerGroupCurrentMemberAssignmentKey(self.group_id, member_id), None))
        records.append((ConsumerGroupTargetAssignmentMemberKey(self.group_id, member_id), None))
        records.append((ConsumerGroupMemberMetadataKey(self.group_id, member_id), None))

    def remove_member(
        self, member_id: str, config: ConsumerGroupConfig, records: list[ConsumerRecord]
    ) -> None:
        """Leave or fencing: the member's partitions are free; a new target at once."""
        self._forget(self.members[member_id], records)
        self._refresh_topics(self.topics, records)
        self._bump(records)
        self._compute_target(config, records)

    def expire(
        self, config: ConsumerGroupConfig, now_ms: int, records: list[ConsumerRecord]
    ) -> None:
        """Remove members whose session or rebalance timeout has passed."""
        for member in list(self.members.values()):
            expired = member.session_deadline_ms <= now_ms or (
                member.revocation_deadline_ms is not None
                and member.revocation_deadline_ms <= now_ms
            )
            if expired:
                self.remove_member(member.member_id, config, records)

    def tombstones(self) -> list[ConsumerRecord]:
        """Records deleting the (member-less) group."""
        return [
            (ConsumerGroupTargetAssignmentMetadataKey(self.group_id), None),
            (ConsumerGroupPartitionMetadataKey(self.group_id), None),
            (ConsumerGroupMetadataKey(self.group_id), None),
        ]

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        group_id: str,
        values: Mapping[ConsumerGroupKey, ConsumerGroupValue],
        config: ConsumerGroupConfig,
        now_ms: int,
    ) -> ConsumerGroup:
        """Rebuild a group from its latest records; members get a fresh session."""
        group = cls(group_id)
        assignments: dict[str, ConsumerGroupCurrentMemberAssignmentValue] = {}
        for key, value in values.items():
            if isinstance(value, ConsumerGroupMetadataValue):
                group.group_epoch = value.epoch
            elif isinstance(value, ConsumerGroupTargetAssignmentMetadataValue):
                group.assignment_epoch = value.assignment_epoch
            elif isinstance(value, ConsumerGroupPartitionMetadataValue):
                group.topics = {n: TopicInfo(t, n, c) for t, n, c in value.topics}
            elif isinstance(value, ConsumerGroupMemberMetadataValue):
                assert isinstance(key, ConsumerGroupMemberMetadataKey)
                group.members[key.member_id] = ConsumerMember(
                    member_id=key.member_id,
                    instance_id=value.instance_id,
                    rack_id=value.rack_id,
                    client_id=value.client_id,
                    client_host=value.client_host,
                    subscribed_topic_names=value.subscribed_topic_names,
                    subscribed_topic_regex=value.subscribed_topic_regex,
                    rebalance_timeout_ms=value.rebalance_timeout_ms,
                    server_assignor=value.server_assignor,
                    session_deadline_ms=now_ms + config.session_timeout_ms,
                )
            elif isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
                assert isinstance(key, ConsumerGroupTargetAssignmentMemberKey)
                group.target[key.member_id] = flatten(value.topic_partitions)
            elif isinstance(value, ConsumerGroupCurrentMemberAssignmentValue):
                assert isinstance(key, ConsumerGroupCurrentMemberAssignmentKey)
                assignments[key.member_id] = value
        group.target = {m: t for m, t in group.target.items() if m in group.members}
        for member_id, value in assignments.items():
            member = group.members.get(member_id)
            if member is None:
                continue
            member.member_epoch = value.member_epoch
            member.previous_member_epoch = value.previous_member_epoch
            member.state = MemberState(value.state)
            group._set_current(
                member,
                flatten(value.assigned_partitions),
                flatten(value.partitions_pending_revocation),
            )
            group.persisted[member_id] = value
            if member.state == MemberState.UNREVOKED_PARTITIONS:
                member.revocation_deadline_ms = now_ms + member.rebalance_timeout_ms
        for member in group.members.values():
            if member.instance_id is not None:
                group.static_members[member.instance_id] = member.member_id
        return group

    # -- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        assert self.assignment_epoch <= self.group_epoch
        seen: dict[TP, str] = {}
        for member_id, member in self.members.items():
            assert member.member_id == member_id
            if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                assert 0 <= member.member_epoch <= self.assignment_epoch, (
                    f"{member_id} epoch {member.member_epoch} > {self.assignment_epoch}"
                )
            assert not member.assigned & member.pending_revocation
            if member.state != MemberState.UNREVOKED_PARTITIONS:
                assert not member.pending_revocation
            for tp in member.assigned | member.pending_revocation:
                assert tp not in seen, f"{tp} held by {seen[tp]} and {member_id}"
                seen[tp] = member_id
            if member.instance_id is not None:
                assert self.static_members[member.instance_id] == member_id
        assert seen == self.owners, "owners out of date"
        assert set(self.target) <= set(self.members)
        assert len(self.static_members) == sum(
            1 for m in self.members.values() if m.instance_id is not None
        )
