"""Three `ottla serve` processes form one metadata quorum (KRaft) on loopback ports.

Proves: (1) with controller.quorum.voters naming all three, they elect one leader
(DescribeQuorum from the leader lists three voters) and every node registered itself;
(2) a topic created through any node (leader or not: a non-leader forwards the write) is
in every node's Metadata; (3) after SIGKILL of the quorum leader a new leader is elected
and CreateTopics succeeds again within 5 s; (4) the killed node restarts and catches up
(it sees the topic created while it was down); (5) after restarting all three, every
topic is still there; (6) a node configured with another cluster.id is refused by the
quorum and a multi-voter node without cluster.id does not start; (7) with two nodes
killed, confluent-kafka's CreateTopics to the survivor gets REQUEST_TIMED_OUT (it got a
dropped connection, _TRANSPORT, before).
"""

from __future__ import annotations

import datetime
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BrokerProcess, free_port, start_three_nodes
from tests.integration.wire import Wire, kio_module, metadata

pytestmark = pytest.mark.timeout(180)

CLUSTER_ID = "q1cTp2LqQ0aKz6u9ZBvYpA"
FAST = [
    "controller.quorum.election.timeout.ms=500",
    "controller.quorum.fetch.timeout.ms=1000",
    "controller.quorum.request.timeout.ms=1000",
]


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> int:
    module = kio_module(19, 5)
    body = module.CreateTopicsRequest(
        topics=(
            module.CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=1,
                assignments=(),
                configs=(),
            ),
        ),
        timeout=datetime.timedelta(seconds=10),
        validate_only=False,
    )
    with Wire(bootstrap) as wire:
        response = wire.request(19, 5, body)
    return int(response.topics[0].error_code)


def _topic_names(bootstrap: str) -> set[str]:
    with Wire(bootstrap) as wire:
        return {t.name for t in metadata(wire, None).topics}


def _describe_quorum(bootstrap: str) -> Any:
    module = kio_module(55, 1)
    body = module.DescribeQuorumRequest(
        topics=(
            module.TopicData(
                topic_name="__cluster_metadata",
                partitions=(module.PartitionData(partition_index=0),),
            ),
        )
    )
    with Wire(bootstrap) as wire:
        return wire.request(55, 1, body).topics[0].partitions[0]


def _leader(nodes: dict[int, BrokerProcess], timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node_id, node in nodes.items():
            if node.process is None:
                continue
            try:
                state = _describe_quorum(node.bootstrap)
            except OSError:
                continue
            if int(state.error_code) == 0:
                return node_id
        time.sleep(0.05)
    raise AssertionError("no quorum leader")


def _until(condition: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(tmp_path, CLUSTER_ID, list(FAST))
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def test_three_nodes_elect_replicate_fail_over_and_restart(
    cluster: dict[int, BrokerProcess],
) -> None:
    nodes = cluster
    leader = _leader(nodes)
    state = _describe_quorum(nodes[leader].bootstrap)
    assert sorted(int(v.replica_id) for v in state.current_voters) == [1, 2, 3]

    # Every node registered itself through the quorum.
    def registered() -> bool:
        with Wire(nodes[1].bootstrap) as wire:
            return sorted(int(b.node_id) for b in metadata(wire, []).brokers) == [1, 2, 3]

    _until(registered)

    # A topic created through a non-leader and through the leader is everywhere.
    follower = next(n for n in nodes if n != leader)
    assert _create_topic(nodes[follower].bootstrap, "via-follower", 3) == 0
    assert _create_topic(nodes[leader].bootstrap, "via-leader") == 0
    for node in nodes.values():
        _until(lambda node=node: {"via-follower", "via-leader"} <= _topic_names(node.bootstrap))

    # SIGKILL the leader: a new one is elected and CreateTopics works again within 5 s.
    nodes[leader].stop(signal.SIGKILL)
    killed_at = time.monotonic()
    survivors = {n: p for n, p in nodes.items() if n != leader}
    some = next(iter(survivors.values()))
    while True:
        try:
            code = _create_topic(some.bootstrap, "after-failover")
        except OSError:
            code = -1
        if code == 0:
            break
        assert time.monotonic() - killed_at < 5.0, f"no CreateTopics within 5 s (last {code})"
        time.sleep(0.05)
    failover_s = time.monotonic() - killed_at
    new_leader = _leader(survivors)
    assert new_leader != leader
    print(f"failover: CreateTopics committed {failover_s:.2f} s after SIGKILL of the leader")

    # The killed node restarts and catches up.
    nodes[leader].start()
    _until(lambda: "after-failover" in _topic_names(nodes[leader].bootstrap))

    # Restarting all three keeps every topic.
    for node in nodes.values():
        node.stop(signal.SIGTERM)
    for node in nodes.values():
        node.start()
    _leader(nodes)
    wanted = {"via-follower", "via-leader", "after-failover"}
    for node in nodes.values():
        _until(lambda node=node: wanted <= _topic_names(node.bootstrap))


def test_a_multi_voter_node_needs_a_cluster_id(tmp_path: Path) -> None:
    node = BrokerProcess(
        tmp_path / "n1",
        free_port(),
        ["node.id=1", "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3"],
    )
    with pytest.raises(RuntimeError, match=r"cluster\.id"):
        node.start()


def test_a_node_of_another_cluster_is_refused(cluster: dict[int, BrokerProcess]) -> None:
    nodes = cluster
    _leader(nodes)
    leader = _leader(nodes)
    stranger = next(n for n in nodes if n != leader)
    nodes[stranger].stop(signal.SIGKILL)
    # The stranger's own data dir was formatted with CLUSTER_ID: it refuses another id.
    nodes[stranger].overrides = [
        o if not o.startswith("cluster.id=") else "cluster.id=OtherClusterIdAAAAAAAAA"
        for o in nodes[stranger].overrides
    ]
    with pytest.raises(RuntimeError, match="does not match cluster id"):
        nodes[stranger].start()
    nodes[stranger].process = None


def test_create_topics_without_a_quorum_times_out_for_a_real_client(
    cluster: dict[int, BrokerProcess],
) -> None:
    """(7) With two of three nodes killed no controller can commit: confluent-kafka's
    CreateTopics gets REQUEST_TIMED_OUT on its topic (Kafka's answer), not a dropped
    connection, and the survivor keeps answering on the same client."""
    from confluent_kafka import KafkaError, KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    nodes = cluster
    _leader(nodes)
    survivor = nodes[1]
    admin = AdminClient({"bootstrap.servers": survivor.bootstrap})
    # A working cluster loses its quorum: every node registered first (a node still
    # registering when the others die lists no brokers, so no controller either).
    _until(lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    for node_id in (2, 3):
        nodes[node_id].stop(signal.SIGKILL)
    started = time.monotonic()
    future = admin.create_topics([NewTopic("no-quorum", 1, 1)], request_timeout=60)["no-quorum"]
    with pytest.raises(KafkaException) as raised:
        future.result(90)
    error = raised.value.args[0]
    assert error.code() == KafkaError.REQUEST_TIMED_OUT, error
    print(f"REQUEST_TIMED_OUT after {time.monotonic() - started:.1f} s")
    assert "no-quorum" not in admin.list_topics(timeout=10).topics  # the same client, served
