"""Compaction keeps the latest record per key, keeps offsets, and is crash-safe.

Proves: after `compact`, each key's latest value survives at its original offset
(gaps, no renumbering), superseded records are gone, tombstones stay until
`delete.retention.ms` and then go, the active segment and segments younger than
`min.compaction.lag.ms` are untouched, control/transactional batches are kept, a
producer's last batch survives as an empty header; a job
made stale by truncation is discarded; a crash before the swap commit loses nothing and
a crash after it is completed by recovery. The cleaning step also runs in a thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ottla.protocol import (
    ControlRecordType,
    Record,
    RecordBatchView,
    build_batch,
    build_control_batch,
    decode_records,
)
from ottla.storage import Log, LogConfig, clean, commit_clean, compact, prepare_clean

COMPACT = LogConfig(
    segment_bytes=1024,
    index_interval_bytes=128,
    cleanup_policy=frozenset({"compact"}),
    delete_retention_ms=1000,
)


def _put(log: Log, key: str, value: str | None, timestamp_ms: int) -> int:
    record = Record(key=key.encode(), value=None if value is None else value.encode())
    batch = build_batch([record], base_timestamp=timestamp_ms)
    return log.append(batch, now_ms=timestamp_ms).first_offset


def _contents(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record in the log, in order."""
    rows = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        with log.read(offset, 1 << 20) as result:
            data = bytes(result.records)
            offset = result.next_offset
        position = 0
        while position < len(data):
            view = RecordBatchView(data, position)
            view.validate()
            if not view.is_control:
                for record in decode_records(view):
                    rows.append((view.base_offset + record.offset_delta, record.key, record.value))
            position += view.size
    return rows


def _latest(writes: list[tuple[int, str, str | None]]) -> dict[str, tuple[int, str | None]]:
    latest: dict[str, tuple[int, str | None]] = {}
    for offset, key, value in writes:
        latest[key] = (offset, value)
    return latest


def _write_history(log: Log, rounds: int = 8, keys: int = 6) -> list[tuple[int, str, str | None]]:
    writes: list[tuple[int, str, str | None]] = []
    for round_index in range(rounds):
        for key_index in range(keys):
            key = f"k{key_index}"
            value: str | None = f"v{round_index}-{key_index}" + "x" * 30
            if key_index == 0 and round_index == rounds - 1:
                value = None  # k0 ends deleted (a tombstone)
            writes.append((_put(log, key, value, 1000 + round_index), key, value))
    return writes


def test_compaction_keeps_latest_per_key_and_offsets(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    writes = _write_history(log)
    log.roll()
    active_before = _put(log, "k1", "in the active segment", 2000)
    before = _contents(log)
    result = compact(log, now_ms=1500)
    assert result is not None and result.records_after < result.records_before
    after = _contents(log)
    latest = _latest(writes)
    expected = sorted(
        [
            (offset, key.encode(), None if value is None else value.encode())
            for key, (offset, value) in latest.items()
        ]
        + [(active_before, b"k1", b"in the active segment")]
    )
    assert after == expected
    assert {row[0] for row in after} <= {row[0] for row in before}  # offsets kept
    assert (0, b"k0", b"v0-0" + b"x" * 30) not in after
    assert log.log_end_offset == active_before + 1
    # Still appendable and readable after the swap, and after a reopen.
    _put(log, "k2", "later", 3000)
    log.close()
    reopened = Log.open(tmp_path / "t-0", COMPACT)
    assert _contents(reopened) == [*expected, (active_before + 1, b"k2", b"later")]
    reopened.close()


def test_tombstones_go_after_delete_retention(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    _write_history(log, rounds=3)
    log.roll()
    compact(log, now_ms=1500)
    assert any(key == b"k0" and value is None for _, key, value in _contents(log))
    compact(log, now_ms=1002 + COMPACT.delete_retention_ms)
    assert all(key != b"k0" for _, key, _ in _contents(log))
    log.close()


def test_min_compaction_lag_and_policy(tmp_path: Path) -> None:
    lagging = LogConfig(
        segment_bytes=1024, cleanup_policy=frozenset({"compact"}), min_compaction_lag_ms=10_000
    )
    log = Log.open(tmp_path / "t-0", lagging)
    _write_history(log)
    log.roll()
    assert compact(log, now_ms=5000) is None
    assert compact(log, now_ms=20_000) is not None
    log.close()
    plain = Log.open(tmp_path / "t-1", LogConfig(segment_bytes=1024))
    _write_history(plain)
    plain.roll()
    assert compact(plain, now_ms=10**9) is None
    plain.close()


def test_transactional_and_control_batches_are_kept(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    _put(log, "k", "old", 1000)
    txn = build_batch(
        [Record(key=b"k", value=b"in a transaction")],
        base_timestamp=1000,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
        is_transactional=True,
    )
    log.append(txn, now_ms=1000)
    marker = build_control_batch(
        ControlRecordType.COMMIT,
        producer_id=7,
        producer_epoch=0,
        coordinator_epoch=0,
        timestamp_ms=1000,
    )
    log.append(marker, now_ms=1000)
    _put(log, "k", "new", 1000)
    log.roll()
    compact(log, now_ms=1500)
    headers = list(log.iter_batch_headers())
    assert [(h.base_offset, h.is_transactional, h.is_control) for h in headers] == [
        (1, True, False),
        (2, True, True),
        (3, False, False),
    ]
    log.close()


def test_stale_job_is_discarded(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    _write_history(log)
    log.roll()
    before = _contents(log)
    job = prepare_clean(log, now_ms=1500)
    assert job is not None
    result = clean(job)
    log.truncate_to(10)  # a follower truncation while the cleaner ran
    assert not commit_clean(log, result)
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    assert _contents(log) == [row for row in before if row[0] < log.log_end_offset]
    log.close()


def test_clean_runs_in_a_thread(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    writes = _write_history(log)
    log.roll()
    job = prepare_clean(log, now_ms=1500)
    assert job is not None
    results = []
    worker = threading.Thread(target=lambda: results.append(clean(job)))
    worker.start()
    # The owner keeps appending while the cleaner reads the sealed segments.
    appended = _put(log, "k3", "during", 1600)
    worker.join()
    assert commit_clean(log, results[0])
    rows = _contents(log)
    assert rows[-1] == (appended, b"k3", b"during")
    assert len(rows) == len(_latest(writes)) + 1
    log.close()


def test_crash_before_the_swap_commit_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, COMPACT)
    _write_history(log)
    log.roll()
    before = _contents(log)
    job = prepare_clean(log, now_ms=1500)
    assert job is not None
    clean(job)  # .cleaned files written; the process dies before commit
    assert list(directory.glob("*.log.cleaned"))
    log.flush()
    reopened = Log.open(directory, COMPACT)
    assert not list(directory.glob("*.cleaned"))
    assert _contents(reopened) == before
    reopened.close()


def test_crash_after_the_swap_commit_is_completed_by_recovery(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = Log.open(directory, COMPACT)
    writes = _write_history(log)
    log.roll()
    tail = _put(log, "k9", "active", 1700)
    job = prepare_clean(log, now_ms=1500)
    assert job is not None
    result = clean(job)
    log.flush()
    # The process dies right after the commit point: .cleaned renamed to .swap.
    for base_offset, _ in result.groups:
        cleaned = directory / f"{base_offset:020d}.log.cleaned"
        cleaned.rename(directory / f"{base_offset:020d}.log.swap")
    reopened = Log.open(directory, COMPACT)
    assert not list(directory.glob("*.swap"))
    latest = _latest(writes)
    expected = sorted(
        (offset, key.encode(), None if value is None else value.encode())
        for key, (offset, value) in latest.items()
    )
    assert _contents(reopened) == [*expected, (tail, b"k9", b"active")]
    reopened.close()


def test_a_producers_last_batch_survives_as_an_empty_header(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", COMPACT)
    for sequence in range(3):
        idempotent = build_batch(
            [Record(key=b"k", value=b"v%d" % sequence)],
            base_timestamp=1000,
            producer_id=7,
            producer_epoch=2,
            base_sequence=sequence,
        )
        log.append(idempotent, now_ms=1000)
    _put(log, "k", "newest, from another writer", 1000)
    log.roll()
    compact(log, now_ms=1500)
    headers = [
        (h.base_offset, h.producer_id, h.base_sequence, h.records_count)
        for h in log.iter_batch_headers()
    ]
    # Sequences 0 and 1 are gone; 2 stays as an empty batch so producer 7's state
    # (epoch 2, last sequence 2) can still be rebuilt from the headers.
    assert headers == [(2, 7, 2, 0), (3, -1, -1, 1)]
    assert _contents(log) == [(3, b"k", b"newest, from another writer")]
    log.close()
    reopened = Log.open(tmp_path / "t-0", COMPACT)
    assert [h.records_count for h in reopened.iter_batch_headers()] == [0, 1]
    reopened.close()
