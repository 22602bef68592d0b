"""Record batches (magic v2, Kafka's log format): a zero-copy header view.

Layout of a v2 batch (all big-endian), as on the wire and in the log:

    offset  size  field
    0       8     base_offset             \\ the "log overhead": outside the CRC,
    8       4     batch_length            /  batch_length counts from byte 12
    12      4     partition_leader_epoch  (outside the CRC, patched by the leader)
    16      1     magic (2)
    17      4     crc (CRC32C of bytes 21..end)
    21      2     attributes: bits 0-2 compression, 3 timestamp type,
                  4 transactional, 5 control, 6 delete horizon set
    23      4     last_offset_delta
    27      8     base_timestamp
    35      8     max_timestamp
    43      8     producer_id
    51      2     producer_epoch
    53      4     base_sequence
    57      4     records_count
    61      ...   records (compressed as a whole when compression != 0)

`RecordBatchView` unpacks the 61-byte header with one precompiled `struct` call
and never copies the records: it is the O(1) per-batch work the produce and fetch
paths do. `iter_batches` splits a buffer holding several batches. Setting the base
offset or partition leader epoch patches the buffer in place (both lie outside the
CRC); `set_log_append_time` rewrites covered fields and so recomputes the CRC.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import Final

from crc32c import crc32c

from ottla.protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "BATCH_HEADER_BYTES",
    "LOG_OVERHEAD_BYTES",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "Compression",
    "RecordBatchView",
    "TimestampType",
    "iter_batches",
]

_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_BYTES: Final = _HEADER.size  # 61
LOG_OVERHEAD_BYTES: Final = 12  # base_offset + batch_length
_BATCH_LENGTH_MIN: Final = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES  # 49
_CRC_START: Final = 21
_MAGIC_OFFSET: Final = 16
_OFFSET_AND_LENGTH: Final = struct.Struct(">qi")
_INT64: Final = struct.Struct(">q")
_INT32: Final = struct.Struct(">i")
_UINT32: Final = struct.Struct(">I")
_INT16: Final = struct.Struct(">h")
_MAX_TIMESTAMP_OFFSET: Final = 35
_ATTRIBUTES_OFFSET: Final = 21
_CRC_OFFSET: Final = 17

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
NO_PARTITION_LEADER_EPOCH: Final = -1

_COMPRESSION_MASK: Final = 0x07
_TIMESTAMP_TYPE_BIT: Final = 0x08
_TRANSACTIONAL_BIT: Final = 0x10
_CONTROL_BIT: Final = 0x20
_DELETE_HORIZON_BIT: Final = 0x40


class Compression(enum.IntEnum):
    """The codec in attribute bits 0-2 (Kafka's CompressionType ids)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    """Attribute bit 3: who set the timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


Buffer = bytes | bytearray | memoryview


class RecordBatchView:
    """The header fields of the v2 batch at `buffer[position:]`, without copying.

    Construction checks only that the fixed header fits and the magic is 2; it does
    not check the CRC or that the whole batch is present (`validate` does), so a
    fetch may look at a batch whose tail is not yet in the buffer.
    """

    __slots__ = (
        "attributes",
        "base_offset",
        "base_sequence",
        "base_timestamp",
        "batch_length",
        "buffer",
        "crc",
        "last_offset_delta",
        "magic",
        "max_timestamp",
        "partition_leader_epoch",
        "position",
        "producer_epoch",
        "producer_id",
        "records_count",
    )

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    buffer: Buffer
    position: int

    def __init__(self, buffer: Buffer, position: int = 0) -> None:
        if len(buffer) - position < BATCH_HEADER_BYTES:
            if len(buffer) - position > _MAGIC_OFFSET and buffer[position + _MAGIC_OFFSET] != 2:
                raise _corrupt(f"unsupported record batch magic {buffer[position + _MAGIC_OFFSET]}")
            raise _corrupt(
                f"record batch header needs {BATCH_HEADER_BYTES} bytes, "
                f"{len(buffer) - position} present"
            )
        (
            self.base_offset,
            self.batch_length,
            self.partition_leader_epoch,
            self.magic,
            self.crc,
            self.attributes,
            self.last_offset_delta,
            self.base_timestamp,
            self.max_timestamp,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.records_count,
        ) = _HEADER.unpack_from(buffer, position)
        if self.magic != 2:
            raise _corrupt(f"unsupported record batch magic {self.magic}")
        if self.batch_length < _BATCH_LENGTH_MIN:
            raise _corrupt(f"record batch length {self.batch_length} is below {_BATCH_LENGTH_MIN}")
        self.buffer = buffer
        self.position = position

    # -- derived fields -------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of the whole batch, log overhead included."""
        return self.batch_length + LOG_OVERHEAD_BYTES

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset after this batch's last one."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        code = self.attributes & _COMPRESSION_MASK
        try:
            return Compression(code)
        except ValueError:
            raise _corrupt(f"unknown compression codec {code}") from None

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType((self.attributes & _TIMESTAMP_TYPE_BIT) >> 3)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """Bit 6: base_timestamp holds the delete horizon set by the log cleaner."""
        return bool(self.attributes & _DELETE_HORIZON_BIT)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last record (wrapping at 2**31, like Kafka)."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % 2**31

    def bytes_view(self) -> memoryview:
        """The whole batch as a memoryview over the underlying buffer."""
        return memoryview(self.buffer)[self.position : self.position + self.size]

    def records_view(self) -> memoryview:
        """The (possibly compressed) records section, after the 61-byte header."""
        start = self.position + BATCH_HEADER_BYTES
        return memoryview(self.buffer)[start : self.position + self.size]

    # -- validation -------------------------------------------------------------------

    def compute_crc(self) -> int:
        """CRC32C of attributes..end, as stored in the `crc` field."""
        start = self.position + _CRC_START
        end = self.position + self.size
        return int(crc32c(memoryview(self.buffer)[start:end]))

    def is_complete(self) -> bool:
        """True when the whole batch (per batch_length) lies within the buffer."""
        return len(self.buffer) - self.position >= self.size

    def validate(self) -> None:
        """Raise ProtocolError(CORRUPT_MESSAGE) unless the batch is whole and intact."""
        if not self.is_complete():
            raise _corrupt(
                f"record batch declares {self.size} bytes, "
                f"{len(self.buffer) - self.position} present"
            )
        if self.compute_crc() != self.crc:
            raise _corrupt(
                f"record batch CRC mismatch at offset {self.base_offset}: "
                f"stored {self.crc:#010x}, computed {self.compute_crc():#010x}"
            )
        if self.records_count < 0 or self.last_offset_delta < 0:
            raise _corrupt(
                f"record batch has records_count {self.records_count}, "
                f"last_offset_delta {self.last_offset_delta}"
            )
        _ = self.compression

    # -- patching (the buffer must be writable) ---------------------------------------

    def set_base_offset(self, base_offset: int) -> None:
        """Assign offsets: patch base_offset in place (it lies outside the CRC)."""
        _INT64.pack_into(self.buffer, self.position, base_offset)
        self.base_offset = base_offset

    def set_partition_leader_epoch(self, epoch: int) -> None:
        """Stamp the leader epoch in place (outside the CRC)."""
        _INT32.pack_into(self.buffer, self.position + 12, epoch)
        self.partition_leader_epoch = epoch

    def set_log_append_time(self, timestamp_ms: int) -> None:
        """Switch to LogAppendTime at `timestamp_ms`; rewrites the CRC."""
        attributes = self.attributes | _TIMESTAMP_TYPE_BIT
        _INT16.pack_into(self.buffer, self.position + _ATTRIBUTES_OFFSET, attributes)
        _INT64.pack_into(self.buffer, self.position + _MAX_TIMESTAMP_OFFSET, timestamp_ms)
        self.attributes = attributes
        self.max_timestamp = timestamp_ms
        self.crc = self.compute_crc()
        _UINT32.pack_into(self.buffer, self.position + _CRC_OFFSET, self.crc)

    def __repr__(self) -> str:
        return (
            f"RecordBatchView(base_offset={self.base_offset}, size={self.size}, "
            f"records={self.records_count}, attributes={self.attributes:#x}, "
            f"producer_id={self.producer_id}, base_sequence={self.base_sequence})"
        )


def _corrupt(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.corrupt_message, message)


def peek_batch_size(buffer: Buffer, position: int = 0) -> int | None:
    """Size of the batch at `position` from its length field, or None if under 12 bytes."""
    if len(buffer) - position < LOG_OVERHEAD_BYTES:
        return None
    _, batch_length = _OFFSET_AND_LENGTH.unpack_from(buffer, position)
    return int(batch_length) + LOG_OVERHEAD_BYTES


def iter_batches(
    buffer: Buffer, *, validate: bool = True, allow_partial_tail: bool = False
) -> Iterator[RecordBatchView]:
    """The batches in `buffer`, in order.

    With `validate`, each batch's length and CRC are checked (ProtocolError on the
    first bad one). A trailing fragment shorter than its declared length is an error
    unless `allow_partial_tail` (a fetch response may end mid-batch).
    """
    position = 0
    end = len(buffer)
    while position < end:
        if end - position < BATCH_HEADER_BYTES:
            if allow_partial_tail:
                return
            raise _corrupt(f"{end - position} trailing bytes do not form a record batch")
        batch = RecordBatchView(buffer, position)
        if not batch.is_complete():
            if allow_partial_tail:
                return
            raise _corrupt(f"record batch declares {batch.size} bytes, {end - position} present")
        if validate:
            batch.validate()
        yield batch
        position += batch.size
