"""Two of three nodes SIGKILLed under acks=all load, the quorum leader among them, then
restarted: nothing is acknowledged while a majority is gone, nothing acknowledged is
lost (issue 7).

With one node of three left there is neither a controller (the Raft quorum needs two
voters) nor a second in-sync replica: an acks=all write can only wait. Kafka holds such
writes and completes them once the replicas are back; so must ottla, and the survivor
must not acknowledge anything on its own in between.

Three voters in network namespaces (tests/netns/harness.py), fast failure detection
(leader_faults.FAST_FAILOVER). A topic with 3 partitions, replication factor 3 and
min.insync.replicas=2. An idempotent confluent-kafka producer (acks=all) writes 60,000
records round-robin, each value its sequence number; after the first third is
acknowledged, the quorum leader and one other node are killed with SIGKILL, the rest is
produced, and for `OUTAGE_S` nothing is acknowledged; then both restart.

Proves:
- during the outage the producer gets no acknowledgement at all;
- after the restart every record is acknowledged and none fails (the producer's
  retries, not the application, carry the writes across the outage);
- a consumer reads, per partition, exactly the records produced to it, each once, in
  the order produced.
"""

from __future__ import annotations

import time

import pytest

from tests.netns.harness import NetnsCluster
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    RoundRobinWriter,
    assert_round_robin_once_in_order,
    consume_values,
    replicated_topic,
)

RECORDS = 60_000
PARTITIONS = 3
TOPIC = "majority"
OUTAGE_S = 5.0

pytestmark = [pytest.mark.timeout(200), pytest.mark.netns_overrides(*FAST_FAILOVER)]


def test_acks_all_waits_out_the_loss_of_a_majority_and_loses_nothing(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    quorum_leader = cluster.leader()
    replicated_topic(cluster, TOPIC, PARTITIONS)
    victims = [quorum_leader, min(n for n in cluster.nodes if n != quorum_leader)]

    writer = RoundRobinWriter(cluster.bootstrap_servers, TOPIC, PARTITIONS, RECORDS)
    writer.produce(0, RECORDS // 3)
    assert writer.producer.flush(30) == 0
    before = writer.acknowledged
    assert before == RECORDS // 3

    for victim in victims:
        cluster.kill(victim)
    writer.produce(RECORDS // 3, RECORDS)
    outage_ends = time.monotonic() + OUTAGE_S
    while time.monotonic() < outage_ends:
        writer.producer.poll(0.1)  # serves delivery reports: none may be an acknowledgement
    during = writer.acknowledged - before
    print(f"nodes {victims} killed; {during} acknowledgements in {OUTAGE_S:.0f} s without them")
    assert during == 0

    restarted_at = time.monotonic()
    for victim in victims:
        cluster.start(victim)
    remaining = writer.producer.flush(120)
    print(f"every record acknowledged {time.monotonic() - restarted_at:.1f} s after the restart")
    assert remaining == 0, f"{remaining} records never delivered"
    assert writer.errors == [], writer.errors[:5]

    read = consume_values(cluster.bootstrap_servers, TOPIC, PARTITIONS, RECORDS)
    assert_round_robin_once_in_order(writer.acked, read, RECORDS)
