"""Leadership management with three `ottla serve` processes (issue 7).

Proves, with confluent-kafka clients on loopback:
(1) controlled shutdown: SIGTERM of the leader of an RF=3, min.insync.replicas=2
partition moves its leadership to an in-sync replica before the process exits; an
idempotent acks=all producer keeps going with no gap between acknowledgements longer
than a second and no delivery error (the gap is printed; SIGKILL's fencing delay is
broker.session.timeout.ms, see test_replication); the node left the ISR and logged
`controlled_shutdown_done`; every acknowledged record is then readable once, in order;
(2) `ottla cluster status --json` then lists that partition as under-replicated and the
stopped node's partition of an RF=1 topic as offline; (3) automatic preferred-leader
rebalancing: restarted, the node rejoins the ISR and gets its preferred leadership back
within leader.imbalance.check.interval.seconds, and nothing is under-replicated;
(4) ElectLeaders (AdminClient.elect_leaders, rebalancing off): PREFERRED moves
leadership back to the preferred replica; asked again it answers ELECTION_NOT_NEEDED;
an unknown partition answers UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _until
from tests.integration.test_replication import _bootstrap, _brokers, _create, _state

pytestmark = pytest.mark.timeout(300)

CLUSTER_ID = "l3adershipTestCluster1"
TOPIC = "replicated"  # the name test_replication's helpers use
RECORDS = 3000
SINGLE = "single"
GAP_MAX_S = 1.0

Cluster = Callable[[list[str]], dict[int, BrokerProcess]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started: list[BrokerProcess] = []

    def start(extra: list[str]) -> dict[int, BrokerProcess]:
        nodes = start_three_nodes(
            tmp_path,
            CLUSTER_ID,
            [
                "broker.session.timeout.ms=3000",
                "broker.heartbeat.interval.ms=500",
                "replica.lag.time.max.ms=3000",
                "replica.fetch.backoff.ms=100",
                *FAST,
                *extra,
            ],
        )
        started.extend(nodes.values())
        _until(lambda: _brokers(nodes[1].bootstrap) == 3, 30)
        return nodes

    yield start
    for node in started:
        node.stop(signal.SIGKILL)


def _produce_during(
    bootstrap: str, action: Callable[[], None]
) -> tuple[list[int], float, list[str]]:
    """Acked values, the longest gap between acks after `action` started, errors."""
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
    ack_times: list[float] = []
    errors: list[str] = []
    started: list[float] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))
            return
        acked.append(int(message.value() or b"-1"))
        ack_times.append(time.monotonic())

    worker: threading.Thread | None = None
    for i in range(RECORDS):
        producer.produce(TOPIC, value=str(i).encode(), on_delivery=delivered)
        producer.poll(0)
        if i == RECORDS // 3:
            producer.flush(30)
            started.append(time.monotonic())
            worker = threading.Thread(target=action)
            worker.start()
        time.sleep(0.001)
    assert producer.flush(90) == 0
    if worker is not None:
        worker.join(30)
    after = [started[0], *(t for t in ack_times if t > started[0])]
    gap = max(b - a for a, b in itertools.pairwise(after))
    return acked, gap, errors


def _create_single(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(SINGLE, 3, 1)])[SINGLE].result(30)


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


def _consume_all(bootstrap: str, expected: int) -> list[int]:
    import confluent_kafka  # noqa: PLC0415

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    values: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(values) < expected:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(int(message.value() or b"-1"))
    consumer.close()
    return values


def test_controlled_shutdown_then_preferred_leader_returns(cluster: Cluster) -> None:
    nodes = cluster(["leader.imbalance.check.interval.seconds=1"])
    bootstrap = _bootstrap(nodes)
    _create(bootstrap, TOPIC, 2)
    _create_single(bootstrap)
    _until(lambda: _state(nodes, TOPIC)[2] == [1, 2, 3], 30)
    leader, epoch, _ = _state(nodes, TOPIC)
    victim = nodes[leader]
    stopped: list[float] = []

    def terminate() -> None:
        began = time.monotonic()
        victim.stop(signal.SIGTERM)
        stopped.append(time.monotonic() - began)

    acked, gap, errors = _produce_during(bootstrap, terminate)
    assert not errors, errors[:5]
    print(
        f"\ncontrolled shutdown of leader {leader}: longest acks=all gap {gap:.3f} s, "
        f"process exit after {stopped[0]:.2f} s"
    )
    assert gap < GAP_MAX_S
    done = [line for line in victim.log().splitlines() if "controlled_shutdown_done" in line]
    assert done, victim.log()[-3000:]
    print(done[0])
    new_leader, new_epoch, isr = _state(nodes, TOPIC)
    assert new_leader not in (leader, -1) and new_epoch > epoch and leader not in isr

    survivors = {n: node for n, node in nodes.items() if n != leader}
    values = _consume_all(_bootstrap(survivors), len(acked))
    assert len(values) == len(set(values)) and values == sorted(values)
    assert set(acked) <= set(values)

    status = _cluster_status(survivors[min(survivors)].bootstrap)
    assert [(p["topic"], p["partition"]) for p in status["under_replicated_partitions"]] == [
        (TOPIC, 0)
    ]
    offline = status["offline_partitions"]
    assert len(offline) == 1 and offline[0]["topic"] == SINGLE
    assert offline[0]["replicas"] == [leader]

    # Back: it rejoins the ISR and, as the preferred replica, leads again.
    victim.start()
    _until(lambda: _state(nodes, TOPIC)[2] == [1, 2, 3], 60)
    _until(lambda: _state(nodes, TOPIC)[0] == leader, 30)
    status = _cluster_status(bootstrap.split(",")[0])
    assert status["under_replicated_partitions"] == status["offline_partitions"] == []


def test_elect_leaders_preferred(cluster: Cluster) -> None:
    from confluent_kafka import ElectionType, TopicPartition  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    nodes = cluster(["auto.leader.rebalance.enable=false"])
    bootstrap = _bootstrap(nodes)
    _create(bootstrap, TOPIC, 2)
    _until(lambda: _state(nodes, TOPIC)[2] == [1, 2, 3], 30)
    preferred = _state(nodes, TOPIC)[0]
    nodes[preferred].stop(signal.SIGTERM)
    nodes[preferred].start()
    _until(lambda: _state(nodes, TOPIC)[2] == [1, 2, 3], 60)
    time.sleep(2)
    assert _state(nodes, TOPIC)[0] != preferred  # no automatic rebalance

    admin = AdminClient({"bootstrap.servers": bootstrap})
    partition = TopicPartition(TOPIC, 0)
    outcome = admin.elect_leaders(ElectionType.PREFERRED, [partition]).result(30)
    assert list(outcome.values()) == [None], outcome
    _until(lambda: _state(nodes, TOPIC)[0] == preferred, 10)

    outcome = admin.elect_leaders(ElectionType.PREFERRED, [partition]).result(30)
    error = next(iter(outcome.values()))
    assert error is not None and error.name() == "ELECTION_NOT_NEEDED"
    outcome = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("nope", 0)]).result(30)
    error = next(iter(outcome.values()))
    assert error is not None and error.name() == "UNKNOWN_TOPIC_OR_PART"


def test_the_last_node_stopping_skips_controlled_shutdown(cluster: Cluster) -> None:
    """SIGTERM of the three nodes in turn: the first two hand over through controlled
    shutdown; the last has no live broker to hand anything to (and no quorum left to
    confirm it), so it stops at once rather than after controlled.shutdown.timeout.ms,
    set here to 30 s so that waiting it out would fail the bound."""
    nodes = cluster(["controlled.shutdown.timeout.ms=30000"])
    _create(nodes[1].bootstrap, TOPIC, 2)
    for node_id in (1, 2):
        assert nodes[node_id].stop(signal.SIGTERM, timeout_s=25.0) == 0
        assert "controlled_shutdown_done" in nodes[node_id].log()
    started = time.monotonic()
    try:
        code = nodes[3].stop(signal.SIGTERM, timeout_s=25.0)
    except subprocess.TimeoutExpired:
        raise AssertionError(nodes[3].log()[-20000:]) from None
    assert code == 0
    took = time.monotonic() - started
    print(f"the last node stopped {took:.2f} s after SIGTERM")
    assert took < 10.0
    assert "controlled_shutdown_incomplete" not in nodes[3].log()


def test_a_topic_deleted_while_a_node_was_down_is_set_aside_when_it_returns(
    cluster: Cluster,
) -> None:
    """Node 3 is down while a topic it replicates is deleted: when it comes back, the
    caught-up metadata no longer places the partition on it, and its directory is set
    aside (renamed `<name>.<hex>-stray`, KIP-858) rather than left to be opened again,
    say by a new topic of the same name."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    nodes = cluster([])
    _create(nodes[1].bootstrap, "gone", 2)
    stale = nodes[3].data_dir / "gone-0"
    _until(stale.is_dir, 30)
    assert nodes[3].stop(signal.SIGTERM) == 0
    admin = AdminClient({"bootstrap.servers": nodes[1].bootstrap})
    admin.delete_topics(["gone"])["gone"].result(30)
    nodes[3].start()

    def set_aside() -> bool:
        strays = [p for p in nodes[3].data_dir.glob("gone-0.*-stray") if p.is_dir()]
        # The log line follows the rename: wait for both.
        return not stale.exists() and len(strays) == 1 and "partition_dir_stray" in nodes[3].log()

    _until(set_aside, 30)
