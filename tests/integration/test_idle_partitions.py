"""Idle partitions stay in sync while followers' fetches leave them out (issue 7).

A follower's fetch session sets aside the partitions it holds whole and that have
nothing new (broker/fetch_sessions.py): the leader neither reads them nor hears of
them until they change, and counts each of that session's fetches as a fetch of them.
Proves, on three real `ottla serve` processes with `replica.lag.time.max.ms=1000`:
after a record to each of 12 partitions (replication factor 3), three lag allowances
of acks=all traffic to another topic leave every idle partition's ISR whole (were the
session's fetches not counted, each would shrink to its leader within a second), and
an acks=all write with min.insync.replicas=3 to each idle partition then succeeds, and
a consumer reads both records of each.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _until
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(180)

CLUSTER_ID = "idlePartitionsCluster"
LAG_MS = 1000
IDLE, BUSY = "idle", "busy"
PARTITIONS = 12


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(
        tmp_path,
        CLUSTER_ID,
        [
            f"replica.lag.time.max.ms={LAG_MS}",
            *FAST,
        ],
    )
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def _isrs(bootstrap: str, topic: str) -> list[list[int]]:
    with Wire(bootstrap.split(",", maxsplit=1)[0]) as wire:
        response = metadata(wire, [topic], allow_auto=False)
    partitions = sorted(response.topics[0].partitions, key=lambda p: int(p.partition_index))
    return [sorted(int(n) for n in p.isr_nodes) for p in partitions]


def _produce(bootstrap: str, topic: str, keys: list[int | None], for_s: float = 0) -> list[str]:
    """Writes one record per entry (to that partition, or round-robin for None), acks=all,
    spread over `for_s` seconds; the delivery outcomes."""
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0}
    )
    outcomes: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        outcomes.append("OK" if error is None else error.name())

    started = time.monotonic()
    for sent, partition in enumerate(keys):
        while for_s and time.monotonic() - started < for_s * sent / len(keys):
            producer.poll(0.005)  # pacing the traffic, not waiting for a condition
        if partition is None:
            producer.produce(topic, b"x", on_delivery=delivered)
        else:
            producer.produce(topic, b"x", partition=partition, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return outcomes


def test_idle_partitions_keep_their_isr(cluster: dict[int, BrokerProcess]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    bootstrap = ",".join(n.bootstrap for n in cluster.values())
    _until(lambda: len(metadata(Wire(cluster[1].bootstrap), [], allow_auto=False).brokers) == 3, 30)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(IDLE, PARTITIONS, 3, config={"min.insync.replicas": "3"}),
            NewTopic(BUSY, 1, 3, config={"min.insync.replicas": "2"}),
        ]
    )
    for future in futures.values():
        future.result(30)
    whole = [[1, 2, 3]] * PARTITIONS
    _until(lambda: _isrs(bootstrap, IDLE) == whole, 30)
    assert _produce(bootstrap, IDLE, list(range(PARTITIONS))) == ["OK"] * PARTITIONS

    started = time.monotonic()
    busy = _produce(bootstrap, BUSY, [None] * 300, for_s=3.5 * LAG_MS / 1000)
    assert time.monotonic() - started > 3 * LAG_MS / 1000
    assert busy == ["OK"] * 300
    assert _isrs(bootstrap, IDLE) == whole
    assert _produce(bootstrap, IDLE, list(range(PARTITIONS))) == ["OK"] * PARTITIONS

    import confluent_kafka  # noqa: PLC0415

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "idle-check", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(IDLE, p, 0) for p in range(PARTITIONS)])
    counts = [0] * PARTITIONS
    deadline = time.monotonic() + 30
    while sum(counts) < 2 * PARTITIONS and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            counts[int(message.partition() or 0)] += 1
    consumer.close()
    assert counts == [2] * PARTITIONS
