"""The classic group coordinator's state machine (PURE: time arrives as `now_ms`).

`GroupCoordinatorState` owns every classic group and its committed offsets. Each
input (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, ... or a timer
`tick`) returns what to do: `Effects.replies` (answers to delayed JoinGroup and
SyncGroup requests, identified by the `token` the shell gave each request),
`Effects.records` (records for `__consumer_offsets`; the shell persists them before
it delivers the replies) and `Effects.deadline_ms` (the earliest time `tick` must
run). Randomness (new member ids) arrives as `JoinRequest.new_member_suffix`.

Rules (Kafka's classic GroupCoordinator):

- A group is created by its first JoinGroup, or by an offset commit of a simple
  consumer (generation -1, empty member id): such a group stays Empty.
- Member ids are handed out by the coordinator: `<client id>-<suffix>` (static
  members: `<group.instance.id>-<suffix>`). With v4+ a dynamic member first gets
  MEMBER_ID_REQUIRED and its id, and is *pending* until it rejoins with it (within
  its session timeout); the rebalance waits for pending members.
- A rebalance (PreparingRebalance) completes when every member and no pending
  member is awaiting join, or at the rebalance timeout (the largest of the
  members'), removing members that did not rejoin. For a group that was Empty it is
  an initial delayed join instead: it waits `group.initial.rebalance.delay.ms`
  (capped by the rebalance timeout) and, while new members keep arriving, until
  that delay has passed since the last one joined, never beyond the rebalance
  timeout. (Kafka's InitialDelayedJoin adds a whole new delay at the end of a
  window in which anyone joined, so consumers started together wait two delays,
  6 s by default; ottla waits one quiet delay, ~3 s.) Completion bumps the generation,
  selects the protocol every member supports (most preferred by votes), keeps or
  elects the leader and answers every JoinGroup; only the leader gets the members.
- SyncGroup: followers wait; the leader's assignments are persisted, then every
  waiting member gets its own and the group is Stable.
- Liveness: a member with no JoinGroup/SyncGroup waiting must heartbeat (or join,
  sync, commit) within its session timeout, else it is removed. Removal or leave of
  a member of a Stable or CompletingRebalance group starts a rebalance.
- Static members (`group.instance.id`): a rejoin with an empty member id replaces
  the instance's old member id (whose requests get FENCED_INSTANCE_ID). In a Stable
  group with unchanged metadata it gets its assignment back at once, no rebalance;
  a returning leader is told to skip the assignment (KIP-814).
- Fencing: wrong generation -> ILLEGAL_GENERATION; unknown member ->
  UNKNOWN_MEMBER_ID; an old member id of a known instance -> FENCED_INSTANCE_ID;
  Heartbeat/SyncGroup during PreparingRebalance -> REBALANCE_IN_PROGRESS; offset
  commit during CompletingRebalance -> REBALANCE_IN_PROGRESS.
- Offsets of an Empty group expire `offsets.retention.minutes` after the group
  became Empty (after each commit for groups that never had members); an Empty
  group with no offsets left is removed (Dead). DeleteGroups deletes Empty groups.

Transition table (state, event -> state):

    (new)                JoinGroup                      -> PreparingRebalance
    (new)                simple offset commit           -> Empty
    Empty                JoinGroup                      -> PreparingRebalance
    Empty                offsets expired / DeleteGroups -> Dead (removed)
    PreparingRebalance   join completes, members left   -> CompletingRebalance
    PreparingRebalance   join completes, no members     -> Empty
    CompletingRebalance  leader's SyncGroup             -> Stable
    CompletingRebalance  join (changed) / leave / expiry -> PreparingRebalance
    Stable               join (new, leader, changed)    -> PreparingRebalance
    Stable               leave / session expiry         -> PreparingRebalance
    Stable               static member rejoins          -> Stable

Consumer groups (KIP-848, `consumer_state.py`) live here too, as a `_Group` whose
`consumer` is set: a group is either classic or consumer, and both share the
committed offsets. Kafka 4's rules without online migration: a
ConsumerGroupHeartbeat to a classic group with members is GROUP_ID_NOT_FOUND ("not
a consumer group"), a JoinGroup to a consumer group with members is
INCONSISTENT_GROUP_PROTOCOL; an *empty* group of the other type is converted (its
offsets stay). The `state` of a consumer group's `_Group` mirrors it: Empty without
members, Stable with (so offset expiry and deletion work unchanged); its reported
state is the consumer group's (Empty, Assigning, Reconciling, Stable).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ottla.broker.groups.consumer_records import ConsumerGroupKey, ConsumerGroupValue
from ottla.broker.groups.consumer_state import (
    ConsumerGroup,
    ConsumerGroupConfig,
    ConsumerGroupSummary,
    ConsumerRecord,
    HeartbeatRequest,
    HeartbeatResult,
    TopicInfo,
    validate_heartbeat,
)
from ottla.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
)
from ottla.protocol import ErrorCode

__all__ = [
    "CoordinatorRecord",
    "Effects",
    "GroupConfig",
    "GroupCoordinatorState",
    "GroupState",
    "GroupSummary",
    "JoinRequest",
    "JoinResult",
    "LeaveMember",
    "OffsetAndMetadata",
    "OffsetCommitEntry",
    "SyncResult",
]

CONSUMER_PROTOCOL_TYPE = "consumer"
OFFSET_METADATA_BYTES_MAX = 4096
NO_GENERATION = -1


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class GroupConfig:
    """The broker settings the coordinator decides with (Kafka's names)."""

    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offset_metadata_max_bytes: int = OFFSET_METADATA_BYTES_MAX
    consumer: ConsumerGroupConfig = field(default_factory=ConsumerGroupConfig)


# -- inputs and outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class JoinRequest:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    require_known_member_id: bool
    new_member_suffix: str


@dataclass(frozen=True)
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    # (member id, group instance id, metadata of the selected protocol); leader only.
    members: tuple[tuple[str, str | None, bytes], ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True)
class SyncResult:
    error: ErrorCode
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True)
class LeaveMember:
    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True)
class OffsetCommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


@dataclass(frozen=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


# A record for `__consumer_offsets`: (key, value); value None is a tombstone.
CoordinatorRecord = tuple[
    OffsetCommitKey | GroupMetadataKey | ConsumerGroupKey,
    OffsetCommitValue | GroupMetadataValue | ConsumerGroupValue | None,
]


@dataclass
class Effects:
    replies: list[tuple[int, JoinResult | SyncResult]] = field(default_factory=list)
    records: list[CoordinatorRecord] = field(default_factory=list)
    deadline_ms: int | None = None


@dataclass(frozen=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupSummary:
    group_id: str
    state: GroupState
    protocol_type: str
    protocol_name: str
    generation_id: int
    leader: str | None
    members: tuple[MemberSummary, ...]
    group_type: str = "classic"
    # A consumer group's own state name (Empty, Assigning, Reconciling, Stable).
    consumer_state: str | None = None

    @property
    def state_name(self) -> str:
        return self.consumer_state or self.state.value


# -- group and member ----------------------------------------------------------------------


@dataclass
class _Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    assignment: bytes = b""
    join_token: int | None = None
    sync_token: int | None = None
    heartbeat_deadline_ms: int = 0

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    @property
    def kept_alive(self) -> bool:
        """A waiting JoinGroup or SyncGroup proves liveness (Kafka's shouldKeepAlive)."""
        return self.join_token is not None or self.sync_token is not None


@dataclass
class _Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    state_timestamp_ms: int = -1
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, _Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: dict[str, int] = field(default_factory=dict)  # member id -> deadline
    rebalance_deadline_ms: int = 0
    # InitialDelayedJoin: time still to spend on delays, None for a normal join.
    initial_delay_remaining_ms: int | None = None
    new_member_added: bool = False
    last_member_added_ms: int = 0
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    deadline_ms: int | None = None
    consumer: ConsumerGroup | None = None  # set: a KIP-848 consumer group

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def all_members_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_token is not None for m in self.members.values()
        )

    def candidate_protocols(self, excluding: str | None = None) -> set[str] | None:
        """Protocols every member (but `excluding`) supports; None when there is none."""
        candidates: set[str] | None = None
        for member in self.members.values():
            if member.member_id == excluding:
                continue
            names = {name for name, _ in member.protocols}
            candidates = names if candidates is None else candidates & names
        return candidates

    def select_protocol(self) -> str:
        """Kafka's selectProtocol: each member votes its favourite candidate; most votes win."""
        candidates = self.candidate_protocols() or set()
        votes: dict[str, int] = {}
        for member in self.members.values():
            for name, _ in member.protocols:
                if name in candidates:
                    votes[name] = votes.get(name, 0) + 1
                    break
        assert votes, "select_protocol on a group without a common protocol"
        return max(votes, key=lambda name: votes[name])  # ties: first voted


def _unused(group: _Group) -> bool:
    """A group that never completed a rebalance and holds nothing (e.g. a refused join)."""
    return (
        group.state is GroupState.EMPTY
        and group.generation_id == 0
        and not (group.members or group.pending_members or group.offsets)
        and (group.consumer is None or group.consumer.group_epoch == 0)
    )


def _valid_group_id(group_id: str | None) -> bool:
    return bool(group_id)


# -- the state machine -------------------------------------------------------------------


class GroupCoordinatorState:
    """Every classic group of this coordinator, its members and offsets."""

    def __init__(self, config: GroupConfig) -> None:
        self.config = config
        self.groups: dict[str, _Group] = {}
        self._deadlines: list[tuple[int, str]] = []

    # -- queries -------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline of any group (stale heap entries are dropped)."""
        heap = self._deadlines
        while heap:
            deadline, group_id = heap[0]
            group = self.groups.get(group_id)
            if group is not None and group.deadline_ms == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def describe(self, group_id: str) -> GroupSummary | None:
        group = self.groups.get(group_id)
        if group is None:
            return None
        if group.consumer is not None:
            return self._describe_consumer(group, group.consumer)
        stable = group.state is GroupState.STABLE
        members = tuple(
            MemberSummary(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=m.metadata_for(group.protocol_name) if stable else b"",
                assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupSummary(
            group_id=group.group_id,
            state=group.state,
            protocol_type=group.protocol_type or "",
            protocol_name=(group.protocol_name or "") if stable else "",
            generation_id=group.generation_id,
            leader=group.leader,
            members=members,
        )

    def _describe_consumer(self, group: _Group, consumer: ConsumerGroup) -> GroupSummary:
        """A consumer group as DescribeGroups/ListGroups show it (no classic metadata)."""
        members = tuple(
            MemberSummary(
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=b"",
                assignment=b"",
            )
            for m in consumer.members.values()
        )
        return GroupSummary(
            group_id=group.group_id,
            state=group.state,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocol_name=consumer.preferred_assignor(self.config.consumer),
            generation_id=consumer.group_epoch,
            leader=None,
            members=members,
            group_type="consumer",
            consumer_state=consumer.state_name,
        )

    def list_groups(self) -> list[GroupSummary]:
        return [s for g in self.groups if (s := self.describe(g)) is not None]

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None
    ) -> tuple[ErrorCode, dict[tuple[str, int], OffsetAndMetadata | None]]:
        """Committed offsets (None: none committed); all of them when `partitions` is None."""
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, {}
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        if partitions is None:
            return ErrorCode.none, dict(sorted(offsets.items()))
        return ErrorCode.none, {key: offsets.get(key) for key in partitions}

    # -- JoinGroup -----------------------------------------------------------------------

    def join(self, group_id: str, request: JoinRequest, token: int, now_ms: int) -> Effects:
        effects = Effects()
        error = self._check_join(group_id, request)
        if error is not ErrorCode.none:
            effects.replies.append((token, JoinResult(error, member_id=request.member_id)))
            return self._finish(effects, None)
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = _Group(group_id, state_timestamp_ms=now_ms)
        if group.consumer is not None:
            if group.consumer.members:
                # Kafka 4 without online migration: classic members cannot join.
                result = JoinResult(
                    ErrorCode.inconsistent_group_protocol, member_id=request.member_id
                )
                effects.replies.append((token, result))
                return self._finish(effects, group)
            effects.records += group.consumer.tombstones()
            group.consumer = None  # an empty consumer group becomes a classic group
            group.protocol_type = None
        if group.state is GroupState.DEAD:
            result = JoinResult(ErrorCode.coordinator_not_available, member_id=request.member_id)
            effects.replies.append((token, result))
        elif not self._supports(group, request):
            result = JoinResult(ErrorCode.inconsistent_group_protocol, member_id=request.member_id)
            effects.replies.append((token, result))
        elif not request.member_id:
            self._join_unknown_member(group, request, token, now_ms, effects)
        else:
            self._join_known_member(group, request, token, now_ms, effects)
        return self._finish(effects, group)

    def _check_join(self, group_id: str, request: JoinRequest) -> ErrorCode:
        config = self.config
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id
        if not (
            config.min_session_timeout_ms
            <= request.session_timeout_ms
            <= config.max_session_timeout_ms
        ):
            return ErrorCode.invalid_session_timeout
        if request.rebalance_timeout_ms <= 0:
            return ErrorCode.invalid_request
        return ErrorCode.none

    def _supports(self, group: _Group, request: JoinRequest) -> bool:
        if not request.protocol_type or not request.protocols:
            return False
        if group.state is GroupState.EMPTY and not group.members:
            return True
        if group.protocol_type is not None and group.protocol_type != request.protocol_type:
            return False
        candidates = group.candidate_protocols(excluding=request.member_id or None)
        if candidates is None:
            return True
        return any(name in candidates for name, _ in request.protocols)

    def _join_unknown_member(
        self, group: _Group, request: JoinRequest, token: int, now_ms: int, effects: Effects
    ) -> None:
        instance_id = request.group_instance_id
        prefix = instance_id if instance_id is not None else request.client_id
        new_member_id = f"{prefix}-{request.new_member_suffix}"
        if instance_id is not None and instance_id in group.static_members:
            self._replace_static_member(group, request, new_member_id, token, now_ms, effects)
            return
        if len(group.members) + len(group.pending_members) >= self.config.max_size:
            result = JoinResult(ErrorCode.group_max_size_reached, member_id="")
            effects.replies.append((token, result))
            return
        if instance_id is None and request.require_known_member_id:
            group.pending_members[new_member_id] = now_ms + request.session_timeout_ms
            result = JoinResult(ErrorCode.member_id_required, member_id=new_member_id)
            effects.replies.append((token, result))
            return
        self._add_member_and_rebalance(group, request, new_member_id, token, now_ms, effects)

    def _join_known_member(
        self, group: _Group, request: JoinRequest, token: int, now_ms: int, effects: Effects
    ) -> None:
        member_id = request.member_id
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            self._add_member_and_rebalance(group, request, member_id, token, now_ms, effects)
            return
        error = self._check_member(group, member_id, request.group_instance_id)
        if error is not ErrorCode.none:
            effects.replies.append((token, JoinResult(error, member_id=member_id)))
            return
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, request, token, now_ms, effects)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            if member.protocols == request.protocols:
                # The member missed the JoinGroup response: send it again.
                self._reply_join(group, member, token, now_ms, effects)
            else:
                self._update_member_and_rebalance(group, member, request, token, now_ms, effects)
        elif group.state is GroupState.STABLE:
            if member_id == group.leader or member.protocols != request.protocols:
                self._update_member_and_rebalance(group, member, request, token, now_ms, effects)
            else:
                self._reply_join(group, member, token, now_ms, effects)
        else:
            effects.replies.append((token, JoinResult(ErrorCode.unknown_member_id, member_id)))

    def _check_member(self, group: _Group, member_id: str, instance_id: str | None) -> ErrorCode:
        """Kafka's member checks: static fencing first, then membership."""
        if instance_id is not None:
            current = group.static_members.get(instance_id)
            if current is not None and current != member_id:
                return ErrorCode.fenced_instance_id
            if current is None and member_id in group.members:
                return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        return ErrorCode.none

    def _add_member_and_rebalance(
        self,
        group: _Group,
        request: JoinRequest,
        member_id: str,
        token: int,
        now_ms: int,
        effects: Effects,
    ) -> None:
        if not group.members:
            group.protocol_type = request.protocol_type
        member = _Member(
            member_id=member_id,
            group_instance_id=request.group_instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=request.protocols,
            join_token=token,
            heartbeat_deadline_ms=now_ms + request.session_timeout_ms,
        )
        group.members[member_id] = member
        if group.leader is None:
            group.leader = member_id
        if request.group_instance_id is not None:
            group.static_members[request.group_instance_id] = member_id
        if group.initial_delay_remaining_ms is not None:
            group.new_member_added = True
            group.last_member_added_ms = now_ms
        self._rebalance_or_complete(group, now_ms, effects)

    def _update_member_and_rebalance(
        self,
        group: _Group,
        member: _Member,
        request: JoinRequest,
        token: int,
        now_ms: int,
        effects: Effects,
    ) -> None:
        if member.join_token is not None and member.join_token != token:
            # A second JoinGroup supersedes the first, which is answered now.
            stale = JoinResult(ErrorCode.rebalance_in_progress, member_id=member.member_id)
            effects.replies.append((member.join_token, stale))
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.client_id = request.client_id
        member.client_host = request.client_host
        member.join_token = token
        member.heartbeat_deadline_ms = now_ms + request.session_timeout_ms
        self._rebalance_or_complete(group, now_ms, effects)

    def _rebalance_or_complete(self, group: _Group, now_ms: int, effects: Effects) -> None:
        if group.state in (
            GroupState.EMPTY,
            GroupState.STABLE,
            GroupState.COMPLETING_REBALANCE,
        ):
            self._prepare_rebalance(group, now_ms, effects)
        self._maybe_complete_join(group, now_ms, effects)

    def _replace_static_member(
        self,
        group: _Group,
        request: JoinRequest,
        new_member_id: str,
        token: int,
        now_ms: int,
        effects: Effects,
    ) -> None:
        """A static member rejoined with an empty member id: it takes its old place."""
        instance_id = request.group_instance_id
        assert instance_id is not None
        old_id = group.static_members[instance_id]
        old = group.members.pop(old_id)
        fenced_join = JoinResult(ErrorCode.fenced_instance_id, member_id=old_id)
        if old.join_token is not None:
            effects.replies.append((old.join_token, fenced_join))
        if old.sync_token is not None:
            effects.replies.append((old.sync_token, SyncResult(ErrorCode.fenced_instance_id)))
        unchanged = old.protocols == request.protocols or (
            group.protocol_name is not None
            and old.metadata_for(group.protocol_name)
            == dict(request.protocols).get(group.protocol_name)
        )
        member = _Member(
            member_id=new_member_id,
            group_instance_id=instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=request.protocols,
            assignment=old.assignment,
            heartbeat_deadline_ms=now_ms + request.session_timeout_ms,
        )
        group.members[new_member_id] = member
        group.static_members[instance_id] = new_member_id
        if group.leader == old_id:
            group.leader = new_member_id
        if group.state is GroupState.STABLE and unchanged:
            effects.records.append(self._group_record(group))
            is_leader = group.leader == new_member_id
            members = self._join_members(group) if is_leader else ()
            result = JoinResult(
                ErrorCode.none,
                member_id=new_member_id,
                generation_id=group.generation_id,
                protocol_type=group.protocol_type,
                protocol_name=group.protocol_name,
                leader=group.leader or "",
                members=members,
                skip_assignment=is_leader,
            )
            effects.replies.append((token, result))
            return
        member.join_token = token
        self._rebalance_or_complete(group, now_ms, effects)

    def _prepare_rebalance(self, group: _Group, now_ms: int, effects: Effects) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            for member in group.members.values():
                member.assignment = b""
                if member.sync_token is not None:
                    result = SyncResult(ErrorCode.rebalance_in_progress)
                    effects.replies.append((member.sync_token, result))
                    member.sync_token = None
        rebalance_timeout = group.rebalance_timeout_ms()
        delay = self.config.initial_rebalance_delay_ms
        if group.state is GroupState.EMPTY and delay > 0:
            group.initial_delay_remaining_ms = max(rebalance_timeout - delay, 0)
            group.new_member_added = False
            group.rebalance_deadline_ms = now_ms + min(delay, rebalance_timeout)
        else:
            group.initial_delay_remaining_ms = None
            group.rebalance_deadline_ms = now_ms + rebalance_timeout
        group.state = GroupState.PREPARING_REBALANCE
        group.state_timestamp_ms = now_ms

    def _maybe_complete_join(self, group: _Group, now_ms: int, effects: Effects) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.initial_delay_remaining_ms is None
            and group.all_members_joined()
        ):
            self._complete_join(group, now_ms, effects)

    def _complete_join(self, group: _Group, now_ms: int, effects: Effects) -> None:
        for member in [m for m in group.members.values() if m.join_token is None]:
            self._remove_member(group, member, effects)
        group.initial_delay_remaining_ms = None
        group.generation_id += 1
        group.state_timestamp_ms = now_ms
        if not group.members:
            group.protocol_name = None
            group.leader = None
            group.state = GroupState.EMPTY
            effects.records.append(self._group_record(group))
            return
        group.protocol_name = group.select_protocol()
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = GroupState.COMPLETING_REBALANCE
        for member in group.members.values():
            token = member.join_token
            assert token is not None
            member.join_token = None
            self._reply_join(group, member, token, now_ms, effects)

    def _join_members(self, group: _Group) -> tuple[tuple[str, str | None, bytes], ...]:
        return tuple(
            (m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name))
            for m in group.members.values()
        )

    def _reply_join(
        self, group: _Group, member: _Member, token: int, now_ms: int, effects: Effects
    ) -> None:
        is_leader = member.member_id == group.leader
        result = JoinResult(
            ErrorCode.none,
            member_id=member.member_id,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader or "",
            members=self._join_members(group) if is_leader else (),
        )
        effects.replies.append((token, result))
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms

    def _remove_member(self, group: _Group, member: _Member, effects: Effects) -> None:
        del group.members[member.member_id]
        if member.group_instance_id is not None:
            group.static_members.pop(member.group_instance_id, None)
        if member.join_token is not None:
            result = JoinResult(ErrorCode.unknown_member_id, member_id=member.member_id)
            effects.replies.append((member.join_token, result))
        if member.sync_token is not None:
            effects.replies.append((member.sync_token, SyncResult(ErrorCode.unknown_member_id)))
        if group.leader == member.member_id:
            group.leader = next(iter(group.members), None)

    def _remove_member_and_update(
        self, group: _Group, member: _Member, now_ms: int, effects: Effects
    ) -> None:
        self._remove_member(group, member, effects)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now_ms, effects)
        self._maybe_complete_join(group, now_ms, effects)

    # -- SyncGroup -----------------------------------------------------------------------

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Iterable[tuple[str, bytes]],
        token: int,
        now_ms: int,
    ) -> Effects:
        effects = Effects()
        group = self.groups.get(group_id)
        if not _valid_group_id(group_id):
            error = ErrorCode.invalid_group_id
        elif group is None:
            error = ErrorCode.unknown_member_id
        elif group.state is GroupState.DEAD:
            error = ErrorCode.coordinator_not_available
        else:
            error = self._check_member(group, member_id, group_instance_id)
        if error is ErrorCode.none and group is not None:
            if generation_id != group.generation_id:
                error = ErrorCode.illegal_generation
            elif (protocol_type is not None and protocol_type != group.protocol_type) or (
                protocol_name is not None and protocol_name != group.protocol_name
            ):
                error = ErrorCode.inconsistent_group_protocol
            elif group.state is GroupState.PREPARING_REBALANCE:
                error = ErrorCode.rebalance_in_progress
            elif group.state is GroupState.EMPTY:
                error = ErrorCode.unknown_member_id
        if error is not ErrorCode.none or group is None:
            effects.replies.append((token, SyncResult(error)))
            return self._finish(effects, group)
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if group.state is GroupState.STABLE:
            effects.replies.append((token, self._sync_result(group, member)))
            return self._finish(effects, group)
        # CompletingRebalance: wait for the leader's assignments.
        if member.sync_token is not None and member.sync_token != token:
            stale = SyncResult(ErrorCode.rebalance_in_progress)
            effects.replies.append((member.sync_token, stale))
        member.sync_token = token
        if member_id == group.leader:
            given = dict(assignments)
            for each in group.members.values():
                each.assignment = given.get(each.member_id, b"")
            effects.records.append(self._group_record(group))
            group.state = GroupState.STABLE
            group.state_timestamp_ms = now_ms
            for each in group.members.values():
                if each.sync_token is not None:
                    effects.replies.append((each.sync_token, self._sync_result(group, each)))
                    each.sync_token = None
                    each.heartbeat_deadline_ms = now_ms + each.session_timeout_ms
        return self._finish(effects, group)

    def _sync_result(self, group: _Group, member: _Member) -> SyncResult:
        return SyncResult(
            ErrorCode.none,
            assignment=member.assignment,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
        )

    # -- Heartbeat and LeaveGroup --------------------------------------------------------

    def heartbeat(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        now_ms: int,
    ) -> tuple[ErrorCode, Effects]:
        group = self.groups.get(group_id)
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, self._finish(Effects(), None)
        if group is None:
            return ErrorCode.unknown_member_id, self._finish(Effects(), None)
        if group.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available, self._finish(Effects(), group)
        error = self._check_member(group, member_id, group_instance_id)
        if error is ErrorCode.none:
            if group.state is GroupState.EMPTY:
                error = ErrorCode.unknown_member_id
            elif generation_id != group.generation_id:
                error = ErrorCode.illegal_generation
            else:
                member = group.members[member_id]
                member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
                if group.state is GroupState.PREPARING_REBALANCE:
                    error = ErrorCode.rebalance_in_progress
        return error, self._finish(Effects(), group)

    def leave(
        self, group_id: str, leaving: Sequence[LeaveMember], now_ms: int
    ) -> tuple[ErrorCode, list[ErrorCode], Effects]:
        """Top-level error, one error per leaving member, effects."""
        effects = Effects()
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, [], self._finish(effects, None)
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id, [], self._finish(effects, None)
        if group.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available, [], self._finish(effects, group)
        errors: list[ErrorCode] = []
        removed = False
        for item in leaving:
            member_id = item.member_id
            if not member_id and item.group_instance_id is not None:
                member_id = group.static_members.get(item.group_instance_id, "")
                if not member_id:
                    errors.append(ErrorCode.unknown_member_id)
                    continue
            if member_id in group.pending_members and item.group_instance_id is None:
                del group.pending_members[member_id]
                errors.append(ErrorCode.none)
                removed = True
                continue
            error = self._check_member(group, member_id, item.group_instance_id)
            errors.append(error)
            if error is ErrorCode.none:
                self._remove_member(group, group.members[member_id], effects)
                removed = True
        if removed:
            if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                self._prepare_rebalance(group, now_ms, effects)
            self._maybe_complete_join(group, now_ms, effects)
        return ErrorCode.none, errors, self._finish(effects, group)

    # -- offsets -------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        entries: Sequence[OffsetCommitEntry],
        now_ms: int,
    ) -> tuple[list[ErrorCode], Effects]:
        """One error per entry (in order), and the offset records to persist."""
        effects = Effects()
        group = self.groups.get(group_id)
        error = self._check_commit(group_id, group, generation_id, member_id, group_instance_id)
        if error is not ErrorCode.none:
            return [error] * len(entries), self._finish(effects, group)
        if group is None:
            group = self.groups[group_id] = _Group(group_id, state_timestamp_ms=now_ms)
        if member_id in group.members:
            member = group.members[member_id]
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        errors = []
        for entry in entries:
            metadata = entry.metadata or ""
            if len(metadata.encode()) > self.config.offset_metadata_max_bytes:
                errors.append(ErrorCode.offset_metadata_too_large)
                continue
            value = OffsetAndMetadata(entry.offset, entry.leader_epoch, metadata, now_ms)
            group.offsets[(entry.topic, entry.partition)] = value
            key = OffsetCommitKey(group_id, entry.topic, entry.partition)
            effects.records.append(
                (key, OffsetCommitValue(value.offset, value.leader_epoch, metadata, now_ms))
            )
            errors.append(ErrorCode.none)
        return errors, self._finish(effects, group)

    def _check_commit(
        self,
        group_id: str,
        group: _Group | None,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
    ) -> ErrorCode:
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id
        if group is None:
            return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
        if group.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available
        if group.consumer is not None:
            return group.consumer.validate_offset_request(member_id, generation_id)
        if group_instance_id is not None:
            current = group.static_members.get(group_instance_id)
            if current is not None and current != member_id:
                return ErrorCode.fenced_instance_id
        if generation_id < 0 and group.state is GroupState.EMPTY:
            return ErrorCode.none  # a simple consumer storing offsets
        if group.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    def delete_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]]
    ) -> tuple[ErrorCode, list[ErrorCode], Effects]:
        """OffsetDelete: offsets of topics the group is not subscribed to."""
        effects = Effects()
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, [], self._finish(effects, None)
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return ErrorCode.group_id_not_found, [], self._finish(effects, group)
        subscribed = self._subscribed_topics(group)
        errors = []
        for topic, partition in partitions:
            if group.state is not GroupState.EMPTY and (subscribed is None or topic in subscribed):
                errors.append(ErrorCode.group_subscribed_to_topic)
                continue
            if group.offsets.pop((topic, partition), None) is not None:
                effects.records.append((OffsetCommitKey(group_id, topic, partition), None))
            errors.append(ErrorCode.none)
        return ErrorCode.none, errors, self._finish(effects, group)

    def _subscribed_topics(self, group: _Group) -> set[str] | None:
        """Topics of a consumer group's subscriptions; None when unknown (all count)."""
        if group.consumer is not None:
            if any(m.subscribed_topic_regex for m in group.consumer.members.values()):
                return set(group.consumer.topics)
            return group.consumer.subscribed_topic_names()
        if group.protocol_type != CONSUMER_PROTOCOL_TYPE or group.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in group.members.values():
            parsed = _subscription_topics(member.metadata_for(group.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics

    def delete_group(self, group_id: str) -> tuple[ErrorCode, Effects]:
        effects = Effects()
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, self._finish(effects, None)
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return ErrorCode.group_id_not_found, self._finish(effects, None)
        if group.state is not GroupState.EMPTY:
            return ErrorCode.non_empty_group, self._finish(effects, group)
        self._delete(group, effects)
        return ErrorCode.none, self._finish(effects, None)

    def _delete(self, group: _Group, effects: Effects) -> None:
        for topic, partition in sorted(group.offsets):
            effects.records.append((OffsetCommitKey(group.group_id, topic, partition), None))
        if group.consumer is not None:
            effects.records += group.consumer.tombstones()
        else:
            effects.records.append((GroupMetadataKey(group.group_id), None))
        group.offsets.clear()
        group.state = GroupState.DEAD
        del self.groups[group.group_id]

    # -- timers --------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Effects:
        """Run every deadline that has passed."""
        effects = Effects()
        while True:
            deadline = self.next_deadline_ms()
            if deadline is None or deadline > now_ms:
                break
            _, group_id = heapq.heappop(self._deadlines)
            group = self.groups[group_id]
            group.deadline_ms = None
            self._tick_group(group, now_ms, effects)
            if group.group_id in self.groups and _unused(group):
                del self.groups[group.group_id]
            self._schedule(group if group.group_id in self.groups else None)
        effects.deadline_ms = self.next_deadline_ms()
        return effects

    def _tick_group(self, group: _Group, now_ms: int, effects: Effects) -> None:
        if group.consumer is not None:
            records: list[ConsumerRecord] = []
            group.consumer.expire(self.config.consumer, now_ms, records)
            effects.records += records
            self._mirror_consumer_state(group, now_ms)
        for member_id, deadline in list(group.pending_members.items()):
            if deadline <= now_ms:
                del group.pending_members[member_id]
        for member in list(group.members.values()):
            if not member.kept_alive and member.heartbeat_deadline_ms <= now_ms:
                self._remove_member_and_update(group, member, now_ms, effects)
        if group.state is GroupState.PREPARING_REBALANCE:
            if now_ms >= group.rebalance_deadline_ms:
                remaining = group.initial_delay_remaining_ms
                quiet_until = group.last_member_added_ms + self.config.initial_rebalance_delay_ms
                if (
                    remaining is not None
                    and group.new_member_added
                    and remaining > 0
                    and quiet_until > now_ms
                ):
                    delay = min(quiet_until - now_ms, remaining)
                    group.initial_delay_remaining_ms = max(remaining - delay, 0)
                    group.new_member_added = False
                    group.rebalance_deadline_ms = now_ms + delay
                else:
                    self._complete_join(group, now_ms, effects)
            else:
                self._maybe_complete_join(group, now_ms, effects)
        if group.state is GroupState.EMPTY:
            self._expire_offsets(group, now_ms, effects)

    def _expire_offsets(self, group: _Group, now_ms: int, effects: Effects) -> None:
        retention = self.config.offsets_retention_ms
        had_offsets = bool(group.offsets)
        for key, value in list(group.offsets.items()):
            if self._expires_at(group, value, retention) <= now_ms:
                del group.offsets[key]
                effects.records.append((OffsetCommitKey(group.group_id, *key), None))
        if group.offsets or group.pending_members:
            return
        if had_offsets or max(group.state_timestamp_ms, 0) + retention <= now_ms:
            self._delete(group, effects)

    @staticmethod
    def _expires_at(group: _Group, value: OffsetAndMetadata, retention_ms: int) -> int:
        if group.protocol_type is None:  # a simple group: each offset since its commit
            return value.commit_timestamp_ms + retention_ms
        return max(group.state_timestamp_ms, 0) + retention_ms

    def _group_deadline(self, group: _Group) -> int | None:
        deadlines = list(group.pending_members.values())
        deadlines += [m.heartbeat_deadline_ms for m in group.members.values() if not m.kept_alive]
        if group.consumer is not None and (consumer := group.consumer.deadline_ms()) is not None:
            deadlines.append(consumer)
        if group.state is GroupState.PREPARING_REBALANCE:
            deadlines.append(group.rebalance_deadline_ms)
        if group.state is GroupState.EMPTY:
            retention = self.config.offsets_retention_ms
            deadlines += [self._expires_at(group, v, retention) for v in group.offsets.values()]
            if not group.offsets and not group.pending_members:
                # An Empty group without offsets goes at the next cleanup, as in Kafka.
                deadlines.append(max(group.state_timestamp_ms, 0) + retention)
        return min(deadlines, default=None)

    def _schedule(self, group: _Group | None) -> None:
        if group is None:
            return
        deadline = self._group_deadline(group)
        if deadline != group.deadline_ms:
            group.deadline_ms = deadline
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, group.group_id))

    def _finish(self, effects: Effects, group: _Group | None) -> Effects:
        if group is not None and group.group_id in self.groups:
            if _unused(group):
                del self.groups[group.group_id]  # created by a request that changed nothing
            else:
                self._schedule(group)
        effects.deadline_ms = self.next_deadline_ms()
        return effects

    # -- persistence ---------------------------------------------------------------------

    def _group_record(self, group: _Group) -> CoordinatorRecord:
        members = tuple(
            MemberMetadata(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms,
                subscription=m.metadata_for(group.protocol_name),
                assignment=m.assignment,
            )
            for m in group.members.values()
        )
        value = GroupMetadataValue(
            protocol_type=group.protocol_type or "",
            generation=group.generation_id,
            protocol=group.protocol_name,
            leader=group.leader,
            current_state_timestamp_ms=group.state_timestamp_ms,
            members=members,
        )
        return (GroupMetadataKey(group.group_id), value)

    def load(
        self,
        group_id: str,
        metadata: GroupMetadataValue | None,
        offsets: dict[tuple[str, int], OffsetCommitValue],
        now_ms: int,
    ) -> Effects:
        """Restore one group from its latest records (at startup, before serving)."""
        group = _Group(group_id, state_timestamp_ms=now_ms)
        if metadata is not None:
            group.protocol_type = metadata.protocol_type or None
            group.generation_id = metadata.generation
            group.state_timestamp_ms = (
                metadata.current_state_timestamp_ms
                if metadata.current_state_timestamp_ms >= 0
                else now_ms
            )
            if metadata.members and metadata.protocol is not None:
                group.protocol_name = metadata.protocol
                group.state = GroupState.STABLE
                for item in metadata.members:
                    group.members[item.member_id] = _Member(
                        member_id=item.member_id,
                        group_instance_id=item.group_instance_id,
                        client_id=item.client_id,
                        client_host=item.client_host,
                        rebalance_timeout_ms=item.rebalance_timeout_ms,
                        session_timeout_ms=item.session_timeout_ms,
                        protocol_type=metadata.protocol_type,
                        protocols=((metadata.protocol, item.subscription),),
                        assignment=item.assignment,
                        heartbeat_deadline_ms=now_ms + item.session_timeout_ms,
                    )
                    if item.group_instance_id is not None:
                        group.static_members[item.group_instance_id] = item.member_id
                leader = metadata.leader
                group.leader = leader if leader in group.members else next(iter(group.members))
        for (topic, partition), value in offsets.items():
            group.offsets[(topic, partition)] = OffsetAndMetadata(
                value.offset, value.leader_epoch, value.metadata, value.commit_timestamp_ms
            )
        self.groups[group_id] = group
        return self._finish(Effects(), group)

    def unload(self, group_ids: Iterable[str]) -> Effects:
        """Forget groups whose `__consumer_offsets` partition this node no longer leads
        (Kafka's onResignation): their waiting JoinGroup/SyncGroup requests are answered
        NOT_COORDINATOR, so the members find the new coordinator; nothing is written."""
        effects = Effects()
        for group_id in sorted(set(group_ids)):
            group = self.groups.pop(group_id, None)
            if group is None:
                continue
            for member in group.members.values():
                if member.join_token is not None:
                    effects.replies.append(
                        (member.join_token, JoinResult(ErrorCode.not_coordinator, member.member_id))
                    )
                    member.join_token = None
                if member.sync_token is not None:
                    effects.replies.append(
                        (member.sync_token, SyncResult(ErrorCode.not_coordinator))
                    )
                    member.sync_token = None
            group.deadline_ms = None  # its heap entries are stale now
        effects.deadline_ms = self.next_deadline_ms()
        return effects

    # -- consumer groups (KIP-848) --------------------------------------------------------

    def consumer_heartbeat(
        self,
        group_id: str,
        request: HeartbeatRequest,
        topics: Mapping[str, TopicInfo],
        now_ms: int,
    ) -> tuple[HeartbeatResult, Effects]:
        """ConsumerGroupHeartbeat; `topics`: the cluster's non-internal topics by name."""
        effects = Effects()
        config = self.config.consumer
        message = "GroupId can't be empty." if not group_id else None
        message = message or validate_heartbeat(request, config)
        if message is not None:
            return HeartbeatResult(ErrorCode.invalid_request, message), self._finish(effects, None)
        assignor = request.server_assignor
        if assignor is not None and assignor not in config.assignors:
            result = HeartbeatResult(
                ErrorCode.unsupported_assignor, f"Assignor {assignor} is not supported."
            )
            return result, self._finish(effects, None)
        regex = request.subscribed_topic_regex
        if regex and not _valid_regex(regex):
            result = HeartbeatResult(
                ErrorCode.invalid_regular_expression, f"SubscribedTopicRegex {regex} is invalid."
            )
            return result, self._finish(effects, None)
        group = self.groups.get(group_id)
        if group is not None and group.consumer is None:
            if group.members or group.pending_members or group.state is not GroupState.EMPTY:
                result = HeartbeatResult(
                    ErrorCode.group_id_not_found, f"Group {group_id} is not a consumer group."
                )
                return result, self._finish(effects, group)
            if request.member_epoch != 0:
                result = HeartbeatResult(
                    ErrorCode.unknown_member_id, f"Consumer group {group_id} not found."
                )
                return result, self._finish(effects, group)
            # An empty classic group becomes a consumer group; its offsets stay.
            if group.protocol_type is not None:
                effects.records.append((GroupMetadataKey(group_id), None))
            group.consumer = ConsumerGroup(group_id)
            group.protocol_type = CONSUMER_PROTOCOL_TYPE
        if group is None:
            if request.member_epoch != 0:
                result = HeartbeatResult(
                    ErrorCode.unknown_member_id, f"Consumer group {group_id} not found."
                )
                return result, self._finish(effects, None)
            group = self.groups[group_id] = _Group(
                group_id,
                state_timestamp_ms=now_ms,
                protocol_type=CONSUMER_PROTOCOL_TYPE,
                consumer=ConsumerGroup(group_id),
            )
        assert group.consumer is not None
        records: list[ConsumerRecord] = []
        result = group.consumer.heartbeat(request, topics, config, now_ms, records)
        effects.records += records
        self._mirror_consumer_state(group, now_ms)
        return result, self._finish(effects, group)

    @staticmethod
    def _mirror_consumer_state(group: _Group, now_ms: int) -> None:
        assert group.consumer is not None
        state = GroupState.STABLE if group.consumer.members else GroupState.EMPTY
        if state is not group.state:
            group.state = state
            group.state_timestamp_ms = now_ms

    def consumer_describe(
        self, group_id: str
    ) -> tuple[ErrorCode, str | None, ConsumerGroupSummary | None]:
        """ConsumerGroupDescribe of one group: (error, message, summary)."""
        if not _valid_group_id(group_id):
            return ErrorCode.invalid_group_id, "Group id must not be empty.", None
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.group_id_not_found, f"Group {group_id} not found.", None
        if group.consumer is None:
            message = f"Group {group_id} is not a consumer group."
            return ErrorCode.group_id_not_found, message, None
        return ErrorCode.none, None, group.consumer.summary(self.config.consumer)

    def validate_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> ErrorCode:
        """OffsetFetch v9+ naming a member of a consumer group must carry its epoch."""
        group = self.groups.get(group_id)
        if group is None or group.consumer is None:
            return ErrorCode.none
        if member_id is None and member_epoch < 0:
            return ErrorCode.none  # an admin client
        return group.consumer.validate_offset_request(member_id or "", max(member_epoch, 0))

    def load_consumer(
        self,
        group_id: str,
        values: Mapping[ConsumerGroupKey, ConsumerGroupValue],
        now_ms: int,
    ) -> Effects:
        """Restore a consumer group from its latest records (after `load` of its offsets)."""
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = _Group(group_id, state_timestamp_ms=now_ms)
        group.consumer = ConsumerGroup.load(group_id, values, self.config.consumer, now_ms)
        group.protocol_type = CONSUMER_PROTOCOL_TYPE
        group.members.clear()
        group.static_members.clear()
        group.leader = None
        group.protocol_name = None
        group.state = GroupState.STABLE if group.consumer.members else GroupState.EMPTY
        return self._finish(Effects(), group)

    # -- invariants (tests and assertions) ------------------------------------------------

    def check_invariants(self) -> None:
        for group_id, group in self.groups.items():
            assert group.group_id == group_id
            assert group.state is not GroupState.DEAD, "dead groups are removed"
            if group.consumer is not None:
                assert not group.members and not group.pending_members
                group.consumer.check_invariants()
                members = bool(group.consumer.members)
                assert group.state is (GroupState.STABLE if members else GroupState.EMPTY)
                continue
            ids = set(group.members)
            assert not ids & set(group.pending_members), "a member is also pending"
            instance_ids = [
                m.group_instance_id for m in group.members.values() if m.group_instance_id
            ]
            assert len(instance_ids) == len(set(instance_ids)), "static instance ids unique"
            assert {group.static_members[i] for i in instance_ids} <= ids
            assert len(group.static_members) == len(instance_ids)
            if group.members:
                assert group.leader in ids, f"leader {group.leader} is not a member"
            if group.state is GroupState.EMPTY:
                assert not group.members, "an Empty group has no members"
            if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                assert group.members, f"{group.state} without members"
                assert group.protocol_name is not None
                assert all(m.join_token is None for m in group.members.values())
            if group.state is GroupState.STABLE:
                assert all(m.sync_token is None for m in group.members.values())
            if group.state is not GroupState.COMPLETING_REBALANCE:
                assert all(m.sync_token is None for m in group.members.values())
            if group.state is not GroupState.PREPARING_REBALANCE:
                assert group.initial_delay_remaining_ms is None


def _valid_regex(regex: str) -> bool:
    try:
        re.compile(regex)
    except re.error:
        return False
    return True


def _subscription_topics(metadata: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (version int16, then a topic array)."""
    try:
        position = 2
        count = int.from_bytes(metadata[position : position + 4], "big", signed=True)
        position += 4
        if count < 0 or count > len(metadata):
            return None
        topics = set()
        for _ in range(count):
            length = int.from_bytes(metadata[position : position + 2], "big", signed=True)
            position += 2
            if length < 0 or position + length > len(metadata):
                return None
            topics.add(metadata[position : position + length].decode())
            position += length
        return topics
    except (UnicodeDecodeError, IndexError):
        return None
