"""Records inside a v2 batch: decoding (with decompression) and building batches.

This is off the hot path: produce and fetch move batches as bytes. It serves the
features that must look inside a batch (compaction needs keys, control batches
carry transaction markers, keyless records are refused on compacted topics) and
the tests that build batches.

Record layout (Kafka's DefaultRecord; varints are zig-zag encoded):

    length varint | attributes int8 | timestamp_delta varlong | offset_delta varint
    | key_length varint | key | value_length varint | value
    | header_count varint | (key_length varint, key utf-8, value_length varint, value)*

A length of -1 means null. Compression applies to the records section as a whole:
gzip, snappy (raw, or xerial-framed as the Java client writes it), lz4 (frame
format) and zstd, all through cramjam.

Every malformed input raises `ProtocolError(CORRUPT_MESSAGE)`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cramjam
from crc32c import crc32c
from kio.serial.errors import SerialError
from kio.serial.readers import read_signed_varint, read_signed_varlong

from ottla.protocol.errors import ErrorCode, ProtocolError
from ottla.protocol.records import (
    BATCH_HEADER_BYTES,
    LOG_OVERHEAD_BYTES,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    Compression,
    RecordBatchView,
    TimestampType,
)

__all__ = [
    "ControlRecordType",
    "Record",
    "build_batch",
    "build_control_batch",
    "compress",
    "decode_control_record",
    "decode_records",
    "decompress",
]

_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")
_XERIAL_BLOCK: Final = struct.Struct(">i")
_XERIAL_BLOCK_BYTES: Final = 32 * 1024
_CONTROL_KEY: Final = struct.Struct(">hh")
_CONTROL_VALUE: Final = struct.Struct(">hi")
# Bound on a decompressed records section: Kafka's own ceiling on a batch
# (message.max.bytes tops out near 2 GiB) is far above what anyone sends; this keeps
# a hostile ratio (a "zip bomb") from exhausting memory.
DECOMPRESSED_BYTES_MAX: Final = 256 * 1024 * 1024
_FIRST_OUTPUT_BYTES: Final = 4 * 1024
# cramjam's message when decompress_into runs out of output buffer.
_BUFFER_FULL: Final = "failed to write whole buffer"


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a batch; offsets and timestamps are deltas from the batch's bases."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    offset_delta: int = 0
    timestamp_delta: int = 0
    attributes: int = 0


class ControlRecordType:
    """Control record types (Kafka's ControlRecordType): transaction markers."""

    ABORT: Final = 0
    COMMIT: Final = 1


def _corrupt(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.corrupt_message, message)


# -- compression ----------------------------------------------------------------------


def decompress(codec: Compression, data: bytes | memoryview) -> bytes:
    """Decompress a records section; ProtocolError(CORRUPT_MESSAGE) if it is not valid."""
    try:
        if codec is Compression.NONE:
            return bytes(data)
        if codec is Compression.GZIP:
            return _gunzip(data)
        if codec is Compression.SNAPPY:
            return _unsnappy(data)
        out = _decompress_bounded(cramjam.lz4 if codec is Compression.LZ4 else cramjam.zstd, data)
    except ProtocolError:
        raise
    except Exception as error:  # cramjam raises its own DecompressionError and others
        raise _corrupt(f"cannot decompress {codec.name} records: {error}") from None
    if len(out) > DECOMPRESSED_BYTES_MAX:
        raise _corrupt(f"{codec.name} records decompress beyond {DECOMPRESSED_BYTES_MAX} bytes")
    return out


def _decompress_bounded(module: Any, data: bytes | memoryview) -> bytes:
    """lz4/zstd into a bounded buffer, growing it 4x while it is too small.

    cramjam's one-shot `decompress` grows its output without limit, so a few KiB of
    zstd could claim gigabytes before the size check; `decompress_into` stops at the
    buffer's end ("failed to write whole buffer"), so memory stays under about
    2 x DECOMPRESSED_BYTES_MAX whatever the input claims.
    """
    raw = bytes(data)
    size = max(_FIRST_OUTPUT_BYTES, 4 * len(raw))
    while True:
        size = min(size, DECOMPRESSED_BYTES_MAX + 1)
        out = bytearray(size)
        try:
            written = int(module.decompress_into(raw, out))
        except cramjam.DecompressionError as error:
            if _BUFFER_FULL not in str(error):
                raise
            if size > DECOMPRESSED_BYTES_MAX:
                raise _corrupt(
                    f"records decompress beyond {DECOMPRESSED_BYTES_MAX} bytes"
                ) from None
            size *= 4
            continue
        return bytes(memoryview(out)[:written])


def _gunzip(data: bytes | memoryview) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, DECOMPRESSED_BYTES_MAX + 1)
    if len(out) > DECOMPRESSED_BYTES_MAX:
        raise _corrupt(f"GZIP records decompress beyond {DECOMPRESSED_BYTES_MAX} bytes")
    if not inflater.eof:
        raise _corrupt("GZIP records are truncated")
    return out


def _unsnappy(data: bytes | memoryview) -> bytes:
    raw = bytes(data)
    if not raw.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(raw))
    position = _XERIAL_HEADER.size
    parts: list[bytes] = []
    total = 0
    while position < len(raw):
        if len(raw) - position < 4:
            raise _corrupt("truncated xerial snappy block header")
        (length,) = _XERIAL_BLOCK.unpack_from(raw, position)
        position += 4
        if length < 0 or position + length > len(raw):
            raise _corrupt(f"xerial snappy block of {length} bytes overruns the data")
        block = bytes(cramjam.snappy.decompress_raw(raw[position : position + length]))
        total += len(block)
        if total > DECOMPRESSED_BYTES_MAX:
            raise _corrupt(f"SNAPPY records decompress beyond {DECOMPRESSED_BYTES_MAX} bytes")
        parts.append(block)
        position += length
    return b"".join(parts)


def compress(codec: Compression, data: bytes) -> bytes:
    """Compress a records section as Kafka's clients do (snappy: xerial framing)."""
    if codec is Compression.NONE:
        return data
    if codec is Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec is Compression.SNAPPY:
        blocks = [_XERIAL_HEADER.pack(_XERIAL_MAGIC, 1, 1)]
        for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_BYTES]))
            blocks.append(_XERIAL_BLOCK.pack(len(block)))
            blocks.append(block)
        return b"".join(blocks)
    if codec is Compression.LZ4:
        return bytes(cramjam.lz4.compress(data))
    return bytes(cramjam.zstd.compress(data))


# -- decoding ---------------------------------------------------------------------------


def decode_records(batch: RecordBatchView) -> list[Record]:
    """The records of a (validated) batch, decompressed; CORRUPT_MESSAGE on bad data."""
    data = decompress(batch.compression, batch.records_view())
    records: list[Record] = []
    position = 0
    end = len(data)
    count = batch.records_count
    # Each record takes at least 7 bytes, so a huge count is caught before looping.
    if count * 7 > end:
        raise _corrupt(f"batch claims {count} records in {end} bytes")
    try:
        for _ in range(count):
            record, position = _read_record(data, position, end)
            records.append(record)
    except (SerialError, ValueError, IndexError, UnicodeDecodeError) as error:
        raise _corrupt(f"malformed record in batch at {batch.base_offset}: {error}") from None
    if position != end:
        raise _corrupt(f"{end - position} bytes after the last record of the batch")
    return records


def _read_record(data: bytes, position: int, end: int) -> tuple[Record, int]:
    length, size = read_signed_varint(data, position)
    position += size
    record_end = position + length
    if length < 6 or record_end > end:
        raise ValueError(f"record length {length} does not fit")
    attributes = data[position]
    position += 1
    timestamp_delta, size = read_signed_varlong(data, position)
    position += size
    offset_delta, size = read_signed_varint(data, position)
    position += size
    key, position = _read_nullable_bytes(data, position, record_end)
    value, position = _read_nullable_bytes(data, position, record_end)
    header_count, size = read_signed_varint(data, position)
    position += size
    if header_count < 0 or header_count * 2 > record_end - position:
        raise ValueError(f"record claims {header_count} headers")
    headers = []
    for _ in range(header_count):
        header_key, position = _read_nullable_bytes(data, position, record_end)
        if header_key is None:
            raise ValueError("record header with a null key")
        header_value, position = _read_nullable_bytes(data, position, record_end)
        headers.append((header_key.decode(), header_value))
    if position != record_end:
        raise ValueError(f"record length {length} disagrees with its fields")
    return (
        Record(
            key=key,
            value=value,
            headers=tuple(headers),
            offset_delta=offset_delta,
            timestamp_delta=timestamp_delta,
            attributes=attributes,
        ),
        position,
    )


def _read_nullable_bytes(data: bytes, position: int, end: int) -> tuple[bytes | None, int]:
    length, size = read_signed_varint(data, position)
    position += size
    if length == -1:
        return None, position
    if length < -1 or position + length > end:
        raise ValueError(f"field length {length} does not fit the record")
    return data[position : position + length], position + length


def decode_control_record(record: Record) -> tuple[int, int]:
    """(control type, coordinator epoch) of a control record (transaction marker)."""
    if record.key is None or len(record.key) < 4:
        raise _corrupt("control record without a valid key")
    _version, control_type = _CONTROL_KEY.unpack_from(record.key, 0)
    coordinator_epoch = -1
    if record.value is not None and len(record.value) >= 6:
        _value_version, coordinator_epoch = _CONTROL_VALUE.unpack_from(record.value, 0)
    return int(control_type), int(coordinator_epoch)


# -- building ---------------------------------------------------------------------------


def _write_varint(out: bytearray, value: int) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _write_nullable_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        _write_varint(out, -1)
        return
    _write_varint(out, len(value))
    out += value


def _encode_record(record: Record, offset_delta: int) -> bytes:
    body = bytearray()
    body.append(record.attributes & 0xFF)
    _write_varint(body, record.timestamp_delta)
    _write_varint(body, offset_delta)
    _write_nullable_bytes(body, record.key)
    _write_nullable_bytes(body, record.value)
    _write_varint(body, len(record.headers))
    for header_key, header_value in record.headers:
        _write_nullable_bytes(body, header_key.encode())
        _write_nullable_bytes(body, header_value)
    out = bytearray()
    _write_varint(out, len(body))
    return bytes(out + body)


def build_batch(
    records: Iterable[Record],
    *,
    base_offset: int = 0,
    base_timestamp: int = 0,
    max_timestamp: int | None = None,
    compression: Compression = Compression.NONE,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    is_transactional: bool = False,
    is_control: bool = False,
) -> bytearray:
    """A complete v2 batch with a correct CRC, as a writable bytearray.

    A record's own `offset_delta` is ignored unless it is non-zero (so compacted
    batches with gaps can be built); otherwise records are numbered 0, 1, 2, ...
    `max_timestamp` defaults to the largest record timestamp.
    """
    record_list: Sequence[Record] = list(records)
    if not record_list:
        raise ValueError("a record batch holds at least one record")
    encoded = bytearray()
    last_offset_delta = 0
    largest_delta = 0
    for index, record in enumerate(record_list):
        offset_delta = record.offset_delta or index
        if offset_delta < last_offset_delta:
            raise ValueError("record offset deltas must increase")
        last_offset_delta = offset_delta
        largest_delta = max(largest_delta, record.timestamp_delta)
        encoded += _encode_record(record, offset_delta)
    payload = compress(compression, bytes(encoded))
    attributes = int(compression) | (int(timestamp_type) << 3)
    if is_transactional:
        attributes |= 0x10
    if is_control:
        attributes |= 0x20
    if max_timestamp is None:
        max_timestamp = base_timestamp + largest_delta
    batch = bytearray(BATCH_HEADER_BYTES + len(payload))
    _HEADER.pack_into(
        batch,
        0,
        base_offset,
        len(batch) - LOG_OVERHEAD_BYTES,
        partition_leader_epoch,
        2,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(record_list),
    )
    batch[BATCH_HEADER_BYTES:] = payload
    struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[21:]))
    return batch


def build_control_batch(
    control_type: int,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytearray:
    """A transaction marker: a transactional control batch with one control record."""
    record = Record(
        key=_CONTROL_KEY.pack(0, control_type),
        value=_CONTROL_VALUE.pack(0, coordinator_epoch),
    )
    return build_batch(
        [record],
        base_offset=base_offset,
        base_timestamp=timestamp_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        partition_leader_epoch=partition_leader_epoch,
        is_transactional=True,
        is_control=True,
    )
