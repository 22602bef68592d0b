"""The asyncio Raft driver, three of them on one event loop over an in-memory transport.

Proves: (1) a quorum of one elects itself and commits a proposal before `propose` returns
(the single-node path); (2) three drivers elect one leader, commit proposals on every
node in the same order, and a proposal on a follower is refused (NotLeaderError); (3)
after the leader crashes the other two elect a new leader and commit again, and the
crashed node restarts from its files and catches up; (4) a follower far behind a
leader that snapshotted fetches the snapshot and restores its state machine from it;
(5) a node whose disk refuses writes (ENOSPC from its Raft storage), a follower or the
leader, stalls instead of wedging its core: the others go on committing (electing a new
leader when the stalled node led), and once its disk takes writes again it carries out
what it held, catches up and applies the same entries in the same order.
Requests and responses cross the in-memory transport as wire bytes, so the codec is in
the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ottla.cluster.raft.core import RaftConfig
from ottla.cluster.raft.driver import NotLeaderError, RaftDriver
from ottla.cluster.raft.log import RaftStorage
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import Entry
from ottla.cluster.raft.state import Role
from ottla.protocol import (
    Record,
    RecordBatchView,
    build_batch,
    decode_records,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    kio_body,
)


def _p(value: bytes) -> bytes:
    """An entry payload: a one-record batch (what the metadata log proposes)."""
    return bytes(build_batch([Record(key=None, value=value)]))


def _value(payload: bytes) -> bytes:
    return decode_records(RecordBatchView(payload))[0].value or b""


class Machine:
    """A state machine that records applied payloads."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, entries: Sequence[Entry]) -> None:
        self.applied.extend(_value(e.payload) for e in entries if not e.control)

    def restore(self, snapshot: Snapshot) -> None:
        self.applied = [p for p in snapshot.data.split(b"|") if p]

    def snapshot_data(self) -> bytes:
        return b"|".join(self.applied)


class Network:
    def __init__(self) -> None:
        self.drivers: dict[int, RaftDriver] = {}
        self.down: set[int] = set()

    def transport(self, source: int) -> Any:
        network = self

        class _Transport:
            async def send(self, node_id: int, request: Any) -> Any:
                await asyncio.sleep(0.001)
                if source in network.down or node_id in network.down:
                    raise ConnectionError("down")
                target = network.drivers.get(node_id)
                if target is None:
                    raise ConnectionError("no such node")
                wire = b"".join(bytes(c) for c in encode_request(request, 1))[4:]
                decoded = decode_request(wire)
                response = await target.handle(kio_body(decoded))
                if source in network.down or node_id in network.down:
                    raise ConnectionError("down")
                frame = b"".join(bytes(c) for c in encode_response(decoded.header, response))
                return decode_response(frame[4:], request)[1]

        return _Transport()


CONFIG = RaftConfig(
    voters=frozenset({1, 2, 3}),
    election_timeout_ms=100,
    fetch_timeout_ms=200,
    request_timeout_ms=200,
    retry_backoff_ms=10,
    fetch_max_wait_ms=50,
)


def _start(
    network: Network,
    node: int,
    root: Path,
    config: RaftConfig = CONFIG,
    snapshot_every: int = 10_000,
) -> tuple[RaftDriver, Machine]:
    machine = Machine()
    driver = RaftDriver(
        node,
        config,
        RaftStorage.open(root / f"n{node}"),
        network.transport(node),
        machine,
        cluster_id="test-cluster",
        rng=random.Random(node),
        snapshot_interval_entries=snapshot_every,
    )
    network.drivers[node] = driver
    driver.start()
    return driver, machine


async def _leader(network: Network, timeout_s: float = 5.0) -> RaftDriver:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        leaders = [
            d for n, d in network.drivers.items() if d.role is Role.LEADER and n not in network.down
        ]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no leader elected")


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _crash(network: Network, node: int) -> None:
    driver = network.drivers.pop(node)
    network.down.add(node)
    driver._closed = True
    if driver._timer is not None:
        driver._timer.cancel()
    for task in list(driver._tasks):
        task.cancel()
    driver.storage.close()


async def test_a_quorum_of_one_commits_before_propose_returns(tmp_path: Path) -> None:
    network = Network()
    config = RaftConfig(voters=frozenset({1}))
    driver, machine = _start(network, 1, tmp_path, config)
    assert driver.role is Role.LEADER
    future = driver.propose([_p(b"a"), _p(b"b")])
    assert future.done() and future.result() == 2  # offset 0 is the leader-change entry
    assert machine.applied == [b"a", b"b"]
    await driver.stop()
    driver.storage.close()
    again, machine_again = _start(Network(), 1, tmp_path, config)
    assert again.role is Role.LEADER and again.leader_epoch == 2
    assert machine_again.applied == [b"a", b"b"]
    await again.stop()
    again.storage.close()


async def test_three_drivers_elect_commit_fail_over_and_catch_up(tmp_path: Path) -> None:
    network = Network()
    machines = {n: _start(network, n, tmp_path)[1] for n in (1, 2, 3)}
    leader = await _leader(network)
    follower = next(d for d in network.drivers.values() if d is not leader)
    with pytest.raises(NotLeaderError):
        follower.propose([_p(b"x")])
    for i in range(5):
        await asyncio.wait_for(leader.propose([_p(b"p%d" % i)]), 5)
    await _until(lambda: all(len(m.applied) == 5 for m in machines.values()))
    assert machines[1].applied == machines[2].applied == machines[3].applied

    started = asyncio.get_running_loop().time()
    crashed = leader.node_id
    _crash(network, crashed)
    new_leader = await _leader(network)
    assert new_leader.node_id != crashed
    await asyncio.wait_for(new_leader.propose([_p(b"after")]), 5)
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 3.0, elapsed

    network.down.discard(crashed)
    restarted, machine = _start(network, crashed, tmp_path)
    machines[crashed] = machine
    await asyncio.wait_for(restarted.wait_caught_up(), 5)
    await _until(lambda: all(len(m.applied) == 6 for m in machines.values()))
    assert machines[1].applied == machines[2].applied == machines[3].applied
    for driver in list(network.drivers.values()):
        await driver.stop()
        driver.storage.close()


async def test_caught_up_only_once_everything_committed_is_applied(tmp_path: Path) -> None:
    """After a restart of the whole quorum, `wait_caught_up` returns on each node only
    once its machine holds every entry committed before: not on a high watermark the
    new leader carried over the restart (its log start, before it commits in its own
    epoch), nor, for a follower, on the leader's high watermark clipped to its own log
    end while one fetch at a time (fetch_max_entries=1) brings it up to date. A node
    that wrongly believed itself caught up set aside live partitions as strays."""
    config = dataclasses.replace(CONFIG, fetch_max_entries=1)
    network = Network()
    machines = {n: _start(network, n, tmp_path, config, snapshot_every=4)[1] for n in (1, 2, 3)}
    leader = await _leader(network)
    for i in range(10):
        await asyncio.wait_for(leader.propose([_p(b"c%d" % i)]), 5)
    committed = [b"c%d" % i for i in range(10)]
    await _until(lambda: all(m.applied == committed for m in machines.values()))
    for node in (1, 2, 3):
        _crash(network, node)
    network.down.clear()
    # The old leader's data is lost: it comes back empty and catches up from the others.
    fresh = tmp_path / "fresh"
    restarted = {
        n: _start(network, n, fresh if n == leader.node_id else tmp_path, config) for n in (1, 2, 3)
    }
    for driver, machine in restarted.values():
        await asyncio.wait_for(driver.wait_caught_up(), 5)
        assert machine.applied[: len(committed)] == committed, (driver.node_id, machine.applied)
    for driver, _ in restarted.values():
        await driver.stop()
        driver.storage.close()


async def test_a_lagging_follower_installs_the_leaders_snapshot(tmp_path: Path) -> None:
    network = Network()
    machines = {n: _start(network, n, tmp_path, snapshot_every=5)[1] for n in (1, 2, 3)}
    leader = await _leader(network)
    lagging = next(n for n in (1, 2, 3) if n != leader.node_id)
    _crash(network, lagging)
    for i in range(12):
        await asyncio.wait_for(leader.propose([_p(b"s%d" % i)]), 5)
    assert leader.core.log.log_start_offset > 0  # the leader snapshotted
    network.down.discard(lagging)
    # Lose the lagging node's log entirely: it must come back through the snapshot.
    driver, machine = _start(network, lagging, tmp_path / "fresh")
    machines[lagging] = machine
    await _until(lambda: machine.applied == machines[leader.node_id].applied)
    assert driver.storage.snapshot is not None
    for d in list(network.drivers.values()):
        await d.stop()
        d.storage.close()


class _FullDisk:
    """Makes a driver's Raft storage refuse appends and quorum-state writes (ENOSPC)
    while `full`."""

    def __init__(self, driver: RaftDriver) -> None:
        self.full = False
        self.refused = 0
        storage = driver.storage
        for name in ("append", "write_quorum_state"):
            setattr(storage, name, self._refusing(getattr(storage, name)))

    def _refusing(self, write: Any) -> Any:
        def refusing(*args: Any) -> Any:
            if self.full:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(*args)

        return refusing


@pytest.mark.parametrize("victim_role", ["follower", "leader"])
async def test_a_node_whose_disk_refuses_writes_stalls_then_catches_up(
    tmp_path: Path, victim_role: str
) -> None:
    network = Network()
    machines = {n: _start(network, n, tmp_path)[1] for n in (1, 2, 3)}
    leader = await _leader(network)
    await asyncio.wait_for(leader.propose([_p(b"before")]), 5)
    victim = (
        leader
        if victim_role == "leader"
        else next(d for d in network.drivers.values() if d is not leader)
    )
    disk = _FullDisk(victim)
    disk.full = True
    held = None
    if victim_role == "leader":
        held = victim.propose([_p(b"held")])  # in the core's log; the disk refuses it
        await _until(lambda: victim._stalled is not None)
        with pytest.raises(NotLeaderError):
            victim.propose([_p(b"refused")])  # stalled: nothing more goes in
        leader = await _other_leader(network, victim)
    for i in range(3):
        await asyncio.wait_for(leader.propose([_p(b"during%d" % i)]), 5)
    others = [m for n, m in machines.items() if n != victim.node_id]
    await _until(lambda: all(m.applied[-1:] == [b"during2"] for m in others))
    assert disk.refused > 0 and victim._stalled is not None
    assert b"during0" not in machines[victim.node_id].applied

    disk.full = False
    await _until(lambda: victim._stalled is None)
    await asyncio.wait_for(leader.propose([_p(b"after")]), 5)
    await _until(lambda: all(m.applied[-1:] == [b"after"] for m in machines.values()))
    assert machines[1].applied == machines[2].applied == machines[3].applied
    assert b"refused" not in machines[1].applied and b"held" not in machines[1].applied
    if held is not None:  # replaced by the new leader's entries
        await _until(held.done)
        assert isinstance(held.exception(), NotLeaderError)
    for d in list(network.drivers.values()):
        await d.stop()
        d.storage.close()


async def _other_leader(
    network: Network, stalled: RaftDriver, timeout_s: float = 5.0
) -> RaftDriver:
    """The leader the other two elect without `stalled` (which still believes it leads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        for driver in network.drivers.values():
            if driver is not stalled and driver.role is Role.LEADER:
                return driver
        await asyncio.sleep(0.01)
    raise AssertionError("the others elected no leader")
