"""Log compaction (`cleanup.policy=compact`): keep the latest record of each key.

Three steps, so the slow one runs off the event loop without locks:

1. `prepare_clean(log, now_ms)` (owner thread): pick the cleanable segments — sealed
   ones, oldest first, up to the first whose newest record is younger than
   `min.compaction.lag.ms` (the active segment is never touched) — and pin them, so
   nothing shrinks their files while the cleaner reads them.
2. `clean(job)` (any thread): read the pinned files through private maps, build the
   key -> latest offset map, and write the survivors to `<base>.log.cleaned` files.
   It touches no `Log` state.
3. `commit_clean(log, result)` (owner thread): if the input segments are unchanged,
   swap the output in: rename `.cleaned` -> `.swap` (the commit point, fsynced),
   delete the old segments, rename `.swap` -> `.log`, rebuild its indexes. A crash
   before the `.swap` rename leaves the old segments (the `.cleaned` file is
   discarded on open); a crash after it is finished by recovery (see recovery.py).

What survives (Kafka's rules, simplified where noted):

- a record whose offset is the latest for its key among the cleanable segments;
  records without a key (compacted topics refuse them at produce time) are kept;
- a tombstone (null value) until `delete.retention.ms` after its timestamp (Kafka
  stamps a delete horizon into the batch on a first pass; ottla uses the record time);
- offsets never change: a batch keeps its base offset, a partly kept batch is
  rebuilt with its records' original offset deltas (compaction leaves gaps);
- the last batch of each producer id is kept, emptied of its records if none survive
  (Kafka does the same: idempotent-producer state is rebuilt from batch headers);
- transactional and control batches are kept whole and do not supersede keys. This is
  the hook for the transactions issue: `_transaction_resolved` decides when a
  transaction's batches (and its marker) may be cleaned; today it says never.

Consecutive input segments are merged into one output while it stays within
`segment.bytes` (measured by input size) and int32 relative offsets.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog
from crc32c import crc32c

from ottla.protocol import (
    BATCH_HEADER_BYTES,
    LOG_OVERHEAD_BYTES,
    Compression,
    Record,
    RecordBatchView,
    TimestampType,
    build_batch,
    decode_records,
)
from ottla.storage.checkpoints import fsync_directory, remove_file
from ottla.storage.config import LogConfig
from ottla.storage.log import Log
from ottla.storage.recovery import RELATIVE_OFFSET_MAX, BatchScanner, segment_files
from ottla.storage.segment import LogSegment

__all__ = [
    "CleanerJob",
    "CleanerResult",
    "abort_clean",
    "clean",
    "commit_clean",
    "compact",
    "prepare_clean",
]

_log = structlog.get_logger()

_INT32: Final = struct.Struct(">i")
_UINT32: Final = struct.Struct(">I")
_CRC_OFFSET: Final = 17
_RECORDS_COUNT_OFFSET: Final = 57


@dataclass(frozen=True, slots=True)
class _Input:
    base_offset: int
    path: Path
    size_bytes: int
    next_offset: int


@dataclass(slots=True)
class CleanerJob:
    """What `clean` works on: pinned segments and plain facts copied from the log."""

    directory: Path
    config: LogConfig
    now_ms: int
    segments: list[LogSegment]
    inputs: list[_Input]


@dataclass(slots=True)
class CleanerResult:
    """The `.cleaned` outputs of a job: (output base offset, input segments merged)."""

    job: CleanerJob
    groups: list[tuple[int, list[int]]] = field(default_factory=list)
    records_before: int = 0
    records_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    producer_last_batch: dict[int, int] = field(default_factory=dict)
    """producer id -> base offset of its last batch among the inputs (kept, see below)."""


def _transaction_resolved(batch: RecordBatchView) -> bool:
    """Hook for the transactions issue: may this transactional batch be cleaned?"""
    del batch
    return False


def prepare_clean(log: Log, now_ms: int) -> CleanerJob | None:
    """Pick and pin the cleanable segments of `log`; None if there is nothing to do."""
    if not log.config.compact_enabled or log.closed:
        return None
    chosen: list[LogSegment] = []
    horizon_ms = now_ms - log.config.min_compaction_lag_ms
    for segment in log.segments[:-1]:
        if segment.max_timestamp > horizon_ms:
            break
        chosen.append(segment)
    if not chosen:
        return None
    for segment in chosen:
        segment.pin()
    inputs = [
        _Input(segment.base_offset, segment.log_path, segment.size, segment.next_offset)
        for segment in chosen
    ]
    return CleanerJob(log.directory, log.config, now_ms, chosen, inputs)


def _iter_batches(data: mmap.mmap | bytes, item: _Input) -> list[RecordBatchView]:
    scanner = BatchScanner(
        data,
        start=0,
        end=item.size_bytes,
        segment_base_offset=item.base_offset,
        expected_offset_min=item.base_offset,
    )
    views = [RecordBatchView(data, info.position) for info in scanner]  # type: ignore[arg-type]
    if scanner.stop_reason is not None:
        raise ValueError(f"{item.path}: {scanner.stop_reason}; not compacting it")
    return views


def _open_map(item: _Input) -> mmap.mmap | bytes:
    if item.size_bytes == 0:
        return b""
    fd = os.open(item.path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, item.size_bytes, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def _is_kept_whole(batch: RecordBatchView) -> bool:
    return batch.is_control or (batch.is_transactional and not _transaction_resolved(batch))


def clean(job: CleanerJob) -> CleanerResult:
    """Write the compacted `.cleaned` files for `job` (safe to run in a thread)."""
    result = CleanerResult(job)
    maps = [_open_map(item) for item in job.inputs]
    try:
        latest: dict[bytes, int] = {}
        for data, item in zip(maps, job.inputs, strict=True):
            for batch in _iter_batches(data, item):
                if batch.producer_id >= 0:
                    result.producer_last_batch[batch.producer_id] = batch.base_offset
                if _is_kept_whole(batch):
                    continue
                for record in decode_records(batch):
                    if record.key is not None:
                        latest[record.key] = batch.base_offset + record.offset_delta
        groups: list[list[_Input]] = []
        for item in job.inputs:
            current = groups[-1] if groups else None
            if (
                current is not None
                and sum(member.size_bytes for member in current) + item.size_bytes
                <= job.config.segment_bytes
                and item.next_offset - current[0].base_offset <= RELATIVE_OFFSET_MAX
            ):
                current.append(item)
            else:
                groups.append([item])
        by_base = {item.base_offset: data for data, item in zip(maps, job.inputs, strict=True)}
        for group in groups:
            output = _cleaned_path(job.directory, group[0].base_offset)
            with open(output, "wb") as sink:
                for item in group:
                    for batch in _iter_batches(by_base[item.base_offset], item):
                        kept = _filter_batch(batch, latest, job, result)
                        if kept is not None:
                            sink.write(kept)
                            result.bytes_after += len(kept)
                            if isinstance(kept, memoryview):
                                kept.release()  # the private map closes below
                    result.bytes_before += item.size_bytes
                sink.flush()
                os.fsync(sink.fileno())
            result.groups.append((group[0].base_offset, [item.base_offset for item in group]))
    except BaseException:
        # Only files here: the pins belong to the owner thread (it calls abort_clean).
        for item in job.inputs:
            remove_file(_cleaned_path(job.directory, item.base_offset))
        raise
    finally:
        for data in maps:
            if isinstance(data, mmap.mmap):
                data.close()
    return result


def _filter_batch(
    batch: RecordBatchView, latest: dict[bytes, int], job: CleanerJob, result: CleanerResult
) -> bytes | memoryview | None:
    if _is_kept_whole(batch):
        return batch.bytes_view()
    records = decode_records(batch)
    result.records_before += len(records)
    kept: list[Record] = []
    for record in records:
        offset = batch.base_offset + record.offset_delta
        if record.key is not None and latest.get(record.key) != offset:
            continue
        if record.value is None:
            timestamp = (
                batch.max_timestamp
                if batch.timestamp_type is TimestampType.LOG_APPEND_TIME
                else batch.base_timestamp + record.timestamp_delta
            )
            if timestamp + job.config.delete_retention_ms <= job.now_ms:
                continue
        kept.append(record)
    result.records_after += len(kept)
    if len(kept) == len(records):
        return batch.bytes_view()
    if not kept:
        if result.producer_last_batch.get(batch.producer_id) == batch.base_offset:
            return _empty_batch(batch)
        return None
    return bytes(
        build_batch(
            kept,
            base_offset=batch.base_offset,
            base_timestamp=batch.base_timestamp,
            max_timestamp=batch.max_timestamp,
            compression=Compression(batch.compression),
            timestamp_type=batch.timestamp_type,
            producer_id=batch.producer_id,
            producer_epoch=batch.producer_epoch,
            base_sequence=batch.base_sequence,
            partition_leader_epoch=batch.partition_leader_epoch,
            is_transactional=batch.is_transactional,
        )
    )


def _empty_batch(batch: RecordBatchView) -> bytes:
    """`batch`'s header with no records, as Kafka's cleaner keeps a producer's last batch:
    the broker rebuilds idempotent-producer state (last sequence, epoch) from headers."""
    header = bytearray(batch.bytes_view()[:BATCH_HEADER_BYTES])
    _INT32.pack_into(header, 8, BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES)
    _INT32.pack_into(header, _RECORDS_COUNT_OFFSET, 0)
    _UINT32.pack_into(header, _CRC_OFFSET, crc32c(memoryview(header)[_CRC_OFFSET + 4 :]))
    return bytes(header)


def _cleaned_path(directory: Path, base_offset: int) -> Path:
    log_path = segment_files(directory, base_offset)[0]
    return log_path.with_name(log_path.name + ".cleaned")


def abort_clean(job: CleanerJob) -> None:
    """Discard a job's outputs and unpin its segments (owner thread)."""
    for item in job.inputs:
        remove_file(_cleaned_path(job.directory, item.base_offset))
    for segment in job.segments:
        segment.unpin()
    job.segments.clear()


def commit_clean(log: Log, result: CleanerResult) -> bool:
    """Swap the cleaned segments into `log` (owner thread); False if it went stale."""
    job = result.job
    stale = log.closed or any(
        segment not in log.segments or segment.active or segment.deleted for segment in job.segments
    )
    if stale:
        _log.info("storage.cleaner.discarded", directory=str(job.directory), reason="log changed")
        abort_clean(job)
        return False
    by_base = {segment.base_offset: segment for segment in job.segments}
    for segment in job.segments:
        segment.unpin()
    for output_base, _ in result.groups:
        cleaned = _cleaned_path(job.directory, output_base)
        cleaned.replace(cleaned.with_name(cleaned.name.removesuffix(".cleaned") + ".swap"))
    fsync_directory(job.directory)  # the commit point: recovery now finishes the swap
    for output_base, input_bases in result.groups:
        old = [by_base[base] for base in input_bases]
        for segment in old:
            segment.delete_files()
        log_path = segment_files(job.directory, output_base)[0]
        log_path.with_name(log_path.name + ".swap").replace(log_path)
        new = LogSegment(job.directory, output_base, log.config, log.budget)
        new.size = log_path.stat().st_size
        new.flushed_bytes = new.size
        new.rebuild_indexes()
        log.replace_segments(old, [new])
        for segment in old:
            log.retire(segment)
    fsync_directory(job.directory)
    _log.info(
        "storage.cleaner.compacted",
        directory=str(job.directory),
        segments=len(job.segments),
        records_before=result.records_before,
        records_after=result.records_after,
        bytes_before=result.bytes_before,
        bytes_after=result.bytes_after,
    )
    return True


def compact(log: Log, now_ms: int) -> CleanerResult | None:
    """prepare, clean and commit in the calling thread (tests, tools, simple callers)."""
    job = prepare_clean(log, now_ms)
    if job is None:
        return None
    try:
        result = clean(job)
    except BaseException:
        abort_clean(job)
        raise
    commit_clean(log, result)
    return result
