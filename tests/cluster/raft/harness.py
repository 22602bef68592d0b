"""A datadriven harness for `RaftCore` interaction scripts (in the spirit of etcd's raft
testdata): a script is a list of `> command` lines, each followed by the output it must
produce. `OTTLA_REWRITE=1` rewrites the expected output in place (then review the diff).

Commands (node ids are ints, time is global and only moves forward):
    node ID [epoch=E] [leader=L] [voted=V] [log=E,E,...] [snapshot=END@EPOCH]
                          (re)start node ID from that durable state (log epochs from the
                          log start offset; payloads are "eOFFSET")
    voters ID,ID,...      the voter set of nodes created afterwards (default 1,2,3)
    config key=value ...  RaftConfig fields for nodes created afterwards
    time T                set the clock to T ms
    tick ID [ID...]       tick those nodes at the current time
    deliver [SRC->DST]    deliver the queued messages (matching SRC->DST if given, `*` for
                          any), in order; messages they cause are queued, not delivered
    drop [SRC->DST]       drop queued messages (matching)
    propose ID PAYLOAD... propose payloads on node ID
    snapshot ID END DATA  node ID snapshots its state machine below END
    resign ID             node ID resigns leadership
    fetch-failed ID DST [refused]   node ID's Fetch to DST failed on its connection
    restart ID            node ID crashes (keeping what it synced) and restarts
    settle                deliver until no message is queued (output not shown)
    elect ID              move the clock to ID's deadline, tick it, settle; print status
    status [ID...]        role, epoch, leader, vote, log end offset, high watermark
    queue                 the queued messages

Output lines: `ID: role ...` after a transition, `ID persist ...`, `ID append ...`,
`ID truncate ...`, `ID install ...`, `ID commit ...` for Ready contents, and
`SRC->DST Message(field=value, ...)` for each message sent (defaults omitted).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ottla.cluster.raft.core import NotLeader, RaftConfig, RaftCore
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import Entry, Envelope, OffsetAndEpoch
from ottla.cluster.raft.state import QuorumStateData


class _ZeroRng:
    """No jitter: election timeouts are exactly election_timeout_ms, so scripts are exact."""

    def randrange(self, start: int, stop: int, /) -> int:
        return start


def _format_value(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], Entry):
        return "[" + " ".join(_format_entry(e) for e in value) + "]"
    if isinstance(value, OffsetAndEpoch):
        return f"{value.end_offset}@{value.epoch}"
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "name") and hasattr(value, "value"):
        return str(value.name)
    return str(value)


def _format_entry(entry: Entry) -> str:
    payload = "LC" if entry.control else entry.payload.decode(errors="replace")
    return f"{entry.offset}@{entry.epoch}:{payload}"


def format_message(envelope: Envelope) -> str:
    message = envelope.message
    parts = []
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        parts.append(f"{f.name}={_format_value(value)}")
    return f"{envelope.source}->{envelope.destination} {type(message).__name__}({', '.join(parts)})"


@dataclasses.dataclass
class _Durable:
    quorum_state: QuorumStateData = dataclasses.field(default_factory=QuorumStateData)
    snapshot: Snapshot | None = None
    entries: list[Entry] = dataclasses.field(default_factory=list)


class Harness:
    def __init__(self) -> None:
        self.now = 0
        self.voters = frozenset({1, 2, 3})
        self.config_overrides: dict[str, int] = {}
        self.nodes: dict[int, RaftCore] = {}
        self.disks: dict[int, _Durable] = {}
        self.roles: dict[int, str] = {}
        self.queue: list[Envelope] = []

    # ----------------------------------------------------------------- running a script

    def run(self, command: str) -> list[str]:
        words = command.split()
        name, args = words[0], words[1:]
        out: list[str] = []
        handler = getattr(self, f"cmd_{name.replace('-', '_')}")
        handler(args, out)
        return out

    def _config(self) -> RaftConfig:
        return RaftConfig(voters=self.voters, **self.config_overrides)

    def _drive(self, node_id: int, out: list[str]) -> None:
        core = self.nodes[node_id]
        role = f"{core.role.value} epoch={core.leader_epoch} leader={core.leader_id}"
        if self.roles.get(node_id) != role:
            self.roles[node_id] = role
            out.append(f"{node_id}: {role}")
        while core.has_ready():
            ready = core.ready()
            disk = self.disks[node_id]
            if ready.install_snapshot is not None:
                disk.snapshot = ready.install_snapshot
                disk.entries = []
                sid = ready.install_snapshot.snapshot_id
                out.append(f"{node_id} install snapshot {sid.end_offset}@{sid.epoch}")
            if ready.truncate_to is not None:
                disk.entries = [e for e in disk.entries if e.offset < ready.truncate_to]
                out.append(f"{node_id} truncate to {ready.truncate_to}")
            if ready.entries:
                disk.entries.extend(ready.entries)
                out.append(f"{node_id} append {_format_value(ready.entries)}")
            if ready.quorum_state is not None:
                disk.quorum_state = ready.quorum_state
                qs = ready.quorum_state
                out.append(
                    f"{node_id} persist epoch={qs.leader_epoch} leader={qs.leader_id} "
                    f"voted={qs.voted_id}"
                )
            if ready.log_start_offset is not None:
                disk.entries = [e for e in disk.entries if e.offset >= ready.log_start_offset]
                out.append(f"{node_id} delete log below {ready.log_start_offset}")
            for envelope in ready.messages:
                self.queue.append(envelope)
                out.append(format_message(envelope))
            if ready.committed:
                out.append(f"{node_id} commit {_format_value(ready.committed)}")
            core.advance(ready)
        role = f"{core.role.value} epoch={core.leader_epoch} leader={core.leader_id}"
        if self.roles.get(node_id) != role:
            self.roles[node_id] = role
            out.append(f"{node_id}: {role}")

    @staticmethod
    def _matches(envelope: Envelope, pattern: str | None) -> bool:
        if pattern is None:
            return True
        source, destination = pattern.split("->")
        return (source in ("*", str(envelope.source))) and (
            destination in ("*", str(envelope.destination))
        )

    # ----------------------------------------------------------------- commands

    def cmd_voters(self, args: list[str], out: list[str]) -> None:
        self.voters = frozenset(int(v) for v in args[0].split(","))

    def cmd_config(self, args: list[str], out: list[str]) -> None:
        for arg in args:
            key, value = arg.split("=")
            self.config_overrides[key] = int(value)

    def cmd_time(self, args: list[str], out: list[str]) -> None:
        self.now = int(args[0])

    def cmd_node(self, args: list[str], out: list[str]) -> None:
        node_id = int(args[0])
        options = dict(arg.split("=") for arg in args[1:])
        snapshot = None
        start = 0
        if "snapshot" in options:
            end, epoch = (int(x) for x in options["snapshot"].split("@"))
            snapshot = Snapshot(OffsetAndEpoch(end, epoch), f"state@{end}".encode())
            start = end
        epochs = [int(e) for e in options["log"].split(",")] if options.get("log") else []
        entries = [Entry(start + i, e, f"e{start + i}".encode()) for i, e in enumerate(epochs)]
        state = QuorumStateData(
            int(options.get("epoch", 0)),
            int(options.get("leader", -1)),
            int(options.get("voted", -1)),
        )
        self.disks[node_id] = _Durable(state, snapshot, entries)
        self.roles.pop(node_id, None)
        self._start(node_id, out)

    def _start(self, node_id: int, out: list[str]) -> None:
        disk = self.disks[node_id]
        self.nodes[node_id] = RaftCore(
            node_id,
            self._config(),
            _ZeroRng(),
            self.now,
            quorum_state=disk.quorum_state,
            snapshot=disk.snapshot,
            entries=list(disk.entries),
        )
        self._drive(node_id, out)

    def cmd_restart(self, args: list[str], out: list[str]) -> None:
        node_id = int(args[0])
        self.queue = [e for e in self.queue if e.destination != node_id]
        self.roles.pop(node_id, None)
        self._start(node_id, out)

    def cmd_tick(self, args: list[str], out: list[str]) -> None:
        for arg in args:
            node_id = int(arg)
            self.nodes[node_id].tick(self.now)
            self._drive(node_id, out)

    def cmd_deliver(self, args: list[str], out: list[str]) -> None:
        pattern = args[0] if args else None
        batch = [e for e in self.queue if self._matches(e, pattern)]
        self.queue = [e for e in self.queue if not self._matches(e, pattern)]
        for envelope in batch:
            if envelope.destination not in self.nodes:
                continue  # a node not started yet: the message is lost
            self.nodes[envelope.destination].step(envelope, self.now)
            self._drive(envelope.destination, out)

    def cmd_drop(self, args: list[str], out: list[str]) -> None:
        pattern = args[0] if args else None
        dropped = [e for e in self.queue if self._matches(e, pattern)]
        self.queue = [e for e in self.queue if not self._matches(e, pattern)]
        out.append(f"dropped {len(dropped)}")

    def cmd_propose(self, args: list[str], out: list[str]) -> None:
        node_id = int(args[0])
        result = self.nodes[node_id].propose([a.encode() for a in args[1:]], self.now)
        if isinstance(result, NotLeader):
            out.append(f"not leader: leader={result.leader_id} epoch={result.leader_epoch}")
        else:
            out.append(f"offset {result}")
        self._drive(node_id, out)

    def cmd_snapshot(self, args: list[str], out: list[str]) -> None:
        node_id, end, data = int(args[0]), int(args[1]), args[2]
        self.nodes[node_id].take_snapshot(end, data.encode())
        core = self.nodes[node_id]
        assert core.log.snapshot is not None
        self.disks[node_id].snapshot = core.log.snapshot
        self._drive(node_id, out)

    def cmd_resign(self, args: list[str], out: list[str]) -> None:
        node_id = int(args[0])
        self.nodes[node_id].resign(self.now)
        self._drive(node_id, out)

    def cmd_fetch_failed(self, args: list[str], out: list[str]) -> None:
        node_id, destination = int(args[0]), int(args[1])
        self.nodes[node_id].fetch_failed(destination, "refused" in args[2:], self.now)
        self._drive(node_id, out)

    def cmd_status(self, args: list[str], out: list[str]) -> None:
        ids = [int(a) for a in args] or sorted(self.nodes)
        for node_id in ids:
            core = self.nodes[node_id]
            log = core.log
            out.append(
                f"{node_id}: {core.role.value} epoch={core.leader_epoch} "
                f"leader={core.leader_id} voted={core.voted_id} "
                f"log={log.log_start_offset}..{log.log_end_offset} "
                f"last_epoch={log.last_fetched_epoch} hw={core.high_watermark} "
                f"deadline={core.deadline_ms()}"
            )

    def cmd_settle(self, args: list[str], out: list[str]) -> None:
        for _ in range(100):
            if not self.queue:
                return
            self.cmd_deliver([], [])
        raise AssertionError("no quiet after 100 rounds")

    def cmd_elect(self, args: list[str], out: list[str]) -> None:
        node_id = int(args[0])
        self.now = max(self.now, self.nodes[node_id].deadline_ms())
        self.cmd_tick(args[:1], [])
        self.cmd_settle([], [])
        for other in self.nodes:
            self._drive(other, [])
        self.cmd_status([], out)

    def cmd_queue(self, args: list[str], out: list[str]) -> None:
        out.extend(format_message(e) for e in self.queue)


def run_script(path: Path) -> tuple[str, str]:
    """(expected, actual) transcripts of the script at `path`."""
    harness = Harness()
    expected_lines = path.read_text().splitlines()
    actual: list[str] = []
    for line in expected_lines:
        if line.startswith("#") or (not line.strip() and not actual):
            actual.append(line)
        elif line.startswith("> "):
            if actual and actual[-1] != "" and not actual[-1].startswith("#"):
                actual.append("")
            actual.append(line)
            actual.extend(harness.run(line[2:]))
    expected = path.read_text()
    result = "\n".join(actual).rstrip("\n") + "\n"
    if os.environ.get("OTTLA_REWRITE"):
        path.write_text(result)
        return result, result
    return expected, result
