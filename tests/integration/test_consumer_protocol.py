"""The KIP-848 consumer rebalance protocol against a real `ottla serve`.

Proves, with confluent-kafka (librdkafka) and `group.protocol=consumer` (one member
per process, see consumer_protocol_worker.py): the client speaks
ConsumerGroupHeartbeat to ottla (ConsumerGroupDescribe shows its members as
consumer-protocol members, ListGroups the group's type "consumer"); three members
share a 6-partition topic; a fourth joins and gets partitions; a SIGKILLed member's
partitions move to the others within the broker's session timeout
(`group.consumer.session.timeout.ms=6000`) plus a short allowance; every record of a
100,000-record topic is processed, and no record whose processing was committed is
processed twice (only the killed member's uncommitted tail and batches whose commit
failed are processed again); committed offsets end at the log end and, with the
group's epochs, survive a SIGKILL restart of the broker. Raw requests: Kafka's
error codes (UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, INVALID_REQUEST, GROUP_ID_NOT_FOUND
for a classic group, STALE_MEMBER_EPOCH on commits) and a leave.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from kio.schema.consumer_group_describe.v1 import request as describe
from kio.schema.consumer_group_heartbeat.v1 import request as heartbeat
from kio.schema.list_groups.v5 import request as list_groups
from kio.schema.offset_commit.v9 import request as offset_commit
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i32, i32Timedelta, i64

from ottla.protocol import ErrorCode
from tests.integration.conftest import BrokerProcess
from tests.integration.rawclient import request
from tests.integration.test_groups import (
    PARTITIONS,
    RECORDS,
    _create_topic,
    _per_partition,
    _processing,
    _produce,
    _stable_member,
    _wait,
)
from tests.integration.test_groups import (
    Worker as GroupWorker,
)

WORKER = Path(__file__).with_name("consumer_protocol_worker.py")
SESSION_TIMEOUT_S = 6.0
OVERRIDES = (
    "group.initial.rebalance.delay.ms=0",
    "group.consumer.session.timeout.ms=6000",
    "group.consumer.heartbeat.interval.ms=500",
)


class Worker(GroupWorker):
    """One consumer-protocol member process and the events it logged."""

    def __init__(self, bootstrap: str, topic: str, group: str, path: Path) -> None:
        self.path = path
        self.args = [sys.executable, str(WORKER), bootstrap, topic, group, str(path)]
        self.process = subprocess.Popen(self.args, stderr=subprocess.DEVNULL)


def _shared(members: list[GroupWorker]) -> bool:
    owned = [w.current() for w in members]
    return all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS))


def _describe(port: int, group: str) -> Any:
    body = describe.ConsumerGroupDescribeRequest(
        group_ids=(GroupId(group),), include_authorized_operations=False
    )
    return request(port, body).groups[0]


def _committed(bootstrap: str, topic: str, group: str) -> list[int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = reader.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20
        )
    finally:
        reader.close()
    return [tp.offset for tp in offsets]


def test_consumer_protocol_shares_rebalances_survives_a_kill_and_processes_everything(
    broker_factory: Any, tmp_path: Path
) -> None:
    broker: BrokerProcess = broker_factory(*OVERRIDES)
    topic, group = "work-848", "group-848"
    _create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, RECORDS)
    workers: list[GroupWorker] = []
    try:
        for index in range(3):
            workers.append(Worker(broker.bootstrap, topic, group, tmp_path / f"w{index}.log"))
        _wait(lambda: _shared(workers), what="three members sharing the partitions")
        described = _describe(broker.port, group)
        assert described.error_code is ErrorCode.none
        assert len(described.members) == 3
        assert {int(m.member_type) for m in described.members} == {1}
        assert all(m.subscribed_topic_names == (topic,) for m in described.members)
        listed = request(broker.port, list_groups.ListGroupsRequest(states_filter=()))
        types = {g.group_id: g.group_type for g in listed.groups}
        assert types[group] == "consumer"

        workers.append(Worker(broker.bootstrap, topic, group, tmp_path / "w3.log"))
        _wait(lambda: _shared(workers), what="the fourth member to get partitions")
        victim, survivors = workers[0], workers[1:]
        killed_at = time.time()
        victim.kill()
        _wait(lambda: _shared(survivors), timeout_s=30, what="partitions to move after the kill")
        last = max(w.assignments()[-1][0] for w in survivors)
        assert last - killed_at < SESSION_TIMEOUT_S + 3, (last, killed_at)

        def all_processed() -> bool:
            processed, _ = _processing(workers)
            return len(processed) >= RECORDS

        _wait(all_processed, timeout_s=90, what="every record to be processed")
        processed, committed = _processing(workers)
        expected = {(p, o) for p in range(PARTITIONS) for o in range(_per_partition(p))}
        assert set(processed) == expected
        twice_committed = [item for item, count in committed.items() if count > 1]
        assert not twice_committed, twice_committed[:10]
        for item, count in processed.items():
            if count > 1:
                assert committed[item] <= 1
        epoch_before = int(_describe(broker.port, group).group_epoch)
    finally:
        for worker in workers:
            worker.stop()
    expected_offsets = [_per_partition(p) for p in range(PARTITIONS)]
    _wait(
        lambda: _committed(broker.bootstrap, topic, group) == expected_offsets,
        timeout_s=20,
        what="the last commits",
    )
    broker.restart(signal.SIGKILL)
    assert _committed(broker.bootstrap, topic, group) == expected_offsets
    after = _describe(broker.port, group)
    assert after.error_code is ErrorCode.none
    assert int(after.group_epoch) >= epoch_before


def _heartbeat(port: int, group: str, member: str, epoch: int, **kw: Any) -> Any:
    joining = epoch == 0
    body = heartbeat.ConsumerGroupHeartbeatRequest(
        group_id=GroupId(group),
        member_id=member,
        member_epoch=i32(epoch),
        rebalance_timeout=i32Timedelta.parse(
            datetime.timedelta(milliseconds=30_000 if joining else -1)
        ),
        subscribed_topic_names=kw.get("names", (TopicName("raw848"),) if joining else None),
        topic_partitions=kw.get("owned", () if joining else None),
    )
    return request(port, body)


def _commit(port: int, group: str, member: str, epoch: int) -> ErrorCode:
    body = offset_commit.OffsetCommitRequest(
        group_id=GroupId(group),
        generation_id_or_member_epoch=i32(epoch),
        member_id=member,
        topics=(
            offset_commit.OffsetCommitRequestTopic(
                name=TopicName("raw848"),
                partitions=(
                    offset_commit.OffsetCommitRequestPartition(
                        partition_index=i32(0),
                        committed_offset=i64(1),
                        committed_leader_epoch=i32(-1),
                        committed_metadata="",
                    ),
                ),
            ),
        ),
    )
    error: ErrorCode = request(port, body).topics[0].partitions[0].error_code
    return error


def test_consumer_group_heartbeat_errors_and_leave(broker_factory: Any) -> None:
    broker: BrokerProcess = broker_factory(*OVERRIDES)
    port = broker.port
    _create_topic(broker.bootstrap, "raw848", 2)
    member = str(uuid.uuid4())
    joined = _heartbeat(port, "raw-848", member, 0)
    assert joined.error_code is ErrorCode.none
    assert (joined.member_id, int(joined.member_epoch)) == (member, 1)
    assert joined.heartbeat_interval == datetime.timedelta(milliseconds=500)
    assert joined.assignment is not None
    assert [sorted(tp.partitions) for tp in joined.assignment.topic_partitions] == [[0, 1]]
    assert _heartbeat(port, "raw-848", member, 1).error_code is ErrorCode.none
    assert _heartbeat(port, "raw-848", member, 5).error_code is ErrorCode.fenced_member_epoch
    assert _heartbeat(port, "raw-848", "stranger", 1).error_code is ErrorCode.unknown_member_id
    assert _heartbeat(port, "raw-848", "", 0).error_code is ErrorCode.invalid_request
    assert _commit(port, "raw-848", member, 1) is ErrorCode.none
    assert _commit(port, "raw-848", member, 0) is ErrorCode.stale_member_epoch
    _stable_member(port, "classic-848")
    refused = _heartbeat(port, "classic-848", member, 0)
    assert refused.error_code is ErrorCode.group_id_not_found
    left = _heartbeat(port, "raw-848", member, -1)
    assert (left.error_code, int(left.member_epoch)) == (ErrorCode.none, -1)
    assert _describe(port, "raw-848").group_state == "Empty"
    assert _describe(port, "classic-848").error_code is ErrorCode.group_id_not_found
