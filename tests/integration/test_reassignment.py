"""Partition reassignment (KIP-455) with three `ottla serve` processes (issue 7).

Proves, with kafka-python's KafkaAdminClient (confluent-kafka's AdminClient has no
reassignment API) and confluent-kafka producer/consumer on loopback: an RF=1 topic on
node 1, reassigned to [2, 3] (AlterPartitionReassignments), is listed in progress
(ListPartitionReassignments: replicas [2, 3, 1], adding [2, 3], removing [1]) until
the added replicas have caught up; then Metadata shows replicas [2, 3] with ISR [2, 3]
and a leader among them, node 1's partition directory is deleted, and every record
produced before is read back, in order, from the new leader. Cancelling with no
reassignment in progress answers NO_REASSIGNMENT_IN_PROGRESS, duplicate replicas
INVALID_REPLICA_ASSIGNMENT, an unknown partition UNKNOWN_TOPIC_OR_PARTITION.
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
from tests.integration.test_replication import _bootstrap, _brokers
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(300)

CLUSTER_ID = "r3assignmentTestClust1"
TOPIC = "moved"
RECORDS = 4000
VALUE_PAD = b"x" * 1000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(
        tmp_path,
        CLUSTER_ID,
        [
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            "replica.lag.time.max.ms=3000",
            "replica.fetch.backoff.ms=100",
            # Small replica fetches: catching up takes many rounds, so the
            # reassignment is observably in progress for a while.
            "replica.fetch.max.bytes=32768",
            *FAST,
        ],
    )
    _until(lambda: _brokers(nodes[1].bootstrap) == 3, 30)
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def _partition(bootstrap: str) -> Any:
    with Wire(bootstrap) as wire:
        return metadata(wire, [TOPIC], allow_auto=False).topics[0].partitions[0]


def _produce(bootstrap: str) -> None:
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    )
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    for i in range(RECORDS):
        producer.produce(TOPIC, value=b"%d:" % i + VALUE_PAD, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]


def _consume_all(bootstrap: str) -> list[int]:
    import confluent_kafka  # noqa: PLC0415

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verify",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    values: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(values) < RECORDS:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(int((message.value() or b"-1:").split(b":")[0]))
    consumer.close()
    return values


def test_reassign_rf1_partition_to_two_other_nodes(cluster: dict[int, BrokerProcess]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415
    from kafka import TopicPartition  # noqa: PLC0415
    from kafka.admin import KafkaAdminClient  # noqa: PLC0415

    nodes = cluster
    bootstrap = _bootstrap(nodes)
    creator = AdminClient({"bootstrap.servers": bootstrap})
    creator.create_topics([NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1]])])[
        TOPIC
    ].result(30)
    _until(lambda: int(_partition(nodes[1].bootstrap).leader_id) == 1, 30)
    assert (nodes[1].data_dir / f"{TOPIC}-0").is_dir()
    _produce(bootstrap)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        tp = TopicPartition(TOPIC, 0)
        assert admin.alter_partition_reassignments({tp: [2, 3]}) == {tp: None}
        seen: list[dict[str, list[int]]] = []
        deadline = time.monotonic() + 60
        while True:
            ongoing = admin.list_partition_reassignments()
            if not ongoing:
                break
            seen.append({k: sorted(v) for k, v in ongoing[tp].items()})
            assert time.monotonic() < deadline, "reassignment did not complete"
            time.sleep(0.02)
        print(f"\nreassignment listed in progress {len(seen)} time(s)")
        assert seen, "the reassignment was never listed in progress"
        assert all(
            s == {"replicas": [1, 2, 3], "adding_replicas": [2, 3], "removing_replicas": [1]}
            for s in seen
        ), seen
        # Done: Metadata (from every node) shows the target replicas.
        for node in nodes.values():
            _until(lambda n=node: [int(r) for r in _partition(n.bootstrap).replica_nodes] == [2, 3])
        partition = _partition(nodes[2].bootstrap)
        assert sorted(int(r) for r in partition.isr_nodes) == [2, 3]
        assert int(partition.leader_id) in (2, 3)
        _until(lambda: not (nodes[1].data_dir / f"{TOPIC}-0").exists())
        assert (nodes[2].data_dir / f"{TOPIC}-0").is_dir()
        assert (nodes[3].data_dir / f"{TOPIC}-0").is_dir()
        assert _consume_all(bootstrap) == list(range(RECORDS))

        # Errors, as Kafka answers them.
        from kafka.errors import (  # noqa: PLC0415
            InvalidReplicationAssignmentError,
            NoReassignmentInProgressError,
            UnknownTopicOrPartitionError,
        )

        assert admin.alter_partition_reassignments({tp: None}) == {
            tp: NoReassignmentInProgressError
        }
        assert admin.alter_partition_reassignments({tp: [2, 2]}) == {
            tp: InvalidReplicationAssignmentError
        }
        unknown = TopicPartition(TOPIC, 5)
        assert admin.alter_partition_reassignments({unknown: [2]}) == {
            unknown: UnknownTopicOrPartitionError
        }
    finally:
        admin.close()
