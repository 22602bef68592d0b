"""The Raft wire codec and the Raft log on disk.

Proves: (1) every core message survives core -> kio entity -> wire bytes -> kio entity ->
core, requests and responses, with records, diverging epochs and snapshot ids; (2) entries
round-trip as record batches (normal and leader-change control batches; a legacy
multi-record batch splits into one entry per record); (3) the log persists entries,
truncation, quorum-state, snapshots and prefix deletion across reopen; (4) a damaged
snapshot file is skipped for an older valid one, a damaged quorum-state stops startup,
and a log whose prefix is gone without a readable snapshot refuses to open.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from ottla.cluster.metadata.log import encode_payloads
from ottla.cluster.metadata.records import TopicRecord
from ottla.cluster.raft import codec
from ottla.cluster.raft.log import (
    QUORUM_STATE_FILE,
    RaftStorage,
    RaftStorageError,
    snapshot_file_name,
)
from ottla.cluster.raft.memlog import Snapshot
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
from ottla.cluster.raft.state import QuorumStateData
from ottla.protocol import ErrorCode as Kafka
from ottla.protocol import (
    Record,
    build_batch,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    kio_body,
)


def _payload(name: str) -> bytes:
    return encode_payloads([TopicRecord(name, uuid.UUID(int=7))], 1000)[0]


def _entries(start: int, count: int, epoch: int) -> list[Entry]:
    return [Entry(o, epoch, _payload(f"t{o}")) for o in range(start, start + count)]


def _wire_request(entity: Any) -> Any:
    frame = b"".join(bytes(c) for c in encode_request(entity, 7))[4:]
    return kio_body(decode_request(frame))


def _wire_response(request: Any, response: Any) -> Any:
    chunks = encode_response(_header(request), response)
    frame = b"".join(bytes(c) for c in chunks)[4:]
    _, body = decode_response(frame, request)
    return body


def _header(request: Any) -> Any:
    frame = b"".join(bytes(c) for c in encode_request(request, 7))[4:]
    return decode_request(frame).header


REQUESTS: list[Message] = [
    VoteRequest(5, 2, 4, 17, pre_vote=True),
    VoteRequest(6, 3, 4, 17, pre_vote=False),
    BeginQuorumEpochRequest(1, 9),
    EndQuorumEpochRequest(1, 9, (3, 2)),
    FetchRequest(2, 9, 40, 8, max_wait_ms=500, max_entries=100),
    FetchSnapshotRequest(3, 9, OffsetAndEpoch(100, 7), 4096, 1 << 20),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_requests_round_trip_over_the_wire(message: Message) -> None:
    entity = codec.to_wire(message, "cluster-a")
    decoded = _wire_request(entity)
    assert decoded.cluster_id == "cluster-a" if hasattr(decoded, "cluster_id") else True
    assert codec.to_core(decoded) == message
    assert codec.request_source(decoded) == message.__getattribute__(
        {
            VoteRequest: "candidate_id",
            BeginQuorumEpochRequest: "leader_id",
            EndQuorumEpochRequest: "leader_id",
            FetchRequest: "replica_id",
            FetchSnapshotRequest: "replica_id",
        }[type(message)]
    )


RESPONSES: list[tuple[Message, Message]] = [
    (REQUESTS[0], VoteResponse(ErrorCode.NONE, -1, 5, True)),
    (REQUESTS[2], BeginQuorumEpochResponse(ErrorCode.FENCED_LEADER_EPOCH, 2, 10)),
    (REQUESTS[3], EndQuorumEpochResponse(ErrorCode.NONE, 1, 9)),
    (
        REQUESTS[4],
        FetchResponse(
            ErrorCode.NONE,
            1,
            9,
            high_watermark=41,
            log_start_offset=0,
            records=(
                Entry(40, 9, b"leader-change leader_id=1 leader_epoch=9", control=True),
                *_entries(41, 2, 9),
            ),
        ),
    ),
    (
        REQUESTS[4],
        FetchResponse(ErrorCode.NONE, 1, 9, 30, 0, diverging_epoch=OffsetAndEpoch(33, 7)),
    ),
    (REQUESTS[4], FetchResponse(ErrorCode.NONE, 1, 9, 30, 20, snapshot_id=OffsetAndEpoch(20, 6))),
    (REQUESTS[4], FetchResponse(ErrorCode.NOT_LEADER_OR_FOLLOWER, 3, 10)),
    (
        REQUESTS[5],
        FetchSnapshotResponse(
            ErrorCode.NONE, 1, 9, OffsetAndEpoch(100, 7), 9000, 4096, b"\x01" * 100
        ),
    ),
    (REQUESTS[5], FetchSnapshotResponse(ErrorCode.SNAPSHOT_NOT_FOUND, 1, 9)),
]


@pytest.mark.parametrize(("request_message", "message"), RESPONSES, ids=lambda m: type(m).__name__)
def test_responses_round_trip_over_the_wire(request_message: Message, message: Message) -> None:
    request = _wire_request(codec.to_wire(request_message, None))
    response = codec.to_wire(message, None, request)
    decoded = codec.to_core(_wire_response(request, response))
    if isinstance(message, FetchSnapshotResponse) and message.error_code != ErrorCode.NONE:
        assert decoded == FetchSnapshotResponse(message.error_code, 1, 9, None)
    else:
        assert decoded == message


def test_error_response_is_encodable_for_every_raft_api() -> None:
    for message in REQUESTS:
        request = _wire_request(codec.to_wire(message, None))
        response = codec.error_response(request, Kafka.inconsistent_cluster_id)
        body = _wire_response(request, response)
        assert int(body.error_code) == int(Kafka.inconsistent_cluster_id)


def test_entries_are_batches_with_offset_and_epoch() -> None:
    entries = (Entry(5, 3, b"leader-change", control=True), *_entries(6, 3, 3))
    data = codec.encode_entries(entries)
    assert codec.decode_entries(data) == entries


def test_a_legacy_multi_record_batch_splits_into_entries() -> None:
    batch = build_batch([Record(key=b"k1", value=b"v1"), Record(key=b"k2", value=b"v2")])
    entries = codec.decode_entries(bytes(batch))
    assert [e.offset for e in entries] == [0, 1]
    assert all(not e.control for e in entries)


# ------------------------------------------------------------------------------ the log


def test_log_persists_entries_truncation_and_quorum_state(tmp_path: Path) -> None:
    storage = RaftStorage.open(tmp_path)
    assert storage.quorum_state is None and storage.snapshot is None and storage.entries == []
    storage.append([Entry(0, 1, b"leader-change", control=True), *_entries(1, 9, 1)], 0)
    storage.truncate_to(7)
    storage.append(_entries(7, 2, 2), 0)
    storage.write_quorum_state(QuorumStateData(2, 1, 1))
    storage.sync()
    storage.close()
    again = RaftStorage.open(tmp_path)
    assert [(e.offset, e.epoch) for e in again.entries] == [(o, 1) for o in range(7)] + [
        (7, 2),
        (8, 2),
    ]
    assert again.entries[0].control
    assert again.quorum_state == QuorumStateData(2, 1, 1)
    text = (tmp_path / "__cluster_metadata-0" / QUORUM_STATE_FILE).read_text()
    assert '"leaderEpoch":2' in text and '"data_version":1' in text
    again.close()


def test_snapshot_take_delete_prefix_and_install(tmp_path: Path) -> None:
    storage = RaftStorage.open(tmp_path)
    storage.append(_entries(0, 10, 1), 0)
    storage.write_snapshot(Snapshot(OffsetAndEpoch(6, 1), b"state@6"))
    storage.delete_prefix(6)
    storage.sync()
    directory = tmp_path / "__cluster_metadata-0"
    assert (directory / snapshot_file_name(OffsetAndEpoch(6, 1))).exists()
    assert snapshot_file_name(OffsetAndEpoch(6, 1)) == "00000000000000000006-0000000001.checkpoint"
    storage.close()
    again = RaftStorage.open(tmp_path)
    assert again.snapshot == Snapshot(OffsetAndEpoch(6, 1), b"state@6")
    assert [e.offset for e in again.entries] == [6, 7, 8, 9]
    # A follower installs a newer snapshot beyond its log: the log continues after it.
    again.install_snapshot(Snapshot(OffsetAndEpoch(50, 3), b"state@50"))
    again.append(_entries(50, 2, 3), 0)
    again.sync()
    again.close()
    third = RaftStorage.open(tmp_path)
    assert third.snapshot is not None and third.snapshot.snapshot_id == OffsetAndEpoch(50, 3)
    assert [e.offset for e in third.entries] == [50, 51]
    assert not (directory / snapshot_file_name(OffsetAndEpoch(6, 1))).exists()
    third.close()


def test_a_damaged_snapshot_falls_back_to_an_older_one(tmp_path: Path) -> None:
    storage = RaftStorage.open(tmp_path)
    storage.append(_entries(0, 4, 1), 0)
    storage.write_snapshot(Snapshot(OffsetAndEpoch(2, 1), b"two"))
    storage.write_snapshot(Snapshot(OffsetAndEpoch(4, 1), b"four"))
    storage.sync()
    storage.close()
    newest = tmp_path / "__cluster_metadata-0" / snapshot_file_name(OffsetAndEpoch(4, 1))
    data = bytearray(newest.read_bytes())
    data[-12] ^= 0xFF
    newest.write_bytes(bytes(data))
    again = RaftStorage.open(tmp_path)
    assert again.snapshot == Snapshot(OffsetAndEpoch(2, 1), b"two")
    assert [e.offset for e in again.entries] == [2, 3]
    again.close()


def test_a_lost_prefix_without_snapshot_refuses_to_open(tmp_path: Path) -> None:
    storage = RaftStorage.open(tmp_path)
    storage.append(_entries(0, 6, 1), 0)
    storage.write_snapshot(Snapshot(OffsetAndEpoch(4, 1), b"four"))
    storage.delete_prefix(4)
    storage.sync()
    storage.close()
    (tmp_path / "__cluster_metadata-0" / snapshot_file_name(OffsetAndEpoch(4, 1))).write_bytes(
        b"garbage"
    )
    with pytest.raises(RaftStorageError, match="no readable snapshot"):
        RaftStorage.open(tmp_path)


def test_a_damaged_quorum_state_stops_startup(tmp_path: Path) -> None:
    RaftStorage.open(tmp_path).close()
    (tmp_path / "__cluster_metadata-0" / QUORUM_STATE_FILE).write_text('{"leaderEpo')
    with pytest.raises(RaftStorageError, match="quorum-state"):
        RaftStorage.open(tmp_path)
