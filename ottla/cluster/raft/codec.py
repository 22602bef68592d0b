"""The Raft core's messages <-> Kafka's wire entities (kio), and entries <-> record batches.

The core (core.py) speaks plain dataclasses (messages.py); between nodes they travel as the
KIP-595 requests of the Kafka protocol, on topic `__cluster_metadata` partition 0:

    VoteRequest v2 (pre_vote, KIP-996)     BeginQuorumEpochRequest v0
    EndQuorumEpochRequest v0               FetchRequest v13 (topic id METADATA_TOPIC_ID,
    FetchSnapshotRequest v0                replica_id = the fetching voter)

A request names its sender in the body (the candidate's, leader's or fetcher's id), so the
receiving driver knows the source without a connection-level identity. The responses are
read at whatever version the request was sent at.

Entries are record batches, one entry per batch, whose base offset is the entry's offset
and whose partition leader epoch is the entry's epoch. A normal entry's payload *is* a
batch (the metadata records of one proposal, built by the state machine) kept with base
offset 0 and epoch -1, so stamping and normalising touch only fields outside the CRC. The
leader-change entry a new leader appends is a control batch (Kafka's control record type
2, LEADER_CHANGE) whose one record's value is the core's leader-change payload.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from dataclasses import replace
from typing import Any, Final

from ottla.cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    Entry,
    ErrorCode,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Message,
    OffsetAndEpoch,
    VoteRequest,
    VoteResponse,
)
from ottla.protocol import (
    NO_PARTITION_LEADER_EPOCH,
    SUPPORTED_APIS,
    ProtocolError,
    Record,
    RecordBatchView,
    build_batch,
    decode_records,
    iter_batches,
    make,
)
from ottla.protocol import ErrorCode as KafkaErrorCode

__all__ = [
    "FETCH_VERSION",
    "LEADER_CHANGE",
    "METADATA_PARTITION",
    "METADATA_TOPIC",
    "METADATA_TOPIC_ID",
    "batch_to_entries",
    "batch_to_entry",
    "decode_entries",
    "encode_entries",
    "entry_to_batch",
    "error_response",
    "request_source",
    "to_core",
    "to_wire",
]

METADATA_TOPIC: Final = "__cluster_metadata"
METADATA_PARTITION: Final = 0
METADATA_TOPIC_ID: Final = uuid.UUID(int=1)  # Kafka's Uuid.METADATA_TOPIC_ID
LEADER_CHANGE: Final = 2  # Kafka's ControlRecordType.LEADER_CHANGE
FETCH_VERSION: Final = 13
_VERSIONS: Final = {
    VoteRequest: ("vote", 2),
    BeginQuorumEpochRequest: ("begin_quorum_epoch", 0),
    EndQuorumEpochRequest: ("end_quorum_epoch", 0),
    FetchRequest: ("fetch", FETCH_VERSION),
    FetchSnapshotRequest: ("fetch_snapshot", 0),
}
_API_KEYS: Final = {"vote": 52, "begin_quorum_epoch": 53, "end_quorum_epoch": 54}
_CONTROL_KEY: Final = struct.Struct(">hh")
_OFFSET_AND_EPOCH_UNSET: Final = (-1, -1)


# ------------------------------------------------------------------------------ entries


def entry_to_batch(entry: Entry, timestamp_ms: int = 0) -> bytearray:
    """The batch stored and sent for `entry` (offset and epoch stamped)."""
    if entry.control:
        batch = build_batch(
            [Record(key=_CONTROL_KEY.pack(0, LEADER_CHANGE), value=entry.payload)],
            base_offset=entry.offset,
            base_timestamp=timestamp_ms,
            partition_leader_epoch=entry.epoch,
            is_control=True,
        )
        return batch
    batch = bytearray(entry.payload)
    view = RecordBatchView(batch)
    view.set_base_offset(entry.offset)
    view.set_partition_leader_epoch(entry.epoch)
    return batch


def batch_to_entries(view: RecordBatchView) -> list[Entry]:
    """The entries of a stored or fetched batch: one, or one per record for a batch of
    several records (the metadata log before Raft wrote one batch per append)."""
    if view.last_offset_delta == 0:
        return [batch_to_entry(view)]
    return [
        Entry(
            view.base_offset + record.offset_delta,
            view.partition_leader_epoch,
            bytes(
                build_batch([replace(record, offset_delta=0)], base_timestamp=view.base_timestamp)
            ),
        )
        for record in decode_records(view)
    ]


def batch_to_entry(view: RecordBatchView) -> Entry:
    """The entry a stored or fetched batch holds (ProtocolError if it is not one)."""
    if view.last_offset_delta != 0:
        raise ProtocolError(
            KafkaErrorCode.corrupt_message,
            f"metadata batch at {view.base_offset} spans {view.last_offset_delta + 1} offsets",
        )
    offset, epoch = view.base_offset, view.partition_leader_epoch
    if view.is_control:
        records = decode_records(view)
        if len(records) != 1 or records[0].key is None:
            raise ProtocolError(KafkaErrorCode.corrupt_message, "bad leader-change batch")
        return Entry(offset, epoch, records[0].value or b"", control=True)
    payload = bytearray(view.bytes_view())
    normal = RecordBatchView(payload)
    normal.set_base_offset(0)
    normal.set_partition_leader_epoch(NO_PARTITION_LEADER_EPOCH)
    return Entry(offset, epoch, bytes(payload))


def encode_entries(entries: tuple[Entry, ...] | list[Entry]) -> bytes:
    return b"".join(bytes(entry_to_batch(entry)) for entry in entries)


def decode_entries(records: bytes | bytearray | memoryview | None) -> tuple[Entry, ...]:
    if not records:
        return ()
    return tuple(entry for view in iter_batches(records) for entry in batch_to_entries(view))


# ------------------------------------------------------------------------------ messages


def _request_module(name: str, version: int) -> Any:
    return SUPPORTED_APIS[_api_key(name)].request_module(version)


def _response_module(name: str, version: int) -> Any:
    return SUPPORTED_APIS[_api_key(name)].response_module(version)


def _api_key(name: str) -> int:
    for key, spec in SUPPORTED_APIS.items():
        if spec.name == name:
            return key
    raise KeyError(name)


def _code(error: ErrorCode) -> KafkaErrorCode:
    return KafkaErrorCode(int(error))


def _core_code(error: Any) -> ErrorCode:
    try:
        return ErrorCode(int(error))
    except ValueError:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER  # anything else: not served, retry


def to_wire(message: Message, cluster_id: str | None, request: Any = None) -> Any:
    """The kio entity for a core message. A response needs the kio `request` it answers
    (for its version); a request is built at the version in `_VERSIONS`."""
    if isinstance(message, VoteRequest):
        m = _request_module("vote", 2)
        partition = make(
            m.PartitionData,
            partition_index=METADATA_PARTITION,
            replica_epoch=message.candidate_epoch,
            replica_id=message.candidate_id,
            replica_directory_id=None,
            voter_directory_id=None,
            last_offset_epoch=message.last_offset_epoch,
            last_offset=message.last_offset,
            pre_vote=message.pre_vote,
        )
        return make(
            m.VoteRequest,
            cluster_id=cluster_id,
            topics=(make(m.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        )
    if isinstance(message, BeginQuorumEpochRequest):
        m = _request_module("begin_quorum_epoch", 0)
        partition = make(
            m.PartitionData,
            partition_index=METADATA_PARTITION,
            leader_id=message.leader_id,
            leader_epoch=message.leader_epoch,
        )
        return make(
            m.BeginQuorumEpochRequest,
            cluster_id=cluster_id,
            topics=(make(m.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        )
    if isinstance(message, EndQuorumEpochRequest):
        m = _request_module("end_quorum_epoch", 0)
        partition = make(
            m.PartitionData,
            partition_index=METADATA_PARTITION,
            leader_id=message.leader_id,
            leader_epoch=message.leader_epoch,
            preferred_successors=message.preferred_successors,
        )
        return make(
            m.EndQuorumEpochRequest,
            cluster_id=cluster_id,
            topics=(make(m.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        )
    if isinstance(message, FetchRequest):
        m = _request_module("fetch", FETCH_VERSION)
        partition = make(
            m.FetchPartition,
            partition=METADATA_PARTITION,
            current_leader_epoch=message.current_leader_epoch,
            fetch_offset=message.fetch_offset,
            last_fetched_epoch=message.last_fetched_epoch,
            log_start_offset=-1,
            partition_max_bytes=message.max_entries,  # ottla: entries, not bytes
        )
        return make(
            m.FetchRequest,
            cluster_id=cluster_id,
            replica_id=message.replica_id,
            max_wait=datetime.timedelta(milliseconds=message.max_wait_ms),
            min_bytes=0,
            topics=(make(m.FetchTopic, topic_id=METADATA_TOPIC_ID, partitions=(partition,)),),
            forgotten_topics_data=(),
        )
    if isinstance(message, FetchSnapshotRequest):
        m = _request_module("fetch_snapshot", 0)
        partition = make(
            m.PartitionSnapshot,
            partition=METADATA_PARTITION,
            current_leader_epoch=message.current_leader_epoch,
            snapshot_id=make(
                m.SnapshotId,
                end_offset=message.snapshot_id.end_offset,
                epoch=message.snapshot_id.epoch,
            ),
            position=message.position,
        )
        return make(
            m.FetchSnapshotRequest,
            cluster_id=cluster_id,
            replica_id=message.replica_id,
            max_bytes=message.max_bytes,
            topics=(make(m.TopicSnapshot, name=METADATA_TOPIC, partitions=(partition,)),),
        )
    assert request is not None, f"a response needs its request: {message!r}"
    return _response_to_wire(message, request)


def _response_to_wire(message: Message, request: Any) -> Any:
    version = int(request.__version__)
    api_key = int(request.__api_key__)
    name = SUPPORTED_APIS[api_key].name
    m = _response_module(name, version)
    if isinstance(message, VoteResponse | BeginQuorumEpochResponse | EndQuorumEpochResponse):
        partition = make(
            m.PartitionData,
            partition_index=METADATA_PARTITION,
            error_code=_code(message.error_code),
            leader_id=message.leader_id,
            leader_epoch=message.leader_epoch,
            vote_granted=getattr(message, "vote_granted", False),
        )
        return make(
            getattr(m, _response_class(name)),
            error_code=KafkaErrorCode.none,
            topics=(make(m.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        )
    if isinstance(message, FetchResponse):
        diverging = message.diverging_epoch
        snapshot = message.snapshot_id
        partition = make(
            m.PartitionData,
            partition_index=METADATA_PARTITION,
            error_code=_code(message.error_code),
            high_watermark=message.high_watermark,
            last_stable_offset=message.high_watermark,
            log_start_offset=message.log_start_offset,
            diverging_epoch=make(
                m.EpochEndOffset,
                epoch=diverging.epoch if diverging else -1,
                end_offset=diverging.end_offset if diverging else -1,
            ),
            current_leader=make(
                m.LeaderIdAndEpoch, leader_id=message.leader_id, leader_epoch=message.leader_epoch
            ),
            snapshot_id=make(
                m.SnapshotId,
                end_offset=snapshot.end_offset if snapshot else -1,
                epoch=snapshot.epoch if snapshot else -1,
            ),
            aborted_transactions=None,
            preferred_read_replica=-1,
            records=encode_entries(message.records) or None,
        )
        topic = make(
            m.FetchableTopicResponse,
            topic_id=METADATA_TOPIC_ID,
            topic=METADATA_TOPIC,
            partitions=(partition,),
        )
        return make(
            m.FetchResponse,
            throttle_time=datetime.timedelta(0),
            error_code=KafkaErrorCode.none,
            session_id=0,
            responses=(topic,),
        )
    assert isinstance(message, FetchSnapshotResponse), message
    snapshot_id = message.snapshot_id or OffsetAndEpoch(-1, -1)
    partition = make(
        m.PartitionSnapshot,
        index=METADATA_PARTITION,
        error_code=_code(message.error_code),
        snapshot_id=make(m.SnapshotId, end_offset=snapshot_id.end_offset, epoch=snapshot_id.epoch),
        current_leader=make(
            m.LeaderIdAndEpoch, leader_id=message.leader_id, leader_epoch=message.leader_epoch
        ),
        size=message.size,
        position=message.position,
        unaligned_records=message.unaligned_records,
    )
    return make(
        m.FetchSnapshotResponse,
        throttle_time=datetime.timedelta(0),
        error_code=KafkaErrorCode.none,
        topics=(make(m.TopicSnapshot, name=METADATA_TOPIC, partitions=(partition,)),),
    )


def _response_class(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Response"


def _only_partition(topics: Any, what: str) -> Any:
    if len(topics) != 1 or len(topics[0].partitions) != 1:
        raise ProtocolError(
            KafkaErrorCode.invalid_request, f"{what} must name exactly __cluster_metadata-0"
        )
    return topics[0].partitions[0]


def request_source(request: Any) -> int:
    """The node that sent a Raft request (named in its body)."""
    name = SUPPORTED_APIS[int(request.__api_key__)].name
    if name == "vote":
        part = _only_partition(request.topics, "Vote")
        return int(getattr(part, "replica_id", getattr(part, "candidate_id", -1)))
    if name in ("begin_quorum_epoch", "end_quorum_epoch"):
        return int(_only_partition(request.topics, name).leader_id)
    replica_state = getattr(request, "replica_state", None)
    if replica_state is not None:
        return int(replica_state.replica_id)
    return int(request.replica_id)


def to_core(entity: Any) -> Message:
    """The core message for a kio request or response entity."""
    name = SUPPORTED_APIS[int(entity.__api_key__)].name
    is_request = type(entity).__name__.endswith("Request")
    if name == "vote":
        part = _only_partition(entity.topics, "Vote")
        if is_request:
            return VoteRequest(
                candidate_epoch=int(
                    getattr(part, "replica_epoch", getattr(part, "candidate_epoch", -1))
                ),
                candidate_id=request_source(entity),
                last_offset_epoch=int(part.last_offset_epoch),
                last_offset=int(part.last_offset),
                pre_vote=bool(getattr(part, "pre_vote", False)),
            )
        return VoteResponse(
            _core_code(part.error_code or entity.error_code),
            int(part.leader_id),
            int(part.leader_epoch),
            bool(part.vote_granted),
        )
    if name == "begin_quorum_epoch":
        part = _only_partition(entity.topics, name)
        if is_request:
            return BeginQuorumEpochRequest(int(part.leader_id), int(part.leader_epoch))
        return BeginQuorumEpochResponse(
            _core_code(part.error_code or entity.error_code),
            int(part.leader_id),
            int(part.leader_epoch),
        )
    if name == "end_quorum_epoch":
        part = _only_partition(entity.topics, name)
        if is_request:
            successors = getattr(part, "preferred_successors", None)
            if successors is None:
                successors = tuple(c.candidate_id for c in part.preferred_candidates)
            return EndQuorumEpochRequest(
                int(part.leader_id), int(part.leader_epoch), tuple(int(s) for s in successors)
            )
        return EndQuorumEpochResponse(
            _core_code(part.error_code or entity.error_code),
            int(part.leader_id),
            int(part.leader_epoch),
        )
    if name == "fetch":
        if is_request:
            part = _only_partition(entity.topics, "Fetch")
            return FetchRequest(
                replica_id=request_source(entity),
                current_leader_epoch=int(part.current_leader_epoch),
                fetch_offset=int(part.fetch_offset),
                last_fetched_epoch=int(part.last_fetched_epoch),
                max_wait_ms=int(entity.max_wait.total_seconds() * 1000),
                max_entries=max(1, int(part.partition_max_bytes)),
            )
        if entity.error_code:
            return FetchResponse(_core_code(entity.error_code), -1, -1)
        part = _only_partition(entity.responses, "Fetch response")
        diverging = part.diverging_epoch
        snapshot = part.snapshot_id
        return FetchResponse(
            _core_code(part.error_code),
            int(part.current_leader.leader_id),
            int(part.current_leader.leader_epoch),
            high_watermark=int(part.high_watermark),
            log_start_offset=int(part.log_start_offset),
            records=decode_entries(part.records),
            diverging_epoch=(
                OffsetAndEpoch(int(diverging.end_offset), int(diverging.epoch))
                if (int(diverging.end_offset), int(diverging.epoch)) != _OFFSET_AND_EPOCH_UNSET
                else None
            ),
            snapshot_id=(
                OffsetAndEpoch(int(snapshot.end_offset), int(snapshot.epoch))
                if (int(snapshot.end_offset), int(snapshot.epoch)) != _OFFSET_AND_EPOCH_UNSET
                else None
            ),
        )
    if name == "fetch_snapshot":
        if is_request:
            part = _only_partition(entity.topics, "FetchSnapshot")
            return FetchSnapshotRequest(
                replica_id=request_source(entity),
                current_leader_epoch=int(part.current_leader_epoch),
                snapshot_id=OffsetAndEpoch(
                    int(part.snapshot_id.end_offset), int(part.snapshot_id.epoch)
                ),
                position=int(part.position),
                max_bytes=int(entity.max_bytes),
            )
        if entity.error_code:
            return FetchSnapshotResponse(_core_code(entity.error_code), -1, -1)
        part = _only_partition(entity.topics, "FetchSnapshot response")
        snapshot_id = OffsetAndEpoch(int(part.snapshot_id.end_offset), int(part.snapshot_id.epoch))
        return FetchSnapshotResponse(
            _core_code(part.error_code),
            int(part.current_leader.leader_id),
            int(part.current_leader.leader_epoch),
            snapshot_id=None if snapshot_id.end_offset < 0 else snapshot_id,
            size=int(part.size),
            position=int(part.position),
            unaligned_records=bytes(part.unaligned_records or b""),
        )
    raise ProtocolError(KafkaErrorCode.invalid_request, f"{name} is not a Raft message")


def error_response(request: Any, error: KafkaErrorCode) -> Any:
    """A response to a Raft request that carries only a top-level error."""
    spec = SUPPORTED_APIS[int(request.__api_key__)]
    cls = spec.response_type(int(request.__version__))
    return make(
        cls,
        throttle_time=datetime.timedelta(0),
        error_code=error,
        error_message=None,
        session_id=0,
        topics=(),
        responses=(),
        nodes=(),
    )
