"""Shared helpers for the storage tests: building batches and reading a log back."""

from __future__ import annotations

from ottla.protocol import Record, RecordBatchView, build_batch
from ottla.storage import Log


def make_batch(
    count: int = 1,
    *,
    value_bytes: int = 100,
    timestamp_ms: int = 1000,
    key: bytes | None = None,
    fill: int = 0x61,
    partition_leader_epoch: int = -1,
) -> bytearray:
    """A valid uncompressed v2 batch of `count` records (base offset 0)."""
    records = [
        Record(
            key=key if key is not None else b"key-%d" % index,
            value=bytes([fill]) * value_bytes,
            offset_delta=index,
        )
        for index in range(count)
    ]
    return build_batch(
        records, base_timestamp=timestamp_ms, partition_leader_epoch=partition_leader_epoch
    )


def with_base_offset(batch: bytes | bytearray, base_offset: int) -> bytes:
    """`batch` as the log stores it once `base_offset` is assigned."""
    copy = bytearray(batch)
    RecordBatchView(copy).set_base_offset(base_offset)
    return bytes(copy)


def read_all(log: Log, start_offset: int | None = None) -> list[bytes]:
    """Every batch from `start_offset` (default: log start) to the end, as bytes.

    A read that returns nothing ends it: the rest up to the log end offset is a gap
    without batches. (A follower's append after a compaction gap, then a truncation
    into that batch, leaves the log end offset at the batch's base, past the last
    batch still held: hypothesis found such a log, and this loop never ended.)"""
    offset = log.log_start_offset if start_offset is None else start_offset
    batches: list[bytes] = []
    while offset < log.log_end_offset:
        with log.read(offset, 1 << 20) as result:
            data = bytes(result.records)
            offset = result.next_offset
        if not data:
            break
        position = 0
        while position < len(data):
            view = RecordBatchView(data, position)
            batches.append(data[position : position + view.size])
            position += view.size
    return batches
