"""produce_wire.py reads Produce v3+ exactly as kio does, without copying records.

Hypothesis-generated kio ProduceRequests of every version from 3, written by kio and
read by `read_produce_request`, are kio's reading of the same bytes; the records are
views of the frame, not copies; every truncation and an absurd count are
INVALID_REQUEST; unknown tagged fields are skipped.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.serial import entity_reader

from ottla.protocol import SUPPORTED_APIS, ErrorCode, ProtocolError, make
from ottla.protocol.codec import decode_request, kio_body
from ottla.protocol.header import decode_request_header, encode_request_header
from ottla.protocol.produce_wire import PRODUCE_MAX_VERSION, read_produce_request

from .strategies import WIRE_EXAMPLES, entities, kio_bytes

PRODUCE = SUPPORTED_APIS[0]
VERSIONS = list(range(3, PRODUCE_MAX_VERSION + 1))


def _request(version: int, records: bytes | None = b"records!") -> Any:
    module = PRODUCE.request_module(version)
    partition = make(module.PartitionProduceData, index=4, records=records)
    topic = make(
        module.TopicProduceData,
        name="orders",
        topic_id=uuid.UUID(int=7),
        partition_data=(partition,),
    )
    return make(
        PRODUCE.request_type(version),
        transactional_id="tx",
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(topic,),
    )


def _frame(entity: Any) -> bytes:
    return encode_request_header(entity, 9, "client") + kio_bytes(entity)


@pytest.mark.parametrize("version", VERSIONS)
@WIRE_EXAMPLES
@given(data=st.data())
def test_requests_read_as_kio_reads_them(version: int, data: st.DataObject) -> None:
    entity = data.draw(entities(PRODUCE.request_type(version)), label="request")
    raw = kio_bytes(entity)
    expected, _ = entity_reader(type(entity))(raw, 0)
    body = read_produce_request(raw, 0, version)
    assert body.to_kio(PRODUCE.request_module(version), PRODUCE.request_type(version)) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_records_are_views_of_the_frame(version: int) -> None:
    frame = bytearray(_frame(_request(version)))
    request = decode_request(frame)
    assert kio_body(request) == _request(version)
    assert request.body.acks == -1 and request.body.timeout_ms == 30_000
    assert request.body.transactional_id == "tx"
    records = request.body.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.readonly
    assert bytes(records) == b"records!"
    frame[frame.index(b"records!")] = ord("R")  # the same memory: no copy was made
    assert bytes(records) == b"Records!"


@pytest.mark.parametrize("version", [3, 8, 9, PRODUCE_MAX_VERSION])
def test_every_truncation_is_an_invalid_request(version: int) -> None:
    frame = _frame(_request(version))
    start = decode_request_header(frame, flexible=version >= 9).body_offset
    for end in range(start, len(frame)):
        with pytest.raises(ProtocolError) as raised:
            decode_request(frame[:end])
        assert raised.value.error_code is ErrorCode.invalid_request


def test_an_absurd_partition_count_is_refused() -> None:
    frame = bytearray(_frame(_request(8)))
    start = decode_request_header(frame, flexible=False).body_offset
    at = start + 2 + 2 + 2 + 4 + 4 + 2 + len("orders")  # tx id, acks, timeout, topics, name
    assert struct.unpack_from(">i", frame, at)[0] == 1
    struct.pack_into(">i", frame, at, 2**31 - 1)
    with pytest.raises(ProtocolError, match="claims"):
        decode_request(bytes(frame))


def test_null_records_and_unknown_tags() -> None:
    request = decode_request(_frame(_request(9, records=None)))
    assert request.body.topic_data[0].partition_data[0].records is None
    raw = bytearray(kio_bytes(_request(9)))
    assert raw[-1] == 0  # the body's tagged fields: none
    raw[-1:] = b"\x01\x05\x02hi"  # one unknown tag (5), two bytes
    body = read_produce_request(bytes(raw), 0, 9)
    assert bytes(body.topic_data[0].partition_data[0].records or b"") == b"records!"
