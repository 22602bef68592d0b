"""Rolling without an fsync on the caller's thread (Log.on_seal), safely.

Proves: with `on_seal` set, a roll hands the sealed segment to the owner instead of
fsyncing it; the recovery point stays below every segment not yet reported synced,
even when syncs finish out of order; `flush` and `close` sync what is still
pending; and a log reopened after an unclean stop with unsynced seals recovers all
its batches (the unsynced segments are rescanned).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ottla.storage import Log, LogConfig, sync_file
from tests.storage.helpers import make_batch, read_all

CONFIG = LogConfig(segment_bytes=2048)


def _fill(log: Log, batches: int) -> None:
    for _ in range(batches):
        log.append(make_batch(3), now_ms=0)


def test_rolls_defer_the_sync_and_the_recovery_point(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", CONFIG)
    sealed: list[tuple[Path, int]] = []
    log.on_seal = lambda path, next_offset: sealed.append((path, next_offset))
    _fill(log, 20)
    assert len(sealed) >= 3
    assert log.recovery_point == 0
    first, second = sealed[0], sealed[1]
    log.seal_synced(second[1])  # out of order: must not skip the first
    assert log.recovery_point == 0
    sync_file(first[0])
    log.seal_synced(first[1])
    assert log.recovery_point == second[1]
    log.flush()
    assert log.recovery_point == log.log_end_offset
    log.close()


def test_unclean_reopen_with_unsynced_seals_keeps_every_batch(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, CONFIG)
    log.on_seal = lambda path, next_offset: None  # never reported synced
    _fill(log, 20)
    expected = read_all(log)
    end = log.log_end_offset
    crashed = tmp_path / "crashed-0"
    shutil.copytree(directory, crashed)  # no clean-shutdown marker: an unclean stop
    log.close()
    reopened = Log.open(crashed, CONFIG)
    assert reopened.log_end_offset == end
    assert read_all(reopened) == expected
    reopened.close()


def test_sync_file_ignores_a_deleted_segment(tmp_path: Path) -> None:
    sync_file(tmp_path / "gone.log")
