"""Raft for the metadata log as a pure state machine, speaking KIP-595 (KRaft).

PURE: no I/O, no clock, no randomness of its own. Time arrives as `now_ms`; the randomised
election timeout comes from the `rng` passed in. The shell (asyncio driver, or the
simulator in tests/sim) feeds inputs and carries out the `Ready`:

    inputs:  step(envelope, now_ms)   a received request or response
             tick(now_ms)             time passed (call at or after Ready.deadline_ms)
             propose(payloads, now_ms) -> offset of the last entry | NotLeader
             take_snapshot(end_offset, data)   the shell snapshotted its state machine
             resign(now_ms)            graceful shutdown of a leader (EndQuorumEpoch)
             fetch_failed(node_id, refused, now_ms)   a Fetch got no answer: the
                                       connection failed (refused: nothing listens)
    output:  ready() -> Ready, then advance(ready) once the shell has carried it out.

The shell's contract for one Ready, in this order:
    1. install_snapshot: replace the log and the state machine's snapshot with it;
    2. truncate the log at truncate_to, append entries, write quorum_state, delete the
       log prefix below log_start_offset;
    3. if must_sync, fsync all of that;           (only then may anything leave the node)
    4. send messages;
    5. apply committed entries to the state machine, in order (after the snapshot);
    6. advance(ready), then arm one timer for deadline_ms; repeat while has_ready().
Anything the shell had not made durable when it crashed may be lost; the core never sends
a message that depends on state not yet synced (a granted vote, a Fetch at offset N
proving everything below N is on disk).

Protocol rules (KIP-595 / KIP-996), beyond the transition table in state.py:

- The leader does not push. Followers send FetchRequest(fetch_offset, last_fetched_epoch)
  and the leader validates it against its log (Kafka's validateOffsetAndEpoch): valid ->
  records from fetch_offset; diverging -> the end offset of the follower's epoch in the
  leader's epoch cache, and the follower truncates there; below the leader's log start ->
  the snapshot id, and the follower pulls it with FetchSnapshot.
- A valid fetch at offset N proves the follower holds the leader's log below N durably, so
  the leader's high watermark is the largest offset a majority of voters (the leader
  counting its own synced log end) have reached; it moves only forward and only once it
  covers the leader-change entry the leader appended at the start of its epoch
  (`epoch_start_offset`), so no entry of an older epoch is committed by counting replicas.
- An empty fetch of a caught-up follower is parked (long poll) until new entries, a new
  high watermark, or max_wait_ms.
- A follower with no successful fetch for fetch_timeout_ms becomes Prospective and asks
  for pre-votes (epoch not bumped); a voter grants a pre-vote if the candidate's log is at
  least as up to date and it has not heard from a leader within fetch_timeout_ms. A
  majority of pre-votes makes it a Candidate (epoch + 1, votes for itself); a majority of
  votes makes it Leader, which sends BeginQuorumEpoch until each voter has answered or
  fetched.
- Check quorum: a leader that has not been fetched from by a majority within
  1.5 x fetch_timeout_ms resigns, so a partitioned leader stops claiming leadership.
- A dead leader (ottla's addition; Kafka waits fetch_timeout_ms): a follower whose Fetch
  failed on its connection fetches again after retry_backoff_ms rather than the request
  timeout. When the leader's address refuses the connection (its process is gone), the
  follower stops vouching for it (it grants pre-votes) and starts its pre-vote after
  (1 + 10 x its rank among the other voters) x retry_backoff_ms, so the survivors do
  not split the vote, and a new leader is elected in tens of milliseconds instead of
  after the fetch timeout. Timers and pre-votes only: safety is untouched (the
  simulator reports refusals, true and false, at random).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ottla.cluster.raft.memlog import RaftLog, Snapshot
from ottla.cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    Entry,
    Envelope,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    OffsetAndEpoch,
    VoteRequest,
    VoteResponse,
)
from ottla.cluster.raft.state import (
    NO_ID,
    ElectionState,
    QuorumStateData,
    Role,
    check_transition,
)

__all__ = [
    "NotLeader",
    "QuorumInfo",
    "RaftConfig",
    "RaftCore",
    "Ready",
    "ReplicaState",
    "Rng",
]

_NEVER = 1 << 62


class Rng(Protocol):
    """Where the election timeout's randomness comes from (`random.Random` fits)."""

    def randrange(self, start: int, stop: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Kafka's controller.quorum.* settings, in milliseconds."""

    voters: frozenset[int]
    election_timeout_ms: int = 1000  # controller.quorum.election.timeout.ms
    fetch_timeout_ms: int = 2000  # controller.quorum.fetch.timeout.ms
    request_timeout_ms: int = 2000  # controller.quorum.request.timeout.ms
    retry_backoff_ms: int = 100  # controller.quorum.retry.backoff.ms
    fetch_max_wait_ms: int = 500
    fetch_max_entries: int = 100
    fetch_snapshot_max_bytes: int = 1 << 20

    @property
    def majority(self) -> int:
        return len(self.voters) // 2 + 1


@dataclass(frozen=True, slots=True)
class NotLeader:
    """propose()/describe_quorum() on a node that is not the leader: who is, if known."""

    leader_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class Ready:
    """What the shell must do now, in the order documented in the module docstring."""

    deadline_ms: int
    high_watermark: int
    messages: tuple[Envelope, ...] = ()
    quorum_state: QuorumStateData | None = None
    install_snapshot: Snapshot | None = None
    truncate_to: int | None = None
    entries: tuple[Entry, ...] = ()
    log_start_offset: int | None = None
    must_sync: bool = False
    committed: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """DescribeQuorumResponse.ReplicaState."""

    replica_id: int
    log_end_offset: int
    last_fetch_timestamp: int
    last_caught_up_timestamp: int


@dataclass(frozen=True, slots=True)
class QuorumInfo:
    """DescribeQuorumResponse's partition data, as the leader sees it."""

    leader_id: int
    leader_epoch: int
    high_watermark: int
    current_voters: tuple[ReplicaState, ...]
    observers: tuple[ReplicaState, ...]


@dataclass(slots=True)
class _Replica:
    """The leader's view of one fetching replica."""

    log_end_offset: int = -1
    last_fetch_timestamp: int = -1
    last_caught_up_timestamp: int = -1
    sent_high_watermark: int = -1


@dataclass(slots=True)
class _Parked:
    envelope: Envelope
    request: FetchRequest
    deadline_ms: int


@dataclass(slots=True)
class _SnapshotFetch:
    snapshot_id: OffsetAndEpoch
    buffer: bytearray = field(default_factory=bytearray)


def leader_change_payload(leader_id: int, leader_epoch: int) -> bytes:
    """The body of the leader-change control entry (the driver maps it to Kafka's
    LeaderChangeMessage control record)."""
    return f"leader-change leader_id={leader_id} leader_epoch={leader_epoch}".encode()


class RaftCore:
    """One node's Raft state machine for the metadata partition."""

    def __init__(
        self,
        node_id: int,
        config: RaftConfig,
        rng: Rng,
        now_ms: int,
        quorum_state: QuorumStateData | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        """Start from what is durable: the quorum-state file, the latest snapshot and the
        log entries after it (empty for a new node)."""
        self.node_id = node_id
        self.config = config
        self._rng = rng
        self._now = now_ms
        persisted = quorum_state or QuorumStateData()
        self._state = ElectionState.on_restart(persisted, node_id)
        self._written_state = persisted
        self._pending_state: QuorumStateData | None = None
        self.log = RaftLog(snapshot, entries)
        self._persisted_end = self.log.log_end_offset
        self._dirty_from = self.log.log_end_offset
        self._pending_install: Snapshot | None = None
        self._pending_log_start: int | None = None
        self._high_watermark = self.log.log_start_offset
        # The high watermark the current leader last reported (-1: none yet this epoch).
        self._leader_high_watermark = -1
        self._applied = self.log.log_start_offset
        self._messages: list[Envelope] = []
        self._next_correlation = 1
        self._in_ready: Ready | None = None
        # Timers (absolute ms).
        self._election_deadline = _NEVER
        self._fetch_deadline = _NEVER
        self._request_deadline = _NEVER
        # Follower.
        self._fetch_in_flight: int | None = None
        self._snapshot_fetch: _SnapshotFetch | None = None
        self._last_leader_contact_ms = -_NEVER
        # Prospective / Candidate.
        self._vote_requests: dict[int, int] = {}
        self._votes_granted: set[int] = set()
        self._votes_rejected: set[int] = set()
        # Leader.
        self._epoch_start_offset = -1
        self._replicas: dict[int, _Replica] = {}
        self._parked: dict[int, _Parked] = {}
        self._begin_acked: set[int] = set()
        self._begin_deadline = _NEVER
        self._check_quorum_deadline = _NEVER
        self._fetched_since_check: set[int] = set()
        self._durable_end = self.log.log_end_offset

        if self._state.role is Role.FOLLOWER:
            self._enter_follower()
        else:
            self._reset_election_timer()
            if self.config.voters == {node_id}:
                self._start_pre_vote()  # a quorum of one elects itself at once

    # ---------------------------------------------------------------- properties

    @property
    def role(self) -> Role:
        return self._state.role

    @property
    def leader_epoch(self) -> int:
        return self._state.leader_epoch

    @property
    def leader_id(self) -> int:
        return self._state.leader_id

    @property
    def voted_id(self) -> int:
        return self._state.voted_id

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def known_high_watermark(self) -> int:
        """The quorum's high watermark as this node knows it in the current epoch, or -1.

        A leader knows it once an entry of its own epoch committed (before that, the
        high watermark it carries over may lag what earlier leaders committed: after a
        restart it is the log start). A follower knows what its leader last reported,
        not clipped to its own log end: a node is caught up with the metadata log only
        once it applied up to this (`RaftDriver.wait_caught_up`)."""
        role = self._state.role
        if role is Role.LEADER:
            established = self._high_watermark > self._epoch_start_offset
            return self._high_watermark if established else -1
        if role is Role.FOLLOWER:
            return self._leader_high_watermark
        return -1

    @property
    def is_voter(self) -> bool:
        return self.node_id in self.config.voters

    # ---------------------------------------------------------------- inputs

    def step(self, envelope: Envelope, now_ms: int) -> None:
        """Handle one received request or response."""
        self._enter(now_ms)
        message = envelope.message
        if isinstance(message, FetchRequest):
            self._on_fetch_request(envelope, message)
        elif isinstance(message, FetchResponse):
            self._on_fetch_response(envelope, message)
        elif isinstance(message, VoteRequest):
            self._on_vote_request(envelope, message)
        elif isinstance(message, VoteResponse):
            self._on_vote_response(envelope, message)
        elif isinstance(message, BeginQuorumEpochRequest):
            self._on_begin_quorum_epoch_request(envelope, message)
        elif isinstance(message, BeginQuorumEpochResponse):
            self._on_begin_quorum_epoch_response(envelope, message)
        elif isinstance(message, EndQuorumEpochRequest):
            self._on_end_quorum_epoch_request(envelope, message)
        elif isinstance(message, EndQuorumEpochResponse):
            self._observe_epoch(message.leader_epoch, message.leader_id)
        elif isinstance(message, FetchSnapshotRequest):
            self._on_fetch_snapshot_request(envelope, message)
        else:
            self._on_fetch_snapshot_response(envelope, message)

    def tick(self, now_ms: int) -> None:
        """Fire every timer due at `now_ms`."""
        self._enter(now_ms)
        role = self._state.role
        now = now_ms
        if role is Role.LEADER:
            self._tick_leader()
        elif role is Role.FOLLOWER:
            if now >= self._fetch_deadline:
                if self.is_voter:
                    self._start_pre_vote()
                else:
                    self._fetch_deadline = now + self.config.fetch_timeout_ms
                    self._send_fetch()
            elif now >= self._request_deadline:
                self._send_fetch()
        elif now >= self._election_deadline and self.is_voter:
            self._start_pre_vote()

    def propose(self, payloads: Sequence[bytes], now_ms: int) -> int | NotLeader:
        """Append `payloads` as entries of the current epoch; return the offset of the last
        one (committed once the high watermark passes it), or who the leader is."""
        self._enter(now_ms)
        if self._state.role is not Role.LEADER:
            return NotLeader(self._visible_leader(), self._state.leader_epoch)
        for payload in payloads:
            self._append_as_leader(payload, control=False)
        self._wake_parked()
        return self.log.log_end_offset - 1

    def fetch_failed(self, node_id: int, refused: bool, now_ms: int) -> None:
        """A Fetch to `node_id` got no answer: its connection failed; `refused` when the
        connection was refused (nothing listens there). See the module docstring."""
        self._enter(now_ms)
        state = self._state
        if state.role is not Role.FOLLOWER or node_id != state.leader_id:
            return
        now = self._now
        backoff = self.config.retry_backoff_ms
        self._request_deadline = min(self._request_deadline, now + backoff)
        if refused and self.is_voter:
            self._last_leader_contact_ms = -_NEVER
            others = sorted(self.config.voters - {node_id})
            rank = others.index(self.node_id)
            self._fetch_deadline = min(self._fetch_deadline, now + (1 + 10 * rank) * backoff)

    def take_snapshot(self, end_offset: int, data: bytes) -> None:
        """The shell wrote a snapshot of its state machine covering offsets below
        `end_offset` (<= what has been applied); forget the log prefix it covers."""
        assert self._in_ready is None, "take_snapshot between ready() and advance()"
        assert end_offset <= self._applied, (end_offset, self._applied)
        if end_offset <= self.log.log_start_offset:
            return
        epoch = self.log.entry(end_offset - 1).epoch
        self.log.take_snapshot(Snapshot(OffsetAndEpoch(end_offset, epoch), data))
        self._pending_log_start = end_offset

    def resign(self, now_ms: int) -> None:
        """Graceful shutdown of the leader: stop leading and ask the voters, the most caught
        up first, to elect a successor (EndQuorumEpoch)."""
        self._enter(now_ms)
        if self._state.role is Role.LEADER:
            self._resign()

    def describe_quorum(self, now_ms: int) -> QuorumInfo | NotLeader:
        """DescribeQuorum as the leader answers it."""
        if self._state.role is not Role.LEADER:
            return NotLeader(self._state.leader_id, self._state.leader_epoch)
        voters: list[ReplicaState] = []
        observers: list[ReplicaState] = []
        for replica_id in sorted(self._replicas):
            replica = self._replicas[replica_id]
            if replica_id == self.node_id:
                state = ReplicaState(replica_id, self._durable_end, -1, now_ms)
            else:
                state = ReplicaState(
                    replica_id,
                    replica.log_end_offset,
                    replica.last_fetch_timestamp,
                    replica.last_caught_up_timestamp,
                )
            (voters if replica_id in self.config.voters else observers).append(state)
        return QuorumInfo(
            self.node_id,
            self._state.leader_epoch,
            self._high_watermark,
            tuple(voters),
            tuple(observers),
        )

    # ---------------------------------------------------------------- outputs

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._pending_state is not None
            or self._pending_install is not None
            or self._pending_log_start is not None
            or self._dirty_from < max(self._persisted_end, self.log.log_end_offset)
            or self._applied < min(self._high_watermark, self.log.log_end_offset)
        )

    def ready(self) -> Ready:
        """Everything the shell must do now (see the module docstring for the order)."""
        assert self._in_ready is None, "ready() twice without advance()"
        log_end = self.log.log_end_offset
        truncate_to = self._dirty_from if self._dirty_from < self._persisted_end else None
        entries = tuple(self.log.entries(self._dirty_from, log_end))
        committed = tuple(self.log.entries(self._applied, min(self._high_watermark, log_end)))
        ready = Ready(
            deadline_ms=self.deadline_ms(),
            high_watermark=self._high_watermark,
            messages=tuple(self._messages),
            quorum_state=self._pending_state,
            install_snapshot=self._pending_install,
            truncate_to=truncate_to,
            entries=entries,
            log_start_offset=self._pending_log_start,
            must_sync=bool(
                entries
                or truncate_to is not None
                or self._pending_state is not None
                or self._pending_install is not None
            ),
            committed=committed,
        )
        self._in_ready = ready
        return ready

    def advance(self, ready: Ready, now_ms: int | None = None) -> None:
        """The shell carried out `ready` (persisted, sent, applied)."""
        assert self._in_ready is ready, "advance() with a Ready not from the last ready()"
        self._in_ready = None
        if now_ms is not None:
            self._now = max(self._now, now_ms)
        self._messages.clear()
        self._pending_state = None
        self._pending_install = None
        self._pending_log_start = None
        self._persisted_end = self._dirty_from = self.log.log_end_offset
        if ready.committed:
            self._applied = ready.committed[-1].offset + 1
        if self._state.role is Role.LEADER:
            self._durable_end = self.log.log_end_offset
            self._update_high_watermark()

    def deadline_ms(self) -> int:
        """When tick() must next be called."""
        role = self._state.role
        if role is Role.LEADER:
            deadline = min(self._begin_deadline, self._check_quorum_deadline)
            for parked in self._parked.values():
                deadline = min(deadline, parked.deadline_ms)
            return deadline
        if role is Role.FOLLOWER:
            return min(self._fetch_deadline, self._request_deadline)
        return self._election_deadline if self.is_voter else _NEVER

    # ---------------------------------------------------------------- transitions

    def _enter(self, now_ms: int) -> None:
        assert self._in_ready is None, "input between ready() and advance()"
        self._now = max(self._now, now_ms)

    def _become(self, role: Role, epoch: int, leader_id: int, voted_id: int) -> None:
        check_transition(self._state.role, role)
        assert epoch >= self._state.leader_epoch, (epoch, self._state.leader_epoch)
        self._state = ElectionState(role, epoch, leader_id, voted_id)
        persisted = self._state.persisted()
        if persisted != self._written_state:
            self._written_state = persisted
            self._pending_state = persisted
        # Per-role state starts afresh.
        self._fetch_in_flight = None
        self._snapshot_fetch = None
        self._leader_high_watermark = -1
        self._vote_requests.clear()
        self._votes_granted.clear()
        self._votes_rejected.clear()
        self._replicas.clear()
        self._parked.clear()
        self._begin_acked.clear()
        self._fetched_since_check.clear()
        self._election_deadline = self._fetch_deadline = self._request_deadline = _NEVER
        self._begin_deadline = self._check_quorum_deadline = _NEVER

    def _reset_election_timer(self) -> None:
        timeout = self.config.election_timeout_ms
        self._election_deadline = self._now + timeout + self._rng.randrange(0, timeout)

    def _become_unattached(self, epoch: int, voted_id: int = NO_ID) -> None:
        self._become(Role.UNATTACHED, epoch, NO_ID, voted_id)
        self._reset_election_timer()

    def _become_follower(self, epoch: int, leader_id: int) -> None:
        # Keep the vote cast in this epoch (it is still the vote of this epoch).
        voted = self._state.voted_id if epoch == self._state.leader_epoch else NO_ID
        self._become(Role.FOLLOWER, epoch, leader_id, voted)
        self._enter_follower()

    def _enter_follower(self) -> None:
        # Not a contact with the leader by itself: only a successful fetch or the
        # leader's BeginQuorumEpoch make this node refuse pre-votes (KIP-996).
        self._fetch_deadline = self._now + self.config.fetch_timeout_ms
        self._send_fetch()

    def _observe_epoch(self, epoch: int, leader_id: int, from_leader: bool = False) -> None:
        """Rule 1: follow a higher epoch; follow a leader named for the current epoch if
        none was known, or if the leader itself speaks (`from_leader`). A Prospective that
        still remembers its leader does not fall back to it on hearsay, or two prospectives
        could keep sending each other back to a dead leader."""
        state = self._state
        if epoch > state.leader_epoch:
            if leader_id not in (NO_ID, self.node_id):
                self._become_follower(epoch, leader_id)
            else:
                self._become_unattached(epoch)
        elif epoch == state.leader_epoch and leader_id not in (NO_ID, self.node_id):
            if state.role in (Role.UNATTACHED, Role.PROSPECTIVE, Role.CANDIDATE) and (
                from_leader or state.leader_id == NO_ID
            ):
                self._become_follower(epoch, leader_id)
            else:
                # Election safety: one leader per epoch.
                assert state.role is not Role.LEADER, (self.node_id, epoch, leader_id)
                assert state.role is not Role.FOLLOWER or state.leader_id == leader_id, (
                    self.node_id,
                    epoch,
                    state.leader_id,
                    leader_id,
                )

    def _start_pre_vote(self) -> None:
        state = self._state
        self._become(Role.PROSPECTIVE, state.leader_epoch, state.leader_id, state.voted_id)
        self._reset_election_timer()
        self._votes_granted.add(self.node_id)
        last = self.log.last_offset_and_epoch()
        for voter in sorted(self.config.voters - {self.node_id}):
            request = VoteRequest(
                candidate_epoch=state.leader_epoch,
                candidate_id=self.node_id,
                last_offset_epoch=last.epoch,
                last_offset=last.end_offset,
                pre_vote=True,
            )
            self._vote_requests[self._send(voter, request)] = voter
        self._count_votes()

    def _start_election(self) -> None:
        epoch = self._state.leader_epoch + 1
        self._become(Role.CANDIDATE, epoch, NO_ID, self.node_id)
        self._reset_election_timer()
        self._votes_granted.add(self.node_id)
        last = self.log.last_offset_and_epoch()
        for voter in sorted(self.config.voters - {self.node_id}):
            request = VoteRequest(
                candidate_epoch=epoch,
                candidate_id=self.node_id,
                last_offset_epoch=last.epoch,
                last_offset=last.end_offset,
                pre_vote=False,
            )
            self._vote_requests[self._send(voter, request)] = voter
        self._count_votes()

    def _count_votes(self) -> None:
        if len(self._votes_granted) < self.config.majority:
            return
        if self._state.role is Role.PROSPECTIVE:
            self._start_election()
        elif self._state.role is Role.CANDIDATE:
            self._become_leader()

    def _become_leader(self) -> None:
        epoch = self._state.leader_epoch
        self._become(Role.LEADER, epoch, self.node_id, self.node_id)
        self._epoch_start_offset = self.log.log_end_offset
        self._replicas = {voter: _Replica() for voter in self.config.voters}
        self._durable_end = self._persisted_end
        self._append_as_leader(leader_change_payload(self.node_id, epoch), control=True)
        for voter in sorted(self.config.voters - {self.node_id}):
            self._send(voter, BeginQuorumEpochRequest(self.node_id, epoch))
        self._begin_acked = {self.node_id}
        self._begin_deadline = self._now + self.config.request_timeout_ms
        self._check_quorum_deadline = self._now + self._check_quorum_interval()

    def _check_quorum_interval(self) -> int:
        return self.config.fetch_timeout_ms * 3 // 2

    def _resign(self) -> None:
        epoch = self._state.leader_epoch
        others = [v for v in self.config.voters if v != self.node_id]
        successors = tuple(
            sorted(others, key=lambda v: (-self._replicas.get(v, _Replica()).log_end_offset, v))
        )
        self._become(Role.RESIGNED, epoch, self.node_id, self._state.voted_id)
        self._reset_election_timer()
        for voter in successors:
            self._send(voter, EndQuorumEpochRequest(self.node_id, epoch, successors))

    # ---------------------------------------------------------------- elections

    def log_up_to_date(self, last_offset_epoch: int, last_offset: int) -> bool:
        """Is a candidate's log at least as up to date as ours (KIP-595: compare the last
        epoch, then the end offset)? Public so a test can plant a bug by overriding it."""
        ours = self.log.last_offset_and_epoch()
        return (last_offset_epoch, last_offset) >= (ours.epoch, ours.end_offset)

    def _on_vote_request(self, envelope: Envelope, request: VoteRequest) -> None:
        state = self._state
        candidate = request.candidate_id
        if request.candidate_epoch > state.leader_epoch:
            self._become_unattached(request.candidate_epoch)
            state = self._state
        granted = False
        if (
            request.candidate_epoch == state.leader_epoch
            and candidate in self.config.voters
            and self.is_voter
            and candidate != self.node_id
            and self.log_up_to_date(request.last_offset_epoch, request.last_offset)
        ):
            if request.pre_vote:
                # KIP-996: refuse to help unseat a leader that is alive.
                heard_recently = (
                    state.role is Role.FOLLOWER
                    and self._now - self._last_leader_contact_ms < self.config.fetch_timeout_ms
                )
                granted = state.role is not Role.LEADER and not heard_recently
            else:
                granted = (
                    state.role in (Role.UNATTACHED, Role.PROSPECTIVE)
                    and state.leader_id == NO_ID
                    and state.voted_id in (NO_ID, candidate)
                )
                if granted:
                    if state.role is Role.PROSPECTIVE or state.voted_id == NO_ID:
                        self._become_unattached(state.leader_epoch, voted_id=candidate)
                    else:
                        self._reset_election_timer()
        self._reply(
            envelope,
            VoteResponse(ErrorCode.NONE, self._visible_leader(), self._state.leader_epoch, granted),
        )

    def _on_vote_response(self, envelope: Envelope, response: VoteResponse) -> None:
        voter = self._vote_requests.pop(envelope.correlation_id, None)
        role_before, epoch_before = self._state.role, self._state.leader_epoch
        self._observe_epoch(response.leader_epoch, response.leader_id)
        if voter is None or self._state.role is not role_before:
            return
        if self._state.leader_epoch != epoch_before or response.error_code != ErrorCode.NONE:
            return
        if role_before not in (Role.PROSPECTIVE, Role.CANDIDATE):
            return
        if response.leader_epoch != self._state.leader_epoch:
            return  # an answer about an older epoch
        if response.vote_granted:
            self._votes_granted.add(voter)
            self._count_votes()
        else:
            self._votes_rejected.add(voter)
            state = self._state
            lost = len(self.config.voters) - len(self._votes_rejected) < self.config.majority
            if (
                lost
                and state.role is Role.PROSPECTIVE
                and state.leader_id
                not in (
                    NO_ID,
                    self.node_id,
                )
            ):
                # KIP-996: a lost pre-vote while a leader is known means that leader is
                # alive for a majority: go back to following it.
                self._become_follower(state.leader_epoch, state.leader_id)

    # ---------------------------------------------------------------- leader announcements

    def _on_begin_quorum_epoch_request(
        self, envelope: Envelope, request: BeginQuorumEpochRequest
    ) -> None:
        if request.leader_epoch >= self._state.leader_epoch:
            self._observe_epoch(request.leader_epoch, request.leader_id, from_leader=True)
            if self._state.role is Role.FOLLOWER and self._state.leader_id == request.leader_id:
                self._last_leader_contact_ms = self._now
            error = ErrorCode.NONE
        else:
            error = ErrorCode.FENCED_LEADER_EPOCH
        self._reply(
            envelope,
            BeginQuorumEpochResponse(error, self._visible_leader(), self._state.leader_epoch),
        )

    def _on_begin_quorum_epoch_response(
        self, envelope: Envelope, response: BeginQuorumEpochResponse
    ) -> None:
        self._observe_epoch(response.leader_epoch, response.leader_id)
        if (
            self._state.role is Role.LEADER
            and response.error_code == ErrorCode.NONE
            and response.leader_epoch == self._state.leader_epoch
        ):
            self._begin_acked.add(envelope.source)

    def _on_end_quorum_epoch_request(
        self, envelope: Envelope, request: EndQuorumEpochRequest
    ) -> None:
        if request.leader_epoch < self._state.leader_epoch:
            error = ErrorCode.FENCED_LEADER_EPOCH
        else:
            self._observe_epoch(request.leader_epoch, request.leader_id)
            state = self._state
            if state.role is Role.FOLLOWER and state.leader_id == request.leader_id:
                # The leader is gone: stop vouching for it, and start an election after a
                # backoff that grows with our place in its list of preferred successors.
                self._last_leader_contact_ms = -_NEVER
                successors = request.preferred_successors
                place = (
                    successors.index(self.node_id)
                    if self.node_id in successors
                    else len(successors)
                )
                backoff = place * self.config.retry_backoff_ms
                self._fetch_deadline = min(self._fetch_deadline, self._now + backoff)
            error = ErrorCode.NONE
        self._reply(
            envelope,
            EndQuorumEpochResponse(error, self._visible_leader(), self._state.leader_epoch),
        )

    def _visible_leader(self) -> int:
        """The leader to name in answers: ourselves only while we lead."""
        state = self._state
        if state.leader_id == self.node_id and state.role is not Role.LEADER:
            return NO_ID
        return state.leader_id

    # ---------------------------------------------------------------- leader: fetch

    def _append_as_leader(self, payload: bytes, control: bool) -> None:
        entry = Entry(self.log.log_end_offset, self._state.leader_epoch, payload, control)
        self.log.append(entry)

    def _fence_fetch(self, current_leader_epoch: int) -> ErrorCode | None:
        """The error for a fetch-like request, or None if this leader serves it."""
        if current_leader_epoch > self._state.leader_epoch:
            self._observe_epoch(current_leader_epoch, NO_ID)
            return ErrorCode.UNKNOWN_LEADER_EPOCH
        if current_leader_epoch < self._state.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if self._state.role is not Role.LEADER:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return None

    def _on_fetch_request(self, envelope: Envelope, request: FetchRequest) -> None:
        error = self._fence_fetch(request.current_leader_epoch)
        if error is not None:
            self._reply(
                envelope,
                FetchResponse(error, self._visible_leader(), self._state.leader_epoch),
            )
            return
        response = self._fetch_response(request, park=request.max_wait_ms > 0)
        if response is None:
            self._parked[request.replica_id] = _Parked(
                envelope, request, self._now + request.max_wait_ms
            )
        else:
            self._parked.pop(request.replica_id, None)
            self._reply(envelope, response)

    def _fetch_response(self, request: FetchRequest, park: bool) -> FetchResponse | None:
        """Answer a fetch from the leader's log; None to park it (nothing new to say)."""
        validation = self.log.validate_offset_and_epoch(
            request.fetch_offset, request.last_fetched_epoch
        )
        if validation.kind == "snapshot":
            return self._leader_fetch_response(snapshot_id=validation.offset_and_epoch)
        if validation.kind == "diverging":
            return self._leader_fetch_response(diverging_epoch=validation.offset_and_epoch)
        replica = self._replicas.setdefault(request.replica_id, _Replica())
        replica.log_end_offset = request.fetch_offset
        replica.last_fetch_timestamp = self._now
        if request.fetch_offset >= self.log.log_end_offset:
            replica.last_caught_up_timestamp = self._now
        if request.replica_id in self.config.voters:
            self._fetched_since_check.add(request.replica_id)
            self._begin_acked.add(request.replica_id)
            self._update_high_watermark()
        records = tuple(
            self.log.entries(request.fetch_offset, request.fetch_offset + request.max_entries)
        )
        if park and not records and replica.sent_high_watermark == self._high_watermark:
            return None
        replica.sent_high_watermark = self._high_watermark
        return self._leader_fetch_response(records=records)

    def _leader_fetch_response(
        self,
        records: tuple[Entry, ...] = (),
        diverging_epoch: OffsetAndEpoch | None = None,
        snapshot_id: OffsetAndEpoch | None = None,
    ) -> FetchResponse:
        return FetchResponse(
            ErrorCode.NONE,
            self.node_id,
            self._state.leader_epoch,
            high_watermark=self.known_high_watermark,
            log_start_offset=self.log.log_start_offset,
            records=records,
            diverging_epoch=diverging_epoch,
            snapshot_id=snapshot_id,
        )

    def _wake_parked(self) -> None:
        """Answer parked fetches that now have records or a newer high watermark."""
        for replica_id, parked in list(self._parked.items()):
            response = self._fetch_response(parked.request, park=True)
            if response is not None:
                del self._parked[replica_id]
                self._reply(parked.envelope, response)

    def _update_high_watermark(self) -> None:
        ends = sorted(
            (
                self._durable_end if voter == self.node_id else self._replicas[voter].log_end_offset
                for voter in self.config.voters
            ),
            reverse=True,
        )
        candidate = ends[self.config.majority - 1]
        if candidate > self._epoch_start_offset and candidate > self._high_watermark:
            self._high_watermark = candidate
            self._wake_parked()

    def _tick_leader(self) -> None:
        now = self._now
        for replica_id, parked in list(self._parked.items()):
            if now >= parked.deadline_ms:
                del self._parked[replica_id]
                response = self._fetch_response(parked.request, park=False)
                assert response is not None
                self._reply(parked.envelope, response)
        if now >= self._begin_deadline:
            epoch = self._state.leader_epoch
            for voter in sorted(self.config.voters - self._begin_acked):
                self._send(voter, BeginQuorumEpochRequest(self.node_id, epoch))
            self._begin_deadline = now + self.config.request_timeout_ms
        if now >= self._check_quorum_deadline:
            if len(self._fetched_since_check | {self.node_id}) < self.config.majority:
                self._resign()
                return
            self._fetched_since_check.clear()
            self._check_quorum_deadline = now + self._check_quorum_interval()

    # ---------------------------------------------------------------- follower: fetch

    def _send_fetch(self) -> None:
        if self._snapshot_fetch is not None:
            self._send_fetch_snapshot()
            return
        last = self.log.last_offset_and_epoch()
        request = FetchRequest(
            replica_id=self.node_id,
            current_leader_epoch=self._state.leader_epoch,
            fetch_offset=last.end_offset,
            last_fetched_epoch=last.epoch,
            max_wait_ms=self.config.fetch_max_wait_ms,
            max_entries=self.config.fetch_max_entries,
        )
        self._fetch_in_flight = self._send(self._state.leader_id, request)
        self._request_deadline = self._now + self.config.request_timeout_ms

    def _send_fetch_snapshot(self) -> None:
        fetch = self._snapshot_fetch
        assert fetch is not None
        request = FetchSnapshotRequest(
            replica_id=self.node_id,
            current_leader_epoch=self._state.leader_epoch,
            snapshot_id=fetch.snapshot_id,
            position=len(fetch.buffer),
            max_bytes=self.config.fetch_snapshot_max_bytes,
        )
        self._fetch_in_flight = self._send(self._state.leader_id, request)
        self._request_deadline = self._now + self.config.request_timeout_ms

    def _accept_fetch_answer(
        self, envelope: Envelope, error: ErrorCode, leader_id: int, leader_epoch: int
    ) -> bool:
        """Common checks for Fetch/FetchSnapshot responses: is this the answer to our one
        in-flight request, from our leader, in our epoch, without error?"""
        in_flight = self._fetch_in_flight == envelope.correlation_id
        self._observe_epoch(leader_epoch, leader_id)
        state = self._state
        if not in_flight or self._fetch_in_flight != envelope.correlation_id:
            return False  # stale, duplicated, or a transition dropped the request
        if state.role is not Role.FOLLOWER or envelope.source != state.leader_id:
            return False
        self._fetch_in_flight = None
        if error != ErrorCode.NONE or leader_epoch != state.leader_epoch:
            # Not served (e.g. the leader resigned): retry after a backoff; the fetch
            # timeout still runs and ends in an election if this persists.
            self._request_deadline = self._now + self.config.retry_backoff_ms
            return False
        self._last_leader_contact_ms = self._now
        self._fetch_deadline = self._now + self.config.fetch_timeout_ms
        return True

    def _on_fetch_response(self, envelope: Envelope, response: FetchResponse) -> None:
        if not self._accept_fetch_answer(
            envelope, response.error_code, response.leader_id, response.leader_epoch
        ):
            return
        log = self.log
        if response.high_watermark >= 0:
            self._leader_high_watermark = max(self._leader_high_watermark, response.high_watermark)
        if response.diverging_epoch is not None:
            diverging = response.diverging_epoch
            local = log.end_offset_for_epoch(diverging.epoch)
            target = max(log.log_start_offset, min(diverging.end_offset, local.end_offset))
            assert target >= self._high_watermark or target >= log.log_end_offset, (
                "truncating committed entries",
                self.node_id,
                target,
                self._high_watermark,
            )
            if target < log.log_end_offset:
                log.truncate_to(target)
                self._dirty_from = min(self._dirty_from, target)
        elif response.snapshot_id is not None:
            self._snapshot_fetch = _SnapshotFetch(response.snapshot_id)
        else:
            for entry in response.records:
                if entry.offset == log.log_end_offset:
                    log.append(entry)
            high_watermark = min(response.high_watermark, log.log_end_offset)
            self._high_watermark = max(self._high_watermark, high_watermark)
        self._send_fetch()

    def _on_fetch_snapshot_request(self, envelope: Envelope, request: FetchSnapshotRequest) -> None:
        error = self._fence_fetch(request.current_leader_epoch)
        snapshot = self.log.snapshot
        if error is None and (snapshot is None or snapshot.snapshot_id != request.snapshot_id):
            error = ErrorCode.SNAPSHOT_NOT_FOUND
        if error is not None or snapshot is None:
            self._reply(
                envelope,
                FetchSnapshotResponse(
                    error or ErrorCode.SNAPSHOT_NOT_FOUND,
                    self._visible_leader(),
                    self._state.leader_epoch,
                ),
            )
            return
        data = snapshot.data
        if request.position > len(data):
            self._reply(
                envelope,
                FetchSnapshotResponse(
                    ErrorCode.POSITION_OUT_OF_RANGE, self.node_id, self._state.leader_epoch
                ),
            )
            return
        chunk = data[request.position : request.position + request.max_bytes]
        self._reply(
            envelope,
            FetchSnapshotResponse(
                ErrorCode.NONE,
                self.node_id,
                self._state.leader_epoch,
                snapshot_id=snapshot.snapshot_id,
                size=len(data),
                position=request.position,
                unaligned_records=chunk,
            ),
        )

    def _on_fetch_snapshot_response(
        self, envelope: Envelope, response: FetchSnapshotResponse
    ) -> None:
        fetch = self._snapshot_fetch
        accepted = self._accept_fetch_answer(
            envelope, response.error_code, response.leader_id, response.leader_epoch
        )
        # The leader moved on to a newer snapshot: ask again from our log end.
        if (
            response.error_code in (ErrorCode.SNAPSHOT_NOT_FOUND, ErrorCode.POSITION_OUT_OF_RANGE)
            and fetch is not None
            and self._snapshot_fetch is fetch
        ):
            self._snapshot_fetch = None
        if not accepted or fetch is None or self._snapshot_fetch is not fetch:
            return
        if response.snapshot_id != fetch.snapshot_id or response.position != len(fetch.buffer):
            self._send_fetch()
            return
        fetch.buffer += response.unaligned_records
        if len(fetch.buffer) >= response.size:
            self._snapshot_fetch = None
            snapshot = Snapshot(fetch.snapshot_id, bytes(fetch.buffer))
            end = snapshot.snapshot_id.end_offset
            assert self._applied <= end, (self.node_id, self._applied, end)
            self.log.install_snapshot(snapshot)
            self._pending_install = snapshot
            self._persisted_end = self._dirty_from = end
            self._high_watermark = max(self._high_watermark, end)
            self._applied = end
        self._send_fetch()

    # ---------------------------------------------------------------- sending

    def _send(self, destination: int, message: Message) -> int:
        correlation_id = self._next_correlation
        self._next_correlation += 1
        self._messages.append(Envelope(self.node_id, destination, correlation_id, message))
        return correlation_id

    def _reply(self, request: Envelope, message: Message) -> None:
        self._messages.append(
            Envelope(self.node_id, request.source, request.correlation_id, message)
        )
