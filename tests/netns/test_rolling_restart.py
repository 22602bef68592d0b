"""A rolling restart of three `ottla serve` processes, each in its own network namespace
(tests/netns/harness.py), under a steady producer and a consumer group (issue 7), with
confluent-kafka clients connecting to every node's own address.

A topic with replication factor 3 and min.insync.replicas=2, and `__consumer_offsets`
with replication factor 3; an idempotent acks=all producer and a consumer group with
manual synchronous commits run while each node in turn is stopped with SIGTERM and
restarted on its data dir. Before each stop the producer and the group must have made
progress (records acknowledged, commits acknowledged); a stopped node is restarted once
it leads no partition of either topic any more; the next node is stopped only once the
restarted one is back in every ISR. Proves:

(1) every record the producer had acknowledged was consumed, and every record is stored
    once (the idempotent producer's state moved with partition leadership: its retries
    to a new leader were deduplicated), except a second copy under a bumped producer
    epoch, which librdkafka itself causes (see `_assert_epoch_bump_copy`);
(2) the group coordinator moved with the leadership of the group's `__consumer_offsets`
    partition (its leader was stopped at least once) and the group's committed offsets
    survived every move: `committed()` from a new consumer equals the last offsets whose
    commit was acknowledged, and a new member of the group resumes from them (it reads
    exactly the records produced afterwards, nothing before);
(3) nothing committed was processed twice: a record is re-delivered only at or after
    the last acknowledged commit of its partition (the at-least-once window between
    commits), and the re-deliveries are printed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker.groups.coordinator import java_string_hashcode
from tests.integration.wire import Wire, metadata
from tests.netns.harness import NetnsCluster, until
from tests.netns.leader_faults import producer_epoch_at

TOPIC = "rolling"
PARTITIONS = 3
GROUP = "rolling-group"
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 6
COMMIT_EVERY_S = 0.3
PRODUCE_EVERY_S = 0.004
STEADY_ACKS = 300  # records acknowledged between two stops (steady traffic)
STEADY_COMMITS = 2  # commits acknowledged between two stops

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.netns_overrides(
        "broker.session.timeout.ms=3000",
        "broker.heartbeat.interval.ms=500",
        "replica.lag.time.max.ms=3000",
        "replica.fetch.backoff.ms=100",
        "offsets.topic.replication.factor=3",
        f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=1000",
        "controller.quorum.election.timeout.ms=500",
        "controller.quorum.fetch.timeout.ms=1000",
        "controller.quorum.request.timeout.ms=1000",
    ),
]


def _partitions(cluster: NetnsCluster, topic: str) -> dict[int, tuple[int, list[int]]]:
    """{partition: (leader, isr)} of `topic`, asked of a live node ({} if none answers)."""
    for node in cluster.nodes.values():
        if not node.running:
            continue
        try:
            with Wire(node.bootstrap) as wire:
                response = metadata(wire, [topic], allow_auto=False)
        except OSError:
            continue
        if not response.topics or not response.topics[0].partitions:
            continue  # a restarted node still catching up with the metadata log
        return {
            int(p.partition_index): (int(p.leader_id), sorted(int(n) for n in p.isr_nodes))
            for p in response.topics[0].partitions
        }
    return {}


def _producer_epoch_at(cluster: NetnsCluster, partition: int, offset: int) -> int:
    """The producer epoch of the batch holding `offset` of TOPIC's `partition`."""
    return producer_epoch_at(cluster, TOPIC, partition, offset)


def _assert_epoch_bump_copy(
    cluster: NetnsCluster, value: int, first: tuple[int, int], second: tuple[int, int]
) -> None:
    """A record stored twice is allowed only as librdkafka's epoch-bump re-send: when
    a request fails during a leader move with others in flight, librdkafka bumps the
    producer epoch and re-sends, under the new epoch from sequence 0, a record that
    may already be stored (confluentinc/librdkafka#4953; Apache Kafka stores it twice
    too). A second copy under the same epoch would be ottla failing to deduplicate."""
    assert first[0] == second[0], f"value {value} stored in partitions {first} and {second}"
    epochs = [
        _producer_epoch_at(cluster, partition, offset) for partition, offset in (first, second)
    ]
    assert epochs[1] > epochs[0], (
        f"value {value} stored twice under producer epoch {epochs[0]}: at {first} and {second}"
    )
    print(f"value {value}: a second copy at {second} after an epoch bump {epochs}")


def _all_in_sync(cluster: NetnsCluster) -> bool:
    for topic, count in ((TOPIC, PARTITIONS), (OFFSETS_TOPIC, OFFSETS_PARTITIONS)):
        state = _partitions(cluster, topic)
        if len(state) != count or any(isr != [1, 2, 3] for _, isr in state.values()):
            return False
    return True


def _leads_nothing(cluster: NetnsCluster, node_id: int) -> bool:
    """No partition of either topic is led by `node_id` (as a live node sees it)."""
    for topic, count in ((TOPIC, PARTITIONS), (OFFSETS_TOPIC, OFFSETS_PARTITIONS)):
        state = _partitions(cluster, topic)
        if len(state) != count or any(leader in (node_id, -1) for leader, _ in state.values()):
            return False
    return True


def _create(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})]
    )
    futures[TOPIC].result(30)


class _Producer(threading.Thread):
    """Produces increasing integers (acks=all, idempotent) until stopped."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 60000,
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        self.acked: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.next_value = 0
        self.unflushed = -1

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(str(error))
        else:
            self.acked.append(int(message.value()))

    def produce(self, value: int) -> None:
        self.producer.produce(TOPIC, value=str(value).encode(), on_delivery=self._delivered)
        self.producer.poll(0)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.produce(self.next_value)
            self.next_value += 1
            time.sleep(PRODUCE_EVERY_S)  # pacing the producer, not waiting for an event
        self.unflushed = self.producer.flush(60)


def _consumer(bootstrap: str) -> Any:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 4000,
            "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )


class _Consumer(threading.Thread):
    """Consumes and commits synchronously every COMMIT_EVERY_S; records, in order, each
    record (partition, offset, value) and each acknowledged commit (partition, offset)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.consumer = _consumer(bootstrap)
        self.events: list[tuple[str, int, int, int]] = []
        self.commit_errors: list[str] = []
        self.commits = 0  # acknowledged commit calls
        self.stopping = threading.Event()
        self.committed: dict[int, int] = {}

    def _commit(self) -> None:
        try:
            result = self.consumer.commit(asynchronous=False)
        except confluent_kafka.KafkaException as error:
            self.commit_errors.append(str(error))
            return
        for item in result or []:
            if item.error is None and item.offset >= 0:
                self.events.append(("commit", item.partition, item.offset, -1))
                self.committed[item.partition] = item.offset
        self.commits += 1

    def run(self) -> None:
        self.consumer.subscribe([TOPIC])
        last_commit = time.monotonic()
        while not self.stopping.is_set():
            message = self.consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.events.append(
                    ("record", message.partition(), message.offset(), int(message.value()))
                )
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                self._commit()
                last_commit = time.monotonic()
        self._commit()
        self.consumer.close()

    def values(self) -> set[int]:
        return {value for kind, _, _, value in list(self.events) if kind == "record"}


def _group_partition() -> int:
    return (java_string_hashcode(GROUP) & 0x7FFFFFFF) % OFFSETS_PARTITIONS


def _steady(producer: _Producer, consumer: _Consumer) -> None:
    """Wait until the producer has STEADY_ACKS more records acknowledged and the group
    STEADY_COMMITS more commits acknowledged than now."""
    acked, commits = len(producer.acked), consumer.commits

    def progressed() -> bool:
        return (
            len(producer.acked) >= acked + STEADY_ACKS
            and consumer.commits >= commits + STEADY_COMMITS
        )

    until(progressed, 45, "steady produce and commit")


def test_rolling_restart_keeps_records_and_committed_offsets(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    bootstrap = cluster.bootstrap_servers
    started = time.monotonic()
    _create(bootstrap)
    producer = _Producer(bootstrap)
    consumer = _Consumer(bootstrap)
    producer.start()
    consumer.start()
    until(lambda: bool(consumer.committed), 30, "the group is up and committing")
    until(lambda: _all_in_sync(cluster), 30, "every partition with an ISR of three")
    coordinators: list[int] = []
    for node_id in (1, 2, 3):
        _steady(producer, consumer)
        coordinators.append(_partitions(cluster, OFFSETS_TOPIC)[_group_partition()][0])
        cluster.kill(node_id, signal.SIGTERM)
        until(
            lambda node_id=node_id: _leads_nothing(cluster, node_id),  # type: ignore[misc]
            30,
            f"leadership moved off the stopped node {node_id}",
        )
        cluster.start(node_id)
        until(lambda: _all_in_sync(cluster), 45, f"node {node_id} back in every ISR")
    coordinators.append(_partitions(cluster, OFFSETS_TOPIC)[_group_partition()][0])
    _steady(producer, consumer)
    producer.stopping.set()
    producer.join(90)
    assert not producer.is_alive() and producer.unflushed == 0, "the producer did not flush"
    acked = set(producer.acked)
    until(lambda: acked <= consumer.values(), 45, "every acknowledged record consumed")
    consumer.stopping.set()
    consumer.join(30)
    final = dict(consumer.committed)
    elapsed = time.monotonic() - started

    # (1) every acknowledged record was consumed, each stored once: the idempotent
    # producer's retries across leader moves were deduplicated by the new leaders.
    assert acked and not acked - consumer.values()
    assert not producer.errors, producer.errors[:5]
    # The helper that tells a librdkafka epoch-bump copy from a failed deduplication
    # reads batch headers: the producer's first batch was written under epoch 0.
    assert _producer_epoch_at(netns_cluster, 0, 0) == 0
    stored_at: dict[int, tuple[int, int]] = {}
    for kind, partition, offset, value in consumer.events:
        if kind == "record":
            first = stored_at.setdefault(value, (partition, offset))
            if first != (partition, offset):
                _assert_epoch_bump_copy(netns_cluster, value, first, (partition, offset))

    # (3) re-deliveries only at or after the last acknowledged commit of the partition.
    committed: dict[int, int] = {}
    next_offset: dict[int, int] = {}
    redelivered = 0
    for kind, partition, offset, _ in consumer.events:
        if kind == "commit":
            committed[partition] = max(committed.get(partition, 0), offset)
            continue
        if offset < next_offset.get(partition, 0):
            redelivered += 1
            assert offset >= committed.get(partition, 0), (
                f"partition {partition} offset {offset} re-delivered below its "
                f"acknowledged commit {committed[partition]}"
            )
        next_offset[partition] = max(next_offset.get(partition, 0), offset + 1)

    # (2) the coordinator moved, and the committed offsets survived: a new member of the
    # group sees them and resumes from them.
    assert any(node_id == coordinators[i] for i, node_id in enumerate((1, 2, 3))), coordinators
    assert set(final) == set(range(PARTITIONS))
    late = _Producer(bootstrap)
    fresh = [late.next_value + 1_000_000 + i for i in range(60)]
    for value in fresh:
        late.produce(value)
    assert late.producer.flush(30) == 0 and set(late.acked) == set(fresh)
    resumed = _consumer(bootstrap)
    try:
        stored = resumed.committed(
            [confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=15
        )
        assert {tp.partition: tp.offset for tp in stored} == final
        resumed.subscribe([TOPIC])
        seen: dict[int, list[int]] = {}
        values: list[int] = []
        deadline = time.monotonic() + 30
        while set(values) != set(fresh) and time.monotonic() < deadline:
            message = resumed.poll(0.2)
            if message is not None and message.error() is None:
                seen.setdefault(message.partition(), []).append(message.offset())
                values.append(int(message.value()))
    finally:
        resumed.close()
    assert sorted(values) == sorted(fresh), "the new member resumed elsewhere than committed"
    assert all(offsets[0] == final[p] for p, offsets in seen.items())
    print(
        f"rolling restart: {len(acked)} acknowledged records consumed, "
        f"{redelivered} re-delivered after a commit, coordinators {coordinators}, "
        f"{len(consumer.commit_errors)} failed commits, "
        f"{len(producer.errors)} delivery errors, {elapsed:.1f} s"
    )


def test_only_an_epoch_bump_copy_passes_as_a_second_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The duplicate check above: a bumped epoch passes; the same epoch, or another
    partition, fails."""
    epochs = {(2, 679): 0, (2, 680): 1, (2, 681): 0, (1, 5): 1}
    monkeypatch.setattr(
        sys.modules[__name__],
        "_producer_epoch_at",
        lambda _cluster, partition, offset: epochs[partition, offset],
    )
    cluster: Any = None
    _assert_epoch_bump_copy(cluster, 1904, (2, 679), (2, 680))
    with pytest.raises(AssertionError, match="twice under producer epoch 0"):
        _assert_epoch_bump_copy(cluster, 1904, (2, 679), (2, 681))
    with pytest.raises(AssertionError, match="in partitions"):
        _assert_epoch_bump_copy(cluster, 1904, (2, 679), (1, 5))
