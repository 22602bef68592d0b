"""The group coordinator on three `ottla serve` processes (issue 7), over the wire.

Proves:
(1) FindCoordinator names the leader of the group's `__consumer_offsets` partition, and
    every group API sent to another node answers NOT_COORDINATOR in its own error shape:
    JoinGroup, SyncGroup, Heartbeat, LeaveGroup (top level), OffsetCommit (per
    partition), OffsetFetch (top level v7, per group v9), OffsetDelete (top level),
    DescribeGroups, DeleteGroups and ConsumerGroupDescribe (per group),
    ConsumerGroupHeartbeat;
(2) group writes are acks=all: with min.insync.replicas=3 for `__consumer_offsets`, an
    OffsetCommit is acknowledged while all three replicas are in sync, answers
    COORDINATOR_NOT_AVAILABLE (the translation of NOT_ENOUGH_REPLICAS or
    REQUEST_TIMED_OUT) once a follower is down, and is acknowledged again after the
    follower rejoined the ISR; the offsets it acknowledged are fetched back.
"""

from __future__ import annotations

import datetime
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ottla.protocol import ErrorCode
from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _until
from tests.integration.wire import Wire, kio_module, metadata

pytestmark = pytest.mark.timeout(180)

CLUSTER_ID = "gr0upCoordinatorClus1"
GROUP = "moving-group"
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 3
TOPIC = "committed"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    nodes = start_three_nodes(
        tmp_path,
        CLUSTER_ID,
        [
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "offsets.topic.replication.factor=3",
            f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}",
            "min.insync.replicas=3",
            *FAST,
        ],
    )
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def _request(node: BrokerProcess, api_key: int, version: int, cls: str, **fields: Any) -> Any:
    with Wire(node.bootstrap) as wire:
        return wire.request(api_key, version, getattr(kio_module(api_key, version), cls)(**fields))


def _coordinator(node: BrokerProcess) -> int:
    response = _request(
        node, 10, 4, "FindCoordinatorRequest", key_type=0, coordinator_keys=(GROUP,)
    )
    return int(response.coordinators[0].node_id)


def _create(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC].result(30)


def _brokers(node: BrokerProcess) -> int:
    with Wire(node.bootstrap) as wire:
        return len(metadata(wire, [], allow_auto=False).brokers)


def _in_sync(node: BrokerProcess, topics: list[str]) -> bool:
    try:
        with Wire(node.bootstrap) as wire:
            response = metadata(wire, topics, allow_auto=False)
    except OSError:
        return False
    return len(response.topics) == len(topics) and all(
        t.partitions and all(sorted(p.isr_nodes) == [1, 2, 3] for p in t.partitions)
        for t in response.topics
    )


def _commit(node: BrokerProcess, offset: int) -> ErrorCode:
    module = kio_module(8, 9)
    response = _request(
        node,
        8,
        9,
        "OffsetCommitRequest",
        group_id=GROUP,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=(
            module.OffsetCommitRequestTopic(
                name=TOPIC,
                partitions=(
                    module.OffsetCommitRequestPartition(
                        partition_index=0, committed_offset=offset, committed_metadata=""
                    ),
                ),
            ),
        ),
    )
    return ErrorCode(response.topics[0].partitions[0].error_code)


def _fetched(node: BrokerProcess) -> int:
    module = kio_module(9, 9)
    response = _request(
        node,
        9,
        9,
        "OffsetFetchRequest",
        groups=(
            module.OffsetFetchRequestGroup(
                group_id=GROUP,
                topics=(module.OffsetFetchRequestTopics(name=TOPIC, partition_indexes=(0,)),),
            ),
        ),
    )
    return int(response.groups[0].topics[0].partitions[0].committed_offset)


def _not_coordinator_shapes(node: BrokerProcess) -> dict[str, ErrorCode]:
    """The error of every group API sent to `node` for GROUP, read from its shape."""
    errors: dict[str, ErrorCode] = {}
    m = kio_module(11, 9)
    r = _request(
        node,
        11,
        9,
        "JoinGroupRequest",
        group_id=GROUP,
        session_timeout=datetime.timedelta(seconds=10),
        rebalance_timeout=datetime.timedelta(seconds=10),
        member_id="",
        protocol_type="consumer",
        protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b""),),
    )
    errors["JoinGroup"] = r.error_code
    r = _request(
        node, 14, 5, "SyncGroupRequest", group_id=GROUP, generation_id=1, member_id="m",
        assignments=(),
    )  # fmt: skip
    errors["SyncGroup"] = r.error_code
    r = _request(node, 12, 4, "HeartbeatRequest", group_id=GROUP, generation_id=1, member_id="m")
    errors["Heartbeat"] = r.error_code
    m = kio_module(13, 5)
    r = _request(
        node, 13, 5, "LeaveGroupRequest", group_id=GROUP, members=(m.MemberIdentity(member_id="m"),)
    )
    errors["LeaveGroup"] = r.error_code
    m = kio_module(8, 9)
    r = _request(
        node,
        8,
        9,
        "OffsetCommitRequest",
        group_id=GROUP,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=(
            m.OffsetCommitRequestTopic(
                name=TOPIC,
                partitions=(
                    m.OffsetCommitRequestPartition(
                        partition_index=0, committed_offset=1, committed_metadata=""
                    ),
                ),
            ),
        ),
    )
    errors["OffsetCommit"] = r.topics[0].partitions[0].error_code
    r = _request(node, 9, 7, "OffsetFetchRequest", group_id=GROUP, topics=None)
    errors["OffsetFetch v7"] = r.error_code
    m = kio_module(9, 9)
    r = _request(
        node,
        9,
        9,
        "OffsetFetchRequest",
        groups=(m.OffsetFetchRequestGroup(group_id=GROUP, topics=None),),
    )
    errors["OffsetFetch v9"] = r.groups[0].error_code
    m = kio_module(47, 0)
    r = _request(
        node,
        47,
        0,
        "OffsetDeleteRequest",
        group_id=GROUP,
        topics=(
            m.OffsetDeleteRequestTopic(
                name=TOPIC, partitions=(m.OffsetDeleteRequestPartition(partition_index=0),)
            ),
        ),
    )
    errors["OffsetDelete"] = r.error_code
    r = _request(
        node, 15, 5, "DescribeGroupsRequest", groups=(GROUP,), include_authorized_operations=False
    )
    errors["DescribeGroups"] = r.groups[0].error_code
    r = _request(node, 42, 2, "DeleteGroupsRequest", groups_names=(GROUP,))
    errors["DeleteGroups"] = r.results[0].error_code
    r = _request(
        node,
        68,
        1,
        "ConsumerGroupHeartbeatRequest",
        group_id=GROUP,
        member_id="0123456789abcdefABCDEF",
        member_epoch=0,
        rebalance_timeout=datetime.timedelta(seconds=10),
        subscribed_topic_names=(TOPIC,),
        topic_partitions=(),
    )
    errors["ConsumerGroupHeartbeat"] = r.error_code
    r = _request(
        node,
        69,
        1,
        "ConsumerGroupDescribeRequest",
        group_ids=(GROUP,),
        include_authorized_operations=False,
    )
    errors["ConsumerGroupDescribe"] = r.groups[0].error_code
    return errors


def test_group_requests_go_to_the_partition_leader_and_writes_wait_for_the_isr(
    cluster: dict[int, BrokerProcess],
) -> None:
    nodes = cluster
    _until(lambda: _brokers(nodes[1]) == 3, 30)  # else the offsets topic gets fewer replicas
    _create(",".join(n.bootstrap for n in nodes.values()))
    _until(lambda: _coordinator(nodes[1]) in nodes, 30)  # creates __consumer_offsets
    _until(lambda: _in_sync(nodes[1], [OFFSETS_TOPIC]), 30)
    coordinator = _coordinator(nodes[1])
    assert all(_coordinator(n) == coordinator for n in nodes.values())
    other = next(n for n in nodes if n != coordinator)

    # (1) every group API at a node that is not the coordinator.
    errors = _not_coordinator_shapes(nodes[other])
    assert errors == dict.fromkeys(errors, ErrorCode.not_coordinator), errors

    # (2) commits are acknowledged once every in-sync replica has them...
    _until(lambda: _commit(nodes[coordinator], 10) is ErrorCode.none, 15)
    assert _fetched(nodes[coordinator]) == 10
    # ...and not while min.insync.replicas=3 cannot be met.
    nodes[other].stop(signal.SIGKILL)
    started = time.monotonic()
    assert _commit(nodes[coordinator], 20) is ErrorCode.coordinator_not_available
    print(f"commit refused after {time.monotonic() - started:.1f} s with a follower down")
    nodes[other].start()
    _until(lambda: _in_sync(nodes[coordinator], [OFFSETS_TOPIC]), 45)
    _until(lambda: _commit(nodes[coordinator], 30) is ErrorCode.none, 15)
    assert _fetched(nodes[coordinator]) == 30
