"""A link that loses packets between two nodes, under acks=all load (issue 7).

Packet loss is not a partition: TCP retransmits, so connections stay up but crawl, and
a follower on the bad link falls behind and catches up by turns. Kafka's rule decides
what happens: a follower not caught up for `replica.lag.time.max.ms` leaves the ISR
(the partition goes on with the others), one that catches up rejoins; acks=all waits
for the ISR, whatever the link.

Three voters in network namespaces (tests/netns/harness.py), fast failure detection
(leader_faults.FAST_FAILOVER). A topic with 3 partitions, replication factor 3 and
min.insync.replicas=2 (leaders spread over the nodes). nft rules drop `LOSS_PERCENT`% of the
packets between nodes 1 and 2, each at random, in both directions; so two partitions
have a follower on the bad link, and the Raft quorum and the brokers' heartbeats cross
it too. An idempotent confluent-kafka producer (acks=all) writes 100,000 records
round-robin, each value its sequence number.

Proves:
- every record is acknowledged and none fails while the link is lossy;
- once the link is healed, every node's Metadata has all three nodes back in every ISR;
- a consumer reads, per partition, exactly the records produced to it, each once, in
  the order produced.
"""

from __future__ import annotations

import time

import pytest

from tests.netns.harness import NetnsCluster, until
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    RoundRobinWriter,
    assert_round_robin_once_in_order,
    consume_values,
    replicated_topic,
    topic_state,
)

RECORDS = 100_000
PARTITIONS = 3
TOPIC = "lossy"
LOSS_PERCENT = 30

pytestmark = [pytest.mark.timeout(200), pytest.mark.netns_overrides(*FAST_FAILOVER)]


def test_acks_all_rides_a_lossy_link_and_the_isr_heals(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    replicated_topic(cluster, TOPIC, PARTITIONS)
    cluster.lossy(1, 2, LOSS_PERCENT)

    writer = RoundRobinWriter(cluster.bootstrap_servers, TOPIC, PARTITIONS, RECORDS)
    started = time.monotonic()
    writer.produce(0, RECORDS)
    remaining = writer.producer.flush(150)
    isrs = {p: isr for p, (_l, _e, isr) in topic_state(cluster, 3, TOPIC).items()}
    print(
        f"{RECORDS - remaining} records acknowledged in {time.monotonic() - started:.1f} s "
        f"with {LOSS_PERCENT}% loss between nodes 1 and 2; ISRs then {isrs}"
    )
    assert remaining == 0, f"{remaining} records never delivered"
    assert writer.errors == [], writer.errors[:5]

    cluster.heal()
    healed = time.monotonic()

    def in_sync() -> bool:
        return all(
            isr == (1, 2, 3)
            for n in cluster.nodes
            for _l, _e, isr in topic_state(cluster, n, TOPIC).values()
        )

    until(in_sync, 30.0, "every ISR full on every node")
    print(f"every ISR full {time.monotonic() - healed:.1f} s after healing")

    read = consume_values(cluster.bootstrap_servers, TOPIC, PARTITIONS, RECORDS)
    assert_round_robin_once_in_order(writer.acked, read, RECORDS)
