"""Fetch v12+ on the wire, by hand: the request read, the response written.

Fetch is the one API on every replicated write's path: for each acks=all record
the leader reads two replica Fetch requests and writes two Fetch responses (and
every consumer poll is one more of each). Through kio each request costs a
generic length walk, a reader that builds frozen dataclasses field by field, and
each response three entity constructions before the generated writer runs. On a
two-core machine, where a cold cache makes that Python about three times slower
than in a loop, those steps were a quarter of a leader's CPU per replicated record.

So the flexible versions (v12-v17) are read and written here directly with
`struct`, into and from plain slotted objects that carry kio's field names (the
handlers read them the same way). The bytes are kio's: the tests read and write
random requests and responses of every version both ways and compare.

Reading is bounds-checked as it goes (wire_read.py: a truncated or absurd frame raises
ValueError, which codec.py reports as INVALID_REQUEST; never an allocation by a claimed
count); unknown tagged fields are
skipped, as Kafka does (KIP-482). Versions below 12 keep the kio path.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any, NamedTuple

from ottla.protocol.wire_read import (
    compact_count,
    compact_string,
    skip_tags,
    tagged_fields,
    topic_key,
    unpack,
    uvarint,
)
from ottla.protocol.writer import REFERENCE_BYTES_MIN, Refs, write_uvarint

__all__ = [
    "FETCH_API_KEY",
    "FETCH_FLEXIBLE_MIN",
    "REPLICA_FETCH_VERSION",
    "EncodedBody",
    "EpochEndOffsetResponse",
    "FetchPartitionRequest",
    "FetchRequestBody",
    "FetchResponseBody",
    "FetchTopic",
    "PartitionDataResponse",
    "ReplicaPartition",
    "ReplicaStateRequest",
    "read_fetch_answer",
    "read_fetch_request",
    "read_fetch_response",
    "set_correlation_id",
    "write_fetch_request",
    "write_fetch_response",
    "write_replica_fetch",
]

FETCH_API_KEY = 1
FETCH_FLEXIBLE_MIN = 12
FETCH_MAX_VERSION = 18
_HIGH_WATERMARK_UNKNOWN = 2**63 - 1  # v18 FetchPartition tag 1's default

_REQUEST_FIXED = struct.Struct(">iiibii")  # max wait, min bytes, max bytes, isolation, session
_PARTITION_FIXED = struct.Struct(">iiqiqi")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_REPLICA_STATE = struct.Struct(">iq")
_RESPONSE_FIXED = struct.Struct(">ihi")  # throttle, error code, session id
_PARTITION_OUT = struct.Struct(">ihqqq")  # index, error, high watermark, LSO, log start
_EPOCH_END = struct.Struct(">iq")
_PREFERRED = struct.Struct(">i")
_TWO_INT64 = struct.Struct(">qq")
_UUID_SIZE = 16
_ZERO_UUID = uuid.UUID(int=0)
_ZERO_UUID_BYTES = bytes(_UUID_SIZE)


class ReplicaStateRequest(NamedTuple):
    """Fetch v15+ tagged field 1: the fetching replica and its broker epoch."""

    replica_id: int
    replica_epoch: int


class FetchPartitionRequest:
    """One partition of a Fetch request (kio's `FetchPartition` field names)."""

    __slots__ = (
        "current_leader_epoch",
        "fetch_offset",
        "high_watermark",
        "last_fetched_epoch",
        "log_start_offset",
        "partition",
        "partition_max_bytes",
        "replica_directory_id",
    )

    def __init__(
        self,
        partition: int,
        current_leader_epoch: int,
        fetch_offset: int,
        last_fetched_epoch: int,
        log_start_offset: int,
        partition_max_bytes: int,
    ) -> None:
        self.partition = partition
        self.current_leader_epoch = current_leader_epoch
        self.fetch_offset = fetch_offset
        self.last_fetched_epoch = last_fetched_epoch
        self.log_start_offset = log_start_offset
        self.partition_max_bytes = partition_max_bytes
        self.replica_directory_id: uuid.UUID | None = None
        self.high_watermark = _HIGH_WATERMARK_UNKNOWN  # v18: the follower's (KIP-1166)


class FetchTopic:
    """A topic of a Fetch request or response, by name (v12) or by id (v13+), with its
    partitions: a request's fetch states, a response's data, or in a request's
    `forgotten_topics_data` (KIP-227) the indexes a session stops fetching."""

    __slots__ = ("partitions", "topic", "topic_id")

    def __init__(
        self, topic: str | None, topic_id: uuid.UUID | None, partitions: list[Any]
    ) -> None:
        self.topic = topic
        self.topic_id = topic_id
        self.partitions = partitions


class FetchRequestBody:
    """A Fetch v12+ request body, with kio's field names (plus `max_wait_ms`)."""

    __slots__ = (
        "__version__",
        "cluster_id",
        "forgotten_topics_data",
        "isolation_level",
        "max_bytes",
        "max_wait_ms",
        "min_bytes",
        "rack_id",
        "replica_id",
        "replica_state",
        "session_epoch",
        "session_id",
        "topics",
    )
    __api_key__ = FETCH_API_KEY
    __flexible__ = True

    def __init__(self, version: int) -> None:
        self.__version__ = version
        self.cluster_id: str | None = None
        self.replica_id = -1
        self.replica_state: ReplicaStateRequest | None = None
        self.max_wait_ms = 0
        self.min_bytes = 0
        self.max_bytes = 0
        self.isolation_level = 0
        self.session_id = 0
        self.session_epoch = -1
        self.topics: list[FetchTopic] = []
        self.forgotten_topics_data: list[FetchTopic] = []
        self.rack_id = ""

    @property
    def max_wait(self) -> datetime.timedelta:
        return datetime.timedelta(milliseconds=self.max_wait_ms)

    def to_kio(self, request_module: Any, request_type: type[Any]) -> Any:
        """The same request as kio's entity (for the Raft driver, which takes kio's)."""
        version = self.__version__
        by_id = version >= 13
        m = request_module

        def partition(p: FetchPartitionRequest) -> Any:
            fields: dict[str, Any] = {
                "partition": p.partition,
                "current_leader_epoch": p.current_leader_epoch,
                "fetch_offset": p.fetch_offset,
                "last_fetched_epoch": p.last_fetched_epoch,
                "log_start_offset": p.log_start_offset,
                "partition_max_bytes": p.partition_max_bytes,
            }
            if version >= 17:
                fields["replica_directory_id"] = p.replica_directory_id
            if version >= 18:
                fields["high_watermark"] = p.high_watermark
            return m.FetchPartition(**fields)

        def named(cls: Any, topic: Any, partitions: tuple[Any, ...]) -> Any:
            if by_id:
                return cls(topic_id=topic.topic_id, partitions=partitions)
            return cls(topic=topic.topic, partitions=partitions)

        fields: dict[str, Any] = {
            "cluster_id": self.cluster_id,
            "max_wait": self.max_wait,
            "min_bytes": self.min_bytes,
            "max_bytes": self.max_bytes,
            "isolation_level": self.isolation_level,
            "session_id": self.session_id,
            "session_epoch": self.session_epoch,
            "topics": tuple(
                named(m.FetchTopic, t, tuple(partition(p) for p in t.partitions))
                for t in self.topics
            ),
            "forgotten_topics_data": tuple(
                named(m.ForgottenTopic, t, tuple(t.partitions)) for t in self.forgotten_topics_data
            ),
            "rack_id": self.rack_id,
        }
        if version >= 15:
            state = self.replica_state or ReplicaStateRequest(-1, -1)
            fields["replica_state"] = m.ReplicaState(
                replica_id=state.replica_id, replica_epoch=state.replica_epoch
            )
        else:
            fields["replica_id"] = self.replica_id
        return request_type(**fields)


def read_fetch_request(frame: Any, o: int, version: int) -> FetchRequestBody:
    """The Fetch v12+ request body starting at `o` (bytes after it are ignored)."""
    if not FETCH_FLEXIBLE_MIN <= version <= FETCH_MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not read here")
    body = FetchRequestBody(version)
    by_id = version >= 13
    if version < 15:
        (body.replica_id,) = unpack(_INT32, frame, o)
        o += 4
    (
        body.max_wait_ms,
        body.min_bytes,
        body.max_bytes,
        body.isolation_level,
        body.session_id,
        body.session_epoch,
    ) = unpack(_REQUEST_FIXED, frame, o)
    o += _REQUEST_FIXED.size
    count, o = compact_count(frame, o, "topics")
    for _ in range(count):
        topic, topic_id, o = topic_key(frame, o, by_id)
        n, o = compact_count(frame, o, "partitions")
        partitions = []
        for _ in range(n):
            partition = FetchPartitionRequest(*unpack(_PARTITION_FIXED, frame, o))
            o += _PARTITION_FIXED.size
            o = _partition_tags(frame, o, partition, version)
            partitions.append(partition)
        o = skip_tags(frame, o)
        body.topics.append(FetchTopic(topic, topic_id, partitions))
    count, o = compact_count(frame, o, "forgotten topics")
    for _ in range(count):
        topic, topic_id, o = topic_key(frame, o, by_id)
        n, o = compact_count(frame, o, "forgotten partitions")
        if o + 4 * n > len(frame):
            raise ValueError("truncated forgotten partitions")
        indexes = list(struct.unpack_from(f">{n}i", frame, o))
        o += 4 * n
        o = skip_tags(frame, o)
        body.forgotten_topics_data.append(FetchTopic(topic, topic_id, indexes))
    rack_id, o = compact_string(frame, o)
    body.rack_id = rack_id or ""
    _body_tags(frame, o, body, version)
    return body


def _partition_tags(frame: Any, o: int, partition: FetchPartitionRequest, version: int) -> int:
    fields, o = tagged_fields(frame, o)
    for tag, start, end in fields:
        if tag == 0 and version >= 17:
            if end - start != _UUID_SIZE:
                raise ValueError(f"replica directory id of {end - start} bytes")
            partition.replica_directory_id = uuid.UUID(bytes=bytes(frame[start:end]))
        elif tag == 1 and version >= 18:
            if end - start != 8:
                raise ValueError(f"high watermark of {end - start} bytes")
            (partition.high_watermark,) = _INT64.unpack_from(frame, start)
    return o


def _body_tags(frame: Any, o: int, body: FetchRequestBody, version: int) -> int:
    fields, o = tagged_fields(frame, o)
    for tag, start, end in fields:
        if tag == 0:
            body.cluster_id, last = compact_string(frame, start, nullable=True)
        elif tag == 1 and version >= 15:
            replica_id, replica_epoch = unpack(_REPLICA_STATE, frame, start)
            body.replica_state = ReplicaStateRequest(replica_id, replica_epoch)
            last = skip_tags(frame, start + _REPLICA_STATE.size)
        else:
            last = end
        if last != end:
            raise ValueError(f"tagged field {tag} is {end - start} bytes, its value {last - start}")
    return o


# -- the response --------------------------------------------------------------------------


class EncodedBody:
    """A response body already in bytes: `buf` with `refs` (large values kept by
    reference, as the generated writers keep them). `encode_response` frames it."""

    __slots__ = ("buf", "flexible", "refs")

    def __init__(self, buf: bytearray, refs: Refs, flexible: bool) -> None:
        self.buf = buf
        self.refs = refs
        self.flexible = flexible


# (partition index, error code, high watermark, last stable offset, log start offset,
#  aborted transactions: None or a sequence of (producer id, first offset),
#  records: bytes-like or None, diverging epoch: (epoch, end offset) or None)
PartitionOut = tuple[int, int, int, int, int, Any, Any, "tuple[int, int] | None"]


def write_fetch_response(
    version: int,
    error_code: int,
    session_id: int,
    topics: list[tuple[str | None, uuid.UUID | None, list[PartitionOut]]],
) -> EncodedBody:
    """A Fetch v12+ response body (throttle time 0, preferred read replica -1)."""
    if not FETCH_FLEXIBLE_MIN <= version <= FETCH_MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not written here")
    by_id = version >= 13
    buf = bytearray(_RESPONSE_FIXED.pack(0, error_code, session_id))
    refs: Refs = []
    write_uvarint(buf, len(topics) + 1)
    for name, topic_id, partitions in topics:
        if by_id:
            buf += (topic_id or _ZERO_UUID).bytes
        else:
            encoded = (name or "").encode()
            write_uvarint(buf, len(encoded) + 1)
            buf += encoded
        write_uvarint(buf, len(partitions) + 1)
        for index, code, high, stable, start, aborted, records, diverging in partitions:
            buf += _PARTITION_OUT.pack(index, code, high, stable, start)
            if aborted is None:
                buf.append(0)
            else:
                write_uvarint(buf, len(aborted) + 1)
                for producer_id, first_offset in aborted:
                    buf += _INT64.pack(producer_id)
                    buf += _INT64.pack(first_offset)
                    buf.append(0)
            buf += _PREFERRED.pack(-1)
            if records is None:
                buf.append(0)
            else:
                size = records.nbytes if isinstance(records, memoryview) else len(records)
                write_uvarint(buf, size + 1)
                if size >= REFERENCE_BYTES_MIN:
                    refs.append((len(buf), records))
                else:
                    buf += records
            if diverging is None:
                buf.append(0)
            else:
                buf += b"\x01\x00\x0d"  # one tag: 0 (diverging epoch), 13 bytes
                buf += _EPOCH_END.pack(*diverging)
                buf.append(0)
        buf.append(0)
    buf.append(0)
    return EncodedBody(buf, refs, flexible=True)


# -- the client side: a replica fetcher's request out, the leader's response in ------------


def write_fetch_request(body: FetchRequestBody) -> bytearray:
    """The bytes of a Fetch v12+ request body (what kio's writer would write)."""
    version = body.__version__
    if not FETCH_FLEXIBLE_MIN <= version <= FETCH_MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not written here")
    by_id = version >= 13
    buf = bytearray()
    if version < 15:
        buf += _INT32.pack(body.replica_id)
    buf += _REQUEST_FIXED.pack(
        body.max_wait_ms,
        body.min_bytes,
        body.max_bytes,
        body.isolation_level,
        body.session_id,
        body.session_epoch,
    )
    write_uvarint(buf, len(body.topics) + 1)
    for topic in body.topics:
        _write_topic_key(buf, topic.topic, topic.topic_id, by_id)
        write_uvarint(buf, len(topic.partitions) + 1)
        for p in topic.partitions:
            buf += _PARTITION_FIXED.pack(
                p.partition,
                p.current_leader_epoch,
                p.fetch_offset,
                p.last_fetched_epoch,
                p.log_start_offset,
                p.partition_max_bytes,
            )
            tags: list[tuple[int, bytes]] = []
            if version >= 17 and p.replica_directory_id is not None:
                tags.append((0, p.replica_directory_id.bytes))
            if version >= 18 and p.high_watermark != _HIGH_WATERMARK_UNKNOWN:
                tags.append((1, _INT64.pack(p.high_watermark)))
            _write_tags(buf, tags)
        buf.append(0)
    write_uvarint(buf, len(body.forgotten_topics_data) + 1)
    for forgotten in body.forgotten_topics_data:
        _write_topic_key(buf, forgotten.topic, forgotten.topic_id, by_id)
        write_uvarint(buf, len(forgotten.partitions) + 1)
        buf += struct.pack(f">{len(forgotten.partitions)}i", *forgotten.partitions)
        buf.append(0)
    _write_string(buf, body.rack_id)
    tags = []
    if body.cluster_id is not None:
        cluster = bytearray()
        _write_string(cluster, body.cluster_id)
        tags.append((0, bytes(cluster)))
    state = body.replica_state
    if version >= 15 and state is not None and (state.replica_id, state.replica_epoch) != (-1, -1):
        tags.append((1, _REPLICA_STATE.pack(state.replica_id, state.replica_epoch) + b"\x00"))
    _write_tags(buf, tags)
    return buf


REPLICA_FETCH_VERSION = 15
_REQUEST_HEADER = struct.Struct(">ihhih")  # size, api key, version, correlation, client id
_CORRELATION_AT = 8  # after the size prefix, api key and version
_REPLICA_STATE_TAG = b"\x01\x01\x0d"  # one tag: 1 (replica state), 13 bytes

# (partition, current leader epoch, fetch offset, last fetched epoch, log start offset,
#  partition max bytes)
ReplicaPartition = tuple[int, int, int, int, int, int]


def write_replica_fetch(
    client_id: bytes,
    replica_state: tuple[int, int],
    limits: tuple[int, int, int],
    session: tuple[int, int],
    topics: list[tuple[uuid.UUID, list[ReplicaPartition]]],
    forgotten: list[tuple[uuid.UUID, list[int]]],
) -> bytearray:
    """A replica fetcher's whole Fetch v15 request frame (size, header v2, body), the
    bytes `encode_request` writes for the same request without building its objects;
    correlation id 0 until `set_correlation_id`. `replica_state` is (replica id,
    broker epoch), `limits` (max wait ms, min bytes, max bytes), `session` (id, epoch)."""
    buf = bytearray(
        _REQUEST_HEADER.pack(0, FETCH_API_KEY, REPLICA_FETCH_VERSION, 0, len(client_id))
    )
    buf += client_id
    buf.append(0)
    buf += _REQUEST_FIXED.pack(*limits, 0, *session)
    write_uvarint(buf, len(topics) + 1)
    pack_partition = _PARTITION_FIXED.pack
    for topic_id, partitions in topics:
        buf += topic_id.bytes
        write_uvarint(buf, len(partitions) + 1)
        for partition in partitions:
            buf += pack_partition(*partition)
            buf.append(0)
        buf.append(0)
    write_uvarint(buf, len(forgotten) + 1)
    for topic_id, indexes in forgotten:
        buf += topic_id.bytes
        write_uvarint(buf, len(indexes) + 1)
        buf += struct.pack(f">{len(indexes)}i", *indexes)
        buf.append(0)
    buf.append(1)  # rack id ""
    buf += _REPLICA_STATE_TAG
    buf += _REPLICA_STATE.pack(*replica_state)
    buf.append(0)
    _INT32.pack_into(buf, 0, len(buf) - 4)
    return buf


def set_correlation_id(frame: bytearray, correlation_id: int) -> None:
    """Set the correlation id of a request frame written with its size prefix."""
    _INT32.pack_into(frame, _CORRELATION_AT, correlation_id)


def _write_string(buf: bytearray, value: str) -> None:
    encoded = value.encode()
    write_uvarint(buf, len(encoded) + 1)
    buf += encoded


def _write_topic_key(
    buf: bytearray, name: str | None, topic_id: uuid.UUID | None, by_id: bool
) -> None:
    if by_id:
        buf += topic_id.bytes if topic_id is not None else _ZERO_UUID_BYTES
    else:
        _write_string(buf, name or "")


def _write_tags(buf: bytearray, tags: list[tuple[int, bytes]]) -> None:
    write_uvarint(buf, len(tags))
    for tag, value in tags:
        write_uvarint(buf, tag)
        write_uvarint(buf, len(value))
        buf += value


class EpochEndOffsetResponse(NamedTuple):
    """A partition's `diverging_epoch` (KIP-320)."""

    epoch: int
    end_offset: int


class PartitionDataResponse:
    """One partition of a Fetch response (kio's `PartitionData` field names; the
    tagged `current_leader` and `snapshot_id` are read past, not kept)."""

    __slots__ = (
        "aborted_transactions",
        "diverging_epoch",
        "error_code",
        "high_watermark",
        "last_stable_offset",
        "log_start_offset",
        "partition_index",
        "preferred_read_replica",
        "records",
    )

    def __init__(
        self,
        partition_index: int,
        error_code: int,
        high_watermark: int,
        last_stable_offset: int,
        log_start_offset: int,
    ) -> None:
        self.partition_index = partition_index
        self.error_code = error_code
        self.high_watermark = high_watermark
        self.last_stable_offset = last_stable_offset
        self.log_start_offset = log_start_offset
        self.aborted_transactions: list[tuple[int, int]] | None = None
        self.preferred_read_replica = -1
        self.records: Any = None
        self.diverging_epoch: EpochEndOffsetResponse | None = None


class FetchResponseBody:
    """A Fetch v12+ response body (kio's field names, `throttle_time_ms` in ms)."""

    __slots__ = ("error_code", "responses", "session_id", "throttle_time_ms")

    def __init__(self, throttle_time_ms: int, error_code: int, session_id: int) -> None:
        self.throttle_time_ms = throttle_time_ms
        self.error_code = error_code
        self.session_id = session_id
        self.responses: list[FetchTopic] = []


def read_fetch_response(frame: Any, o: int, version: int) -> tuple[FetchResponseBody, int]:
    """(Fetch v12+ response body at `o`, the offset after it). Record data is a view
    of `frame` (no copy: a replica fetch answer is megabytes)."""
    by_id = version >= 13
    body = FetchResponseBody(*unpack(_RESPONSE_FIXED, frame, o))
    o += _RESPONSE_FIXED.size
    count, o = compact_count(frame, o, "responses")
    for _ in range(count):
        topic, topic_id, o = topic_key(frame, o, by_id)
        n, o = compact_count(frame, o, "partitions")
        partitions = []
        for _ in range(n):
            data = PartitionDataResponse(*unpack(_PARTITION_OUT, frame, o))
            o += _PARTITION_OUT.size
            aborted, o = uvarint(frame, o)
            if aborted:
                aborted -= 1
                if aborted * 17 > len(frame) - o:
                    raise ValueError(f"{aborted} aborted transactions claimed")
                data.aborted_transactions = []
                for _ in range(aborted):
                    producer_id, first_offset = unpack(_TWO_INT64, frame, o)
                    o = skip_tags(frame, o + 16)
                    data.aborted_transactions.append((producer_id, first_offset))
            (data.preferred_read_replica,) = unpack(_PREFERRED, frame, o)
            o += 4
            size, o = uvarint(frame, o)
            if size:
                end = o + size - 1
                if end > len(frame):
                    raise ValueError("records run past the end of the frame")
                data.records = (
                    frame[o:end] if isinstance(frame, memoryview) else memoryview(frame)[o:end]
                )
                o = end
            o = _response_partition_tags(frame, o, data)
            partitions.append(data)
        o = skip_tags(frame, o)
        body.responses.append(FetchTopic(topic, topic_id, partitions))
    o = skip_tags(frame, o)  # node_endpoints (v16+): not used by a replica fetcher
    return body, o


def read_fetch_answer(frame: Any, version: int) -> tuple[int, FetchResponseBody]:
    """(correlation id, body) of a whole Fetch v12+ response frame (without its size
    prefix): the response header v1, then `read_fetch_response`."""
    (correlation_id,) = unpack(_INT32, frame, 0)
    body, _ = read_fetch_response(frame, skip_tags(frame, 4), version)
    return correlation_id, body


def _response_partition_tags(frame: Any, o: int, data: PartitionDataResponse) -> int:
    fields, o = tagged_fields(frame, o)
    for tag, start, _ in fields:
        if tag == 0:
            data.diverging_epoch = EpochEndOffsetResponse(*unpack(_EPOCH_END, frame, start))
    return o
