"""fetch_wire.py reads and writes Fetch v12+ exactly as kio does.

Requests: hypothesis-generated kio FetchRequests of every flexible version, written
by kio, read by `read_fetch_request`, turned back into kio's entity: equal. Truncated
frames and absurd counts fail with INVALID_REQUEST; unknown tags are skipped.
Responses: random partitions written by `write_fetch_response` are kio's bytes for
the same response; large record data stays by reference. The client side (a replica
fetcher's): requests written by hand are kio's bytes; kio's random responses read by
hand give kio's values; truncated responses are refused.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.serial import entity_reader

from ottla.protocol import SUPPORTED_APIS, ErrorCode, ProtocolError, make
from ottla.protocol.codec import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    kio_body,
)
from ottla.protocol.fetch_wire import (
    FETCH_MAX_VERSION,
    REPLICA_FETCH_VERSION,
    EncodedBody,
    FetchPartitionRequest,
    FetchRequestBody,
    FetchTopic,
    ReplicaStateRequest,
    read_fetch_request,
    read_fetch_response,
    set_correlation_id,
    write_fetch_request,
    write_fetch_response,
    write_replica_fetch,
)
from ottla.protocol.header import decode_request_header, encode_request_header
from ottla.protocol.writer import REFERENCE_BYTES_MIN, chunks

from .strategies import WIRE_EXAMPLES, entities, kio_bytes

FETCH = SUPPORTED_APIS[1]
VERSIONS = list(range(12, FETCH_MAX_VERSION + 1))


def _read_back(entity: Any, version: int) -> Any:
    body = read_fetch_request(kio_bytes(entity), 0, version)
    return body.to_kio(FETCH.request_module(version), FETCH.request_type(version))


def _replica_fetch(version: int) -> Any:
    module = FETCH.request_module(version)
    partition = make(
        module.FetchPartition,
        partition=3,
        current_leader_epoch=7,
        fetch_offset=1234,
        last_fetched_epoch=6,
        log_start_offset=0,
        partition_max_bytes=1 << 20,
    )
    topic = make(module.FetchTopic, topic="orders", topic_id=uuid.uuid4(), partitions=(partition,))
    values: dict[str, Any] = {
        "cluster_id": None,
        "replica_id": 2,
        "replica_state": make(module.ReplicaState, replica_id=2, replica_epoch=9)
        if version >= 15
        else None,
        "max_wait": datetime.timedelta(milliseconds=500),
        "min_bytes": 1,
        "max_bytes": 10 << 20,
        "isolation_level": 0,
        "session_id": 77,
        "session_epoch": 4,
        "topics": (topic,),
        "forgotten_topics_data": (
            make(module.ForgottenTopic, topic="old", topic_id=uuid.uuid4(), partitions=(1, 2)),
        ),
        "rack_id": "",
    }
    return make(FETCH.request_type(version), **values)


@pytest.mark.parametrize("version", VERSIONS)
@WIRE_EXAMPLES
@given(data=st.data())
def test_requests_read_as_kio_wrote_them(version: int, data: st.DataObject) -> None:
    entity = data.draw(entities(FETCH.request_type(version)), label="request")
    as_kio_reads_it, _ = entity_reader(type(entity))(kio_bytes(entity), 0)
    assert _read_back(entity, version) == as_kio_reads_it


@pytest.mark.parametrize("version", VERSIONS)
def test_a_replica_fetch_reads_field_for_field(version: int) -> None:
    entity = _replica_fetch(version)
    body = read_fetch_request(kio_bytes(entity), 0, version)
    assert body.max_wait_ms == 500 and body.min_bytes == 1 and body.session_epoch == 4
    partition = body.topics[0].partitions[0]
    assert (partition.partition, partition.fetch_offset, partition.last_fetched_epoch) == (
        3,
        1234,
        6,
    )
    if version >= 15:
        assert body.replica_state is not None and body.replica_state.replica_epoch == 9
    else:
        assert body.replica_id == 2
    assert body.to_kio(FETCH.request_module(version), FETCH.request_type(version)) == entity


def _frame(entity: Any, version: int) -> bytes:
    return encode_request_header(entity, 5, "client") + kio_bytes(entity)


@pytest.mark.parametrize("version", [12, 15, FETCH_MAX_VERSION])
def test_every_truncation_is_an_invalid_request(version: int) -> None:
    frame = _frame(_replica_fetch(version), version)
    start = decode_request_header(frame, flexible=True).body_offset
    for end in range(start, len(frame)):
        with pytest.raises(ProtocolError) as raised:
            decode_request(frame[:end])
        assert raised.value.error_code is ErrorCode.invalid_request


def test_an_absurd_topic_count_is_refused_before_any_allocation() -> None:
    frame = bytearray(_frame(_replica_fetch(15), 15))
    start = decode_request_header(frame, flexible=True).body_offset
    # v15 body: 21 fixed bytes, then the topics' compact count (one byte: 2).
    assert frame[start + 21] == 2
    frame[start + 21 : start + 22] = b"\xff\xff\xff\xff\x07"
    with pytest.raises(ProtocolError, match="claims"):
        decode_request(bytes(frame))


def test_unknown_tagged_fields_are_skipped() -> None:
    entity = _replica_fetch(15)
    raw = bytearray(kio_bytes(entity))
    # The body's tag section is last: one tag (replica_state). Add tag 9 (3 bytes).
    tags_at = len(raw) - (1 + 1 + 1 + 12 + 1)  # count, tag, size, 12 bytes, its tags
    assert raw[tags_at : tags_at + 3] == b"\x01\x01\x0d"
    raw[tags_at] = 2
    raw += b"\x09\x03abc"
    body = read_fetch_request(bytes(raw), 0, 15)
    assert body.replica_state is not None and body.replica_state.replica_id == 2


def test_a_kafka_client_fetch_goes_through_decode_request() -> None:
    entity = _replica_fetch(15)
    request = decode_request(_frame(entity, 15))
    assert request.header.correlation_id == 5
    assert request.body.topics[0].partitions[0].fetch_offset == 1234


# -- responses -----------------------------------------------------------------------------

_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
_partitions = st.lists(
    st.tuples(
        _int32,
        st.sampled_from([0, 1, 3, 6, 74, 75]),
        _int64,
        _int64,
        _int64,
        st.one_of(st.none(), st.lists(st.tuples(_int64, _int64), max_size=3)),
        st.one_of(st.none(), st.binary(max_size=300)),
        st.one_of(st.none(), st.tuples(_int32, _int64)),
    ),
    max_size=3,
)
_topics = st.lists(
    st.tuples(st.text(max_size=20), st.uuids(), _partitions),
    max_size=3,
)


def _kio_response(version: int, error: int, session_id: int, topics: list[Any]) -> Any:
    module = FETCH.response_module(version)

    def partition(p: Any) -> Any:
        index, code, high, stable, start, aborted, records, diverging = p
        values: dict[str, Any] = {
            "partition_index": index,
            "error_code": ErrorCode(code),
            "high_watermark": high,
            "last_stable_offset": stable,
            "log_start_offset": start,
            "aborted_transactions": None
            if aborted is None
            else tuple(
                make(module.AbortedTransaction, producer_id=pid, first_offset=first)
                for pid, first in aborted
            ),
            "preferred_read_replica": -1,
            "records": records,
        }
        if diverging is not None:
            epoch, end = diverging
            values["diverging_epoch"] = make(module.EpochEndOffset, epoch=epoch, end_offset=end)
        return make(module.PartitionData, **values)

    return make(
        FETCH.response_type(version),
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode(error),
        session_id=session_id,
        responses=tuple(
            make(
                module.FetchableTopicResponse,
                topic=name,
                topic_id=topic_id,
                partitions=tuple(partition(p) for p in partitions),
            )
            for name, topic_id, partitions in topics
        ),
    )


@pytest.mark.parametrize("version", VERSIONS)
@WIRE_EXAMPLES
@given(error=st.sampled_from([0, 70, 71]), session_id=_int32, topics=_topics)
def test_responses_are_kios_bytes(
    version: int, error: int, session_id: int, topics: list[Any]
) -> None:
    body = write_fetch_response(version, error, session_id, topics)
    assert isinstance(body, EncodedBody) and not body.refs
    assert bytes(body.buf) == kio_bytes(_kio_response(version, error, session_id, topics))


def test_large_records_stay_by_reference_and_frame_like_kio() -> None:
    records = memoryview(bytes(range(256)) * (REFERENCE_BYTES_MIN // 256 + 1))
    partition = (0, 0, 10, 10, 0, None, records, None)
    topics: list[Any] = [(None, uuid.uuid4(), [partition])]
    body = write_fetch_response(15, 0, 0, topics)
    assert len(body.refs) == 1 and body.refs[0][1] is records
    header = decode_request_header(_frame(_replica_fetch(15), 15), flexible=True)
    framed = encode_response(header, body)
    expected = encode_response(header, _kio_response(15, 0, 0, topics))
    assert any(chunk is records for chunk in framed)
    as_bytes = b"".join(bytes(c) for c in framed)
    assert as_bytes == b"".join(bytes(c) for c in expected)
    assert chunks(body.buf, body.refs)[1] is records


# -- the client side -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@WIRE_EXAMPLES
@given(data=st.data())
def test_requests_written_by_hand_are_kios_bytes(version: int, data: st.DataObject) -> None:
    entity = data.draw(entities(FETCH.request_type(version)), label="request")
    raw = kio_bytes(entity)
    assert bytes(write_fetch_request(read_fetch_request(raw, 0, version))) == raw


def test_a_replica_request_frames_and_decodes_back() -> None:
    entity = _replica_fetch(15)
    body = read_fetch_request(kio_bytes(entity), 0, 15)
    frame = b"".join(bytes(c) for c in encode_request(body, 41, "ottla-replica"))
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    decoded = decode_request(frame[4:])
    assert decoded.header.correlation_id == 41
    assert kio_body(decoded) == entity


@WIRE_EXAMPLES
@given(data=st.data())
def test_a_replica_fetch_frame_written_by_hand_is_encode_requests(data: st.DataObject) -> None:
    """write_replica_fetch (the replica fetcher's request) writes what encode_request
    writes for the same Fetch v15 request, for any partitions, session and limits."""
    int32 = st.integers(-(2**31), 2**31 - 1)
    int64 = st.integers(-(2**63), 2**63 - 1)
    partition = st.tuples(int32, int32, int64, int32, int64, int32)
    topic_ids = st.uuids()
    topics = data.draw(
        st.lists(st.tuples(topic_ids, st.lists(partition, max_size=4)), max_size=3), "topics"
    )
    forgotten = data.draw(
        st.lists(st.tuples(topic_ids, st.lists(int32, max_size=4)), max_size=3), "forgotten"
    )
    replica_state = (data.draw(st.integers(0, 2**31 - 1)), data.draw(int64))
    limits = (data.draw(int32), data.draw(int32), data.draw(int32))
    session = (data.draw(int32), data.draw(int32))
    correlation_id = data.draw(int32)
    frame = write_replica_fetch(b"ottla-replica", replica_state, limits, session, topics, forgotten)
    set_correlation_id(frame, correlation_id)
    body = FetchRequestBody(REPLICA_FETCH_VERSION)
    body.replica_state = ReplicaStateRequest(*replica_state)
    body.max_wait_ms, body.min_bytes, body.max_bytes = limits
    body.session_id, body.session_epoch = session
    body.topics = [
        FetchTopic(None, topic_id, [FetchPartitionRequest(*p) for p in partitions])
        for topic_id, partitions in topics
    ]
    body.forgotten_topics_data = [FetchTopic(None, t, list(i)) for t, i in forgotten]
    expected = encode_request(body, correlation_id, "ottla-replica")
    assert bytes(frame) == b"".join(bytes(c) for c in expected)


def _same_response(entity: Any, body: Any) -> None:
    assert (body.error_code, body.session_id) == (entity.error_code, entity.session_id)
    assert body.throttle_time_ms == round(entity.throttle_time.total_seconds() * 1000)
    assert len(body.responses) == len(entity.responses)
    for topic, kio_topic in zip(body.responses, entity.responses, strict=True):
        assert topic.topic_id == getattr(kio_topic, "topic_id", None)
        assert topic.topic == getattr(kio_topic, "topic", None)
        for p, q in zip(topic.partitions, kio_topic.partitions, strict=True):
            assert (p.partition_index, p.error_code, p.high_watermark) == (
                q.partition_index,
                q.error_code,
                q.high_watermark,
            )
            assert (p.last_stable_offset, p.log_start_offset, p.preferred_read_replica) == (
                q.last_stable_offset,
                q.log_start_offset,
                q.preferred_read_replica,
            )
            expected_aborted = (
                None
                if q.aborted_transactions is None
                else [(a.producer_id, a.first_offset) for a in q.aborted_transactions]
            )
            assert p.aborted_transactions == expected_aborted
            assert (None if p.records is None else bytes(p.records)) == (
                None if q.records is None else bytes(q.records)
            )
            diverging = q.diverging_epoch
            if p.diverging_epoch is None:
                assert (diverging.epoch, diverging.end_offset) == (-1, -1)
            else:
                assert (p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (
                    diverging.epoch,
                    diverging.end_offset,
                )


@pytest.mark.parametrize("version", VERSIONS)
@WIRE_EXAMPLES
@given(data=st.data())
def test_responses_read_as_kio_wrote_them(version: int, data: st.DataObject) -> None:
    entity = data.draw(entities(FETCH.response_type(version)), label="response")
    raw = kio_bytes(entity)
    body, end = read_fetch_response(memoryview(raw), 0, version)
    assert end == len(raw)
    _same_response(entity, body)


def test_a_response_to_a_hand_written_request_is_read_by_hand() -> None:
    request = read_fetch_request(kio_bytes(_replica_fetch(15)), 0, 15)
    topics: list[Any] = [(None, uuid.uuid4(), [(3, 0, 20, 20, 0, None, b"records", (4, 17))])]
    header = decode_request_header(_frame(_replica_fetch(15), 15), flexible=True)
    frame = b"".join(
        bytes(c) for c in encode_response(header, write_fetch_response(15, 0, 9, topics))
    )
    correlation_id, body = decode_response(frame[4:], request)
    assert correlation_id == 5 and body.session_id == 9
    data = body.responses[0].partitions[0]
    assert bytes(data.records) == b"records" and data.high_watermark == 20
    assert (data.diverging_epoch.epoch, data.diverging_epoch.end_offset) == (4, 17)
    with pytest.raises(ProtocolError, match="trailing"):
        decode_response(frame[4:] + b"\x00", request)
    for end in range(4, len(frame) - 1):
        with pytest.raises(ProtocolError):
            decode_response(frame[4:end], request)
