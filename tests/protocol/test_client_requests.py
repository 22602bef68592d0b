"""Requests encoded by real clients' own protocol classes decode correctly in ottla.

Proves, independently of kio's writer: Produce, Fetch, Metadata, JoinGroup and
OffsetCommit requests encoded by kafka-python's (`kafka.protocol`) classes at every
version both it and kio know, and by aiokafka's (`aiokafka.protocol`) classes at every
version it implements, framed with their own request headers, decode with
`decode_request` to exactly the field values the client encoded (header included).
JoinGroup and OffsetCommit are not in SUPPORTED_APIS yet and are decoded through a
test registry built with `make_spec`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka.protocol import commit as aio_commit
from aiokafka.protocol import fetch as aio_fetch
from aiokafka.protocol import group as aio_group
from aiokafka.protocol import metadata as aio_metadata
from aiokafka.protocol import produce as aio_produce
from aiokafka.protocol.types import (
    Array,
    Boolean,
    Bytes,
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Int64,
    Schema,
    String,
)
from kafka.protocol.consumer import FetchRequest, JoinGroupRequest, OffsetCommitRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest

from ottla.protocol import ApiRegistry, decode_request, kio_body
from ottla.protocol.apis import make_spec

from .clientcompare import same_by_name, same_by_position

REGISTRY = ApiRegistry(
    [
        make_spec("produce"),
        make_spec("fetch"),
        make_spec("metadata"),
        make_spec("join_group"),
        make_spec("offset_commit"),
    ]
)
TOPIC_ID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
RECORDS = b"\x00" * 12 + b"records are opaque here" * 3


# -- kafka-python: one request per API with every field set, encoded at each version --


def _kp_produce() -> Any:
    partition = ProduceRequest.TopicProduceData.PartitionProduceData
    return ProduceRequest(
        transactional_id="txn-1",
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="orders",
                topic_id=TOPIC_ID,
                partition_data=[
                    partition(index=0, records=RECORDS),
                    partition(index=7, records=None),
                ],
            ),
            ProduceRequest.TopicProduceData(name="t2", topic_id=TOPIC_ID, partition_data=[]),
        ],
    )


def _kp_fetch() -> Any:
    topic = FetchRequest.FetchTopic
    return FetchRequest(
        cluster_id="cluster-x",
        replica_id=-1,
        replica_state=FetchRequest.ReplicaState(replica_id=-1, replica_epoch=-1),
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52_428_800,
        isolation_level=1,
        session_id=12,
        session_epoch=3,
        topics=[
            topic(
                topic="orders",
                topic_id=TOPIC_ID,
                partitions=[
                    topic.FetchPartition(
                        partition=2,
                        current_leader_epoch=5,
                        fetch_offset=123_456_789_012,
                        last_fetched_epoch=4,
                        log_start_offset=-1,
                        partition_max_bytes=1_048_576,
                    )
                ],
            )
        ],
        forgotten_topics_data=[
            FetchRequest.ForgottenTopic(topic="old", topic_id=TOPIC_ID, partitions=[1, 2, 3])
        ],
        rack_id="rack-a",
    )


def _kp_metadata() -> Any:
    topic = MetadataRequest.MetadataRequestTopic
    return MetadataRequest(
        topics=[topic(name="orders", topic_id=TOPIC_ID), topic(name="payments")],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=True,
        include_topic_authorized_operations=True,
    )


def _kp_join_group() -> Any:
    protocol = JoinGroupRequest.JoinGroupRequestProtocol
    return JoinGroupRequest(
        group_id="group-1",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=60_000,
        member_id="member-7",
        group_instance_id="instance-3",
        protocol_type="consumer",
        protocols=[
            protocol(name="range", metadata=b"\x00\x01meta"),
            protocol(name="rr", metadata=b""),
        ],
        reason="because",
    )


def _kp_offset_commit() -> Any:
    topic = OffsetCommitRequest.OffsetCommitRequestTopic
    partition = topic.OffsetCommitRequestPartition
    return OffsetCommitRequest(
        group_id="group-1",
        generation_id_or_member_epoch=9,
        member_id="member-7",
        group_instance_id="instance-3",
        retention_time_ms=86_400_000,
        topics=[
            topic(
                name="orders",
                topic_id=TOPIC_ID,
                partitions=[
                    partition(
                        partition_index=1,
                        committed_offset=42,
                        committed_leader_epoch=6,
                        commit_timestamp=1_700_000_000_000,
                        committed_metadata="meta",
                    ),
                    partition(partition_index=2, committed_offset=0, committed_metadata=None),
                ],
            )
        ],
    )


KAFKA_PYTHON: dict[str, Callable[[], Any]] = {
    "produce": _kp_produce,
    "fetch": _kp_fetch,
    "metadata": _kp_metadata,
    "join_group": _kp_join_group,
    "offset_commit": _kp_offset_commit,
}


def _kp_cases() -> Iterator[tuple[str, int]]:
    for name, build in KAFKA_PYTHON.items():
        request_class = type(build())
        spec = next(s for s in REGISTRY.values() if s.name == name)
        low = max(spec.decodable_min, request_class.valid_versions[0])
        high = min(spec.max_version, request_class.valid_versions[1])
        for version in range(low, high + 1):
            yield name, version


@pytest.mark.parametrize(("name", "version"), list(_kp_cases()))
def test_kafka_python_request_decodes(name: str, version: int) -> None:
    request = KAFKA_PYTHON[name]()
    request.with_header(correlation_id=1000 + version, client_id="kafka-python-test")
    frame = bytes(request.encode(version=version, header=True))
    decoded = decode_request(frame, REGISTRY)
    assert decoded.spec.name == name
    assert decoded.header.api_key == request.API_KEY
    assert decoded.header.api_version == version
    assert decoded.header.correlation_id == 1000 + version
    assert decoded.header.client_id == "kafka-python-test"
    assert decoded.flexible is request.flexible_version_q(version)
    body = kio_body(decoded)
    assert same_by_name(body, request) is None, same_by_name(body, request)


def test_kafka_python_produce_records_are_byte_exact() -> None:
    request = _kp_produce()
    request.with_header(correlation_id=1, client_id="c")
    decoded = decode_request(bytes(request.encode(version=9, header=True)), REGISTRY)
    partitions = decoded.body.topic_data[0].partition_data
    assert partitions[0].records == RECORDS
    assert partitions[1].records is None


# -- aiokafka: its structs at every version it implements, values from their schemas --


class _Values:
    """Distinct, deterministic values for each field of an aiokafka schema."""

    def __init__(self) -> None:
        self.counter = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def for_type(self, name: str, kind: Any) -> Any:
        n = self._next()
        if isinstance(kind, Schema):
            return tuple(
                self.for_type(n_, k_) for n_, k_ in zip(kind.names, kind.fields, strict=True)
            )
        if isinstance(kind, Array | CompactArray):
            return [self.for_type(name, kind.array_of) for _ in range(2)]
        if isinstance(kind, String | CompactString):
            return f"{name}-{n}"
        if kind in (Bytes, CompactBytes) or isinstance(kind, Bytes | CompactBytes):
            return RECORDS if name in ("messages", "records") else f"bytes-{n}".encode()
        if kind is Boolean:
            return n % 2 == 0
        if kind is Int8:
            return n % 2  # isolation_level and friends: small enums
        if kind is Int16:
            return n % 1000
        if kind is Int32:
            return n * 1000
        if kind is Int64:
            return n * 10_000_000_000
        raise AssertionError(f"no value for {name}: {kind!r}")


AIOKAFKA_MODULES = {
    "produce": (aio_produce, "ProduceRequest"),
    "fetch": (aio_fetch, "FetchRequest"),
    "metadata": (aio_metadata, "MetadataRequest"),
    "join_group": (aio_group, "JoinGroupRequest"),
    "offset_commit": (aio_commit, "OffsetCommitRequest"),
}


def _aio_cases() -> Iterator[tuple[str, int]]:
    for name, (module, prefix) in AIOKAFKA_MODULES.items():
        spec = next(s for s in REGISTRY.values() if s.name == name)
        for version in range(spec.decodable_min, spec.max_version + 1):
            if hasattr(module, f"{prefix}_v{version}"):
                yield name, version


AIO_CASES = list(_aio_cases())


def test_aiokafka_versions_are_covered() -> None:
    names = {name for name, _ in AIO_CASES}
    assert names == set(AIOKAFKA_MODULES)
    assert len(AIO_CASES) >= 15


@pytest.mark.parametrize(("name", "version"), AIO_CASES)
def test_aiokafka_request_decodes(name: str, version: int) -> None:
    module, prefix = AIOKAFKA_MODULES[name]
    struct_class = getattr(module, f"{prefix}_v{version}")
    values = _Values().for_type(prefix, struct_class.SCHEMA)
    request = struct_class(*values)
    header = request.build_request_header(correlation_id=77 + version, client_id="aiokafka-test")
    frame = header.encode() + request.encode()
    decoded = decode_request(frame, REGISTRY)
    assert decoded.spec.name == name
    assert decoded.header.api_version == version
    assert decoded.header.correlation_id == 77 + version
    assert decoded.header.client_id == "aiokafka-test"
    difference = same_by_position(kio_body(decoded), values)
    assert difference is None, difference
