"""Reader leases keep served views safe, and corrupt data is never served.

Proves: a view returned by `read()` stays readable (no SIGBUS, no BufferError) while
its segment is rolled, truncated, deleted by retention or DeleteRecords, closed and
the log deleted; maps close once leases are released (deferred while a stray slice
lives); sealed segments beyond the map budget are unmapped and mapped again. A byte
flipped in the middle of a segment is refused on read with a `storage.read.corrupt_batch`
line, and truncated away (with later segments) by unclean recovery.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ottla.protocol import RecordBatchView
from ottla.storage import CorruptSegmentError, Log, LogConfig, MapBudget
from ottla.storage import segment as segment_module

from .helpers import make_batch, read_all, with_base_offset

SMALL = LogConfig(segment_bytes=2048, index_interval_bytes=256, segment_index_bytes=4096)


def _fill(log: Log, count: int) -> list[bytes]:
    expected = []
    for index in range(count):
        batch = make_batch(3, value_bytes=40, timestamp_ms=1000 + index, fill=0x41 + index % 20)
        expected.append(with_base_offset(batch, log.append(batch, now_ms=0).first_offset))
    return expected


def test_views_survive_roll_truncate_retention_and_delete(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", SMALL)
    _fill(log, 40)
    first = log.read(0, 1 << 20)
    middle_offset = log.segments[2].base_offset
    middle = log.read(middle_offset, 1 << 20)
    active = log.read(log.active_segment.base_offset, 1 << 20)
    copies = [bytes(result.records) for result in (first, middle, active)]

    log.roll()  # the leased active segment is sealed and trimmed under its view
    assert bytes(active.records) == copies[2]
    log.append(make_batch(1), now_ms=0)

    log.truncate_to(middle_offset + 3)  # the leased middle segment becomes active again
    tail = bytes(middle.records)
    first_size = RecordBatchView(copies[1]).size
    assert tail[:first_size] == copies[1][:first_size]
    # The dropped bytes under the view read as zeros: overwritten, never cut (no SIGBUS).
    assert tail[first_size:] == bytes(len(tail) - first_size)

    log.advance_start_offset(log.segments[1].base_offset)  # deletes the leased first one
    assert not (tmp_path / "t-0" / "00000000000000000000.log").exists()
    assert bytes(first.records) == copies[0]
    assert log.reap() == 2  # its map and the truncated-away one wait for their leases

    log.close()
    assert bytes(middle.records) == tail
    log.delete()
    assert bytes(first.records) == copies[0]
    for result in (first, middle, active):
        result.release()
        result.release()  # harmless twice
    assert log.reap() == 0


def test_retention_of_a_leased_segment_defers_the_unmap(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", LogConfig(segment_bytes=2048, retention_bytes=0))
    _fill(log, 30)
    result = log.read(0, 1 << 20)
    copy = bytes(result.records)
    stray = result.records[10:]  # a transport kept its own slice past the release
    assert log.apply_retention(now_ms=0)
    assert bytes(result.records) == copy
    result.release()
    assert log.reap() == 1  # the stray slice still pins the map: no BufferError escapes
    assert bytes(stray) == copy[10:]
    stray.release()
    assert log.reap() == 0
    log.close()


def test_sealed_segments_beyond_the_budget_are_unmapped(tmp_path: Path) -> None:
    budget = MapBudget(sealed_maps_max=2)
    log = Log.open(tmp_path / "t-0", SMALL, map_budget=budget)
    expected = _fill(log, 80)
    log.close()
    reopened = Log.open(tmp_path / "t-0", SMALL, map_budget=budget)
    assert len(reopened.segments) > 6
    assert read_all(reopened) == expected
    assert len(budget) <= 2
    held = reopened.read(0, 100)  # a leased segment is not evicted
    assert read_all(reopened) == expected
    assert bytes(held.records) == expected[0]
    held.release()
    reopened.close()


def _flip_byte_in_segment(directory: Path, segment_index: int) -> tuple[int, int]:
    """Flip a record byte of the middle batch of a sealed segment: (base, offset)."""
    path = sorted(directory.glob("*.log"))[segment_index]
    data = bytearray(path.read_bytes())
    position, batches = 0, []
    while position < len(data):
        view = RecordBatchView(data, position)
        batches.append((position, view))
        position += view.size
    position, view = batches[len(batches) // 2]
    data[position + view.size - 10] ^= 0x5A
    path.write_bytes(data)
    return int(path.stem), view.base_offset


def test_a_flipped_byte_is_never_served(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, SMALL)
    expected = _fill(log, 60)
    log.close()
    segment_base, bad_offset = _flip_byte_in_segment(directory, 2)

    reopened = Log.open(directory, SMALL)  # clean: no scan, detected on read
    with capture_logs() as logs, pytest.raises(CorruptSegmentError):
        reopened.read(bad_offset, 1 << 20)
    assert [entry["event"] for entry in logs] == ["storage.read.corrupt_batch"]
    with reopened.read(segment_base, 1 << 20) as result:
        assert result.next_offset == bad_offset  # stops before the bad batch
        good = bytes(result.records)
    assert good == b"".join(expected[segment_base // 3 : bad_offset // 3])
    reopened.close()


def test_unclean_recovery_truncates_at_the_first_corrupt_batch(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, SMALL)
    expected = _fill(log, 60)
    log.close()
    segments_before = len(list(directory.glob("*.log")))
    _, bad_offset = _flip_byte_in_segment(directory, 2)
    (directory / ".clean-shutdown").unlink()
    (directory / "recovery-point-checkpoint").unlink()
    with capture_logs() as logs:
        reopened = Log.open(directory, SMALL)
    events = [entry["event"] for entry in logs]
    assert events.count("storage.recovery.truncated") == 1
    assert events.count("storage.recovery.deleted_segment") == segments_before - 3
    assert reopened.log_end_offset == bad_offset
    assert read_all(reopened) == expected[: bad_offset // 3]
    more = _fill(reopened, 2)
    assert read_all(reopened) == expected[: bad_offset // 3] + more
    reopened.close()


def test_torn_tail_of_the_active_segment_is_cut(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, LogConfig(segment_bytes=1 << 20))
    expected = _fill(log, 10)
    size = log.active_segment.size
    log.flush()
    # Simulate a crash mid-copy: half a batch after the data, no clean close.
    torn = make_batch(3, value_bytes=40)
    active = log.active_segment
    active.write(bytes(torn[: len(torn) // 2]), size)
    active.flush()
    with capture_logs() as logs:
        reopened = Log.open(directory, LogConfig(segment_bytes=1 << 20))
    assert [entry["event"] for entry in logs if "recovery" in entry["event"]] == [
        "storage.recovery.truncated"
    ]
    assert reopened.log_end_offset == 30
    assert read_all(reopened) == expected
    assert reopened.active_segment.size == size
    reopened.close()


def test_sent_pages_are_dropped_in_batches_not_per_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drops: list[tuple[int, int]] = []
    real = segment_module._drop_pages

    def counting(source: object, start: int, end: int) -> None:
        drops.append((start, end))
        real(source, start, end)

    monkeypatch.setattr(segment_module, "_drop_pages", counting)
    log = Log.open(tmp_path / "t-0", LogConfig())
    batch_bytes = len(make_batch(1, value_bytes=1000))
    count = 3 * segment_module.PAGES_DROP_BATCH_BYTES // batch_bytes
    for _ in range(count):  # a follower at the tail: one small read per append
        offset = log.append(make_batch(1, value_bytes=1000), now_ms=0).first_offset
        result = log.read(offset, 1 << 20)
        assert bytes(result.records)[:8] == offset.to_bytes(8, "big")
        result.release()
    assert 2 <= len(drops) <= 3  # one per batch of reads, not one per read
    for (_, end), (next_start, _) in itertools.pairwise(drops):
        assert end == next_start and end % 4096 == 0  # contiguous, page-aligned cuts
    assert drops[-1][1] - drops[0][0] >= 2 * segment_module.PAGES_DROP_BATCH_BYTES
    log.close()
