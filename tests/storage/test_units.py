"""The small pure pieces of storage behave as specified.

Proves: checkpoints round-trip, are replaced atomically and report damage instead of
returning garbage; the leader-epoch cache assigns, truncates from either end, answers
OffsetForLeaderEpoch and survives a reopen; `segments_to_delete` applies Kafka's
retention rules (time, size, log start offset, high watermark, never the active
segment); indexes find the right entries; `iter_batch_headers` walks headers cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ottla.storage import LeaderEpochCache, Log, LogConfig, SegmentInfo, segments_to_delete
from ottla.storage.checkpoints import read_checkpoint, write_checkpoint
from ottla.storage.index import OffsetIndex, TimeIndex

from .helpers import make_batch


def test_checkpoint_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-checkpoint"
    assert read_checkpoint(path, width=1) is None
    write_checkpoint(path, [(42,)])
    assert read_checkpoint(path, width=1) == [(42,)]
    write_checkpoint(path, [(43,)])
    assert read_checkpoint(path, width=1) == [(43,)]
    assert not list(tmp_path.glob("*.tmp"))
    assert read_checkpoint(path, width=2) is None  # wrong shape
    good = path.read_bytes()
    for damaged in (good[:-3], good.replace(b"43", b"44"), b"", good + b"1 2\n"):
        path.write_bytes(damaged)
        with capture_logs() as logs:
            assert read_checkpoint(path, width=1) is None
        assert [entry["event"] for entry in logs] == ["storage.checkpoint.damaged"]
    other = tmp_path / "log-start-offset-checkpoint"
    other.write_bytes(good)  # a valid file under another name is not trusted
    assert read_checkpoint(other, width=1) is None


def test_leader_epoch_cache(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    assert cache.end_offset_for(0, 10) == (-1, -1)
    assert cache.assign(1, 0)
    assert not cache.assign(1, 5)  # same epoch: nothing new
    assert not cache.assign(0, 7)  # older epoch: ignored
    assert cache.assign(3, 10)
    assert cache.assign(4, 20)
    assert cache.entries == [(1, 0), (3, 10), (4, 20)]
    assert cache.end_offset_for(1, 30) == (1, 10)
    assert cache.end_offset_for(2, 30) == (1, 10)  # largest epoch <= 2 is 1
    assert cache.end_offset_for(4, 30) == (4, 30)
    assert cache.end_offset_for(9, 30) == (4, 30)
    # Older than every entry (Kafka's LeaderEpochFileCache): it ends where the first
    # entry starts, so a follower holding records of epoch 0 truncates them.
    assert cache.end_offset_for(0, 30) == (0, 0)
    loaded = LeaderEpochCache.load(tmp_path)
    assert loaded is not None and loaded.entries == cache.entries
    cache.truncate_from_end(15)
    assert cache.entries == [(1, 0), (3, 10)]
    cache.truncate_from_start(12)
    assert cache.entries == [(3, 12)]
    cache.truncate_from_start(5)
    assert cache.entries == [(3, 12)]
    reloaded = LeaderEpochCache.load(tmp_path)
    assert reloaded is not None and reloaded.entries == [(3, 12)]


def test_leader_epoch_cache_is_rebuilt_from_the_log_when_missing(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory)
    for epoch in (2, 2, 5, 7):
        log.append(make_batch(2), now_ms=0, leader_epoch=epoch)
    log.close()
    (directory / "leader-epoch-checkpoint").unlink()
    reopened = Log.open(directory)
    assert reopened.epoch_cache.entries == [(2, 0), (5, 4), (7, 6)]
    reopened.close()


def _segments(*specs: tuple[int, int, int, int]) -> list[SegmentInfo]:
    return [SegmentInfo(*spec) for spec in specs]


def test_retention_rules() -> None:
    segments = _segments(
        (0, 10, 100, 1_000),
        (10, 20, 100, 2_000),
        (20, 30, 100, 9_000),
        (30, 35, 50, 1_000),  # active: never deleted, however old
    )
    config = LogConfig(retention_ms=5_000)

    def bases(found: list[SegmentInfo]) -> list[int]:
        return [segment.base_offset for segment in found]

    kwargs = {"log_start_offset": 0, "high_watermark": 35}
    assert bases(segments_to_delete(segments, config, now_ms=6_500, **kwargs)) == [0]
    assert bases(segments_to_delete(segments, config, now_ms=7_500, **kwargs)) == [0, 10]
    assert bases(segments_to_delete(segments, config, now_ms=10**9, **kwargs)) == [0, 10, 20]
    # The high watermark protects what followers/consumers may still need.
    assert bases(
        segments_to_delete(segments, config, now_ms=10**9, log_start_offset=0, high_watermark=15)
    ) == [0]
    # Size: delete while the excess is at least the oldest segment's size.
    by_size = LogConfig(retention_ms=-1, retention_bytes=180)
    assert bases(segments_to_delete(segments, by_size, now_ms=0, **kwargs)) == [0]
    by_size = LogConfig(retention_ms=-1, retention_bytes=50)
    assert bases(segments_to_delete(segments, by_size, now_ms=0, **kwargs)) == [0, 10, 20]
    # Below the log start offset goes even with compact-only topics.
    compact = LogConfig(cleanup_policy=frozenset({"compact"}), retention_bytes=0)
    assert bases(
        segments_to_delete(segments, compact, now_ms=10**9, log_start_offset=20, high_watermark=35)
    ) == [0, 10]
    # Deletion is a prefix: a young segment stops it.
    mixed = _segments((0, 10, 1, 9_000), (10, 20, 1, 1_000), (20, 30, 1, 1_000))
    assert segments_to_delete(mixed, config, now_ms=10_000, **kwargs) == []


def test_indexes_find_entries(tmp_path: Path) -> None:
    offsets = OffsetIndex(tmp_path / "x.index", 100)
    offsets.open_writable(8 * 16)
    for index in range(10):
        offsets.append(100 + 10 * index + 9, 1000 * index)
    assert offsets.lookup(99) == (100, 0)
    assert offsets.lookup(109) == (109, 0)
    assert offsets.lookup(125) == (119, 1000)
    assert offsets.lookup(10_000) == (199, 9000)
    offsets.truncate_to_offset(139)
    assert offsets.last_entry() == (129, 2000)
    offsets.trim()
    assert (tmp_path / "x.index").stat().st_size == 3 * 8
    times = TimeIndex(tmp_path / "x.timeindex", 100)
    times.open_writable(12 * 4)
    for timestamp, offset in ((10, 100), (20, 120), (30, 150)):
        times.append(timestamp, offset)
    assert times.lookup(5) is None
    assert times.lookup(20) == (10, 100)
    assert times.lookup(21) == (20, 120)
    assert not times.is_full
    times.append(40, 160)
    assert times.is_full


def test_iter_batch_headers(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", LogConfig(segment_bytes=1024))
    for count in (1, 2, 3, 4, 5):
        log.append(make_batch(count, value_bytes=120), now_ms=0)
    headers = list(log.iter_batch_headers())
    assert [(h.base_offset, h.records_count) for h in headers] == [
        (0, 1),
        (1, 2),
        (3, 3),
        (6, 4),
        (10, 5),
    ]
    assert len(log.segments) > 1
    assert [h.base_offset for h in log.iter_batch_headers(7)] == [6, 10]
    log.close()


def test_a_new_epoch_is_written_without_fsync_and_made_durable_by_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory)
    log.append(make_batch(2), now_ms=0, leader_epoch=1)
    log.flush()
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log.append(make_batch(2), now_ms=0, leader_epoch=2)  # the request path
    assert synced == []
    loaded = LeaderEpochCache.load(directory)
    assert loaded is not None and loaded.entries == [(1, 0), (2, 2)]  # written, not synced
    log.flush()
    assert synced  # the flush made it durable before moving the recovery point
    log.close()


def test_an_unclean_open_assigns_again_the_epochs_above_the_recovery_point(
    tmp_path: Path,
) -> None:
    """A crash lost the unsynced checkpoint of epoch 2 (the durable one, epoch 1 only,
    is what the disk kept); the batches of epoch 2, above the recovery point, were
    kept. The reopened cache has epoch 2 again, from those batches."""
    directory = tmp_path / "t-0"
    log = Log.open(directory)
    log.append(make_batch(2), now_ms=0, leader_epoch=1)
    log.flush()
    durable = (directory / "leader-epoch-checkpoint").read_bytes()
    log.append(make_batch(2), now_ms=0, leader_epoch=2)
    log.append(make_batch(1), now_ms=0, leader_epoch=4)
    log.active_segment.flush()  # the batches reach the disk; no recovery point moves
    (directory / "leader-epoch-checkpoint").write_bytes(durable)  # the crash
    assert not (directory / ".clean-shutdown").exists()
    reopened = Log.open(directory)
    assert reopened.log_end_offset == 5
    assert reopened.epoch_cache.entries == [(1, 0), (2, 2), (4, 4)]
    assert reopened.epoch_cache.end_offset_for(2, reopened.log_end_offset) == (2, 4)
    reopened.close()
