"""`python -m bench.replication_floor [--quick]`: what the replication round trip
itself costs on this machine, with none of ottla's replication code.

bench.replication compares acks=all on three nodes with acks=1 on one. Its p99 ratio
mixes two costs: the process hops an acks=all record must cross (client -> leader ->
both followers -> leader -> client, four wake-ups where acks=1 has two) and the work
ottla does in each of them (a follower's Fetch read, answered from the log, its next
Fetch moving the high watermark). This bench measures the first alone:

- "one node": `ottla serve` with defaults, a 1-partition topic, acks=1;
- "floor": the same broker run through this module's `leader` wrapper, whose
  Produce handler, once the append is done, writes an 8-byte token to each of two
  echo processes and answers only when both have echoed it back. Each echo process
  (`echo`) is a uvloop `asyncio.Protocol` that writes back what it reads: a follower
  that costs nothing but its hops. The client's records cross the same hops as
  three-node acks=all records.

Both: one 100 B record every ms, `linger.ms=0`, produce() to delivery callback (the
latency client of bench.replication), alternated `reps` times. The p99 ratio
one / floor is the best a three-node acks=all ratio could be here if the replication
path cost no more than its hops; the gap down to bench.replication's ratio is
ottla's own replication code. Every acks=1 Produce response takes the echo round trip
(those of a client that produces before the links are up wait for them): the wrapper
counts them, and the run fails unless all were echoed.

Prints a table and the CPU per record of each process; returns 0 unless a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import socket
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.broker import BrokerProcess, free_port, percentile
from bench.replication import FULL, QUICK, Scale, Setup, create_topic, produce_latency, single

__all__ = ["main"]

TOKEN_BYTES = 8
FOLLOWERS = 2
ECHOED_LINE = "replication_floor_echoed"


# -- the echo follower -------------------------------------------------------------------------


class _Echo(asyncio.Protocol):
    """Writes back every byte it reads, at once."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _serve_echo(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", port)
    await server.serve_forever()


def run_echo(port: int) -> int:
    import uvloop  # noqa: PLC0415 - only the echo process needs it

    uvloop.run(_serve_echo(port))
    return 0


# -- the leader wrapper ------------------------------------------------------------------------


class _Floor:
    """Holds each acks=1 Produce response until both echo processes echoed its token."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.links: list[_Link] = []
        self.pending: dict[int, list[Any]] = {}  # token -> [deferred, body, echoes left]
        self.sequence = 0  # responses held so far; each one's token is its number
        self.echoed = 0
        self.connecting = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        links = []
        for port in self.ports:
            _, link = await loop.create_connection(lambda: _Link(self), "127.0.0.1", port)
            links.append(link)
        self.links = links
        for token in list(self.pending):  # responses held while the links came up
            self.send(token)

    def hold(self, deferred: Any, body: Any) -> None:
        """Answer `body` through `deferred` once both echoes came back."""
        self.sequence += 1
        self.pending[self.sequence] = [deferred, body, len(self.ports)]
        if self.links:
            self.send(self.sequence)

    def send(self, token: int) -> None:
        data = token.to_bytes(TOKEN_BYTES, "big")
        for link in self.links:
            assert link.transport is not None
            link.transport.write(data)

    def echo(self, token: int) -> None:
        entry = self.pending.get(token)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] == 0:
            del self.pending[token]
            self.echoed += 1
            entry[0].complete(entry[1])


class _Link(asyncio.Protocol):
    """One connection to an echo process; cuts the echoed stream into tokens."""

    def __init__(self, floor: _Floor) -> None:
        self.floor = floor
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= TOKEN_BYTES:
            token = int.from_bytes(self.buffer[:TOKEN_BYTES], "big")
            self.buffer = self.buffer[TOKEN_BYTES:]
            self.floor.echo(token)


def run_leader(ports: list[int], serve_argv: list[str]) -> int:
    """`ottla serve` with Produce (api key 0) wrapped as the module docstring says."""
    from ottla.broker import dispatch  # noqa: PLC0415 - the wrapper process only
    from ottla.broker.server import Deferred  # noqa: PLC0415
    from ottla.cli import main as ottla_main  # noqa: PLC0415

    floor = _Floor(ports)
    produce = dispatch.HANDLERS[0]

    def handle(broker: Any, connection: Any, request: Any) -> Any:
        if not floor.connecting:
            floor.connecting = True
            asyncio.get_running_loop().create_task(floor.connect())
        result = produce(broker, connection, request)
        if result is None or isinstance(result, Deferred):
            return result  # acks=0, or acks=all: not measured here
        deferred = Deferred()
        floor.hold(deferred, result)
        return deferred

    dispatch.HANDLERS[0] = handle
    atexit.register(lambda: print(f"{ECHOED_LINE} {floor.echoed} {floor.sequence}", flush=True))
    return ottla_main(serve_argv)


# -- the bench ---------------------------------------------------------------------------------


def _floor_setup(work: Path) -> tuple[Setup, list[BrokerProcess]]:
    echoes = []
    for n in range(FOLLOWERS):
        port = free_port()
        command = [sys.executable, "-m", "bench.replication_floor", "echo", str(port)]
        echo = BrokerProcess(f"echo-{n}", command, port, work / f"echo-{n}.log")
        echo.start()  # returns once the port accepts connections
        echoes.append(echo)
    port = free_port()
    ports = ",".join(str(e.port) for e in echoes)
    command = [sys.executable, "-m", "bench.replication_floor", "leader", ports]
    command += ["serve", "--data-dir", str(work / "floor"), "--listen", f"127.0.0.1:{port}"]
    leader = BrokerProcess("floor", command, port, work / "floor.log")
    leader.start()
    return Setup("floor", {1: leader}), echoes


def _measure(
    setup: Setup, extra: list[BrokerProcess], scale: Scale
) -> tuple[list[float], list[int]]:
    """Latencies (ms) of one paced run and each process's CPU per record (µs)."""
    create_topic(setup, "floor", 1, 1, 1)
    processes = list(setup.nodes.values()) + extra
    before = [p.cpu_seconds() for p in processes]
    latencies = sorted(produce_latency(setup, "floor", 100, "1", scale))
    cpu = [
        round((p.cpu_seconds() - b) / max(len(latencies), 1) * 1e6)
        for p, b in zip(processes, before, strict=True)
    ]
    return latencies, cpu


def _check_echoed(leader: BrokerProcess) -> None:
    """Every acks=1 Produce response the wrapper held must have been echoed twice."""
    for line in reversed(leader.log_tail(20_000).splitlines()):
        if line.startswith(ECHOED_LINE):
            echoed, held = (int(n) for n in line.split()[1:3])
            if echoed == 0 or echoed != held:
                raise RuntimeError(f"{echoed} of {held} produce responses were echoed")
            return
    raise RuntimeError(f"the floor leader did not report its echoes:\n{leader.log_tail()}")


def bench_floor(work: Path, scale: Scale) -> list[str]:
    rows = []
    ratios = []
    for rep in range(scale.reps):
        one_dir = work / f"one-{rep}"
        one_dir.mkdir()
        one = single(one_dir)
        try:
            one_latencies, one_cpu = _measure(one, [], scale)
        finally:
            one.stop()
        floor_dir = work / f"floor-{rep}"
        floor_dir.mkdir()
        floor, echoes = _floor_setup(floor_dir)
        try:
            floor_latencies, floor_cpu = _measure(floor, echoes, scale)
        finally:
            floor.stop()
            for echo in echoes:
                echo.stop()
        _check_echoed(floor.nodes[1])
        one_p50, one_p99 = percentile(one_latencies, 0.5), percentile(one_latencies, 0.99)
        floor_p50, floor_p99 = percentile(floor_latencies, 0.5), percentile(floor_latencies, 0.99)
        ratio = one_p99 / floor_p99
        ratios.append(ratio)
        rows.append(
            f"| {rep + 1} | {one_p50:.3f} / {one_p99:.3f} | {floor_p50:.3f} / {floor_p99:.3f}"
            f" | {ratio:.2f} | {one_cpu[0]} | {' / '.join(str(c) for c in floor_cpu)} |"
        )
    header = [
        "| run | one node p50 / p99 (ms) | floor p50 / p99 (ms) | p99 ratio one/floor"
        " | CPU µs per record, one node | floor: leader / echo / echo |",
        "|---|---:|---:|---:|---:|---|",
    ]
    footer = [f"median p99 ratio: {statistics.median(ratios):.2f} ({len(ratios)} runs)"]
    return header + rows + ["", *footer]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["echo"]:
        return run_echo(int(args_list[1]))
    if args_list[:1] == ["leader"]:
        return run_leader([int(p) for p in args_list[1].split(",")], args_list[2:])
    parser = argparse.ArgumentParser(prog="python -m bench.replication_floor", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run (smoke)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(args_list)
    scale = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="ottla-bench-replication-floor-"))
    try:
        lines = bench_floor(work, scale)
    except Exception as error:
        print(f"!! replication floor: {type(error).__name__}: {error}", flush=True)
        print(f"work dir (logs) kept: {work}")
        return 1
    if args.keep:
        print(f"work dir (logs) kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
