"""One fault after another, at random, under acks=all load: nothing acknowledged is lost
(issue 7).

The other netns tests each inject one fault; real outages come in runs. Here a seeded
nemesis picks, every 0.5-3 s for `NEMESIS_S` seconds (default 45), one of: SIGKILL a
node, freeze one (SIGSTOP), cut one off from the other two, cut the link between two,
drop 30% of a link's packets, or nothing; before each pick it undoes the last one
(restart, thaw, heal), so two nodes of three can always form a majority. Three voters
in network namespaces (tests/netns/harness.py), fast failure detection
(leader_faults.FAST_FAILOVER), a topic with 3 partitions, replication factor 3 and
min.insync.replicas=2. An idempotent confluent-kafka producer (acks=all) writes
records round-robin as fast as it can the whole time, each value its sequence number.
It runs only with NEMESIS=1 for now (see pytestmark); `NEMESIS_S` and `NEMESIS_SEED`
(default 7) in the environment run it longer or differently.

Proves, after everything is healed and the producer flushed:
- every record sent was acknowledged and none failed;
- a consumer reads every acknowledged record, in each partition in the order sent;
- a record is stored twice only as librdkafka's epoch-bump re-send (a second copy
  under a higher producer epoch: confluentinc/librdkafka#4953, Apache Kafka stores
  those twice too); a second copy under the same epoch would be a failed
  deduplication;
- no node logged a traceback, an assertion or a critical line.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.netns.harness import NetnsCluster
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    consume_records,
    producer_epoch_at,
    replicated_topic,
)

TOPIC = "nemesis"
PARTITIONS = 3
NEMESIS_S = float(os.environ.get("NEMESIS_S", "45"))
NEMESIS_SEED = int(os.environ.get("NEMESIS_SEED", "7"))
FAULTS = ("kill", "pause", "isolate", "partition", "lossy", "none")

pytestmark = [
    pytest.mark.timeout(NEMESIS_S + 300),
    pytest.mark.netns_overrides(*FAST_FAILOVER),
    # Opt-in (NEMESIS=1) until an open finding is diagnosed: in one CI run of six,
    # after 45 s of faults one partition's 100,000 records stayed unacknowledged for
    # the 240 s of the final flush (no broker logged an error; librdkafka logged an
    # "Invalid response size" of 0x48545450 while reconnecting). Issue 7's note.
    pytest.mark.skipif(
        os.environ.get("NEMESIS") != "1", reason="opt-in: NEMESIS=1 (an open finding)"
    ),
]


class _Writer(threading.Thread):
    """Produces round-robin until stopped, then flushes; keeps what was acknowledged."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 300_000,
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        self.stopping = threading.Event()
        self.sent = 0
        self.left = -1
        self.acked: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.errors: list[str] = []

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(str(error))
        else:
            self.acked[message.partition()].append(int(message.value()))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.producer.produce(
                    TOPIC,
                    value=str(self.sent).encode(),
                    partition=self.sent % PARTITIONS,
                    on_delivery=self._delivered,
                )
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: serve delivery reports
                continue
            self.sent += 1
            if self.sent % 100 == 0:
                self.producer.poll(0)
        self.left = self.producer.flush(240)


def test_acks_all_loses_nothing_through_random_faults(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    replicated_topic(cluster, TOPIC, PARTITIONS)
    rng = random.Random(NEMESIS_SEED)
    writer = _Writer(cluster.bootstrap_servers)
    writer.start()
    paused: set[int] = set()
    killed: set[int] = set()

    def undo() -> None:
        cluster.heal()
        for node_id in sorted(paused):
            cluster.resume(node_id)
        for node_id in sorted(killed):
            cluster.start(node_id)
        paused.clear()
        killed.clear()

    started = time.monotonic()
    while time.monotonic() - started < NEMESIS_S:
        undo()
        fault = rng.choice(FAULTS)
        a, b = rng.sample(sorted(cluster.nodes), 2)
        if fault == "kill":
            cluster.kill(a)
            killed.add(a)
        elif fault == "pause":
            cluster.pause(a)
            paused.add(a)
        elif fault == "isolate":
            cluster.isolate(a)
        elif fault == "partition":
            cluster.partition(a, b)
        elif fault == "lossy":
            cluster.lossy(a, b, 30)
        print(f"{time.monotonic() - started:5.1f} s: {fault} {a} {b}", flush=True)
        time.sleep(rng.uniform(0.5, 3.0))  # the fault's duration
    undo()
    writer.stopping.set()
    writer.join(300)
    total = sum(len(values) for values in writer.acked.values())
    print(f"{writer.sent} records sent, {total} acknowledged, {len(writer.errors)} failed")
    assert not writer.is_alive() and writer.left == 0, "the producer did not flush"
    assert writer.errors == [], writer.errors[:5]
    assert total == writer.sent

    read = consume_records(cluster.bootstrap_servers, TOPIC, PARTITIONS, total, timeout_s=120)
    for partition in range(PARTITIONS):
        first_at: dict[int, int] = {}
        for offset, value in read[partition]:
            first = first_at.setdefault(value, offset)
            if first != offset:  # only as librdkafka's epoch-bump re-send
                epochs = [producer_epoch_at(cluster, TOPIC, partition, o) for o in (first, offset)]
                assert epochs[1] > epochs[0], (
                    f"value {value} stored twice under producer epoch {epochs[0]}: "
                    f"offsets {first} and {offset} of partition {partition}"
                )
        expected = list(range(partition, writer.sent, PARTITIONS))
        assert sorted(writer.acked[partition]) == expected, f"partition {partition}: acks"
        assert list(first_at) == expected, f"partition {partition}: lost or reordered"
        print(f"partition {partition}: {len(expected)} records, {len(read[partition])} stored")
    for node_id, node in cluster.nodes.items():
        text = node.log_path.read_text(errors="replace")
        for marker in ("Traceback", "AssertionError", '"level": "critical"'):
            assert marker not in text, f"node {node_id} logged {marker}"
