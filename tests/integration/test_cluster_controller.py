"""Three `ottla serve` processes: one cluster with an active controller (issue 6).

Proves: (1) a 6-partition topic created through a node that is not the controller has
leaders on all three nodes, and every node's Metadata agrees (leaders and epochs);
(2) confluent-kafka, aiokafka and kafka-python each produce to it and read every record
back, following the leaders across nodes; (3) a non-controller node stopped with SIGSTOP
(a stand-in for packet loss) is fenced within broker.session.timeout.ms + a margin: the
others' Metadata drop it and show its partitions with leader -1 / LEADER_NOT_AVAILABLE
(replication factor 1: they go offline); (4) after SIGCONT it heartbeats, is unfenced,
leads its partitions again (higher leader epoch) and the records written before are
readable; (5) `ottla cluster status --json` shows the quorum (leader, epoch, three
voters) and the three brokers, none fenced.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _create_topic, _leader, _until
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(240)

CLUSTER_ID = "c0ntr0llerTestCluster1"
SESSION_MS = 3000
TOPIC = "spread"
PER_CLIENT = 40


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(
        tmp_path,
        CLUSTER_ID,
        [
            f"broker.session.timeout.ms={SESSION_MS}",
            "broker.heartbeat.interval.ms=500",
            *FAST,
        ],
    )
    yield nodes
    for node in nodes.values():
        if node.process is not None:
            node.process.send_signal(signal.SIGCONT)
        node.stop(signal.SIGKILL)


def _partitions(bootstrap: str) -> tuple[list[int], dict[int, tuple[int, int, int]]]:
    """(live broker ids, {partition: (leader, leader epoch, error code)}) of TOPIC."""
    with Wire(bootstrap) as wire:
        response = metadata(wire, [TOPIC], allow_auto=False)
    brokers = sorted(int(b.node_id) for b in response.brokers)
    topic = response.topics[0]
    return brokers, {
        int(p.partition_index): (int(p.leader_id), int(p.leader_epoch), int(p.error_code))
        for p in topic.partitions
    }


def _produce_consume_confluent(bootstrap: str) -> set[str]:
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(PER_CLIENT):
        producer.produce(
            TOPIC, key=f"c{i}".encode(), value=f"confluent-{i}".encode(), partition=i % 6
        )
    assert producer.flush(30) == 0
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "cc", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, p, 0) for p in range(6)])
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and len([s for s in seen if s.startswith("confluent")]) < PER_CLIENT
    ):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.add((message.value() or b"").decode())
    consumer.close()
    return seen


def _produce_consume_kafka_python(bootstrap: str, produce: bool = True) -> set[str]:
    import kafka  # noqa: PLC0415

    if produce:
        producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(PER_CLIENT):
            producer.send(TOPIC, value=f"kafka-python-{i}".encode(), partition=i % 6)
        producer.flush(30)
        producer.close()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    consumer.assign([kafka.TopicPartition(TOPIC, p) for p in range(6)])
    consumer.seek_to_beginning()
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.update(r.value.decode() for r in records)
        if len(seen) >= 3 * PER_CLIENT or (not produce and len(seen) >= 3 * PER_CLIENT):
            break
    consumer.close()
    return seen


def _produce_consume_aiokafka(bootstrap: str) -> set[str]:
    import aiokafka  # noqa: PLC0415

    async def run() -> set[str]:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for i in range(PER_CLIENT):
                await producer.send_and_wait(TOPIC, f"aiokafka-{i}".encode(), partition=i % 6)
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        seen: set[str] = set()
        try:
            consumer.assign([aiokafka.TopicPartition(TOPIC, p) for p in range(6)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and len([s for s in seen if s.startswith("aiokafka")]) < PER_CLIENT
            ):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    seen.update(r.value.decode() for r in records if r.value is not None)
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(run())


def _cluster_status(bootstrap: str) -> Any:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ottla",
            "cluster",
            "status",
            "--json",
            "--bootstrap-server",
            bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def test_controller_spreads_routes_fences_and_unfences(
    cluster: dict[int, BrokerProcess],
) -> None:
    nodes = cluster
    controller = _leader(nodes)

    def registered() -> bool:
        try:
            with Wire(nodes[1].bootstrap) as wire:
                return sorted(int(b.node_id) for b in metadata(wire, []).brokers) == [1, 2, 3]
        except OSError:
            return False

    _until(registered, 20)

    # (1) Created through a non-controller node; leaders on all three; all agree.
    follower = next(n for n in nodes if n != controller)
    assert _create_topic(nodes[follower].bootstrap, TOPIC, 6) == 0
    views: dict[int, Any] = {}

    def agreed() -> bool:
        for n, node in nodes.items():
            views[n] = _partitions(node.bootstrap)
        first = views[1]
        return len(first[1]) == 6 and all(v == first for v in views.values())

    _until(agreed, 15)
    brokers, partitions = views[1]
    assert brokers == [1, 2, 3]
    assert {leader for leader, _, _ in partitions.values()} == {1, 2, 3}

    # (2) Three clients produce and read back, each bootstrapped at a different node.
    bootstraps = [nodes[n].bootstrap for n in (1, 2, 3)]
    seen = _produce_consume_confluent(bootstraps[0])
    assert {f"confluent-{i}" for i in range(PER_CLIENT)} <= seen
    seen = _produce_consume_aiokafka(bootstraps[1])
    assert {f"aiokafka-{i}" for i in range(PER_CLIENT)} <= seen
    everything = _produce_consume_kafka_python(bootstraps[2])
    expected = {
        f"{name}-{i}"
        for name in ("confluent", "aiokafka", "kafka-python")
        for i in range(PER_CLIENT)
    }
    assert everything == expected

    # (5) cluster status.
    status = _cluster_status(bootstraps[0])
    assert status["quorum"]["leader_id"] == controller
    assert [v["node_id"] for v in status["quorum"]["voters"]] == [1, 2, 3]
    assert [(b["node_id"], b["fenced"]) for b in status["brokers"]] == [
        (1, False),
        (2, False),
        (3, False),
    ]

    # (3) SIGSTOP a non-controller node: fenced, its partitions offline elsewhere.
    victim = follower
    led = {p for p, (leader, _, _) in partitions.items() if leader == victim}
    assert led
    others = [n for n in nodes if n != victim]
    victim_process = nodes[victim].process
    assert victim_process is not None
    victim_process.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()

    def fenced() -> bool:
        for n in others:
            live, state = _partitions(nodes[n].bootstrap)
            if victim in live or any(state[p][0] != -1 or state[p][2] != 5 for p in led):
                return False
        return True

    _until(fenced, SESSION_MS / 1000 + 10)
    fence_s = time.monotonic() - stopped_at
    print(f"fenced after {fence_s:.2f} s (session {SESSION_MS} ms)")
    assert fence_s < SESSION_MS / 1000 + 5
    status = _cluster_status(nodes[others[0]].bootstrap)
    assert {b["node_id"]: b["fenced"] for b in status["brokers"]}[victim] is True
    # Metadata lists the fenced node as an offline replica of its partitions.
    with Wire(nodes[others[0]].bootstrap) as wire:
        response = metadata(wire, [TOPIC], allow_auto=False)
    offline = {
        int(p.partition_index): list(p.offline_replicas) for p in response.topics[0].partitions
    }
    assert offline == {p: [victim] if p in led else [] for p in offline}

    # (4) SIGCONT: unfenced, leads again with a higher epoch, data readable.
    victim_process.send_signal(signal.SIGCONT)
    resumed_at = time.monotonic()

    def back() -> bool:
        for n in nodes:
            live, state = _partitions(nodes[n].bootstrap)
            if victim not in live or any(state[p][0] != victim for p in led):
                return False
        return True

    _until(back, 15)
    print(f"unfenced and leading again after {time.monotonic() - resumed_at:.2f} s")
    _, state = _partitions(nodes[others[0]].bootstrap)
    assert all(state[p][1] > partitions[p][1] for p in led)
    assert _produce_consume_kafka_python(bootstraps[0], produce=False) == expected
