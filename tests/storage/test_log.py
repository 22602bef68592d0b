"""`Log` keeps Kafka's log semantics on disk.

Proves: appends get consecutive offsets and read back byte-for-byte across segment
rolls and reopens; reads start at the batch holding the offset (mid-batch) and honour
max_bytes, min_one_message and max_offset; timestamp lookups find the first batch at
or after a time; follower truncation, DeleteRecords and retention (time and size) move
the offsets and survive a reopen; bad input (CRC, length, size, follower offsets) is
refused with Kafka's error and leaves the log unchanged; damaged or mismatched indexes
and checkpoints are rebuilt from the log; a log made in a new directory (no scans) is
in the state an empty existing directory opens in, and recovers after a crash.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ottla.protocol import ErrorCode, ProtocolError, RecordBatchView
from ottla.storage import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    Log,
    LogConfig,
    OffsetOutOfRangeError,
)

from .helpers import make_batch, read_all, with_base_offset

SMALL = LogConfig(segment_bytes=2048, index_interval_bytes=256, segment_index_bytes=4096)


def _fill(log: Log, count: int, *, records: int = 3, start_ms: int = 1000) -> list[bytes]:
    """Append `count` batches; the bytes each should read back as."""
    expected = []
    for index in range(count):
        batch = make_batch(records, value_bytes=20 + index % 50, timestamp_ms=start_ms + index)
        info = log.append(batch, now_ms=start_ms + index)
        expected.append(with_base_offset(batch, info.first_offset))
    return expected


def test_append_assigns_offsets_and_reads_back_across_rolls(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    expected = _fill(log, 120)
    assert log.log_end_offset == 360
    assert len(log.segments) > 5
    assert read_all(log) == expected
    offsets = [RecordBatchView(batch).base_offset for batch in read_all(log)]
    assert offsets == list(range(0, 360, 3))
    log.close()
    reopened = Log.open(tmp_path / "t-0", SMALL)
    assert reopened.log_end_offset == 360
    assert read_all(reopened) == expected
    more = _fill(reopened, 5, start_ms=5000)
    assert read_all(reopened) == expected + more
    reopened.close()


def _state(log: Log) -> tuple[object, ...]:
    return (
        log.log_start_offset,
        log.log_end_offset,
        log.recovery_point,
        [(segment.base_offset, segment.active, segment.size) for segment in log.segments],
        log.epoch_cache.entries,
        sorted(path.name for path in log.directory.iterdir()),
    )


def test_a_new_directory_gets_the_state_an_empty_one_opens_in(tmp_path: Path) -> None:
    (tmp_path / "empty-0").mkdir()
    opened = Log.open(tmp_path / "empty-0", SMALL, now_ms=7)
    created = Log.open(tmp_path / "new-0", SMALL, now_ms=7)
    assert _state(created) == _state(opened)
    assert created.segments[0].created_ms == opened.segments[0].created_ms == 7
    expected = _fill(created, 4)
    # No close: the next open is an unclean one, which scans what was appended.
    recovered = Log.open(tmp_path / "new-0", SMALL)
    assert read_all(recovered) == expected
    for log in (opened, created, recovered):
        log.close()


def test_read_starts_at_the_batch_holding_the_offset(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    expected = _fill(log, 40)
    for offset in (0, 1, 2, 3, 44, 100, 119):
        with log.read(offset, 1) as result:
            first = RecordBatchView(bytes(result.records))
            assert first.base_offset <= offset <= first.last_offset
            assert result.first_offset == first.base_offset
            assert bytes(result.records) == expected[offset // 3]  # one batch: min_one
            assert result.next_offset == first.next_offset
    with log.read(log.log_end_offset, 1000) as result:
        assert len(result.records) == 0 and result.next_offset == log.log_end_offset
    with log.read(3, 1, min_one_message=False) as result:
        assert len(result.records) == 0
    with log.read(0, 10_000, max_offset=6) as result:
        assert result.next_offset == 6 and bytes(result.records) == b"".join(expected[:2])
    with pytest.raises(OffsetOutOfRangeError):
        log.read(log.log_end_offset + 1, 100)
    log.close()


def test_a_reader_that_keeps_up_reads_the_right_batches_across_truncations(
    tmp_path: Path,
) -> None:
    # A follower's pattern: read to the end, the leader appends, read from where the
    # last read ended (the segment remembers that position) — and truncations in
    # between, after which the old position may fall inside a batch of other sizes.
    log = Log.open(tmp_path / "t-0", LogConfig(segment_bytes=1 << 20))
    expected = _fill(log, 10, records=1)
    offset = 0
    for round_ in range(30):
        with log.read(offset, 1 << 20) as result:
            data = bytes(result.records)
            offset = result.next_offset
        assert data == b"".join(expected[RecordBatchView(data).base_offset :])
        if round_ % 3 == 2:
            # Truncate below where the reader is, refill with batches of other sizes.
            keep = max(0, offset - 4)
            log.truncate_to(keep)
            expected = expected[:keep]
            for index in range(6):
                batch = make_batch(1, value_bytes=7 + 31 * index, timestamp_ms=5000 + index)
                info = log.append(batch, now_ms=5000 + index)
                expected.append(with_base_offset(batch, info.first_offset))
            offset = max(0, offset - 2)  # inside what was rewritten
        else:
            expected += _fill(log, 1 + round_ % 2, records=1, start_ms=2000 + round_)
    assert read_all(log) == expected
    log.close()


def test_read_stays_within_max_bytes_and_one_segment(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    _fill(log, 60)
    with log.read(0, 500) as result:
        assert 0 < len(result.records) <= 500
    with log.read(0, 1 << 20) as result:
        assert len(result.records) <= log.segments[0].size
        assert result.next_offset == log.segments[1].base_offset
    log.close()


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    timestamps = [1000, 1005, 1003, 1010, 1010, 1020] * 10
    timestamps = [ts + 100 * (index // 6) for index, ts in enumerate(timestamps)]
    for index, timestamp in enumerate(timestamps):
        log.append(make_batch(2, timestamp_ms=timestamp), now_ms=timestamp)
        assert log.log_end_offset == 2 * (index + 1)
    for target in (0, 1000, 1004, 1006, 1010, 1011, 1500, 1920):
        expected = next(((2 * i, ts) for i, ts in enumerate(timestamps) if ts >= target), None)
        assert log.offset_for_timestamp(target) == expected, target
    assert log.offset_for_timestamp(5000) is None
    assert log.offset_for_timestamp(LATEST_TIMESTAMP) == (log.log_end_offset, -1)
    assert log.offset_for_timestamp(EARLIEST_TIMESTAMP) == (0, -1)
    log.advance_start_offset(31)
    assert log.offset_for_timestamp(0) == (31, timestamps[15])
    log.close()
    reopened = Log.open(tmp_path / "t-0", SMALL)
    assert reopened.offset_for_timestamp(1506) == (2 * timestamps.index(1510), 1510)
    reopened.close()


@pytest.mark.parametrize("offset", [0, 1, 3, 50, 51, 117, 118, 119])
def test_truncate_to(tmp_path: Path, offset: int) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    expected = _fill(log, 40)
    log.truncate_to(offset)
    kept = offset // 3  # a batch cut in the middle goes whole
    assert log.log_end_offset == kept * 3
    assert read_all(log) == expected[:kept]
    more = _fill(log, 3, start_ms=9000)
    assert RecordBatchView(more[0]).base_offset == kept * 3
    log.flush()
    # Reopen without a clean shutdown: recovery must agree with the truncation.
    reopened = Log.open(tmp_path / "t-0", SMALL)
    assert read_all(reopened) == expected[:kept] + more
    reopened.close()


def test_truncate_below_log_start_restarts_the_log(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    _fill(log, 40)
    log.advance_start_offset(60)
    log.truncate_to(30)
    assert (log.log_start_offset, log.log_end_offset) == (30, 30)
    more = _fill(log, 2)
    assert read_all(log) == more
    log.close()


def test_delete_records_moves_the_log_start(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    expected = _fill(log, 40)
    segments_before = len(log.segments)
    assert log.advance_start_offset(50)
    assert not log.advance_start_offset(40)
    assert log.log_start_offset == 50
    assert len(log.segments) < segments_before
    with pytest.raises(OffsetOutOfRangeError):
        log.read(49, 100)
    with log.read(50, 1) as result:  # the batch holding 50 starts at 48
        assert result.first_offset == 48
    with pytest.raises(OffsetOutOfRangeError):
        log.advance_start_offset(500)
    with pytest.raises(OffsetOutOfRangeError):
        log.advance_start_offset(100, high_watermark=90)
    log.close()
    reopened = Log.open(tmp_path / "t-0", SMALL)
    assert reopened.log_start_offset == 50
    assert read_all(reopened) == expected[16:]
    reopened.close()


def test_retention_by_time(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=2048, index_interval_bytes=256, retention_ms=10_000)
    log = Log.open(tmp_path / "t-0", config)
    _fill(log, 30, start_ms=1000)
    _fill(log, 30, start_ms=50_000)
    assert log.apply_retention(now_ms=11_000) == []
    new_batches = read_all(log, 90)
    deleted = log.apply_retention(now_ms=51_040)
    assert deleted and deleted == sorted(deleted)
    assert 0 < log.log_start_offset <= 90
    assert log.log_start_offset == log.segments[0].base_offset
    assert all(segment.max_timestamp >= 41_040 for segment in log.segments)
    assert read_all(log, 90) == new_batches
    segments_left = len(log.segments)
    assert len(log.apply_retention(now_ms=10**9)) == segments_left - 1
    assert len(log.segments) == 1  # never the active segment
    log.close()


def test_retention_by_size_and_high_watermark(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=2048, index_interval_bytes=256, retention_bytes=5000)
    log = Log.open(tmp_path / "t-0", config)
    _fill(log, 80)
    total = log.size_bytes
    assert total > 5000
    assert log.apply_retention(now_ms=2000, high_watermark=0) == []
    deleted = log.apply_retention(now_ms=2000)
    assert deleted
    assert log.size_bytes >= 5000
    assert log.size_bytes - log.segments[0].size < 5000
    assert log.log_start_offset == log.segments[0].base_offset > deleted[-1]
    log.close()


def test_bad_input_is_refused_and_leaves_the_log_unchanged(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=4096, max_message_bytes=2000)
    log = Log.open(tmp_path / "t-0", config)
    good = _fill(log, 3)
    before = (log.log_end_offset, log.active_segment.size, read_all(log))
    bad_crc = make_batch(2)
    bad_crc[-1] ^= 0xFF
    torn = make_batch(2)[:-5]
    long_length = make_batch(2)
    long_length[8:12] = (len(long_length) + 100 - 12).to_bytes(4, "big")
    trailing = make_batch(2) + b"\x00" * 20
    cases: list[tuple[bytes | bytearray, ErrorCode]] = [
        (bad_crc, ErrorCode.corrupt_message),
        (torn, ErrorCode.corrupt_message),
        (long_length, ErrorCode.corrupt_message),
        (trailing, ErrorCode.corrupt_message),
        (b"", ErrorCode.corrupt_message),
        (make_batch(1) + bad_crc, ErrorCode.corrupt_message),
        (make_batch(1, value_bytes=3000), ErrorCode.message_too_large),
    ]
    for data, code in cases:
        with pytest.raises(ProtocolError) as caught:
            log.append(data, now_ms=5000)
        assert caught.value.error_code == code
        assert (log.log_end_offset, log.active_segment.size, read_all(log)) == before
    assert read_all(log) == good
    log.close()


def test_input_buffer_is_not_modified_and_views_are_accepted(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0")
    _fill(log, 2)
    batch = bytes(make_batch(4))
    info = log.append(RecordBatchView(batch), now_ms=1)
    assert RecordBatchView(batch).base_offset == 0
    assert (info.first_offset, info.last_offset, info.records_count) == (6, 9, 4)
    two = make_batch(1) + make_batch(2)
    info = log.append(two, now_ms=1, leader_epoch=7)
    assert (info.first_offset, info.last_offset) == (10, 12)
    assert [RecordBatchView(b).partition_leader_epoch for b in read_all(log, 10)] == [7, 7]
    assert log.epoch_cache.entries == [(7, 10)]
    log.close()


def test_follower_append_keeps_offsets_and_checks_them(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    batches = [
        with_base_offset(make_batch(2, partition_leader_epoch=epoch), offset)
        for offset, epoch in ((0, 1), (2, 1), (10, 2), (12, 4))  # a compaction gap
    ]
    for batch in batches:
        log.append(batch, now_ms=1, assign_offsets=False)
    assert log.log_end_offset == 14
    assert read_all(log) == batches
    assert log.epoch_cache.entries == [(1, 0), (2, 10), (4, 12)]
    with log.read(5, 1) as result:  # in the gap: the next batch
        assert result.first_offset == 10
    with pytest.raises(OffsetOutOfRangeError):
        log.append(with_base_offset(make_batch(1), 13), now_ms=1, assign_offsets=False)
    assert log.log_end_offset == 14
    log.truncate_to(11)  # drops the whole batch 10-11; the gap before it has no batch
    assert log.log_end_offset == 4
    assert log.epoch_cache.entries == [(1, 0)]
    log.close()


def test_update_config_takes_effect(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0")
    log.append(make_batch(1, value_bytes=2000), now_ms=0)
    with pytest.raises(ProtocolError):
        log.update_config(LogConfig(max_message_bytes=1000))
        log.append(make_batch(1, value_bytes=2000), now_ms=0)
    log.update_config(LogConfig(segment_bytes=1024))
    log.append(make_batch(1, value_bytes=100), now_ms=0)
    assert len(log.segments) == 2
    log.close()


def test_segment_ms_rolls_by_batch_timestamps(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", LogConfig(segment_ms=1000))
    log.append(make_batch(1, timestamp_ms=10_000), now_ms=0)
    log.append(make_batch(1, timestamp_ms=10_900), now_ms=0)
    assert len(log.segments) == 1
    log.append(make_batch(1, timestamp_ms=11_001), now_ms=0)
    assert len(log.segments) == 2 and log.active_segment.base_offset == 2
    log.close()


def test_flush_messages_moves_the_recovery_point(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", LogConfig(flush_messages=5))
    log.append(make_batch(3), now_ms=0)
    assert log.recovery_point == 0
    log.append(make_batch(3), now_ms=0)
    assert log.recovery_point == 6
    log.close()


def test_flush_ms_is_checked_by_maybe_flush(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", LogConfig(flush_ms=1000), now_ms=0)
    log.append(make_batch(2), now_ms=10)
    assert not log.maybe_flush(now_ms=999)
    assert log.recovery_point == 0
    assert log.maybe_flush(now_ms=1000)
    assert log.recovery_point == 2
    assert not log.maybe_flush(now_ms=5000)  # nothing new to flush
    log.append(make_batch(1), now_ms=2500)  # the append itself sees flush.ms passed
    assert log.recovery_point == 3
    log.close()


def test_damaged_index_is_rebuilt(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    expected = _fill(log, 60)
    log.close()
    segment_bases = sorted(int(p.stem) for p in (tmp_path / "t-0").glob("*.index"))
    victim, other = segment_bases[1], segment_bases[2]
    directory = tmp_path / "t-0"
    (directory / f"{victim:020d}.index").write_bytes(
        (directory / f"{other:020d}.index").read_bytes()
    )
    (directory / f"{other:020d}.timeindex").write_bytes(b"\x01\x02\x03")
    (directory / f"{segment_bases[3]:020d}.index").unlink()
    with capture_logs() as logs:
        reopened = Log.open(directory, SMALL)
    rebuilt = [entry for entry in logs if entry["event"] == "storage.segment.index_rebuilt"]
    assert len(rebuilt) == 3
    assert read_all(reopened) == expected
    for offset in range(0, reopened.log_end_offset, 7):
        with reopened.read(offset, 1) as result:
            view = RecordBatchView(bytes(result.records))
            assert view.base_offset <= offset <= view.last_offset
    reopened.close()


def test_damaged_checkpoints_are_detected_and_rebuilt(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, SMALL)
    for epoch in (3, 5):
        log.append(make_batch(2), now_ms=0, leader_epoch=epoch)
    expected = read_all(log)
    log.advance_start_offset(2)
    log.close()
    for name in ("leader-epoch-checkpoint", "recovery-point-checkpoint", ".clean-shutdown"):
        data = bytearray((directory / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (directory / name).write_bytes(data)
    with capture_logs() as logs:
        reopened = Log.open(directory, SMALL)
    damaged = {entry["path"] for entry in logs if entry["event"] == "storage.checkpoint.damaged"}
    assert {Path(path).name for path in damaged} == {
        "leader-epoch-checkpoint",
        "recovery-point-checkpoint",
        ".clean-shutdown",
    }
    assert reopened.epoch_cache.entries == [(5, 2)]
    assert reopened.log_start_offset == 2
    assert read_all(reopened) == expected[1:]
    reopened.close()


def test_clean_shutdown_marker_is_removed_on_open(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory)
    log.append(make_batch(1), now_ms=0)
    log.close()
    assert (directory / ".clean-shutdown").exists()
    reopened = Log.open(directory)
    assert not (directory / ".clean-shutdown").exists()
    reopened.close()


def test_delete_removes_the_directory(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    _fill(log, 20)
    log.delete()
    assert not (tmp_path / "t-0").exists()


def test_config_from_properties() -> None:
    config = LogConfig.from_properties(
        {"segment.bytes": "1048576", "cleanup.policy": "compact,delete", "other.key": "x"}
    )
    assert config.segment_bytes == 1048576 and config.compact_enabled and config.delete_enabled
    with pytest.raises(ValueError, match=r"retention\.ms"):
        LogConfig.from_properties({"retention.ms": "soon"})
    with pytest.raises(ValueError, match=r"segment\.bytes"):
        LogConfig.from_properties({"segment.bytes": "1"})
    with pytest.raises(ValueError, match=r"cleanup\.policy"):
        LogConfig.from_properties({"cleanup.policy": "forever"})


def test_an_io_error_on_append_leaves_the_log_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    log = Log.open(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    expected = _fill(log, 3)
    before = (log.log_end_offset, log.active_segment.size)
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwritev", disk_full)
        with pytest.raises(OSError):
            log.append(make_batch(2), now_ms=0)
    assert (log.log_end_offset, log.active_segment.size) == before
    while log.active_segment.offset_index.pending_entries < 64:
        _fill(log, 1)  # index entries pile up (one per batch) until a write is due
    # The fast path leaves index writes to the general one, which an append takes
    # after a config change (or a flush, roll, or 16 MiB of appends): it writes them
    # first, before the batch.
    log.update_config(log.config)
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", disk_full)
        before = (log.log_end_offset, log.active_segment.size)
        with pytest.raises(OSError):
            log.append(make_batch(2), now_ms=0)
        assert (log.log_end_offset, log.active_segment.size) == before
    more = _fill(log, 2)
    assert read_all(log)[:3] == expected
    assert read_all(log)[-2:] == more
    log.close()
