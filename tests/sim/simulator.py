"""A seeded, deterministic simulator of a KRaft quorum built from `RaftCore`s.

Everything random comes from one `random.Random(seed)`: network loss, duplication, delay
(and so reordering), partitions and healing, crashes (clean, or losing what was not
fsynced, or in the middle of carrying out a Ready), restarts, client proposals, local
snapshots and graceful resignations. A Fetch to a crashed node comes back as a refused
connection (`RaftCore.fetch_failed`); one lost to a partition sometimes comes back as a
failed one, refused or not: a false "refused" must cost liveness at most, never safety.
Time is simulated: events run in (time, sequence) order from a heap, so a seed replays
exactly.

The shell here follows the `Ready` contract of ottla/cluster/raft/core.py against a model
disk that keeps what was written apart from what was fsynced. After every event the
checker verifies:

- election safety: at most one leader per epoch, ever;
- log matching: two entries with the same offset and epoch have the same payload and the
  same predecessor epoch (so, by induction, the same prefix), on every node, ever;
- leader completeness: a new leader of epoch E holds every entry committed in an epoch
  below E, and an entry committed in epoch C is in the log of every leader of a later
  epoch; no node ever truncates a committed entry;
- state-machine safety: every node applies the same entry at an offset, in order, with
  no gaps; an installed snapshot equals the committed prefix it claims; a node's high
  watermark never goes back while it runs;
- liveness in calm: after the faults stop (network healed and reliable, all nodes up), a
  leader is elected and a proposal commits on every node within the calm period.

A violation raises `Violation` naming the seed; `replay_command(seed)` says how to re-run it.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ottla.cluster.raft.core import NotLeader, RaftConfig, RaftCore, Ready
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import (
    Entry,
    Envelope,
    FetchRequest,
    FetchSnapshotRequest,
    OffsetAndEpoch,
)
from ottla.cluster.raft.state import QuorumStateData, Role

__all__ = ["SimParams", "Simulation", "Violation", "replay_command", "run_seed"]


class Violation(AssertionError):
    """A safety or liveness property failed (or the core asserted) for a seed."""


def replay_command(seed: int) -> str:
    return f"OTTLA_SIM_SEED={seed} .venv/bin/pytest tests/sim -k replay"


@dataclass(frozen=True)
class SimParams:
    """Durations in simulated ms. Timeouts are Kafka's defaults scaled down by ten, so a
    seed covers many elections in few events."""

    fault_ms: int = 3000
    calm_ms: int = 3000
    election_timeout_ms: int = 100
    fetch_timeout_ms: int = 200
    request_timeout_ms: int = 200
    retry_backoff_ms: int = 10
    fetch_max_wait_ms: int = 50
    fault_interval_ms: int = 60
    propose_interval_ms: int = 25
    max_events: int = 200_000


# ------------------------------------------------------------------------------- disk


@dataclass
class _LogView:
    """One version of a node's files: quorum-state, snapshot, log entries."""

    quorum_state: QuorumStateData = field(default_factory=QuorumStateData)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def copy(self) -> _LogView:
        return _LogView(self.quorum_state, self.snapshot, list(self.entries))

    def apply(self, op: tuple[str, Any]) -> None:
        kind, value = op
        if kind == "qs":
            self.quorum_state = value
        elif kind == "snapshot":  # written and fsynced by the shell itself
            self.snapshot = value
        elif kind == "install":
            self.snapshot = value
            self.entries = []
        elif kind == "truncate":
            self.entries = [e for e in self.entries if e.offset < value]
        elif kind == "append":
            self.entries.extend(value)
        elif kind == "log_start":
            self.entries = [e for e in self.entries if e.offset >= value]
        else:  # pragma: no cover
            raise AssertionError(kind)


class _Disk:
    """Written-but-not-fsynced operations are kept apart so a crash can lose them."""

    def __init__(self) -> None:
        self.durable = _LogView()
        self.unsynced: list[tuple[str, Any]] = []

    def write(self, op: tuple[str, Any]) -> None:
        self.unsynced.append(op)

    def sync(self) -> None:
        for op in self.unsynced:
            self.durable.apply(op)
        self.unsynced.clear()

    def crash(self, keep: int) -> None:
        """Keep the first `keep` unsynced writes (the OS flushed them), lose the rest."""
        for op in self.unsynced[:keep]:
            self.durable.apply(op)
        self.unsynced.clear()


# ------------------------------------------------------------------------------- nodes


@dataclass
class _Node:
    node_id: int
    disk: _Disk = field(default_factory=_Disk)
    core: RaftCore | None = None
    incarnation: int = 0
    tick_at: int = -1
    applied: int = 0  # next offset the state machine applies
    crc: int = 0  # the state machine: a CRC chain of applied payloads
    last_high_watermark: int = 0
    leader_epochs_seen: set[int] = field(default_factory=set)


def _snapshot_data(end_offset: int, crc: int) -> bytes:
    return f"{end_offset}:{crc}".encode()


def _parse_snapshot(snapshot: Snapshot) -> tuple[int, int]:
    end, crc = snapshot.data.decode().split(":")
    return int(end), int(crc)


# ------------------------------------------------------------------------------- simulation


class Simulation:
    """One seeded run. `core_class` lets a test plant a bug in a RaftCore subclass."""

    def __init__(
        self,
        seed: int,
        params: SimParams | None = None,
        core_class: type[RaftCore] = RaftCore,
        nodes: int | None = None,
    ) -> None:
        self.seed = seed
        self.params = params or SimParams()
        self.core_class = core_class
        self.rng = random.Random(seed)
        count = nodes if nodes is not None else (3 if seed % 2 == 0 else 5)
        self.voters = frozenset(range(1, count + 1))
        p = self.params
        self.config = RaftConfig(
            voters=self.voters,
            election_timeout_ms=p.election_timeout_ms,
            fetch_timeout_ms=p.fetch_timeout_ms,
            request_timeout_ms=p.request_timeout_ms,
            retry_backoff_ms=p.retry_backoff_ms,
            fetch_max_wait_ms=p.fetch_max_wait_ms,
            fetch_max_entries=self.rng.choice([1, 3, 100]),
            fetch_snapshot_max_bytes=self.rng.choice([2, 8, 1 << 20]),
        )
        self.now = 0
        self.events = 0
        self._heap: list[tuple[int, int, str, Any]] = []
        self._seq = 0
        self.nodes = {i: _Node(i) for i in sorted(self.voters)}
        # Network.
        self.loss = self.rng.choice([0.0, 0.01, 0.05, 0.2])
        self.duplicate = self.rng.choice([0.0, 0.02, 0.1])
        self.delay_max_ms = self.rng.choice([2, 10, 40])
        self.groups: dict[int, int] = {}  # node -> partition group; empty = connected
        self.calm = False
        # Checker state.
        self.leaders: dict[int, int] = {}  # epoch -> leader id
        self.entry_index: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.committed: list[Entry] = []
        self.commit_epoch: list[int] = []
        self.crc_at: list[int] = [0]  # crc of the committed prefix of each length
        self.proposals = 0
        self.markers: dict[bytes, int] = {}  # calm-phase payload -> offset proposed at
        self.trace: list[str] = []
        for node in self.nodes.values():
            self._start(node)

    # --------------------------------------------------------------------- running

    def run(self) -> Simulation:
        p = self.params
        self._push(0, "fault", None)
        self._push(0, "propose", None)
        self._push(p.fault_ms, "calm", None)
        self._push(p.fault_ms + p.calm_ms, "end", None)
        try:
            while self._heap:
                time, _, kind, payload = heapq.heappop(self._heap)
                self.now = time
                self.events += 1
                if self.events > p.max_events:
                    raise Violation(f"more than {p.max_events} events (livelock?)")
                if kind == "end":
                    self._check_liveness()
                    return self
                self._handle(kind, payload)
                self._check_after_event()
        except Violation as error:
            raise Violation(
                f"seed {self.seed} at {self.now} ms, event {self.events}: {error}\n"
                f"replay: {replay_command(self.seed)}"
            ) from None
        except AssertionError as error:  # the core's own invariant checks
            raise Violation(
                f"seed {self.seed} at {self.now} ms, event {self.events}: core assertion "
                f"{error!r}\nreplay: {replay_command(self.seed)}"
            ) from error
        return self

    def _push(self, time: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, kind, payload))

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "deliver":
            envelope, incarnation = payload
            node = self.nodes[envelope.destination]
            if node.core is None or node.incarnation != incarnation:
                if isinstance(envelope.message, FetchRequest | FetchSnapshotRequest):
                    self._fetch_failed_later(envelope, refused=True)
                return  # the connection died with the process
            if not self._connected(envelope.source, envelope.destination):
                return
            node.core.step(envelope, self.now)
            self._drive(node)
        elif kind == "tick":
            node_id, incarnation, at = payload
            node = self.nodes[node_id]
            if node.core is None or node.incarnation != incarnation or node.tick_at != at:
                return
            node.tick_at = -1
            node.core.tick(self.now)
            self._drive(node)
        elif kind == "fault":
            if not self.calm:
                self._inject_fault()
                self._push(
                    self.now + self.rng.randrange(1, 2 * self.params.fault_interval_ms),
                    "fault",
                    None,
                )
        elif kind == "fetch_failed":
            source, incarnation, destination, refused = payload
            node = self.nodes[source]
            if node.core is None or node.incarnation != incarnation:
                return
            node.core.fetch_failed(destination, refused, self.now)
            self._drive(node)
        elif kind == "propose":
            self._propose()
        elif kind == "restart":
            node = self.nodes[payload]
            if node.core is None:
                self._start(node)
        elif kind == "calm":
            self._enter_calm()
        else:  # pragma: no cover
            raise AssertionError(kind)

    # --------------------------------------------------------------------- shell

    def _start(self, node: _Node) -> None:
        view = node.disk.durable
        node.incarnation += 1
        node.core = self.core_class(
            node.node_id,
            self.config,
            random.Random(self.rng.getrandbits(64)),
            self.now,
            quorum_state=view.quorum_state,
            snapshot=view.snapshot,
            entries=view.entries,
        )
        if view.snapshot is not None:
            node.applied, node.crc = _parse_snapshot(view.snapshot)
        else:
            node.applied, node.crc = 0, 0
        node.last_high_watermark = node.core.high_watermark
        node.tick_at = -1
        self.trace.append(f"{self.now} start {node.node_id}")
        self._drive(node)

    def _crash(self, node: _Node, lossy: bool) -> None:
        keep = self.rng.randrange(0, len(node.disk.unsynced) + 1) if lossy else 10**9
        node.disk.crash(keep)
        node.core = None
        self.trace.append(f"{self.now} crash {node.node_id} lossy={lossy}")
        restart_ms = self.now + self.rng.randrange(1, 4 * self.params.election_timeout_ms)
        self._push(restart_ms, "restart", node.node_id)

    def _drive(self, node: _Node) -> None:
        """Carry out the core's Readies as the shell contract says."""
        core = node.core
        assert core is not None
        while core.has_ready():
            ready = core.ready()
            ops = self._ready_ops(node, ready)
            if not self.calm and ops and self.rng.random() < 0.003:
                # Crash part-way through: some writes made, none fsynced, nothing sent.
                for op in ops[: self.rng.randrange(0, len(ops) + 1)]:
                    node.disk.write(op)
                self._crash(node, lossy=self.rng.random() < 0.7)
                return
            for op in ops:
                node.disk.write(op)
            if ready.must_sync:
                node.disk.sync()
            for envelope in ready.messages:
                self._send(envelope)
            self._apply(node, ready)
            core.advance(ready)
        deadline = core.deadline_ms()
        # One pending tick per node, the earliest; a later deadline is re-armed after it.
        if (node.tick_at == -1 or deadline < node.tick_at) and deadline < (1 << 61):
            node.tick_at = deadline
            self._push(max(deadline, self.now), "tick", (node.node_id, node.incarnation, deadline))

    def _ready_ops(self, node: _Node, ready: Ready) -> list[tuple[str, Any]]:
        """The writes of `ready`, in the contract's order; checks what they do to the log."""
        core = node.core
        assert core is not None
        ops: list[tuple[str, Any]] = []
        if ready.install_snapshot is not None:
            ops.append(("install", ready.install_snapshot))
        if ready.truncate_to is not None:
            self._check_truncation(node, ready.truncate_to)
            ops.append(("truncate", ready.truncate_to))
        if ready.entries:
            self._check_log_matching(node, ready.entries)
            ops.append(("append", list(ready.entries)))
        if ready.quorum_state is not None:
            ops.append(("qs", ready.quorum_state))
        if ready.log_start_offset is not None:
            ops.append(("log_start", ready.log_start_offset))
        return ops

    def _fetch_failed_later(self, envelope: Envelope, refused: bool) -> None:
        source = self.nodes[envelope.source]
        payload = (envelope.source, source.incarnation, envelope.destination, refused)
        self._push(self.now + self.rng.randrange(1, 6), "fetch_failed", payload)

    def _send(self, envelope: Envelope) -> None:
        if not self._connected(envelope.source, envelope.destination):
            if (
                isinstance(envelope.message, FetchRequest | FetchSnapshotRequest)
                and self.rng.random() < 0.5
            ):
                self._fetch_failed_later(envelope, refused=self.rng.random() < 0.3)
            return
        if not self.calm and self.rng.random() < self.loss:
            return
        copies = 2 if not self.calm and self.rng.random() < self.duplicate else 1
        destination = self.nodes[envelope.destination]
        for _ in range(copies):
            delay = self.rng.randrange(1, (self.delay_max_ms if not self.calm else 5) + 1)
            self._push(self.now + delay, "deliver", (envelope, destination.incarnation))

    def _connected(self, a: int, b: int) -> bool:
        return self.groups.get(a, 0) == self.groups.get(b, 0)

    # --------------------------------------------------------------------- faults

    def _inject_fault(self) -> None:
        rng = self.rng
        roll = rng.random()
        up = [n for n in self.nodes.values() if n.core is not None]
        if roll < 0.12 and up:
            self._crash(rng.choice(up), lossy=rng.random() < 0.5)
        elif roll < 0.24:
            ids = sorted(self.voters)
            rng.shuffle(ids)
            cut = rng.randrange(1, len(ids))
            self.groups = {i: (0 if k < cut else 1) for k, i in enumerate(ids)}
            self.trace.append(f"{self.now} partition {self.groups}")
        elif roll < 0.40:
            self.groups = {}
            self.trace.append(f"{self.now} heal")
        elif roll < 0.55 and up:
            node = rng.choice(up)
            core = node.core
            assert core is not None
            if node.applied > core.log.log_start_offset:
                data = _snapshot_data(node.applied, node.crc)
                snapshot = Snapshot(
                    OffsetAndEpoch(node.applied, core.log.entry(node.applied - 1).epoch), data
                )
                node.disk.write(("snapshot", snapshot))
                node.disk.sync()
                core.take_snapshot(node.applied, data)
                self._drive(node)
        elif roll < 0.60:
            for node in up:
                if node.core is not None and node.core.role is Role.LEADER:
                    node.core.resign(self.now)
                    self._drive(node)
        elif roll < 0.70:
            self.loss = rng.choice([0.0, 0.01, 0.05, 0.2, 0.5])
            self.delay_max_ms = rng.choice([2, 10, 40, 150])

    def _propose(self) -> None:
        for node in self.nodes.values():
            core = node.core
            if core is None or core.role is not Role.LEADER:
                continue
            if self.calm:
                if self._marker_committed_everywhere():
                    break
                payload = f"marker-{len(self.markers)}".encode()
            else:
                self.proposals += 1
                payload = f"p{self.proposals}".encode()
            count = 1 if self.calm else self.rng.randrange(1, 4)
            payloads = [payload + (b".%d" % i if i else b"") for i in range(count)]
            result = core.propose(payloads, self.now)
            if not isinstance(result, NotLeader) and self.calm:
                self.markers[payload] = result
            self._drive(node)
            break
        interval = self.params.propose_interval_ms
        if self.calm:
            interval = 10 * interval
        self._push(self.now + self.rng.randrange(1, 2 * interval), "propose", None)

    def _enter_calm(self) -> None:
        self.calm = True
        self.groups = {}
        self.trace.append(f"{self.now} calm")
        for node in self.nodes.values():
            if node.core is None:
                self._start(node)

    # --------------------------------------------------------------------- checks

    def _check_truncation(self, node: _Node, offset: int) -> None:
        core = node.core
        assert core is not None
        # The core's log is already truncated; the disk (all writes) still has the tail.
        view = node.disk.durable.copy()
        for op in node.disk.unsynced:
            view.apply(op)
        for entry in view.entries:
            if (
                offset <= entry.offset < len(self.committed)
                and self.committed[entry.offset].epoch == entry.epoch
            ):
                raise Violation(f"node {node.node_id} truncates committed entry at {entry.offset}")

    def _check_log_matching(self, node: _Node, entries: tuple[Entry, ...]) -> None:
        core = node.core
        assert core is not None
        log = core.log
        for entry in entries:
            if entry.offset == log.log_start_offset:
                previous = log.snapshot.snapshot_id.epoch if log.snapshot else -1
            else:
                previous = log.entry(entry.offset - 1).epoch
            key = (entry.offset, entry.epoch)
            seen = self.entry_index.setdefault(key, (entry.payload, previous))
            if seen != (entry.payload, previous):
                raise Violation(
                    f"log matching: node {node.node_id} has {key} = {(entry.payload, previous)}"
                    f", another node {seen}"
                )

    def _apply(self, node: _Node, ready: Ready) -> None:
        if ready.install_snapshot is not None:
            end, crc = _parse_snapshot(ready.install_snapshot)
            if end >= len(self.crc_at) or self.crc_at[end] != crc:
                raise Violation(f"node {node.node_id} installs a snapshot not of the log at {end}")
            node.applied, node.crc = end, crc
        core = node.core
        assert core is not None
        for entry in ready.committed:
            if entry.offset != node.applied:
                raise Violation(
                    f"node {node.node_id} applies {entry.offset}, expected {node.applied}"
                )
            if entry.offset < len(self.committed):
                if self.committed[entry.offset] != entry:
                    raise Violation(
                        f"state machine safety: node {node.node_id} applies {entry} at "
                        f"{entry.offset}, another applied {self.committed[entry.offset]}"
                    )
            else:
                assert entry.offset == len(self.committed)
                self.committed.append(entry)
                self.commit_epoch.append(core.leader_epoch)
                self.crc_at.append(zlib.crc32(entry.payload, self.crc_at[-1]))
                for other in self.nodes.values():
                    if (
                        other.core is not None
                        and other.core.role is Role.LEADER
                        and other.core.leader_epoch > core.leader_epoch
                    ):
                        self._check_leader_has(other, entry.offset)
            node.applied = entry.offset + 1
            node.crc = zlib.crc32(entry.payload, node.crc)

    def _check_leader_has(self, node: _Node, offset: int) -> None:
        core = node.core
        assert core is not None
        log = core.log
        if offset < log.log_start_offset:
            return  # covered by its snapshot, itself checked against the committed prefix
        if offset >= log.log_end_offset or log.entry(offset) != self.committed[offset]:
            raise Violation(
                f"leader completeness: leader {node.node_id} of epoch {core.leader_epoch} "
                f"lacks committed entry {self.committed[offset]} "
                f"(committed in epoch {self.commit_epoch[offset]})"
            )

    def _check_after_event(self) -> None:
        for node in self.nodes.values():
            core = node.core
            if core is None:
                continue
            if core.high_watermark < node.last_high_watermark:
                raise Violation(f"node {node.node_id} high watermark went back")
            node.last_high_watermark = core.high_watermark
            if core.role is Role.LEADER:
                epoch = core.leader_epoch
                leader = self.leaders.setdefault(epoch, node.node_id)
                if leader != node.node_id:
                    raise Violation(f"election safety: {leader} and {node.node_id} lead {epoch}")
                if epoch not in node.leader_epochs_seen:
                    node.leader_epochs_seen.add(epoch)
                    self.trace.append(f"{self.now} leader {node.node_id} epoch {epoch}")
                    for offset, commit_epoch in enumerate(self.commit_epoch):
                        if commit_epoch < epoch:
                            self._check_leader_has(node, offset)

    def _marker_committed_everywhere(self) -> bool:
        for payload in self.markers:
            offset = next(
                (
                    e.offset
                    for e in self.committed[-len(self.markers) * 4 - 8 :]
                    if e.payload == payload
                ),
                None,
            )
            if offset is not None and all(
                n.core is not None and n.applied > offset for n in self.nodes.values()
            ):
                return True
        return False

    def _check_liveness(self) -> None:
        leaders = [n.node_id for n in self.nodes.values() if n.core and n.core.role is Role.LEADER]
        if len(leaders) != 1:
            raise Violation(f"liveness: {len(leaders)} leaders after the calm period")
        if not self._marker_committed_everywhere():
            raise Violation(
                "liveness: no proposal committed on every node within the calm period "
                f"(leader {leaders[0]}, applied "
                f"{ {n.node_id: n.applied for n in self.nodes.values()} })"
            )


def run_seed(
    seed: int,
    params: SimParams | None = None,
    core_class: type[RaftCore] = RaftCore,
    nodes: int | None = None,
) -> tuple[int, str | None, int]:
    """Run one seed; (seed, failure message or None, events). Picklable for a pool."""
    simulation = Simulation(seed, params, core_class, nodes)
    try:
        simulation.run()
    except Violation as error:
        return seed, str(error), simulation.events
    return seed, None, simulation.events


Runner = Callable[[int], tuple[int, str | None, int]]
