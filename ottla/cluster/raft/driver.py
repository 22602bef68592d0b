"""The asyncio shell around `RaftCore`: persists, sends, applies, and keeps one timer.

The driver carries out each `Ready` in the order core.py documents, synchronously (no
`await` between ready() and advance(), so nothing else touches the core meanwhile):

    1. install_snapshot -> RaftStorage.install_snapshot, StateMachine.restore
    2. truncate_to, entries, quorum_state, log_start_offset -> RaftStorage
    3. must_sync -> RaftStorage.sync (fsync)
    4. messages: a request is sent through the `Transport` as a kio entity (one task per
       request; its response is stepped into the core when it arrives, or dropped on a
       timeout or a broken connection: the core's own timers retry); a response answers
       the incoming request waiting in `handle()`
    5. committed -> StateMachine.apply, then proposals whose offsets committed resolve
    6. advance(ready); repeat while has_ready(); then arm the one timer for deadline_ms.

Incoming Raft requests (from the broker's handlers) go through `handle(request)`: decoded
by codec.py, stepped into the core, and answered when the core's reply comes out of a
Ready (a parked Fetch is answered later, at the latest after its max wait; a request the
core never answers, e.g. a parked fetch replaced by a newer one from the same replica,
is answered REQUEST_TIMED_OUT after `request_timeout_ms`).

A disk that refuses a write (ENOSPC, EIO: `OSError` from the storage steps 1-3) must not
leave the core between ready() and advance(), where it would refuse every later input.
The driver keeps that Ready and stalls: while stalled it steps nothing into the core
(incoming requests are answered KAFKA_STORAGE_ERROR, responses and timer ticks are
dropped, proposals refused with NotLeaderError: Raft tolerates lost messages, and the
other voters elect a leader without this one if they must) and it tries the same Ready
again every `STORAGE_RETRY_S`; entries a failed try may have appended are cut off first.
Once the write goes through, the Ready is carried out and the node goes on where it
stopped. (Kafka halts the process on a metadata log failure; a node that waits for room
keeps serving its partitions meanwhile, as its data path does on a full disk.)

A proposal (`propose(payloads)`) returns a future resolved with the offset of its last
entry once that entry is committed and applied here, or failed with `NotLeaderError` if
this node is not the leader or the entry was replaced by another leader's.

Snapshots: once `snapshot_interval_entries` entries were applied past the log start, the
driver asks the state machine for its snapshot, writes it, and lets the core delete the
log prefix. A follower behind the leader's log start fetches the snapshot
(FetchSnapshot) and the driver restores the state machine from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ottla.cluster.raft import codec
from ottla.cluster.raft.core import NotLeader, QuorumInfo, RaftConfig, RaftCore, Ready, Rng
from ottla.cluster.raft.log import RaftStorage
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import (
    BeginQuorumEpochResponse,
    EndQuorumEpochResponse,
    Entry,
    Envelope,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    OffsetAndEpoch,
    VoteResponse,
)
from ottla.cluster.raft.state import Role
from ottla.protocol import ErrorCode, ProtocolError

__all__ = ["NotLeaderError", "RaftDriver", "StateMachine", "Transport"]

_log = structlog.get_logger("ottla.raft")

_RESPONSES = (
    VoteResponse,
    BeginQuorumEpochResponse,
    EndQuorumEpochResponse,
    FetchResponse,
    FetchSnapshotResponse,
)
_RESIGN_GRACE_S = 0.5
STORAGE_RETRY_S = 0.5  # between tries of a Ready the disk refused


class Transport(Protocol):
    """Sends a kio request entity to a node and returns its kio response entity (raises
    OSError/TimeoutError/ProtocolError when there is none)."""

    async def send(self, node_id: int, request: Any) -> Any: ...


class StateMachine(Protocol):
    """What the metadata log is to the driver."""

    def apply(self, entries: Sequence[Entry]) -> None:
        """Apply committed entries, in order (control entries included, to skip)."""

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the state with `snapshot`'s (covers offsets below its end offset)."""

    def snapshot_data(self) -> bytes:
        """The state as of everything applied so far."""


class NotLeaderError(Exception):
    """A proposal on a node that is not (or no longer) the quorum leader."""

    def __init__(self, leader_id: int, leader_epoch: int) -> None:
        super().__init__(f"not the quorum leader (leader {leader_id}, epoch {leader_epoch})")
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch


@dataclass(slots=True)
class _Proposal:
    last_offset: int
    epoch: int
    future: asyncio.Future[int]


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class RaftDriver:
    """Runs one node's `RaftCore` on the event loop."""

    def __init__(
        self,
        node_id: int,
        config: RaftConfig,
        storage: RaftStorage,
        transport: Transport,
        state_machine: StateMachine,
        cluster_id: str | None = None,
        clock: Callable[[], int] = monotonic_ms,
        rng: Rng | None = None,
        snapshot_interval_entries: int = 10_000,
        on_leader_change: Callable[[int], None] | None = None,
    ) -> None:
        self.node_id = node_id
        # Called with the new leader id (-1: none known) whenever it changes.
        self.on_leader_change = on_leader_change
        # The last leader this node knew before the current one (-1: none yet): a new
        # active controller suspects it (fencing.Sessions.reset).
        self.previous_leader_id = -1
        self.config = config
        self.storage = storage
        self.transport = transport
        self.state_machine = state_machine
        self.cluster_id = cluster_id
        self.clock = clock
        self.snapshot_interval_entries = snapshot_interval_entries
        self.core = RaftCore(
            node_id,
            config,
            rng or random.Random(),
            clock(),
            quorum_state=storage.quorum_state,
            snapshot=storage.snapshot,
            entries=storage.entries,
        )
        storage.entries = []  # the core holds them now
        if storage.snapshot is not None:
            state_machine.restore(storage.snapshot)
        self.applied_offset = storage.snapshot.snapshot_id.end_offset if storage.snapshot else 0
        self._incoming: dict[tuple[int, int], asyncio.Future[Message]] = {}
        self._next_incoming = 1
        self._proposals: list[_Proposal] = []
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = -1
        self._caught_up = asyncio.Event()
        self._role: Role | None = None
        self._leader = -2
        self._closed = False
        self._driving = False
        # A Ready whose storage steps failed, tried again until they succeed (see the
        # module docstring); nothing is stepped into the core meanwhile.
        self._stalled: Ready | None = None
        self._retry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ public surface

    @property
    def role(self) -> Role:
        return self.core.role

    @property
    def leader_id(self) -> int:
        return self.core.leader_id if self.core.role is not Role.RESIGNED else -1

    @property
    def leader_epoch(self) -> int:
        return self.core.leader_epoch

    @property
    def is_leader(self) -> bool:
        return self.core.role is Role.LEADER

    def start(self) -> None:
        """Carry out what the core wants at startup (a quorum of one elects itself here)."""
        self._drive()

    async def wait_caught_up(self) -> None:
        """Until this node knows a leader and applied the high watermark it learned."""
        await self._caught_up.wait()

    async def wait_applied(self, offset: int) -> None:
        """Until the entry at `offset` is applied on this node."""
        if self.applied_offset > offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((offset, future))
        await future

    def propose(self, payloads: Sequence[bytes]) -> asyncio.Future[int]:
        """Append `payloads` (raises NotLeaderError unless leader); the future resolves
        with the last entry's offset once committed and applied on this node."""
        if self._closed or self._stalled is not None:
            raise NotLeaderError(-1, self.core.leader_epoch)
        result = self.core.propose(payloads, self.clock())
        if isinstance(result, NotLeader):
            raise NotLeaderError(result.leader_id, result.leader_epoch)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._proposals.append(_Proposal(result, self.core.leader_epoch, future))
        self._drive()
        return future

    def describe_quorum(self) -> QuorumInfo | NotLeader:
        return self.core.describe_quorum(self.clock())

    async def handle(self, request: Any) -> Any:
        """Answer an incoming Raft request (a kio entity) with its kio response."""
        if self._closed:
            return codec.error_response(request, ErrorCode.not_leader_or_follower)
        if self._stalled is not None:
            return codec.error_response(request, ErrorCode.kafka_storage_error)
        cluster_id = getattr(request, "cluster_id", None)
        if cluster_id and self.cluster_id and cluster_id != self.cluster_id:
            return codec.error_response(request, ErrorCode.inconsistent_cluster_id)
        try:
            message = codec.to_core(request)
            source = codec.request_source(request)
        except ProtocolError as error:
            return codec.error_response(request, error.error_code)
        key = (source, self._next_incoming)
        self._next_incoming += 1
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._incoming[key] = future
        self.core.step(Envelope(source, self.node_id, key[1], message), self.clock())
        self._drive()
        timeout_ms = self.config.request_timeout_ms
        if isinstance(message, FetchRequest):
            timeout_ms = min(timeout_ms, message.max_wait_ms + self.config.request_timeout_ms // 2)
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                reply = await asyncio.shield(future)
        except TimeoutError:
            return codec.error_response(request, ErrorCode.request_timed_out)
        finally:
            self._incoming.pop(key, None)
        return codec.to_wire(reply, self.cluster_id, request)

    async def stop(self) -> None:
        """Resign if leading (EndQuorumEpoch, briefly awaited), then stop everything."""
        if self._closed:
            return
        if self.core.role is Role.LEADER and self._stalled is None:
            self.core.resign(self.clock())
            self._drive()
            pending = [t for t in self._tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=_RESIGN_GRACE_S)
        self._closed = True
        for timer in (self._timer, self._retry):
            if timer is not None:
                timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for future in self._incoming.values():
            if not future.done():
                future.cancel()
        self._fail_proposals(lambda _p: True)

    # ------------------------------------------------------------------ the shell loop

    def _drive(self) -> None:
        if self._closed or self._driving:
            return
        self._driving = True
        try:
            self._drive_once()
            self._maybe_snapshot()
        finally:
            self._driving = False
        self._after_drive()

    def _drive_once(self) -> None:
        core = self.core
        while self._stalled is not None or core.has_ready():
            again = self._stalled is not None
            ready = self._stalled if self._stalled is not None else core.ready()
            now = self.clock()
            try:
                self._persist(ready, again)
            except OSError as error:
                if not again:
                    _log.error("raft.storage_failed", node_id=self.node_id, error=repr(error))
                self._stalled = ready
                self._retry = asyncio.get_running_loop().call_later(
                    STORAGE_RETRY_S, self._retry_stalled
                )
                return
            if again:
                _log.info("raft.storage_recovered", node_id=self.node_id)
                self._stalled = None
            for envelope in ready.messages:
                self._send(envelope)
            if ready.committed:
                self.state_machine.apply(ready.committed)
                self.applied_offset = ready.committed[-1].offset + 1
                self._resolve_proposals(ready.committed)
                self._wake_applied()
            core.advance(ready, now)

    def _persist(self, ready: Ready, again: bool) -> None:
        """Steps 1-3 of a Ready (snapshot, log, quorum state, fsync). `again`: a try after
        a failed one, which may have appended some of the entries already."""
        storage = self.storage
        if ready.install_snapshot is not None:
            storage.install_snapshot(ready.install_snapshot)
            self.state_machine.restore(ready.install_snapshot)
            self.applied_offset = ready.install_snapshot.snapshot_id.end_offset
            self._wake_applied()
            _log.info(
                "raft.snapshot.installed",
                node_id=self.node_id,
                end_offset=ready.install_snapshot.snapshot_id.end_offset,
            )
        if ready.truncate_to is not None:
            storage.truncate_to(ready.truncate_to)
        if again and ready.entries and storage.log_end_offset > ready.entries[0].offset:
            storage.truncate_to(ready.entries[0].offset)
        storage.append(ready.entries, time.time_ns() // 1_000_000)
        if ready.quorum_state is not None:
            storage.write_quorum_state(ready.quorum_state)
        if ready.log_start_offset is not None:
            storage.delete_prefix(ready.log_start_offset)
        if ready.must_sync:
            storage.sync()

    def _retry_stalled(self) -> None:
        self._retry = None
        if not self._closed:
            self._drive()

    def _after_drive(self) -> None:
        core = self.core
        if core.role is not self._role or core.leader_id != self._leader:
            leader_changed = core.leader_id != self._leader
            if leader_changed and self._leader >= 0:
                self.previous_leader_id = self._leader
            self._role, self._leader = core.role, core.leader_id
            if leader_changed and self.on_leader_change is not None:
                self.on_leader_change(core.leader_id)
            _log.info(
                "raft.role_changed",
                node_id=self.node_id,
                role=core.role.value,
                leader_epoch=core.leader_epoch,
                leader_id=core.leader_id,
            )
            if core.role is not Role.LEADER:
                # Our uncommitted entries may still commit under the next leader; those
                # of an older epoch than the current one can only if replicated: leave
                # them to _resolve_proposals (a different entry at the offset fails them).
                pass
        if not self._caught_up.is_set() and self._is_caught_up():
            self._caught_up.set()
            _log.info(
                "raft.caught_up",
                node_id=self.node_id,
                leader_id=core.leader_id,
                high_watermark=core.known_high_watermark,
            )
        self._arm_timer()

    def _is_caught_up(self) -> bool:
        """Applied everything the quorum committed as of the high watermark known in this
        epoch (`RaftCore.known_high_watermark`). Never from a high watermark carried over
        a restart or an election, nor one clipped to this node's own log end: the broker
        acts on its image once caught up (stray partition directories are set aside,
        groups loaded), and an image missing committed records would set aside live
        partitions' data."""
        known = self.core.known_high_watermark
        return known >= 0 and self.applied_offset >= known

    def _arm_timer(self) -> None:
        deadline = self.core.deadline_ms()
        if deadline >= 1 << 61:
            return
        if self._timer is not None:
            if self._timer_at == deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        delay_s = max(0, deadline - self.clock()) / 1000
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = -1
        if self._closed or self._stalled is not None:
            return
        self.core.tick(self.clock())
        self._drive()

    def _maybe_snapshot(self) -> None:
        core = self.core
        start = core.log.log_start_offset
        if (
            self._stalled is not None
            or self.applied_offset - start < self.snapshot_interval_entries
        ):
            return
        end = self.applied_offset
        epoch = core.log.entry(end - 1).epoch
        data = self.state_machine.snapshot_data()
        try:
            self.storage.write_snapshot(Snapshot(OffsetAndEpoch(end, epoch), data))
        except OSError as error:  # nothing changed yet: the next drive tries again
            _log.warning("raft.snapshot.write_failed", node_id=self.node_id, error=repr(error))
            return
        core.take_snapshot(end, data)
        _log.info("raft.snapshot.taken", node_id=self.node_id, end_offset=end, epoch=epoch)
        self._drive_once()

    # ------------------------------------------------------------------ messages

    def _send(self, envelope: Envelope) -> None:
        message = envelope.message
        if isinstance(message, _RESPONSES):
            future = self._incoming.get((envelope.destination, envelope.correlation_id))
            if future is not None and not future.done():
                future.set_result(message)
            return
        task = asyncio.get_running_loop().create_task(self._call(envelope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, envelope: Envelope) -> None:
        request = codec.to_wire(envelope.message, self.cluster_id)
        try:
            response = await self.transport.send(envelope.destination, request)
            message = codec.to_core(response)
        except (OSError, TimeoutError, ProtocolError, EOFError) as error:
            _log.debug(
                "raft.request_failed",
                node_id=self.node_id,
                destination=envelope.destination,
                request=type(envelope.message).__name__,
                error=repr(error),
            )
            if (
                not self._closed
                and self._stalled is None
                and isinstance(envelope.message, FetchRequest | FetchSnapshotRequest)
            ):
                refused = isinstance(error, ConnectionRefusedError)
                self.core.fetch_failed(envelope.destination, refused, self.clock())
                self._drive()
            return
        if self._closed or self._stalled is not None:
            return
        self.core.step(
            Envelope(envelope.destination, self.node_id, envelope.correlation_id, message),
            self.clock(),
        )
        self._drive()

    # ------------------------------------------------------------------ proposals

    def _resolve_proposals(self, committed: Sequence[Entry]) -> None:
        if not self._proposals:
            return
        by_offset = {entry.offset: entry.epoch for entry in committed}
        last = committed[-1].offset
        kept: list[_Proposal] = []
        for proposal in self._proposals:
            if proposal.last_offset > last:
                kept.append(proposal)
                continue
            epoch = by_offset.get(proposal.last_offset)
            if proposal.future.done():
                continue
            if epoch == proposal.epoch:
                proposal.future.set_result(proposal.last_offset)
            else:
                proposal.future.set_exception(
                    NotLeaderError(self.core.leader_id, self.core.leader_epoch)
                )
        self._proposals = kept

    def _wake_applied(self) -> None:
        waiting = []
        for offset, future in self._applied_waiters:
            if future.done():
                continue
            if offset < self.applied_offset:
                future.set_result(None)
            else:
                waiting.append((offset, future))
        self._applied_waiters = waiting

    def _fail_proposals(self, which: Callable[[_Proposal], bool]) -> None:
        kept = []
        for proposal in self._proposals:
            if which(proposal):
                if not proposal.future.done():
                    proposal.future.set_exception(NotLeaderError(-1, self.core.leader_epoch))
            else:
                kept.append(proposal)
        self._proposals = kept


async def wait_for_proposal(future: asyncio.Future[int], timeout_s: float) -> int:
    """Await a proposal's commit for at most `timeout_s` (TimeoutError after)."""
    async with asyncio.timeout(timeout_s):
        return await asyncio.shield(future)


def close_quietly(driver: RaftDriver) -> None:
    with contextlib.suppress(Exception):
        driver.storage.close()
