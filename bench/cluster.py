"""`python -m bench.cluster [--quick]`: failover and metadata propagation of three nodes.

Three `ottla serve` voters (broker+controller), each on its own address in its own
network namespace (tests/netns/harness.py: a bridge namespace, 10.77.0.x addresses,
the benchmark process reaching them through a veth), default settings
(controller.quorum.election.timeout.ms=1000, fetch.timeout.ms=2000,
request.timeout.ms=2000). Needs root, iproute2 and nftables; elsewhere it says why and
returns 0 without measuring.

(a) metadata propagation: a topic is created through a node that is not the quorum
    leader; measured from the CreateTopics response to the first Metadata (of that
    topic, one open connection per node, polled back to back) of each node listing
    it: the receiving node (it forwarded the write to the leader), the quorum leader,
    the third node, and the slowest of the three. `topics` topics per run.
(b) controller failover: the quorum leader (found with DescribeQuorum) gets SIGKILL;
    measured from the kill until the first CreateTopics through a survivor that
    succeeds (each attempt waits at most 0.5 s, then the next survivor is tried; an
    attempt answered TOPIC_ALREADY_EXISTS counts: an earlier one committed after its
    wait). The new leader's own log gives the moment it became leader (wall clock of
    its raft.role_changed line), splitting the time into election and the rest.
    Target: under 3 s. The killed node restarts and the cluster is ready (leader,
    every node lists three brokers) before the next run.

Each run repeats (a) and (b); the table gives median, min and max over the runs.
Returns 0 unless a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ottla.client import Client, ClientError
from ottla.protocol import ErrorCode, make
from tests.netns.harness import NetnsCluster, unavailable

__all__ = ["main"]

FAILOVER_TARGET_S = 3.0
ATTEMPT_TIMEOUT_S = 0.5
_ROLES = ("the receiving node", "the quorum leader", "the third node")


def _progress(text: str) -> None:
    print(f"  {text}", flush=True)


def _metadata_lists(client: Client, topic: str) -> bool:
    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.MetadataRequest,
            topics=(make(module.MetadataRequestTopic, name=topic, topic_id=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
            include_cluster_authorized_operations=False,
        )

    response = client.call("metadata", build)
    return any(t.name == topic and t.error_code is ErrorCode.none for t in response.topics)


def _propagation(cluster: NetnsCluster, via: int, topic: str) -> dict[int, float]:
    """Seconds from the CreateTopics response to each node's Metadata listing `topic`."""
    clients = {n: cluster.client(n) for n in cluster.nodes}
    try:
        code = cluster.create_topic(via, topic, partitions=3)
        answered = time.monotonic()
        if code is not ErrorCode.none:
            raise RuntimeError(f"CreateTopics {topic}: {code.name}")
        seen: dict[int, float] = {}
        while len(seen) < len(clients):
            for node_id, client in clients.items():
                if node_id not in seen and _metadata_lists(client, topic):
                    seen[node_id] = time.monotonic() - answered
            if time.monotonic() - answered > 15.0:
                raise RuntimeError(f"{topic} not on every node after 15 s: {seen}")
        return seen
    finally:
        for client in clients.values():
            client.close()


def _leader_since(cluster: NetnsCluster, node_id: int, after: float) -> float | None:
    """Wall-clock time (epoch s) the node's log says it became leader, after `after`."""
    for line in cluster.nodes[node_id].log_path.read_text(errors="replace").splitlines():
        if '"raft.role_changed"' not in line or '"Leader"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            stamp = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            if stamp.timestamp() > after:
                return stamp.timestamp()
    return None


def _failover(cluster: NetnsCluster, topic: str) -> tuple[float, float | None, int]:
    """SIGKILL the quorum leader; (seconds to the first CreateTopics, to the election,
    the killed node's id)."""
    old = cluster.leader()
    survivors = [n for n in cluster.nodes if n != old]
    killed_wall = time.time()
    cluster.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    attempt = 0
    while True:
        node_id = survivors[attempt % len(survivors)]
        attempt += 1
        with contextlib.suppress(ClientError):
            code = cluster.create_topic(node_id, topic, timeout_s=ATTEMPT_TIMEOUT_S)
            if code in (ErrorCode.none, ErrorCode.topic_already_exists):
                took = time.monotonic() - killed
                break
        if time.monotonic() - killed > 30.0:
            raise RuntimeError("no CreateTopics within 30 s of killing the controller")
        time.sleep(0.01)  # retry backoff
    new = cluster.leader(among=survivors)
    elected_wall = _leader_since(cluster, new, killed_wall)
    elected = None if elected_wall is None else elected_wall - killed_wall
    return took, elected, old


def _row(name: str, values: Sequence[float], note: str = "", digits: int = 0) -> str:
    if not values:
        return f"| {name} | - | - | - | {note} |"
    cells = [f"{v * 1000:.{digits}f}" for v in (statistics.median(values), *sorted(values)[::-1])]
    return f"| {name} | {cells[0]} | {cells[-1]} | {cells[1]} | {note} |"


def run(runs: int, topics: int) -> int:
    reason = unavailable()
    if reason is not None:
        print(f"bench.cluster skipped: {reason}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="ottla-bench-cluster-"))
    failovers: list[float] = []
    elections: list[float] = []
    per_role: dict[str, list[float]] = {role: [] for role in _ROLES}
    slowest: list[float] = []
    started = time.monotonic()
    try:
        with NetnsCluster(workdir) as cluster:
            for index in range(runs):
                leader = cluster.wait_ready()
                via = next(n for n in cluster.nodes if n != leader)
                for k in range(topics):
                    seen = _propagation(cluster, via, f"prop-{index}-{k}")
                    other = next(n for n in seen if n not in (via, leader))
                    for role, node_id in zip(_ROLES, (via, leader, other), strict=True):
                        per_role[role].append(seen[node_id])
                    slowest.append(max(seen.values()))
                took, elected, old = _failover(cluster, f"failover-{index}")
                failovers.append(took)
                if elected is not None:
                    elections.append(elected)
                _progress(
                    f"run {index + 1}/{runs}: failover {took * 1000:.0f} ms (leader {old} "
                    f"killed; election {'?' if elected is None else f'{elected * 1000:.0f}'} "
                    f"ms); propagation slowest {max(slowest[-topics:]) * 1000:.1f} ms"
                )
                cluster.start(old)
            cluster.wait_ready()
    except Exception as error:  # a failed run: report it, non-zero exit
        print(f"bench.cluster failed: {error!r}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    met = statistics.median(failovers) < FAILOVER_TARGET_S
    print(f"\n{runs} runs, {topics} topics per run, {time.monotonic() - started:.0f} s\n")
    print("| measure | median ms | min ms | max ms | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        _row(
            "SIGKILL of the active controller -> first CreateTopics OK",
            failovers,
            f"target < {FAILOVER_TARGET_S:.0f} s: {'met' if met else 'MISSED'}",
        )
    )
    print(_row("  of which: -> new leader elected (its log)", elections))
    for role, values in per_role.items():
        print(_row(f"CreateTopics response -> in {role}'s Metadata", values, digits=1))
    print(_row("CreateTopics response -> in every node's Metadata", slowest, digits=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 runs of 3 topics")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 9)
    topics = 3 if args.quick else 5
    return run(runs, topics)


if __name__ == "__main__":
    raise SystemExit(main())
