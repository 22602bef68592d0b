"""decode_request takes every buffer type FrameDecoder hands out; encode_response is zero-copy.

Proves: a request frame given as bytes, bytearray (what FrameDecoder returns for a
frame above 64 KiB), or a writable memoryview decodes the same (kio's native reader
refuses writable buffers; a regression test for that bug); a 1 MiB Produce request
cut by FrameDecoder decodes with its records intact; encode_response keeps large
record buffers (memoryviews of a log) by reference, not copied, and the chunks add up
to the size prefix.
"""

from __future__ import annotations

import datetime
import io
import struct
import sys

from kio.serial import entity_reader, entity_writer

from ottla.protocol import (
    SUPPORTED_APIS,
    ErrorCode,
    FrameDecoder,
    RequestHeader,
    decode_request,
    encode_response,
    frame_size_prefix,
    kio_body,
)


def _produce_frame(records: bytes, version: int = 9) -> bytes:
    spec = SUPPORTED_APIS[0]
    module = sys.modules[spec.request_type(version).__module__]
    body = spec.request_type(version)(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            module.TopicProduceData(
                name="t", partition_data=(module.PartitionProduceData(index=0, records=records),)
            ),
        ),
    )
    out = io.BytesIO()
    out.write(struct.pack(">hhih", 0, version, 5, 1) + b"c\x00")
    entity_writer(type(body))(out, body)
    return out.getvalue()


def test_every_buffer_type_decodes() -> None:
    frame = _produce_frame(b"batch")
    expected = kio_body(decode_request(frame))
    for buffer in (bytearray(frame), memoryview(bytearray(frame)), memoryview(frame)):
        decoded = decode_request(buffer)
        assert kio_body(decoded) == expected
        assert decoded.header.correlation_id == 5


def test_large_frame_from_frame_decoder_decodes() -> None:
    records = bytes(range(256)) * 4096
    frame = _produce_frame(records)
    decoder = FrameDecoder()
    decoder.feed(frame_size_prefix(len(frame)) + frame)
    cut = decoder.next_frame()
    assert isinstance(cut, bytearray)
    decoded = decode_request(cut)
    assert decoded.body.topic_data[0].partition_data[0].records == records


def test_encode_response_keeps_large_buffers_by_reference() -> None:
    spec = SUPPORTED_APIS[1]
    version = 12
    module = spec.response_module(version)
    segment = bytearray(b"\x01" * (3 << 20))
    views = [memoryview(segment)[i << 20 : (i + 1) << 20] for i in range(3)]
    body = spec.response_type(version)(
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=0,
        responses=(
            module.FetchableTopicResponse(
                topic="t",
                partitions=tuple(
                    module.PartitionData(
                        partition_index=index,
                        error_code=ErrorCode.none,
                        high_watermark=10,
                        last_stable_offset=10,
                        log_start_offset=0,
                        aborted_transactions=None,
                        records=view,
                    )
                    for index, view in enumerate(views)
                ),
            ),
        ),
    )
    chunks = encode_response(RequestHeader(1, version, 3, "c", 2, 0), body)
    for view in views:
        assert any(chunk is view for chunk in chunks), "record data was copied"
    total = sum(len(chunk) for chunk in chunks)
    assert struct.unpack_from(">i", chunks[0])[0] == total - 4
    wire = b"".join(bytes(chunk) for chunk in chunks)
    read, _ = entity_reader(type(body))(wire, 9)
    assert [bytes(p.records) for p in read.responses[0].partitions] == [bytes(v) for v in views]
