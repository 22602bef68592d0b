"""What the tests of a faulty partition leader (cut off, paused) share: each node's view
of a topic, the batches in a replica's partition directory, acks=all writes straight to
one node or through a client, and a reader of one partition's keys."""

from __future__ import annotations

import datetime
import struct
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from ottla.protocol import ErrorCode, Record, build_batch, iter_batches
from tests.integration.wire import Wire, fetch_partition, kio_module
from tests.netns.harness import NetnsCluster, until

# How a leader that cannot reach the ISR answers an acks=all write (never NONE).
REFUSALS = {
    ErrorCode.not_enough_replicas,
    ErrorCode.not_enough_replicas_after_append,
    ErrorCode.request_timed_out,
    ErrorCode.not_leader_or_follower,
}
# Broker settings for fast failure detection (every node).
FAST_FAILOVER = (
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=3000",
    "replica.fetch.backoff.ms=100",
    "controller.quorum.election.timeout.ms=500",
    "controller.quorum.fetch.timeout.ms=1000",
    "controller.quorum.request.timeout.ms=1000",
)

State = dict[int, tuple[int, int, tuple[int, ...]]]


def topic_state(cluster: NetnsCluster, node_id: int, topic: str) -> State:
    """partition -> (leader, leader epoch, ISR) in `node_id`'s Metadata."""
    for entry in cluster.metadata(node_id).topics:
        if entry.name == topic and entry.error_code is ErrorCode.none:
            return {
                int(p.partition_index): (
                    int(p.leader_id),
                    int(p.leader_epoch),
                    tuple(sorted(int(r) for r in p.isr_nodes)),
                )
                for p in entry.partitions
            }
    return {}


def segment_batches(directory: Path) -> list[bytes]:
    """The record batches in a partition directory's segment files, in offset order (the
    active segment is preallocated: its zero-filled tail ends the scan)."""
    batches: list[bytes] = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        position = 0
        while position + 12 <= len(data):
            (length,) = struct.unpack_from(">i", data, position + 8)
            if length <= 0 or position + 12 + length > len(data):
                break
            batches.append(data[position : position + 12 + length])
            position += 12 + length
    return batches


def log_end_offset(batches: list[bytes]) -> int:
    if not batches:
        return 0
    (base_offset,) = struct.unpack_from(">q", batches[-1], 0)
    (last_offset_delta,) = struct.unpack_from(">i", batches[-1], 23)  # after the CRC, attributes
    return int(base_offset) + int(last_offset_delta) + 1


def acks_all_produce(topic: str, partition: int, keys: list[bytes], timeout_ms: int) -> Any:
    """A Produce v9 request (acks=-1) of one batch of `keys` to one partition."""
    batch = build_batch([Record(key=k, value=b"x") for k in keys], base_timestamp=1)
    module = kio_module(0, 9)
    return module.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=(
            module.TopicProduceData(
                name=topic,
                partition_data=(
                    module.PartitionProduceData(index=partition, records=bytes(batch)),
                ),
            ),
        ),
    )


def produce_error(response: Any) -> Any:
    """The error code of a one-partition Produce response."""
    return response.responses[0].partition_responses[0].error_code


def produce_acked(bootstrap: str, topic: str, partition: int, keys: list[bytes]) -> None:
    """Write `keys` with acks=all through confluent-kafka; each must be acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors: list[object] = []
    for key in keys:
        producer.produce(
            topic,
            key=key,
            value=b"x",
            partition=partition,
            on_delivery=lambda e, _m: errors.append(e) if e else None,
        )
    assert producer.flush(30) == 0
    assert errors == []


def consume_keys(bootstrap: str, topic: str, partition: int, expected: int) -> list[bytes]:
    """Keys of the partition from offset 0 until its end (polled with a deadline)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    keys: list[bytes] = []
    at_end = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not (at_end and len(keys) >= expected):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                at_end = at_end or error.code() == KafkaError._PARTITION_EOF
                continue
            at_end = False
            keys.append(message.key() or b"")
    finally:
        consumer.close()
    return keys


def replicated_topic(cluster: NetnsCluster, topic: str, partitions: int) -> State:
    """Create `topic` (replication factor 3, min.insync.replicas=2) through the quorum
    leader and wait until every partition's ISR is full; the quorum leader's view."""
    quorum_leader = cluster.leader()
    code = cluster.create_topic(
        quorum_leader,
        topic,
        partitions=partitions,
        replication_factor=3,
        configs={"min.insync.replicas": "2"},
    )
    assert code is ErrorCode.none

    def settled() -> State | None:
        state = topic_state(cluster, quorum_leader, topic)
        full = len(state) == partitions and all(i == (1, 2, 3) for _l, _e, i in state.values())
        return state if full else None

    state = until(settled, 15.0, f"{partitions} partitions with an ISR of three")
    assert state is not None
    return state


def topic_with_a_victim(cluster: NetnsCluster, topic: str) -> tuple[int, int, int]:
    """`replicated_topic` with 3 partitions, and a partition to hurt the leader of:
    (partition, its leader, its leader epoch), one led by a node that is not the quorum
    leader where the placement allows it (the quorum stays on the majority side)."""
    before = replicated_topic(cluster, topic, 3)
    quorum_leader = cluster.leader()
    partition = min(before, key=lambda p: (before[p][0] == quorum_leader, p))
    victim, epoch, _isr = before[partition]
    return partition, victim, epoch


def new_leader_elected(
    cluster: NetnsCluster, topic: str, partition: int, victim: int, epoch_before: int
) -> int:
    """Wait until the other two agree on a new leader of `partition` from the ISR (a
    higher leader epoch, `victim` out of the ISR); that leader."""
    majority = [n for n in cluster.nodes if n != victim]

    def elected() -> tuple[int, int, tuple[int, ...]] | None:
        states = [topic_state(cluster, n, topic)[partition] for n in majority]
        lead, epoch, isr = states[0]
        ok = lead in majority and epoch > epoch_before and victim not in isr
        return states[0] if ok and all(s == states[0] for s in states) else None

    after = until(elected, 20.0, "a new leader elected by the majority")
    assert after is not None
    return after[0]


def rejoined_with_the_same_log(
    cluster: NetnsCluster, topic: str, partition: int, victim: int, leader: int
) -> list[bytes]:
    """Wait until every node has `victim` back in the partition's ISR and its log holds,
    batch for batch and byte for byte, what `leader`'s holds; those batches."""
    start = time.monotonic()

    def rejoined() -> bool:
        return all(topic_state(cluster, n, topic)[partition][2] == (1, 2, 3) for n in cluster.nodes)

    until(rejoined, 30.0, f"node {victim} back in the ISR on every node")
    print(f"node {victim} back in the ISR after {time.monotonic() - start:.2f} s")
    directory = {n: cluster.nodes[n].data_dir / f"{topic}-{partition}" for n in (victim, leader)}

    def same_logs() -> list[bytes] | None:
        ours, theirs = segment_batches(directory[victim]), segment_batches(directory[leader])
        return ours if ours == theirs and ours else None

    batches = until(same_logs, 15.0, f"node {victim}'s log equal to the leader's")
    assert batches is not None
    return batches


def consume_records(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 60.0
) -> dict[int, list[tuple[int, int]]]:
    """partition -> (offset, value as an integer) in offset order, read until `expected`
    records and the end of every partition (EOF events), or the deadline."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}
    at_end: set[int] = set()
    count = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if count >= expected and len(at_end) == partitions:
                break
            for message in consumer.consume(10_000, 0.5):
                error, partition = message.error(), message.partition()
                assert partition is not None
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                offset = message.offset()
                assert offset is not None
                records[partition].append((offset, int(message.value() or b"-1")))
                count += 1
    finally:
        consumer.close()
    return records


def consume_values(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 60.0
) -> dict[int, list[int]]:
    """partition -> values (integers) in offset order (see `consume_records`)."""
    read = consume_records(bootstrap, topic, partitions, expected, timeout_s)
    return {p: [value for _offset, value in records] for p, records in read.items()}


def producer_epoch_at(cluster: NetnsCluster, topic: str, partition: int, offset: int) -> int:
    """The producer epoch of the batch holding `offset`, read from the partition's leader
    (as a running node's Metadata names it)."""
    node_id = next(n for n, node in cluster.nodes.items() if node.running)
    leader = topic_state(cluster, node_id, topic)[partition][0]
    with Wire(cluster.nodes[leader].bootstrap) as wire:
        data = fetch_partition(wire, topic, partition, offset)
    for batch in iter_batches(bytes(data.records or b"")):
        if batch.base_offset <= offset <= batch.last_offset:
            return int(batch.producer_epoch)
    raise AssertionError(f"offset {offset} of {topic}-{partition} not fetched")


def assert_round_robin_once_in_order(
    acked: dict[int, list[int]], read: dict[int, list[int]], records: int
) -> None:
    """Records 0..records-1 went round-robin to the partitions of `acked` (partition ->
    values acknowledged): each was acknowledged, and `read` (partition -> values in offset
    order) holds each partition's records exactly once, in the order produced."""
    partitions = len(acked)
    for p in range(partitions):
        expected = list(range(p, records, partitions))
        assert sorted(acked[p]) == expected, f"partition {p}: acknowledgements"
        got = read[p]
        assert len(got) == len(set(got)), f"partition {p}: a record was read twice"
        assert got == expected, (
            f"partition {p}: {len(got)} read, {len(set(expected) - set(got))} acknowledged "
            f"missing, in order: {got == sorted(got)}"
        )


class RoundRobinWriter:
    """An idempotent acks=all confluent-kafka producer that writes records `first` to
    `last - 1` round-robin over a topic's partitions, each value its sequence number, and
    keeps what was acknowledged (`acked`: partition -> values) and what failed.
    `settings` add to or replace the producer's configuration."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        records: int,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                "topic.metadata.refresh.interval.ms": 500,
                "queue.buffering.max.messages": records,
                **(settings or {}),
            }
        )
        self.acked: dict[int, list[int]] = {p: [] for p in range(partitions)}
        self.errors: list[str] = []

    @property
    def acknowledged(self) -> int:
        return sum(len(values) for values in self.acked.values())

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(str(error))
        else:
            self.acked[message.partition()].append(int(message.value()))

    def produce(self, first: int, last: int) -> None:
        for i in range(first, last):
            self.write(str(i).encode(), i % self.partitions)

    def write(self, value: bytes, partition: int, poll: bool = True) -> None:
        """One record (its value must start with its sequence number); `poll` serves
        delivery reports. Raises BufferError while the local queue is full."""
        self.producer.produce(
            self.topic, value=value, partition=partition, on_delivery=self._delivered
        )
        if poll:
            self.producer.poll(0)
