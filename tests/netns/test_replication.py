"""With replication factor 3, a node cut off by packet drop loses the leadership of its
partitions to an in-sync follower that has the data.

Three voters in network namespaces (tests/netns/harness.py), broker.session.timeout.ms
3000 (heartbeat 500 ms). A 3-partition topic with replication factor 3; confluent-kafka
produces 30 records to every partition with acks=all. The node leading partition 0 (not
the quorum leader) is cut off from the other two by nft DROP rules.

Proves:
- the majority fences it and moves the leadership of the partitions it led to another
  replica of the ISR (leader neither the victim nor -1, higher leader epoch), while the
  victim leaves the ISR: leadership moves where the data allows;
- the new leader has every acknowledged record (a consumer bootstrapped from the
  majority reads all 30 of each partition, in order), and producing continues;
- after healing, the victim is unfenced, catches up as a follower and is back in the
  ISR of every partition.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from ottla.protocol import ErrorCode
from tests.integration.clients import Confluent, Rec
from tests.netns.harness import NetnsCluster, until
from tests.netns.leader_faults import topic_state

SESSION_MS = 3000

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.netns_overrides(
        f"broker.session.timeout.ms={SESSION_MS}", "broker.heartbeat.interval.ms=500"
    ),
]


def test_leadership_moves_to_an_in_sync_replica_with_the_data(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    topic = "replicated"
    quorum_leader = cluster.leader()
    assert (
        cluster.create_topic(quorum_leader, topic, partitions=3, replication_factor=3)
        is ErrorCode.none
    )

    def settled() -> dict[int, tuple[int, int, tuple[int, ...]]] | None:
        state = topic_state(cluster, quorum_leader, topic)
        full = len(state) == 3 and all(isr == (1, 2, 3) for _l, _e, isr in state.values())
        return state if full else None

    before = until(settled, 15.0, "three partitions, ISR of three")
    assert before is not None

    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "linger.ms": 5}
    )
    errors: list[object] = []
    for p in range(3):
        for i in range(30):
            producer.produce(
                topic,
                key=f"{p}-{i}".encode(),
                value=b"x",
                partition=p,
                on_delivery=lambda e, _m: errors.append(e) if e else None,
            )
    assert producer.flush(30) == 0
    del producer
    assert errors == []

    victim = before[0][0]
    if victim == quorum_leader:  # keep the quorum on the majority side: another partition
        victim = next(lead for lead, _e, _i in before.values() if lead != quorum_leader)
    majority = [n for n in cluster.nodes if n != victim]
    led = sorted(p for p, (lead, _e, _i) in before.items() if lead == victim)

    cluster.isolate(victim)

    def moved() -> bool:
        for node_id in majority:
            if victim in cluster.broker_ids(node_id):
                return False
            state = topic_state(cluster, node_id, topic)
            for p in led:
                lead, epoch, isr = state[p]
                if lead in (victim, -1) or epoch <= before[p][1] or victim in isr:
                    return False
        return True

    until(moved, SESSION_MS / 1000 + 12, "leadership moved to an in-sync replica")

    reader = Confluent(cluster.nodes[majority[0]].bootstrap)
    for p in range(3):
        got = reader.consume(topic, p, "earliest", 30)
        assert [g.key for g in got] == [f"{p}-{i}".encode() for i in range(30)], p
    Confluent(cluster.nodes[majority[1]].bootstrap).produce(
        topic, [Rec(key=b"after", value=b"the move", partition=p) for p in led]
    )

    cluster.heal(victim)

    def back_in_sync() -> bool:
        for node_id in cluster.nodes:
            if cluster.broker_ids(node_id) != [1, 2, 3]:
                return False
            if any(
                isr != (1, 2, 3) for _l, _e, isr in topic_state(cluster, node_id, topic).values()
            ):
                return False
        return True

    until(back_in_sync, 30.0, "the victim is back in every ISR")
