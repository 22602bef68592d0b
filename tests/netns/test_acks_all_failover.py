"""An idempotent acks=all producer loses nothing when the leader is SIGKILLed (issue 7).

Three voters in network namespaces (tests/netns/harness.py), broker.session.timeout.ms
3000 (heartbeat 500 ms), replica.lag.time.max.ms 3000, fast quorum timeouts. A topic
with 3 partitions, replication factor 3 and min.insync.replicas=2. A confluent-kafka
producer (acks=all, enable.idempotence) writes 200,000 records, round-robin over the
partitions, each value its sequence number. Once a third is produced, the node leading
the most partitions is killed with SIGKILL (with records still unacknowledged) and the
producer keeps going.

Proves:
- the producer gets no delivery error at all: every one of the 200,000 records is
  acknowledged (the writes in flight at the kill are retried against the new leaders);
- records produced to the victim's partitions after the kill are acknowledged (by the
  new leaders; the time from the kill to the first such ack is printed);
- the partitions the victim led moved to another replica (higher leader epoch);
- a consumer bootstrapped from the survivors reads, per partition, exactly the records
  produced to it, each once, in the order they were produced (no loss, no duplicate
  from the idempotent retries, no reordering).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.netns.harness import NetnsCluster
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    assert_round_robin_once_in_order,
    consume_values,
    replicated_topic,
    topic_state,
)

RECORDS = 200_000
PARTITIONS = 3
TOPIC = "failover"

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.netns_overrides(*FAST_FAILOVER),
]


def test_acks_all_idempotent_producer_loses_nothing_when_the_leader_is_killed(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    before = replicated_topic(cluster, TOPIC, PARTITIONS)
    leaders = [lead for lead, _e, _i in before.values()]
    victim = max(set(leaders), key=leaders.count)
    led = sorted(p for p, (lead, _e, _i) in before.items() if lead == victim)
    survivors = [n for n in cluster.nodes if n != victim]

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 500,
            "queue.buffering.max.messages": 50_000,
        }
    )
    acked: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    errors: list[str] = []

    # When each ack came of a record produced to a victim-led partition after the kill.
    acked_after_kill: list[float] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))
            return
        acked[message.partition()].append(int(message.value()))
        if killed_at and message.partition() in led and int(message.value()) > killed_index:
            acked_after_kill.append(time.monotonic())

    started = time.monotonic()
    killed_at = 0.0
    killed_index = RECORDS
    in_flight = 0
    for i in range(RECORDS):
        while True:
            try:
                producer.produce(
                    TOPIC, value=str(i).encode(), partition=i % PARTITIONS, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: serve delivery reports
        producer.poll(0)
        if i == RECORDS // 3:
            in_flight = i + 1 - sum(len(v) for v in acked.values())
            cluster.kill(victim)  # SIGKILL, with writes in flight
            killed_at, killed_index = time.monotonic(), i
    remaining = producer.flush(90)
    produced_s = time.monotonic() - started
    assert killed_at, "the victim was never killed"
    assert remaining == 0, f"{remaining} records never delivered"
    assert errors == [], errors[:5]
    total = sum(len(v) for v in acked.values())
    print(f"{total} records acknowledged in {produced_s:.1f} s; node {victim} killed")
    assert total == RECORDS
    # Records produced to the victim's partitions after the kill were acknowledged (by
    # the new leaders: the victim was dead by then).
    assert acked_after_kill, "no write to the victim's partitions acknowledged after the kill"
    assert in_flight > 0, "nothing was waiting for an acknowledgement at the kill"
    print(
        f"{in_flight} records unacknowledged at the SIGKILL; first ack of a victim-led "
        f"partition {acked_after_kill[0] - killed_at:.2f} s after it"
    )

    after = topic_state(cluster, survivors[0], TOPIC)
    for p in led:
        lead, epoch, _isr = after[p]
        assert lead in survivors, (p, after[p])
        assert epoch > before[p][1], (p, before[p], after[p])

    bootstrap = ",".join(cluster.nodes[n].bootstrap for n in survivors)
    read = consume_values(bootstrap, TOPIC, PARTITIONS, RECORDS)
    assert_round_robin_once_in_order(acked, read, RECORDS)
