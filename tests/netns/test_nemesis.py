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
`NEMESIS_S` and `NEMESIS_SEED` (default 7) in the environment run it longer or
differently. When records stay unacknowledged, it prints what librdkafka and each node
believe (`_stuck`) before failing.

What it found so far (each fixed, with a test of its own that fails without the fix):
- a node restarted while the quorum's new leader had not yet committed in its epoch
  counted itself caught up with an empty metadata image, set its partitions' data
  aside as strays and was then elected leader, empty, of partitions whose ISR it alone
  made (1bf0916; seed 4 with NEMESIS_S=60);
- a follower holding records of an epoch older than the new leader's first never
  truncated them and never rejoined the ISR: an ISR of one, every acks=all write
  refused (3c52cf9; seeds 11 and 12);
- FindCoordinator failed with a traceback when the offsets topic's creation met a
  quorum leader change (a544505; seed 10).

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

import json
import os
import random
import threading
import time
from typing import Any

import pytest

from tests.netns.harness import NetnsCluster
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    RoundRobinWriter,
    consume_records,
    log_end_offset,
    producer_epoch_at,
    replicated_topic,
    segment_batches,
    topic_state,
)

TOPIC = "nemesis"
PARTITIONS = 3
NEMESIS_S = float(os.environ.get("NEMESIS_S", "45"))
NEMESIS_SEED = int(os.environ.get("NEMESIS_SEED", "7"))
FAULTS = ("kill", "pause", "isolate", "partition", "lossy", "none")

pytestmark = [
    pytest.mark.timeout(NEMESIS_S + 300),
    pytest.mark.netns_overrides(*FAST_FAILOVER),
]


class _Writer(threading.Thread):
    """Produces round-robin until stopped, then flushes (`out`: what was acknowledged)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.out = RoundRobinWriter(
            bootstrap,
            TOPIC,
            PARTITIONS,
            100_000,
            {
                "message.timeout.ms": 300_000,
                # For the diagnosis when records stay unacknowledged (see _stuck).
                "statistics.interval.ms": 1000,
                "stats_cb": self._stats,
                "debug": "eos",
            },
        )
        self.stats: dict[str, Any] = {}
        self.stopping = threading.Event()
        self.sent = 0
        self.left = -1

    def _stats(self, text: str) -> None:
        self.stats = json.loads(text)

    def run(self) -> None:
        producer = self.out.producer
        while not self.stopping.is_set():
            try:
                self.out.write(str(self.sent).encode(), self.sent % PARTITIONS, poll=False)
            except BufferError:
                producer.poll(0.05)  # the local queue is full: serve delivery reports
                continue
            self.sent += 1
            if self.sent % 100 == 0:
                producer.poll(0)
        self.left = producer.flush(240)


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
    total = writer.out.acknowledged
    print(f"{writer.sent} records sent, {total} acknowledged, {len(writer.out.errors)} failed")
    if writer.is_alive() or writer.left != 0:
        _stuck(cluster, writer)
    assert not writer.is_alive() and writer.left == 0, "the producer did not flush"
    assert writer.out.errors == [], writer.out.errors[:5]
    assert total == writer.sent

    read = consume_records(cluster.bootstrap_servers, TOPIC, PARTITIONS, total, timeout_s=240)
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
        assert sorted(writer.out.acked[partition]) == expected, f"partition {partition}: acks"
        assert list(first_at) == expected, f"partition {partition}: lost or reordered"
        print(f"partition {partition}: {len(expected)} records, {len(read[partition])} stored")
    for node_id, node in cluster.nodes.items():
        text = node.log_path.read_text(errors="replace")
        for marker in ("Traceback", "AssertionError", '"level": "critical"'):
            assert marker not in text, f"node {node_id} logged {marker}"


def _stuck(cluster: NetnsCluster, writer: _Writer) -> None:
    """Print what each side believes when records stay unacknowledged: librdkafka's
    last statistics (per partition: its leader, queued and in-flight messages; per
    broker: connection state and requests waiting; the idempotence state), and per
    node the partitions' leader, epoch and ISR in its metadata and its log end offsets
    read from its segment files."""
    stats = writer.stats
    print("librdkafka eos:", json.dumps(stats.get("eos")))
    for name, broker in stats.get("brokers", {}).items():
        keys = ("state", "stateage", "outbuf_cnt", "waitresp_cnt", "tx", "txerrs", "rx")
        print("librdkafka broker", name, {k: broker.get(k) for k in keys})
    partitions = stats.get("topics", {}).get(TOPIC, {}).get("partitions", {})
    for index, toppar in sorted(partitions.items()):
        fields = ("leader", "msgq_cnt", "xmit_msgq_cnt", "msgs_inflight", "next_ack_seq")
        print("librdkafka partition", index, {f: toppar.get(f) for f in fields})
    for node_id, node in sorted(cluster.nodes.items()):
        state: object
        try:
            state = topic_state(cluster, node_id, TOPIC)
        except Exception as error:  # a diagnosis: printed as it comes
            state = repr(error)
        ends = {
            p: log_end_offset(segment_batches(node.data_dir / f"{TOPIC}-{p}"))
            for p in range(PARTITIONS)
        }
        print(f"node {node_id}: running {node.running}, metadata {state}, log ends {ends}")
