"""A SIGKILLed node is fenced within seconds, long before its broker session ends.

Three voters in network namespaces (tests/netns/harness.py) with
`broker.session.timeout.ms` 60000, so the session timeout cannot be what fences the
victim within the test's bound. A 3-partition topic with replication factor 3 and
min.insync.replicas=2 has a partition led by the victim.

Proves, for a victim that is a plain voter and for one that is the quorum leader (the
active controller):
- the survivors fence it within `FENCED_WITHIN_S`: the controller sees the connection
  carrying its heartbeats close (the kernel closes a killed process's sockets); a new
  controller suspects the quorum leader it replaces (ottla/broker/controller.py, fast
  fencing), and the survivors elect that controller within the bound too (a follower
  whose Fetch is refused stops waiting for the fetch timeout);
- both survivors' Metadata drop the victim from the brokers, every partition has a live
  leader and an ISR without the victim;
- an acks=all write to each partition through its new leader succeeds (two in-sync
  replicas remain, min.insync.replicas=2);
- and a live broker whose connections to the controller are aborted (`ss -K`) is
  suspected but heartbeats again at once, and is never fenced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pytest

from ottla.broker.controller import FAST_FENCING_GRACE_MS
from ottla.protocol import ErrorCode, Record, build_batch
from tests.integration.wire import Wire, produce_partition
from tests.netns.harness import NetnsCluster, until

SESSION_MS = 60_000
FENCED_WITHIN_S = 15.0  # fast fencing takes ~1 s; the session would take 60 s
GRACE_S = FAST_FENCING_GRACE_MS / 1000

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.netns_overrides(f"broker.session.timeout.ms={SESSION_MS}"),
]


def _state(cluster: NetnsCluster, node_id: int, topic: str) -> dict[int, tuple[int, set[int]]]:
    """partition -> (leader, ISR) in `node_id`'s Metadata."""
    for entry in cluster.metadata(node_id).topics:
        if entry.name == topic:
            return {
                int(p.partition_index): (int(p.leader_id), {int(r) for r in p.isr_nodes})
                for p in entry.partitions
                if int(p.error_code) == 0
            }
    return {}


def _more_than(count: Callable[[], int], seen: int) -> bool:
    return count() > seen


@pytest.mark.parametrize("victim_role", ["voter", "quorum leader"])
def test_a_killed_node_is_fenced_long_before_its_session_ends(
    netns_cluster: NetnsCluster, victim_role: str
) -> None:
    cluster = netns_cluster
    topic = "fast"
    quorum_leader = cluster.leader()
    configs = {"min.insync.replicas": "2"}
    code = cluster.create_topic(quorum_leader, topic, 3, replication_factor=3, configs=configs)
    assert code is ErrorCode.none

    def in_sync() -> dict[int, tuple[int, set[int]]] | None:
        state = _state(cluster, quorum_leader, topic)
        full = len(state) == 3 and all(isr == {1, 2, 3} for _l, isr in state.values())
        return state if full else None

    before = until(in_sync, 20.0, "three partitions with full ISRs")
    assert before is not None
    victim = (
        quorum_leader
        if victim_role == "quorum leader"
        else next(n for n in cluster.nodes if n != quorum_leader)
    )
    assert victim in {leader for leader, _isr in before.values()}, before  # leaders spread
    survivors = [n for n in cluster.nodes if n != victim]

    killed_at = time.monotonic()
    cluster.kill(victim)

    def fenced_everywhere() -> dict[int, tuple[int, set[int]]] | None:
        state: dict[int, tuple[int, set[int]]] = {}
        for node_id in survivors:
            if victim in cluster.broker_ids(node_id):
                return None
            state = _state(cluster, node_id, topic)
            if len(state) != 3:
                return None
            for leader, isr in state.values():
                if leader not in survivors or victim in isr or len(isr) != 2:
                    return None
        return state

    after = until(fenced_everywhere, FENCED_WITHIN_S, "the victim fenced on both survivors")
    assert after is not None
    print(f"{victim_role} {victim} fenced {time.monotonic() - killed_at:.2f} s after SIGKILL")

    for partition, (leader, _isr) in sorted(after.items()):
        batch = bytes(build_batch([Record(key=b"k", value=b"after the kill")], base_timestamp=1))
        with Wire(cluster.nodes[leader].bootstrap) as wire:
            answer = produce_partition(wire, topic, partition, batch, acks=-1)
        assert int(answer.error_code) == 0, (partition, leader, answer)


def test_a_live_broker_whose_heartbeat_connection_breaks_is_not_fenced(
    netns_cluster: NetnsCluster,
) -> None:
    """The other side of fast fencing: the active controller aborts its end of every
    connection from a live broker (`ss -K`, both processes running), three times. Each
    time the controller suspects the broker (`broker_connection_lost` in its log), the
    broker heartbeats again at once on a new connection, and it is never fenced: for
    three graces after each abort every node still lists it and no partition's leader
    epoch moves. (Watching for something not to happen takes a window of time.)"""
    cluster = netns_cluster
    topic = "steady"
    controller = cluster.leader()
    code = cluster.create_topic(controller, topic, 3, replication_factor=3)
    assert code is ErrorCode.none

    def epochs() -> dict[int, int] | None:
        for entry in cluster.metadata(controller).topics:
            if entry.name == topic and len(entry.partitions) == 3:
                return {int(p.partition_index): int(p.leader_epoch) for p in entry.partitions}
        return None

    before = until(epochs, 20.0, "the topic's partitions")
    broker = next(n for n in cluster.nodes if n != controller)
    log_path = cluster.nodes[controller].log_path

    def suspicions() -> int:
        return log_path.read_text(errors="replace").count('"broker_connection_lost"')

    for _ in range(3):
        seen = suspicions()
        cluster.reset_connections(controller, broker)
        until(partial(_more_than, suspicions, seen), 10.0, "the controller suspects the broker")
        window_end = time.monotonic() + 3 * GRACE_S
        while time.monotonic() < window_end:
            for node_id in cluster.nodes:
                assert broker in cluster.broker_ids(node_id), f"node {node_id} fenced {broker}"
            assert epochs() == before
    assert '"brokers_fenced"' not in log_path.read_text(errors="replace")
