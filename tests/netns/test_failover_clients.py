"""aiokafka and kafka-python producers and consumers ride through a leader failover (issue 7).

Three `ottla serve` processes, each in its own network namespace (tests/netns/harness.py;
a 3 s `broker.session.timeout.ms`, fast quorum timeouts), one topic with one partition,
replication factor 3 and min.insync.replicas=2. For each client library, on a fresh
cluster, with the clients connecting to every node's own address:

- a consumer (assigned partition 0 from offset 0, no group) reads all along;
- an idempotent acks=all producer with retries sends numbered records, paced, and
  keeps sending while the partition leader is SIGKILLed (after a third of the records
  are acknowledged), until records sent after the kill are acknowledged too;
- afterwards: a new leader (another node, a higher leader epoch) leads the partition;
  every acknowledged record was consumed; a record is consumed more than once only if
  its acknowledgement never arrived; in first-seen order the records are in the order
  they were sent (one partition, so per-partition order).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from tests.integration.wire import Wire, metadata
from tests.netns.harness import NetnsCluster, until
from tests.netns.leader_faults import FAST_FAILOVER

TOPIC = "failover"
BEFORE_KILL = 300  # records acknowledged before the leader is killed
AFTER_KILL = 300  # records sent after the kill that must be acknowledged before stopping
PACE_S = 0.002  # between sends: production is continuous, not one burst
PRODUCE_DEADLINE_S = 60.0
CONSUME_DEADLINE_S = 30.0

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.netns_overrides(*FAST_FAILOVER),
]


@dataclass
class Outcome:
    """What the producer and consumer saw (values are the records' sequence numbers)."""

    sent: int = 0
    acked: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    consumed: list[int] = field(default_factory=list)
    killed_at: float | None = None
    first_sent_after_kill: int | None = None
    first_ack_after_kill_at: float | None = None

    def on_ack(self, value: int) -> None:
        self.acked.add(value)
        if (
            self.first_sent_after_kill is not None
            and value >= self.first_sent_after_kill
            and self.first_ack_after_kill_at is None
        ):
            self.first_ack_after_kill_at = time.monotonic()

    def acked_after_kill(self) -> int:
        if self.first_sent_after_kill is None:
            return 0
        return sum(1 for v in self.acked if v >= self.first_sent_after_kill)

    def kill_now(self) -> bool:
        return self.killed_at is None and len(self.acked) >= BEFORE_KILL

    def done(self) -> bool:
        return self.killed_at is not None and self.acked_after_kill() >= AFTER_KILL


def _state(cluster: NetnsCluster) -> tuple[int, int, list[int]]:
    """(leader, leader epoch, isr) of partition 0 of TOPIC, asked of a live node."""
    for node in cluster.nodes.values():
        if not node.running:
            continue
        try:
            with Wire(node.bootstrap) as wire:
                response = metadata(wire, [TOPIC], allow_auto=False)
        except OSError:
            continue
        if not response.topics or not response.topics[0].partitions:
            continue  # a node still catching up with the metadata log
        partition = response.topics[0].partitions[0]
        return (
            int(partition.leader_id),
            int(partition.leader_epoch),
            sorted(int(n) for n in partition.isr_nodes),
        )
    raise AssertionError("no live node answered Metadata")


def _prepare(cluster: NetnsCluster) -> tuple[str, int, int]:
    """Bootstrap, leader and leader epoch of the topic, once all three are in its ISR."""
    bootstrap = cluster.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})])
    futures[TOPIC].result(30)
    until(lambda: _state(cluster)[2] == [1, 2, 3], 30, "an ISR of three")
    leader, epoch, _ = _state(cluster)
    assert leader in cluster.nodes
    return bootstrap, leader, epoch


def _kill(cluster: NetnsCluster, leader: int, outcome: Outcome) -> None:
    outcome.killed_at = time.monotonic()
    outcome.first_sent_after_kill = outcome.sent
    cluster.kill(leader)  # SIGKILL, and wait for the process to be gone


def _check(name: str, cluster: NetnsCluster, leader: int, epoch: int, outcome: Outcome) -> None:
    assert outcome.killed_at is not None
    assert not cluster.nodes[leader].running
    new_leader, new_epoch, isr = _state(cluster)
    assert new_leader not in (leader, -1)
    assert new_epoch > epoch
    assert leader not in isr

    assert outcome.acked_after_kill() >= AFTER_KILL
    assert not outcome.failed, list(outcome.failed.items())[:5]
    counts = Counter(outcome.consumed)
    lost = outcome.acked - counts.keys()
    assert not lost, f"{len(lost)} acknowledged records never consumed, e.g. {sorted(lost)[:10]}"
    twice = {v for v, n in counts.items() if n > 1}
    assert not twice & outcome.acked, f"acknowledged records read twice: {sorted(twice)[:10]}"
    first_seen = list(dict.fromkeys(outcome.consumed))
    assert first_seen == sorted(first_seen), "records out of order in the partition"
    assert counts.keys() <= set(range(outcome.sent)), "consumed a record never sent"
    assert outcome.first_ack_after_kill_at is not None
    print(
        f"\n{name}: leader {leader} -> {new_leader}; sent {outcome.sent}, acked"
        f" {len(outcome.acked)}, consumed {len(outcome.consumed)} ({len(twice)} duplicated);"
        f" SIGKILL -> first ack of a record sent after it:"
        f" {outcome.first_ack_after_kill_at - outcome.killed_at:.2f} s"
    )


def _consumed_all(outcome: Outcome) -> bool:
    return outcome.acked <= set(outcome.consumed)


async def test_aiokafka_rides_through_leader_failover(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    bootstrap, leader, epoch = await asyncio.to_thread(_prepare, cluster)
    outcome = Outcome()
    stop_consuming = asyncio.Event()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    tp = AioTopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)

    async def consume() -> None:
        while not stop_consuming.is_set():
            batches = await consumer.getmany(tp, timeout_ms=200)
            outcome.consumed.extend(int(m.value) for m in batches.get(tp, []))

    consuming = asyncio.create_task(consume())
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        retry_backoff_ms=100,
        linger_ms=2,
    )
    await producer.start()

    def delivered(value: int, future: asyncio.Future[object]) -> None:
        if future.cancelled():
            outcome.failed[value] = "cancelled"
        elif future.exception() is not None:
            outcome.failed[value] = repr(future.exception())
        else:
            outcome.on_ack(value)

    pending: list[asyncio.Future[object]] = []
    try:
        deadline = time.monotonic() + PRODUCE_DEADLINE_S
        while not outcome.done():
            assert time.monotonic() < deadline, f"producing stalled: {outcome.acked_after_kill()}"
            value = outcome.sent
            future = await producer.send(TOPIC, value=str(value).encode(), partition=0)
            future.add_done_callback(lambda f, v=value: delivered(v, f))
            pending.append(future)
            outcome.sent += 1
            if outcome.kill_now():
                _kill(cluster, leader, outcome)
            await asyncio.sleep(PACE_S)  # pacing the producer, not waiting for an event
        await producer.flush()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await producer.stop()
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while not _consumed_all(outcome) and time.monotonic() < deadline:
            await asyncio.wait({consuming}, timeout=0.2)
            assert not consuming.done(), consuming.exception()
    finally:
        stop_consuming.set()
        await consuming
        await consumer.stop()
    await asyncio.to_thread(_check, "aiokafka", cluster, leader, epoch, outcome)


def test_kafka_python_rides_through_leader_failover(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    bootstrap, leader, epoch = _prepare(cluster)
    outcome = Outcome()
    lock = threading.Lock()
    stop_consuming = threading.Event()
    consumer_errors: list[BaseException] = []

    def consume() -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
        tp = KpTopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        try:
            while not stop_consuming.is_set():
                batches = consumer.poll(timeout_ms=200)
                with lock:
                    outcome.consumed.extend(int(m.value) for m in batches.get(tp, []))
        except BaseException as error:
            consumer_errors.append(error)
        finally:
            consumer.close()

    consuming = threading.Thread(target=consume, name="kafka-python consumer")
    consuming.start()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        retries=2**31 - 1,
        retry_backoff_ms=100,
        linger_ms=2,
    )

    def delivered(value: int) -> Callable[[object], None]:
        def ok(_metadata: object) -> None:
            with lock:
                outcome.on_ack(value)

        return ok

    def failed(value: int) -> Callable[[BaseException], None]:
        def error(exception: BaseException) -> None:
            with lock:
                outcome.failed[value] = repr(exception)

        return error

    try:
        deadline = time.monotonic() + PRODUCE_DEADLINE_S
        while True:
            with lock:
                if outcome.done():
                    break
                if outcome.kill_now():
                    _kill(cluster, leader, outcome)
                value = outcome.sent
                outcome.sent += 1
            assert time.monotonic() < deadline, f"producing stalled: {outcome.acked_after_kill()}"
            future = producer.send(TOPIC, value=str(value).encode(), partition=0)
            future.add_callback(delivered(value))
            future.add_errback(failed(value))
            time.sleep(PACE_S)  # pacing the producer, not waiting for an event
        producer.flush(60)
    finally:
        producer.close(10)
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while consuming.is_alive() and time.monotonic() < deadline:
            with lock:
                if _consumed_all(outcome):
                    break
            consuming.join(0.2)  # wakes early if the consumer thread dies
        assert not consumer_errors, consumer_errors
    finally:
        stop_consuming.set()
        consuming.join(10)
    _check("kafka-python", cluster, leader, epoch, outcome)
