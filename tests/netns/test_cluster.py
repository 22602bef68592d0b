"""Three ottla voters (broker+controller), each on its own address in its own network
namespace (tests/netns/harness.py), with the default quorum settings.

Proves, over real addresses rather than loopback ports:
- a 6-partition topic created through a node that is not the quorum leader appears in
  every node's Metadata (each node asked directly), all three agree on brokers,
  leaders, replicas and epochs, the leaders are spread over the three nodes, and each
  partition's log exists on its leader's disk only;
- confluent-kafka, aiokafka and kafka-python, each bootstrapped from a single node,
  produce to all six partitions and consume them back (every record, in order), which
  needs them to follow the leaders: a produce sent to a non-leader is refused with
  NOT_LEADER_OR_FOLLOWER;
- SIGKILL of the quorum leader: CreateTopics through a survivor succeeds within 5 s, a
  new leader is elected, and the killed node, restarted, catches up (its own Metadata
  lists the topic created while it was down, and it follows the new leader);
- restarting all three (SIGTERM) keeps every topic, its partitions and leaders, and
  the configs set at creation and with IncrementalAlterConfigs, on every node;
- a follower that was down while more metadata records than the snapshot interval
  (10,000) were committed catches up by installing the leader's snapshot (its log says
  so) and then has every topic and the last config values.
"""

from __future__ import annotations

import signal
import time
from functools import partial
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from ottla.client import ClientError
from ottla.protocol import ErrorCode, Record, build_batch, make
from tests.integration.clients import Aiokafka, Confluent, KafkaPython, Rec
from tests.integration.wire import Wire, produce_partition
from tests.netns.harness import NetnsCluster, until

pytestmark = pytest.mark.timeout(120)

FAILOVER_LIMIT_S = 5.0


def _view(cluster: NetnsCluster, node_id: int, topic: str) -> Any:
    """What `node_id`'s Metadata says about the brokers and `topic` (comparable)."""
    response = cluster.metadata(node_id)
    brokers = sorted((int(b.node_id), b.host, int(b.port)) for b in response.brokers)
    for entry in response.topics:
        if entry.name == topic and entry.error_code is ErrorCode.none:
            partitions = sorted(
                (
                    int(p.partition_index),
                    int(p.leader_id),
                    int(p.leader_epoch),
                    tuple(int(r) for r in p.replica_nodes),
                    tuple(int(r) for r in p.isr_nodes),
                    int(p.error_code),
                )
                for p in entry.partitions
            )
            return brokers, partitions
    return brokers, None


def _has_topic(cluster: NetnsCluster, node_id: int, topic: str) -> bool:
    return topic in cluster.topic_names(node_id)


def _has_configs(cluster: NetnsCluster, node_id: int, topic: str, configs: dict[str, str]) -> bool:
    return cluster.topic_configs(node_id, topic) == configs


def _agreed_view(cluster: NetnsCluster, topic: str, partitions: int) -> Any:
    """Poll every node until all three describe `topic` alike with all its partitions."""

    def agreed() -> Any:
        views = [_view(cluster, n, topic) for n in cluster.nodes]
        if views[0][1] is None or len(views[0][1]) != partitions:
            return None
        return views[0] if all(v == views[0] for v in views) else None

    return until(agreed, 15.0, f"every node's Metadata agrees on {topic}")


def test_a_topic_created_through_one_node_is_in_every_nodes_metadata(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n != leader)
    assert cluster.create_topic(follower, "spread", partitions=6) is ErrorCode.none

    brokers, partitions = _agreed_view(cluster, "spread", 6)
    assert brokers == [(n, node.host, 9092) for n, node in sorted(cluster.nodes.items())]
    assert [p[0] for p in partitions] == list(range(6))
    assert all(p[5] == 0 for p in partitions), partitions  # no partition error
    leaders = [p[1] for p in partitions]
    assert sorted(leaders) == [1, 1, 2, 2, 3, 3], f"leaders not spread: {leaders}"
    for index, leader_id, _epoch, replicas, isr, _error in partitions:
        assert replicas == (leader_id,) and isr == (leader_id,)
        # The partition's log lives on its leader and nowhere else.
        for node_id, node in cluster.nodes.items():
            present = (node.data_dir / f"spread-{index}").is_dir()
            assert present == (node_id == leader_id), (index, node_id, present)


def test_clients_produce_and_consume_following_the_leaders(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    topic = "followed"
    assert cluster.create_topic(cluster.leader(), topic, partitions=6) is ErrorCode.none
    _brokers, partitions = _agreed_view(cluster, topic, 6)
    leader_of = {p[0]: p[1] for p in partitions}

    # A broker refuses a produce for a partition it does not lead: clients must follow.
    partition = 0
    stranger = next(n for n in cluster.nodes if n != leader_of[partition])
    batch = bytes(build_batch([Record(key=b"k", value=b"v")], base_timestamp=1))
    with Wire(cluster.nodes[stranger].bootstrap) as wire:
        refused = produce_partition(wire, topic, partition, batch)
    assert int(refused.error_code) == int(ErrorCode.not_leader_or_follower)

    clients: list[Confluent | Aiokafka | KafkaPython] = [
        Confluent(cluster.nodes[1].bootstrap),
        Aiokafka(cluster.nodes[2].bootstrap),
        KafkaPython(cluster.nodes[3].bootstrap),
    ]
    per_partition = 5
    for client in clients:
        client.produce(
            topic,
            [
                Rec(key=f"{client.name}-{i}".encode(), value=f"{p}:{i}".encode(), partition=p)
                for p in range(6)
                for i in range(per_partition)
            ],
        )
    expected = {
        p: [f"{c.name}-{i}".encode() for c in clients for i in range(per_partition)]
        for p in range(6)
    }
    # Each client reads one partition led by each node (all three leaders).
    by_leader = {n: [p for p in range(6) if leader_of[p] == n] for n in cluster.nodes}
    for k, client in enumerate(clients):
        for node_id in cluster.nodes:
            p = by_leader[node_id][k % len(by_leader[node_id])]
            got = client.consume(topic, p, "earliest", len(expected[p]))
            assert [g.key for g in got] == expected[p], (client.name, p)
            assert [g.offset for g in got] == list(range(len(expected[p])))
            assert all(g.partition == p for g in got)


def _create_within(
    cluster: NetnsCluster, survivors: list[int], topic: str, limit_s: float
) -> float:
    """Retry CreateTopics through the survivors until it succeeds; seconds it took."""
    started = time.monotonic()
    last: object = None
    attempt = 0
    while time.monotonic() - started < limit_s:
        node_id = survivors[attempt % len(survivors)]
        attempt += 1
        try:
            code = cluster.create_topic(node_id, topic, timeout_s=1.0)
        except ClientError as error:
            last = error
            continue
        # TOPIC_ALREADY_EXISTS: an earlier attempt committed after its answer timed out.
        if code in (ErrorCode.none, ErrorCode.topic_already_exists):
            return time.monotonic() - started
        last = code
        time.sleep(0.02)  # retry backoff
    raise AssertionError(f"no CreateTopics within {limit_s} s of the SIGKILL (last: {last})")


def test_sigkill_of_the_quorum_leader_fails_over_and_it_catches_up(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    old = cluster.leader()
    assert cluster.create_topic(old, "before", partitions=2) is ErrorCode.none

    cluster.kill(old, signal.SIGKILL)
    survivors = [n for n in cluster.nodes if n != old]
    took = _create_within(cluster, survivors, "after-failover", FAILOVER_LIMIT_S)
    print(f"CreateTopics committed {took:.2f} s after SIGKILL of the quorum leader")
    new = cluster.leader(among=survivors)
    assert new != old
    for node_id in survivors:
        until(partial(_has_topic, cluster, node_id, "after-failover"), 10.0, f"node {node_id}")

    cluster.start(old)
    assert until(
        lambda: {"before", "after-failover"} <= cluster.topic_names(old),
        15.0,
        "the restarted node lists the topic created while it was down",
    )
    # It rejoined as a follower of the new leader (it does not answer as leader).
    assert until(lambda: cluster.quorum_leader(new) == new, 10.0, "new leader stays")
    assert cluster.leader() == new
    # Fenced since the kill (its heartbeat connection closed), it is listed again once
    # its new registration is applied, which may follow its first Metadata answers.
    until(lambda: cluster.broker_ids(old) == [1, 2, 3], 10.0, "the restarted node registered")


def test_restarting_all_three_keeps_topics_and_configs(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    leader = cluster.leader()
    assert cluster.create_topic(1, "kept", partitions=3) is ErrorCode.none
    assert (
        cluster.create_topic(2, "compacted", partitions=2, configs={"cleanup.policy": "compact"})
        is ErrorCode.none
    )
    admin = AdminClient({"bootstrap.servers": cluster.nodes[3].bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "kept",
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(15)
    del admin

    wanted = {"kept": {"retention.ms": "3600000"}, "compacted": {"cleanup.policy": "compact"}}
    views = {}
    for topic, partitions in (("kept", 3), ("compacted", 2)):
        views[topic] = _agreed_view(cluster, topic, partitions)
        for node_id in cluster.nodes:
            until(
                partial(_has_configs, cluster, node_id, topic, wanted[topic]),
                10.0,
                f"node {node_id} describes {topic}'s configs",
            )

    for node_id in cluster.nodes:
        assert cluster.kill(node_id, signal.SIGTERM) == 0, cluster.nodes[node_id].log()
    cluster.start_all()
    cluster.wait_ready()
    print(f"leader before the restart {leader}, after {cluster.leader()}")

    for topic, partitions in (("kept", 3), ("compacted", 2)):
        _brokers, after = _agreed_view(cluster, topic, partitions)
        _brokers, before = views[topic]
        # Same partitions on the same leaders and replicas (epochs may move on).
        assert [(p[0], p[1], p[3]) for p in after] == [(p[0], p[1], p[3]) for p in before]
        for node_id in cluster.nodes:
            assert cluster.topic_configs(node_id, topic) == wanted[topic], (node_id, topic)


_SNAPSHOT_KEYS = (
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.ms",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "retention.bytes",
    "retention.ms",
    "segment.jitter.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
)


def _alter_many(cluster: NetnsCluster, node_id: int, topics: list[str], value: int) -> None:
    """One IncrementalAlterConfigs setting every key of `_SNAPSHOT_KEYS` on every topic
    (one metadata record each)."""

    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.IncrementalAlterConfigsRequest,
            resources=tuple(
                make(
                    module.AlterConfigsResource,
                    resource_type=2,  # TOPIC
                    resource_name=topic,
                    configs=tuple(
                        make(module.AlterableConfig, name=k, config_operation=0, value=str(value))
                        for k in _SNAPSHOT_KEYS
                    ),
                )
                for topic in topics
            ),
            validate_only=False,
        )

    response = cluster.call(node_id, "incremental_alter_configs", build)
    assert all(r.error_code is ErrorCode.none for r in response.responses), response


def test_a_node_away_long_catches_up_by_snapshot(netns_cluster: NetnsCluster) -> None:
    """While a follower is down, more metadata records than the snapshot interval
    (10,000 entries) are committed: the leader snapshots and drops the log prefix, and
    the restarted follower installs the snapshot, then has every topic and config."""
    cluster = netns_cluster
    leader = cluster.leader()
    away = next(n for n in cluster.nodes if n != leader)
    topics = [f"snap-{i}" for i in range(20)]
    for topic in topics:
        assert cluster.create_topic(leader, topic) is ErrorCode.none
    cluster.kill(away, signal.SIGKILL)

    per_request = len(topics) * len(_SNAPSHOT_KEYS)
    value = 10**12
    for _ in range(10_000 // per_request + 10):
        value += 1
        _alter_many(cluster, leader, topics, value)
    leader_log = cluster.nodes[leader].log_path
    until(lambda: '"raft.snapshot.taken"' in leader_log.read_text(), 10.0, "leader snapshot")

    cluster.start(away)
    final = {k: str(value) for k in _SNAPSHOT_KEYS}
    until(
        partial(_has_configs, cluster, away, topics[-1], final),
        20.0,
        "the restarted node has the last configs",
    )
    assert set(topics) <= cluster.topic_names(away)
    assert '"raft.snapshot.installed"' in cluster.nodes[away].log_path.read_text()
