"""Consumer groups against a real `ottla serve`, with real clients and raw requests.

Proves, with each of confluent-kafka, aiokafka and kafka-python (one member per
process, see group_worker.py): three members share a 6-partition topic; a fourth
joins and gets partitions; a SIGKILLed member's partitions move to the others
within the session timeout (6000 ms) plus a short allowance; every record of a
100,000-record topic is processed, and no record whose processing was committed is
processed twice (only the killed member's uncommitted tail and batches whose commit
failed in a rebalance are processed again); committed offsets end at the log end.
Static membership (confluent-kafka): a static member killed and restarted within
the session timeout gets the same partitions and the other member sees no
rebalance. Raw requests: a group's state, generation and committed offsets (with
metadata) survive SIGTERM and SIGKILL restarts; Kafka's error codes for an absurd
session timeout, an empty group id, a fenced generation, an unknown member, an
unknown partition, oversized metadata, deleting a non-empty group. OffsetCommit
and OffsetFetch v10 name topics by id in their answers too (UNKNOWN_TOPIC_ID for an
unknown id or partition).
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kio.schema.delete_groups.v2 import request as delete_groups
from kio.schema.describe_groups.v5 import request as describe_groups
from kio.schema.heartbeat.v4 import request as heartbeat
from kio.schema.join_group.v7 import request as join_group
from kio.schema.metadata.v12 import request as metadata
from kio.schema.offset_commit.v8 import request as offset_commit
from kio.schema.offset_commit.v10 import request as offset_commit_v10
from kio.schema.offset_fetch.v7 import request as offset_fetch
from kio.schema.offset_fetch.v10 import request as offset_fetch_v10
from kio.schema.sync_group.v5 import request as sync_group
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i32, i32Timedelta, i64

from ottla.protocol import ErrorCode
from tests.integration.conftest import BrokerProcess
from tests.integration.rawclient import request

WORKER = Path(__file__).with_name("group_worker.py")
FAST_GROUPS = "group.initial.rebalance.delay.ms=0"
PARTITIONS = 6
RECORDS = 100_000
SESSION_TIMEOUT_S = 6.0
WAIT_S = 60.0


def _create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for index in range(count):
        producer.produce(topic, b"v%d" % index, partition=index % PARTITIONS)
        if index % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def _per_partition(partition: int) -> int:
    return len(range(partition, RECORDS, PARTITIONS))


class Worker:
    """One group member process and the events it logged."""

    def __init__(
        self, client: str, bootstrap: str, topic: str, group: str, path: Path, *extra: str
    ):
        self.path = path
        self.args = [
            sys.executable,
            str(WORKER),
            client,
            bootstrap,
            topic,
            group,
            str(path),
            *extra,
        ]
        self.process = subprocess.Popen(self.args, stderr=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def assignments(self) -> list[tuple[float, set[int]]]:
        result = []
        for line in self.lines():
            if line.startswith("A "):
                _, when, *rest = line.split(" ")
                parts = rest[0] if rest else ""
                result.append((float(when), {int(p) for p in parts.split(",") if p}))
        return result

    def current(self) -> set[int]:
        assignments = self.assignments()
        return assignments[-1][1] if assignments else set()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _wait(predicate: Any, timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)  # polling files written by other processes
    raise AssertionError(f"timed out waiting for {what}")


def _processing(workers: list[Worker]) -> tuple[Counter[tuple[int, int]], Counter[tuple[int, int]]]:
    """(all processings, committed processings) of each (partition, offset)."""
    processed: Counter[tuple[int, int]] = Counter()
    committed: Counter[tuple[int, int]] = Counter()
    for worker in workers:
        pending: list[tuple[int, int]] = []
        for line in worker.lines():
            kind, *rest = line.split(" ")
            if kind == "R" and len(rest) == 2:
                item = (int(rest[0]), int(rest[1]))
                processed[item] += 1
                pending.append(item)
            elif kind == "C" and len(rest) == 2:
                partition, next_offset = int(rest[0]), int(rest[1])
                for item in pending:
                    if item[0] == partition and item[1] < next_offset:
                        committed[item] += 1
                pending = [i for i in pending if i[0] != partition]
            elif kind == "F":
                pending = []
    return processed, committed


@pytest.mark.parametrize("client", ["confluent", "aiokafka", "kafka-python"])
def test_group_shares_partitions_survives_a_killed_member_and_processes_everything(
    broker_factory: Any, tmp_path: Path, client: str
) -> None:
    broker: BrokerProcess = broker_factory(FAST_GROUPS)
    topic, group = f"work-{client}", f"group-{client}"
    _create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, RECORDS)
    workers: list[Worker] = []
    try:
        for index in range(3):
            path = tmp_path / f"w{index}.log"
            workers.append(Worker(client, broker.bootstrap, topic, group, path))

        def shared(members: list[Worker]) -> bool:
            owned = [w.current() for w in members]
            return all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS))

        _wait(lambda: shared(workers), what="three members sharing the partitions")
        workers.append(Worker(client, broker.bootstrap, topic, group, tmp_path / "w3.log"))
        _wait(lambda: shared(workers), what="the fourth member to get partitions")
        victim, survivors = workers[0], workers[1:]
        killed_at = time.time()
        victim.kill()
        _wait(lambda: shared(survivors), timeout_s=30, what="partitions to move after the kill")
        moved_at = min(when for w in survivors for when, _ in w.assignments() if when >= killed_at)
        last = max(w.assignments()[-1][0] for w in survivors)
        assert last - killed_at < SESSION_TIMEOUT_S + 4, (moved_at, last, killed_at)

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
    finally:
        for worker in workers:
            worker.stop()
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        offsets = reader.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20
        )
    finally:
        reader.close()
    assert [tp.offset for tp in offsets] == [_per_partition(p) for p in range(PARTITIONS)]


def test_static_member_restart_keeps_its_partitions_without_rebalance(
    broker_factory: Any, tmp_path: Path
) -> None:
    broker: BrokerProcess = broker_factory(FAST_GROUPS)
    topic, group = "static-topic", "static-group"
    _create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, 6000)
    args = ("confluent", broker.bootstrap, topic, group)
    first = Worker(*args, tmp_path / "s1.log", "instance-1")
    second = Worker(*args, tmp_path / "s2.log", "instance-2")
    try:
        _wait(
            lambda: (
                len(first.current() | second.current()) == PARTITIONS
                and bool(first.current())
                and bool(second.current())
            ),
            what="both static members assigned",
        )
        before = first.current()
        second_assignments = len(second.assignments())
        first.kill()
        restarted = Worker(*args, tmp_path / "s1b.log", "instance-1")
        _wait(lambda: bool(restarted.assignments()), timeout_s=20, what="the restarted member")
        assert restarted.current() == before
        # Past the old member's session timeout: still no rebalance for the other.
        time.sleep(SESSION_TIMEOUT_S + 1)
        assert len(second.assignments()) == second_assignments
        assert len(restarted.assignments()) == 1
        restarted.stop()
    finally:
        first.stop()
        second.stop()


# -- raw requests ----------------------------------------------------------------------------


def _join(port: int, group: str, member_id: str = "", session_ms: int = 30_000, **kw: Any) -> Any:
    body = join_group.JoinGroupRequest(
        group_id=GroupId(group),
        session_timeout=i32Timedelta.parse(datetime.timedelta(milliseconds=session_ms)),
        rebalance_timeout=i32Timedelta.parse(datetime.timedelta(milliseconds=30_000)),
        member_id=member_id,
        group_instance_id=kw.get("instance"),
        protocol_type="consumer",
        protocols=(join_group.JoinGroupRequestProtocol(name="range", metadata=b"meta"),),
    )
    return request(port, body)


def _commit(port: int, group: str, generation: int, member: str, **kw: Any) -> Any:
    body = offset_commit.OffsetCommitRequest(
        group_id=GroupId(group),
        generation_id_or_member_epoch=i32(generation),
        member_id=member,
        topics=(
            offset_commit.OffsetCommitRequestTopic(
                name=TopicName(kw.get("topic", "raw")),
                partitions=(
                    offset_commit.OffsetCommitRequestPartition(
                        partition_index=i32(kw.get("partition", 0)),
                        committed_offset=i64(kw.get("offset", 5)),
                        committed_leader_epoch=i32(-1),
                        committed_metadata=kw.get("metadata", "note"),
                    ),
                ),
            ),
        ),
    )
    return request(port, body).topics[0].partitions[0].error_code


def _fetch(port: int, group: str) -> list[tuple[int, int, str | None]]:
    body = offset_fetch.OffsetFetchRequest(group_id=GroupId(group), topics=None)
    response = request(port, body)
    assert response.error_code is ErrorCode.none
    return [
        (int(p.partition_index), int(p.committed_offset), p.metadata)
        for t in response.topics
        for p in t.partitions
    ]


def _stable_member(port: int, group: str) -> tuple[str, int]:
    joined = _join(port, group, instance="raw-instance")
    assert joined.error_code is ErrorCode.none
    member, generation = joined.member_id, int(joined.generation_id)
    synced = request(
        port,
        sync_group.SyncGroupRequest(
            group_id=GroupId(group),
            generation_id=i32(generation),
            member_id=member,
            group_instance_id="raw-instance",
            protocol_type="consumer",
            protocol_name="range",
            assignments=(sync_group.SyncGroupRequestAssignment(member_id=member, assignment=b"a"),),
        ),
    )
    assert synced.error_code is ErrorCode.none and synced.assignment == b"a"
    return member, generation


def _heartbeat(port: int, group: str, generation: int, member: str) -> ErrorCode:
    body = heartbeat.HeartbeatRequest(
        group_id=GroupId(group),
        generation_id=i32(generation),
        member_id=member,
        group_instance_id="raw-instance",
    )
    error: ErrorCode = request(port, body).error_code
    return error


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_offsets_and_group_state_survive_restart(broker_factory: Any, sig: signal.Signals) -> None:
    broker: BrokerProcess = broker_factory(FAST_GROUPS)
    _create_topic(broker.bootstrap, "raw", 2)
    member, generation = _stable_member(broker.port, "durable")
    assert _commit(broker.port, "durable", generation, member, offset=17) is ErrorCode.none
    assert _commit(broker.port, "simple", -1, "", partition=1, offset=3) is ErrorCode.none
    broker.restart(sig)
    assert _fetch(broker.port, "durable") == [(0, 17, "note")]
    assert _fetch(broker.port, "simple") == [(1, 3, "note")]
    described = request(
        broker.port,
        describe_groups.DescribeGroupsRequest(
            groups=(GroupId("durable"),), include_authorized_operations=False
        ),
    ).groups[0]
    assert described.group_state == "Stable"
    assert [m.member_id for m in described.members] == [member]
    assert described.members[0].member_assignment == b"a"
    assert _heartbeat(broker.port, "durable", generation, member) is ErrorCode.none


def test_bad_group_requests_get_kafka_error_codes(broker_factory: Any) -> None:
    broker: BrokerProcess = broker_factory(FAST_GROUPS)
    port = broker.port
    _create_topic(broker.bootstrap, "raw", 1)
    assert _join(port, "g", session_ms=10**9).error_code is ErrorCode.invalid_session_timeout
    assert _join(port, "g", session_ms=1).error_code is ErrorCode.invalid_session_timeout
    assert _join(port, "").error_code is ErrorCode.invalid_group_id
    member, generation = _stable_member(port, "g")
    assert _commit(port, "g", generation + 1, member) is ErrorCode.illegal_generation
    assert _commit(port, "g", generation, "stranger") is ErrorCode.unknown_member_id
    assert _commit(port, "", -1, "") is ErrorCode.invalid_group_id
    assert _commit(port, "g", generation, member, topic="nope") is (
        ErrorCode.unknown_topic_or_partition
    )
    assert _commit(port, "g", generation, member, partition=9) is (
        ErrorCode.unknown_topic_or_partition
    )
    too_large = _commit(port, "g", generation, member, metadata="x" * 4097)
    assert too_large is ErrorCode.offset_metadata_too_large
    assert _heartbeat(port, "g", generation + 1, member) is ErrorCode.illegal_generation
    assert _heartbeat(port, "g", generation, "old-member") is ErrorCode.fenced_instance_id
    deleted = request(port, delete_groups.DeleteGroupsRequest(groups_names=(GroupId("g"),)))
    assert deleted.results[0].error_code is ErrorCode.non_empty_group
    missing = request(port, delete_groups.DeleteGroupsRequest(groups_names=(GroupId("x"),)))
    assert missing.results[0].error_code is ErrorCode.group_id_not_found


def test_offsets_by_topic_id_v10(broker_factory: Any) -> None:
    broker: BrokerProcess = broker_factory(FAST_GROUPS)
    port = broker.port
    _create_topic(broker.bootstrap, "by-id", 2)
    wanted = (metadata.MetadataRequestTopic(topic_id=None, name=TopicName("by-id")),)
    described = request(
        port,
        metadata.MetadataRequest(
            topics=wanted,
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        ),
    )
    topic_id = described.topics[0].topic_id
    unknown = uuid.UUID(int=7)

    def partition(index: int, offset: int) -> Any:
        return offset_commit_v10.OffsetCommitRequestPartition(
            partition_index=i32(index),
            committed_offset=i64(offset),
            committed_leader_epoch=i32(-1),
            committed_metadata="m",
        )

    committed = request(
        port,
        offset_commit_v10.OffsetCommitRequest(
            group_id=GroupId("ids"),
            generation_id_or_member_epoch=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=(
                offset_commit_v10.OffsetCommitRequestTopic(
                    topic_id=topic_id, partitions=(partition(1, 11), partition(9, 1))
                ),
                offset_commit_v10.OffsetCommitRequestTopic(
                    topic_id=unknown, partitions=(partition(0, 1),)
                ),
                # The zero id (kio's None): no topic's; once a handler_failed and a
                # dropped connection.
                offset_commit_v10.OffsetCommitRequestTopic(
                    topic_id=None, partitions=(partition(0, 1),)
                ),
            ),
        ),
    )
    assert [(t.topic_id, [p.error_code for p in t.partitions]) for t in committed.topics] == [
        (topic_id, [ErrorCode.none, ErrorCode.unknown_topic_id]),
        (unknown, [ErrorCode.unknown_topic_id]),
        (None, [ErrorCode.unknown_topic_id]),
    ]

    def fetch(topics: Any) -> list[tuple[Any, list[tuple[int, int, ErrorCode]]]]:
        group = offset_fetch_v10.OffsetFetchRequestGroup(
            group_id=GroupId("ids"), member_id=None, member_epoch=i32(-1), topics=topics
        )
        response = request(
            port, offset_fetch_v10.OffsetFetchRequest(groups=(group,), require_stable=False)
        )
        (answer,) = response.groups
        assert answer.error_code is ErrorCode.none
        return [
            (
                t.topic_id,
                [
                    (int(p.partition_index), int(p.committed_offset), p.error_code)
                    for p in t.partitions
                ],
            )
            for t in answer.topics
        ]

    assert fetch(None) == [(topic_id, [(1, 11, ErrorCode.none)])]
    asked = (
        offset_fetch_v10.OffsetFetchRequestTopics(
            topic_id=topic_id, partition_indexes=(i32(0), i32(1))
        ),
        offset_fetch_v10.OffsetFetchRequestTopics(topic_id=unknown, partition_indexes=(i32(0),)),
        offset_fetch_v10.OffsetFetchRequestTopics(topic_id=None, partition_indexes=(i32(0),)),
    )
    assert fetch(asked) == [
        (topic_id, [(0, -1, ErrorCode.none), (1, 11, ErrorCode.none)]),
        (unknown, [(0, -1, ErrorCode.unknown_topic_id)]),
        (None, [(0, -1, ErrorCode.unknown_topic_id)]),
    ]
