"""Three `ottla serve` processes replicate partitions leader-to-followers (issue 7).

Proves, with real processes on loopback and confluent-kafka clients:
(1) a topic with replication factor 3 and min.insync.replicas=2 gets all three nodes in
its ISR once written to (Metadata `isr_nodes`);
(2) an idempotent acks=all producer keeps writing while the partition leader is
SIGKILLed; a new leader is elected from the ISR (a higher leader epoch) and the
producer's writes succeed again (the time from SIGKILL to the first acknowledged write
after it is printed);
(3) a consumer then reads every acknowledged record exactly once, in order;
(4) a topic with min.insync.replicas=3 answers acks=all with NOT_ENOUGH_REPLICAS while
a node is down (its ISR has two members);
(5) the killed node restarts, truncates if its tail diverged, and rejoins the ISR;
(6) after a clean stop, every replica's log holds the same batches, byte for byte.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _until
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(300)

CLUSTER_ID = "r3plicationTestClust1"
SESSION_MS = 3000
TOPIC = "replicated"
STRICT = "strict"
RECORDS = 3000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(
        tmp_path,
        CLUSTER_ID,
        [
            f"broker.session.timeout.ms={SESSION_MS}",
            "broker.heartbeat.interval.ms=500",
            "replica.lag.time.max.ms=3000",
            "replica.fetch.backoff.ms=100",
            *FAST,
        ],
    )
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def _state(nodes: dict[int, BrokerProcess], topic: str) -> tuple[int, int, list[int]]:
    """(leader, leader epoch, isr) of partition 0 of `topic`, asked of a live node."""
    for node in nodes.values():
        if node.process is None or node.process.poll() is not None:
            continue
        try:
            with Wire(node.bootstrap) as wire:
                response = metadata(wire, [topic], allow_auto=False)
        except OSError:
            continue
        if not response.topics or not response.topics[0].partitions:
            continue  # a restarted node still catching up with the metadata log
        partition = response.topics[0].partitions[0]
        return (
            int(partition.leader_id),
            int(partition.leader_epoch),
            sorted(int(n) for n in partition.isr_nodes),
        )
    raise AssertionError("no live node answered Metadata")


def _brokers(bootstrap: str) -> int:
    with Wire(bootstrap) as wire:
        return len(metadata(wire, [], allow_auto=False).brokers)


def _bootstrap(nodes: dict[int, BrokerProcess]) -> str:
    return ",".join(n.bootstrap for n in nodes.values())


def _create(bootstrap: str, name: str, min_isr: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, 1, 3, config={"min.insync.replicas": str(min_isr)})]
    )
    futures[name].result(30)


def _produce_during_kill(bootstrap: str, kill: Any) -> tuple[list[int], float | None, list[str]]:
    """Acked values, seconds from the kill to the first ack after it, delivery errors."""
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    acked: list[int] = []
    errors: list[str] = []
    killed_at: list[float] = []
    first_after: list[float] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))
            return
        acked.append(int(message.value() or b"-1"))
        if killed_at and not first_after and message.timestamp() is not None:
            now = time.monotonic()
            if now > killed_at[0]:
                first_after.append(now)

    killer: threading.Thread | None = None
    for i in range(RECORDS):
        producer.produce(TOPIC, value=str(i).encode(), on_delivery=delivered)
        producer.poll(0)
        if i == RECORDS // 3:
            producer.flush(30)  # a third acknowledged before the kill

            def do_kill() -> None:
                killed_at.append(time.monotonic())
                kill()

            killer = threading.Thread(target=do_kill)
            killer.start()
            killer.join()
            # Records produced right after the kill are acknowledged only by the new leader.
        time.sleep(0.001)
    assert producer.flush(90) == 0
    elapsed = first_after[0] - killed_at[0] if first_after and killed_at else None
    return acked, elapsed, errors


def _consume_all(bootstrap: str, expected: int) -> list[int]:
    import confluent_kafka  # noqa: PLC0415

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    values: list[int] = []
    deadline = time.monotonic() + 60
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            if len(values) >= expected and time.monotonic() - idle_since > 2:
                break
            continue
        idle_since = time.monotonic()
        values.append(int(message.value() or b"-1"))
    consumer.close()
    return values


def _not_enough_replicas(bootstrap: str) -> str:
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "retries": 0,
            "message.timeout.ms": 10000,
        }
    )
    outcome: list[str] = []
    producer.produce(
        STRICT, value=b"x", on_delivery=lambda e, _m: outcome.append(e.name() if e else "OK")
    )
    producer.flush(15)
    return outcome[0] if outcome else "NO_ANSWER"


def _batches(directory: Path) -> list[bytes]:
    from ottla.storage import Log, LogConfig  # noqa: PLC0415

    log = Log.open(directory, LogConfig(), now_ms=int(time.time() * 1000))
    try:
        return [bytes(batch.bytes_view()) for batch in log.iter_batch_headers()]
    finally:
        log.close()


def test_replication_survives_leader_kill(cluster: dict[int, BrokerProcess]) -> None:
    bootstrap = _bootstrap(cluster)
    _until(lambda: _brokers(cluster[1].bootstrap) == 3, 30)
    _create(bootstrap, TOPIC, 2)
    _create(bootstrap, STRICT, 3)
    _until(lambda: _state(cluster, TOPIC)[2] == [1, 2, 3], 30)
    leader, epoch, _ = _state(cluster, TOPIC)
    assert leader in cluster

    victim = cluster[leader]
    acked, failover_s, errors = _produce_during_kill(
        bootstrap,
        lambda: victim.process.send_signal(signal.SIGKILL),  # type: ignore[union-attr]
    )
    victim.process.wait(10)  # type: ignore[union-attr]
    assert not errors, errors[:5]
    assert failover_s is not None
    print(f"\nfailover: SIGKILL of leader {leader} to first acks=all ack: {failover_s:.2f} s")
    new_leader, new_epoch, isr = _state(cluster, TOPIC)
    assert new_leader not in (leader, -1)
    assert new_epoch > epoch
    assert leader not in isr

    survivors = {n: node for n, node in cluster.items() if n != leader}
    values = _consume_all(_bootstrap(survivors), len(acked))
    assert len(values) == len(set(values)), "a record was read twice"
    assert values == sorted(values), "records out of order"
    assert set(acked) <= set(values), f"lost {len(set(acked) - set(values))} acknowledged"

    # One node down: a min.insync.replicas=3 topic refuses acks=all.
    _until(lambda: len(_state(cluster, STRICT)[2]) == 2, 30)
    assert _not_enough_replicas(_bootstrap(survivors)) == "NOT_ENOUGH_REPLICAS"

    # The killed node restarts and rejoins the ISR of both topics.
    victim.start()
    _until(lambda: _state(cluster, TOPIC)[2] == [1, 2, 3], 60)
    _until(lambda: _state(cluster, STRICT)[2] == [1, 2, 3], 60)
    assert _not_enough_replicas(bootstrap) == "OK"

    # Stop cleanly and compare the replicas' logs byte for byte.
    for node in cluster.values():
        node.stop(signal.SIGTERM)
    logs = {n: _batches(node.data_dir / f"{TOPIC}-0") for n, node in cluster.items()}
    assert logs[1] == logs[2] == logs[3]
    assert sum(1 for _ in logs[1]) > 0
