"""A node cut off from the other two by packet drop is fenced, and unfenced when healed.

Three voters in network namespaces (tests/netns/harness.py); nft DROP rules in the
victim's namespace drop every packet between it and the other two nodes (the test
process still reaches it). broker.session.timeout.ms is 3000 and the heartbeat
interval 500 ms (Kafka: 9000/2000) to keep the test short; the quorum keeps its
default timeouts. A 6-partition topic with replication factor 1 has two partitions
led by the victim.

Proves, for a victim that is a plain voter and for one that is the quorum leader (the
active controller, which must first lose its leadership to the majority):
- within the session timeout plus a margin, both other nodes' Metadata drop the victim
  from the brokers and show its partitions offline (leader -1, LEADER_NOT_AVAILABLE):
  with one replica there is nowhere to move them; the other partitions keep their
  leaders (leadership moves only where data allows); `ottla cluster status --json`
  through a majority node names the victim fenced;
- the majority keeps working meanwhile: CreateTopics through a majority node succeeds;
- after healing, the victim heartbeats again and is unfenced: every node lists three
  brokers and the victim leads its partitions again with a higher leader epoch, and
  the record produced to one of them before the cut is still there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from ottla.protocol import ErrorCode, Record, build_batch
from tests.integration.wire import Wire, fetch_partition, produce_partition
from tests.netns.harness import NetnsCluster, until

SESSION_MS = 3000
MARGIN_S = 7.0  # detection of the leader's loss (quorum fetch timeout) + one tick + polling

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.netns_overrides(
        f"broker.session.timeout.ms={SESSION_MS}", "broker.heartbeat.interval.ms=500"
    ),
]


def _partitions(cluster: NetnsCluster, node_id: int, topic: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (leader, leader epoch, error code) in `node_id`'s Metadata."""
    for entry in cluster.metadata(node_id).topics:
        if entry.name == topic:
            return {
                int(p.partition_index): (int(p.leader_id), int(p.leader_epoch), int(p.error_code))
                for p in entry.partitions
            }
    return {}


def _status(cluster: NetnsCluster, node_id: int) -> Any:
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "ottla",
            "cluster",
            "status",
            "--bootstrap-server",
            cluster.nodes[node_id].bootstrap,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(output.stdout)


@pytest.mark.parametrize("victim_role", ["voter", "quorum leader"])
def test_a_node_cut_off_by_packet_drop_is_fenced_and_comes_back(
    netns_cluster: NetnsCluster, victim_role: str
) -> None:
    cluster = netns_cluster
    topic = "cut"
    leader = cluster.leader()
    assert cluster.create_topic(leader, topic, partitions=6) is ErrorCode.none

    def settled() -> dict[int, tuple[int, int, int]] | None:
        state = _partitions(cluster, 1, topic)
        return state if len(state) == 6 and all(e == 0 for _l, _e, e in state.values()) else None

    before = until(settled, 10.0, "six partitions with leaders")
    assert before is not None
    victim = (
        leader if victim_role == "quorum leader" else next(n for n in cluster.nodes if n != leader)
    )
    majority = [n for n in cluster.nodes if n != victim]
    led = sorted(p for p, (lead, _e, _c) in before.items() if lead == victim)
    others = sorted(set(before) - set(led))
    assert led, before

    # A record in one of the victim's partitions, to read back after it returns.
    batch = bytes(build_batch([Record(key=b"kept", value=b"across the cut")], base_timestamp=1))
    with Wire(cluster.nodes[victim].bootstrap) as wire:
        assert int(produce_partition(wire, topic, led[0], batch).error_code) == 0

    cluster.isolate(victim)
    cut_at = time.monotonic()

    def fenced_everywhere() -> bool:
        for node_id in majority:
            if victim in cluster.broker_ids(node_id):
                return False
            state = _partitions(cluster, node_id, topic)
            if any(state[p][0] != -1 or state[p][2] != 5 for p in led):
                return False
            # Partitions of live nodes keep their leaders.
            if any(state[p][0] != before[p][0] or state[p][2] != 0 for p in others):
                return False
        return True

    until(fenced_everywhere, SESSION_MS / 1000 + MARGIN_S + 5, "victim fenced on the majority")
    fenced_s = time.monotonic() - cut_at
    print(f"{victim_role} {victim} fenced {fenced_s:.2f} s after the cut (session {SESSION_MS} ms)")
    assert fenced_s < SESSION_MS / 1000 + MARGIN_S

    status = _status(cluster, majority[0])
    assert {b["node_id"]: b["fenced"] for b in status["brokers"]}[victim] is True
    assert status["quorum"]["leader_id"] in majority
    assert cluster.create_topic(majority[0], "during-the-cut") is ErrorCode.none

    cluster.heal(victim)
    healed_at = time.monotonic()

    def back_everywhere() -> bool:
        for node_id in cluster.nodes:
            if cluster.broker_ids(node_id) != [1, 2, 3]:
                return False
            state = _partitions(cluster, node_id, topic)
            if any(state[p][0] != victim or state[p][2] != 0 for p in led):
                return False
            if any(state[p][1] <= before[p][1] for p in led):
                return False
        return True

    until(back_everywhere, 20.0, "victim unfenced and leading its partitions again")
    print(f"unfenced and leading again {time.monotonic() - healed_at:.2f} s after healing")
    assert "during-the-cut" in until(lambda: cluster.topic_names(victim), 10.0, "victim's topics")
    with Wire(cluster.nodes[victim].bootstrap) as wire:
        data = fetch_partition(wire, topic, led[0], 0)
    assert int(data.error_code) == 0
    assert int(data.high_watermark) == 1
