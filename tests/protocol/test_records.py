"""RecordBatchView reads, validates and patches v2 batches; decompression stays bounded.

Proves: the header view reports what build_batch wrote; patching the base offset and
leader epoch in place keeps the CRC valid (both lie outside it) while
set_log_append_time rewrites covered fields and recomputes the CRC; a partial tail is
refused or skipped as asked; peek_batch_size reads the length field; a magic other
than 2 and a short batch are CORRUPT_MESSAGE; a zstd or lz4 "bomb" (a few KiB that
claim far more than DECOMPRESSED_BYTES_MAX) is rejected without allocating past the
cap (a regression test: cramjam's one-shot decompress grew its output unbounded).
"""

from __future__ import annotations

import tracemalloc

import cramjam
import pytest

from ottla.protocol import (
    Compression,
    ErrorCode,
    ProtocolError,
    Record,
    RecordBatchView,
    TimestampType,
    build_batch,
    decode_records,
    decompress,
    iter_batches,
    peek_batch_size,
    record_codec,
)

RECORDS = [Record(key=b"k", value=b"v" * 100), Record(key=None, value=b"w", timestamp_delta=9)]


def test_header_view_matches_the_builder() -> None:
    batch = build_batch(
        RECORDS,
        base_offset=100,
        base_timestamp=1_000,
        producer_id=5,
        producer_epoch=2,
        base_sequence=7,
        partition_leader_epoch=3,
        is_transactional=True,
    )
    view = RecordBatchView(batch)
    view.validate()
    assert (view.base_offset, view.last_offset, view.next_offset) == (100, 101, 102)
    assert (view.base_timestamp, view.max_timestamp) == (1_000, 1_009)
    assert (view.producer_id, view.producer_epoch, view.base_sequence) == (5, 2, 7)
    assert view.last_sequence == 8
    assert view.partition_leader_epoch == 3
    assert view.is_transactional and not view.is_control
    assert view.timestamp_type is TimestampType.CREATE_TIME
    assert view.size == len(batch) == peek_batch_size(batch)
    assert bytes(view.bytes_view()) == bytes(batch)


def test_patching_offsets_and_epoch_keeps_the_crc() -> None:
    batch = build_batch(RECORDS)
    view = RecordBatchView(batch)
    view.set_base_offset(123_456_789)
    view.set_partition_leader_epoch(42)
    reread = RecordBatchView(batch)
    reread.validate()
    assert (reread.base_offset, reread.partition_leader_epoch) == (123_456_789, 42)
    assert [r.value for r in decode_records(reread)] == [r.value for r in RECORDS]


def test_log_append_time_rewrites_the_crc() -> None:
    batch = build_batch(RECORDS, base_timestamp=1_000)
    old_crc = RecordBatchView(batch).crc
    view = RecordBatchView(batch)
    view.set_log_append_time(9_999)
    reread = RecordBatchView(batch)
    reread.validate()
    assert reread.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert reread.max_timestamp == 9_999
    assert reread.crc != old_crc


def test_partial_tail() -> None:
    two = bytes(build_batch(RECORDS)) + bytes(build_batch(RECORDS, base_offset=2))
    cut = two[:-10]
    with pytest.raises(ProtocolError) as raised:
        list(iter_batches(cut))
    assert raised.value.error_code is ErrorCode.corrupt_message
    assert [b.base_offset for b in iter_batches(cut, allow_partial_tail=True)] == [0]
    assert [b.base_offset for b in iter_batches(two)] == [0, 2]
    assert peek_batch_size(two[:11]) is None


def test_bad_magic_and_short_batches() -> None:
    batch = build_batch(RECORDS)
    batch[16] = 1
    with pytest.raises(ProtocolError, match="magic"):
        RecordBatchView(batch)
    with pytest.raises(ProtocolError, match="magic"):
        RecordBatchView(batch[:30])
    with pytest.raises(ProtocolError):
        RecordBatchView(bytes(build_batch(RECORDS))[:60])


@pytest.mark.parametrize("codec", [Compression.ZSTD, Compression.LZ4])
def test_decompression_bomb_is_bounded(codec: Compression, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = 1 << 20
    monkeypatch.setattr(record_codec, "DECOMPRESSED_BYTES_MAX", cap)
    module = cramjam.zstd if codec is Compression.ZSTD else cramjam.lz4
    bomb = bytes(module.compress(b"\x00" * (64 << 20)))
    assert len(bomb) < 512 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as raised:
            decompress(codec, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.error_code is ErrorCode.corrupt_message
    assert peak < 4 * cap + 2 * len(bomb)
    # Just under the cap still decompresses.
    fits = bytes(module.compress(b"\x01" * (cap - 1)))
    assert decompress(codec, fits) == b"\x01" * (cap - 1)
