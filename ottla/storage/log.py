"""`Log`: one partition's directory of segments, with Kafka's log semantics.

Rules:

- Offsets only grow. `append` assigns `log_end_offset` onwards (leader) or checks
  that the batches' own offsets increase from it (`assign_offsets=False`, follower).
  Compaction leaves gaps; nothing ever renumbers.
- An append is all-or-nothing: every batch is validated (whole, CRC, magic,
  `max.message.bytes`) before a byte is copied, and `log_end_offset` moves only after
  the copy, so a refused append leaves the log unchanged. A `RecordBatchView` is
  taken as validated by its caller (the produce handler CRC-checks each batch while
  parsing): its CRC is not computed a second time.
- The produce path (`append_batch`, and `append` of one whole batch) has a fast
  path: after each general-path append, `_arm` works out how far the log may grow
  before a roll, a flush, a file growth, an index write, a new leader epoch or a
  size error could be due; an append within those limits only writes the batch and
  does the sparse-index bookkeeping. Anything that changes the limits disarms them.
- The last segment is the active one; only it is written. It rolls when the next
  append would not fit `segment.bytes`, when `segment.ms` passed since its first
  batch, when an index is full, or when a relative offset would overflow int32.
- `log_start_offset` <= every readable offset <= `log_end_offset`. DeleteRecords and
  retention move it up; `truncate_to` (followers) moves `log_end_offset` down.
- Durability: `flush()` msyncs the active segment and writes the recovery-point
  checkpoint; rolling fsyncs the sealed segment. A clean `close()` writes the
  `.clean-shutdown` marker; `open` removes it (durably) before anything else
  happens, so a crash after opening is always recovered by a scan.
- Reads return a memoryview of a segment's map under a `ReadLease` (see segment.py);
  a read starts at the batch that holds the requested offset (a client skips the
  records before it) and stays within one segment, as Kafka's does.
- Corruption: recovery truncates the log from the first bad batch it scans (Kafka's
  rule for an unclean stop). A bad batch met by a read in a segment recovery did not
  scan is never served: the read stops before it, or raises `CorruptSegmentError`
  (CORRUPT_MESSAGE) when it is the first batch, with a `storage.read.corrupt_batch`
  error line naming the file and position.
"""

from __future__ import annotations

import bisect
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import structlog
from crc32c import crc32c

from ottla.protocol import (
    BATCH_HEADER_BYTES,
    LOG_OVERHEAD_BYTES,
    ErrorCode,
    ProtocolError,
    RecordBatchView,
)
from ottla.storage.checkpoints import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    fsync_directory,
    read_checkpoint,
    remove_file,
    write_checkpoint,
)
from ottla.storage.config import LogConfig
from ottla.storage.epoch_cache import LeaderEpochCache
from ottla.storage.index import OffsetIndex, TimeIndex
from ottla.storage.recovery import RELATIVE_OFFSET_MAX, complete_interrupted_swaps
from ottla.storage.retention import SegmentInfo, segments_to_delete
from ottla.storage.segment import (
    DEFAULT_MAP_BUDGET,
    PREFIX,
    CorruptSegmentError,
    LogSegment,
    MapBudget,
    ReadLease,
)

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "AppendInfo",
    "Log",
    "LogReadResult",
    "OffsetOutOfRangeError",
]

_log = structlog.get_logger()

LATEST_TIMESTAMP: Final = -1
"""ListOffsets' "latest": `offset_for_timestamp` answers the log end offset."""
EARLIEST_TIMESTAMP: Final = -2
"""ListOffsets' "earliest": `offset_for_timestamp` answers the log start offset."""
_EMPTY: Final = memoryview(b"")


class OffsetOutOfRangeError(ProtocolError):
    """A read or follower append outside [log_start_offset, log_end_offset]."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.offset_out_of_range, message)


class AppendInfo(NamedTuple):
    """What an append stored (a tuple: cheap to build on the hot path)."""

    first_offset: int
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    records_count: int
    size_bytes: int


@dataclass(slots=True)
class LogReadResult:
    """Whole batches from one segment, as a read-only view under a lease.

    `records` may start with a batch whose base offset is below the requested one
    (Kafka's rule; the client skips). Release (or use as a context manager) once the
    bytes are sent; `records` must not be touched afterwards.
    """

    records: memoryview
    first_offset: int
    """Base offset of the first batch returned (the requested offset when empty)."""
    next_offset: int
    """The offset after the last batch returned (where the next read starts)."""
    log_start_offset: int
    log_end_offset: int
    lease: ReadLease | None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def __enter__(self) -> LogReadResult:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
_HEAD: Final = struct.Struct(">qii")  # base_offset, batch_length, partition_leader_epoch
_HEAD_PACK: Final = _HEAD.pack
_HEAD_BYTES: Final = _HEAD.size
_VIEW: Final = RecordBatchView
_UNBOUNDED: Final = 2**63
_INDEX_WRITE_WINDOW_BYTES: Final = 16 * 1024 * 1024
# (active segment, its descriptor, end position max, last offset max, max timestamp max,
#  now_ms max, max.message.bytes, latest leader epoch, index.interval.bytes, segment
#  base offset, the in-memory entries of the offset and time indexes): see `Log._arm`.
_FastPath = tuple[
    "LogSegment",
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    bytearray,
    bytearray,
]
_OFFSET_ENTRY_PACK: Final = OffsetIndex.ENTRY.pack
_TIME_ENTRY_PACK: Final = TimeIndex.ENTRY.pack
_CRC_START: Final = 21
_BATCH_LENGTH_MIN: Final = BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES
_COMPRESSION_MAX: Final = 4

# (position, size, base_offset, last_offset_delta, max_timestamp, partition_leader_epoch)
_BatchFacts = tuple[int, int, int, int, int, int]


def _header_facts(data: memoryview, position: int) -> _BatchFacts:
    fields = _HEADER.unpack_from(data, position)
    return (position, fields[1] + LOG_OVERHEAD_BYTES, fields[0], fields[6], fields[8], fields[2])


def _corrupt(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.corrupt_message, message)


def _validated_batches(data: memoryview) -> list[_BatchFacts]:
    """Check each batch of `data` (whole, magic 2, CRC32C, sane counts): the hot path.

    One struct unpack and one CRC per batch: what `RecordBatchView.validate` checks,
    without building a view.
    """
    batches = []
    position, end = 0, len(data)
    if end == 0:
        raise _corrupt("no record batch to append")
    unpack = _HEADER.unpack_from
    while position < end:
        if end - position < BATCH_HEADER_BYTES:
            raise _corrupt(f"{end - position} trailing bytes do not form a record batch")
        fields = unpack(data, position)
        base_offset, batch_length, epoch, magic, crc, attributes, last_delta = fields[:7]
        size = batch_length + LOG_OVERHEAD_BYTES
        if magic != 2:
            raise _corrupt(f"unsupported record batch magic {magic}")
        if batch_length < _BATCH_LENGTH_MIN or size > end - position:
            raise _corrupt(f"record batch declares {size} bytes, {end - position} present")
        if crc32c(data[position + _CRC_START : position + size]) != crc:
            raise _corrupt(f"record batch CRC mismatch at position {position}")
        if fields[12] < 0 or last_delta < 0 or attributes & 0x07 > _COMPRESSION_MAX:
            raise _corrupt(
                f"record batch has records_count {fields[12]}, last_offset_delta "
                f"{last_delta}, attributes {attributes:#x}"
            )
        batches.append((position, size, base_offset, last_delta, fields[8], epoch))
        position += size
    return batches


def sync_file(path: Path) -> None:
    """fsync a (sealed) segment file by path; any thread. A deleted file needs none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Log:
    """A partition log: `<topic>-<partition>/` with its segments and checkpoints."""

    def __init__(self, directory: Path, config: LogConfig, budget: MapBudget) -> None:
        self.directory = directory
        self.config = config
        self.budget = budget
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self._checkpointed_log_start_offset: int | None = None
        self.recovery_point = 0
        self.epoch_cache = LeaderEpochCache(directory)
        self._graveyard: list[LogSegment] = []
        self._flushed_offset = 0
        """The log end offset at the last flush: `unflushed_messages` counts from it."""
        self._last_flush_ms = 0
        self._fast: _FastPath | None = None
        """Limits within which an append needs none of the general path's decisions
        (see `_arm`); None until the first append, and after anything that changes them."""
        self.closed = False
        self.generation = 0
        """Bumped when segments are removed or rewritten (the cleaner checks it)."""
        self.on_seal: Callable[[Path, int], None] | None = None
        """When set, rolling does not fsync the sealed segment on the caller's thread:
        it calls `on_seal(path, next_offset)`, and the owner fsyncs the file elsewhere
        (`sync_file`, in a worker thread) then calls `seal_synced(next_offset)`. Kafka
        flushes rolled segments asynchronously the same way; the recovery point moves
        only past synced segments, so a crash meanwhile rescans them."""
        self._unsynced_seals: list[list[int]] = []  # [next_offset, synced?] in roll order

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        config: LogConfig | None = None,
        *,
        now_ms: int = 0,
        map_budget: MapBudget | None = None,
    ) -> Log:
        """Open (creating if needed) and recover the log in `directory`."""
        path = Path(directory)
        log = cls(path, config or LogConfig(), map_budget or DEFAULT_MAP_BUDGET)
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            log._open(now_ms)
        else:
            log._create(now_ms)
        return log

    def _create(self, now_ms: int) -> None:
        """A log in a directory just made: one empty active segment at offset 0, with
        none of `_open`'s scans (no files, checkpoints or markers can be there yet). A
        node opening a new topic's partitions does this for each on the event loop."""
        segment = LogSegment(self.directory, 0, self.config, self.budget)
        segment.activate()
        segment.created_ms = now_ms
        self.segments = [segment]
        self._bases = [0]
        self._last_flush_ms = now_ms
        _log.info("storage.log.created", directory=str(self.directory))

    def _open(self, now_ms: int) -> None:
        directory = self.directory
        complete_interrupted_swaps(directory)
        marker = read_checkpoint(directory / CLEAN_SHUTDOWN_FILE, width=1)
        bases = sorted(
            int(path.stem)
            for path in directory.glob("*.log")
            if len(path.stem) == 20 and path.stem.isdigit()
        )
        for pattern in ("*.index", "*.timeindex"):
            for path in directory.glob(pattern):
                if not path.stem.isdigit() or int(path.stem) not in bases:
                    remove_file(path)
        start_rows = read_checkpoint(directory / LOG_START_OFFSET_FILE, width=1)
        recovery_rows = read_checkpoint(directory / RECOVERY_POINT_FILE, width=1)
        recovery_point = recovery_rows[0][0] if recovery_rows else 0
        checkpointed_start = start_rows[0][0] if start_rows else 0
        clean = marker is not None
        if clean:
            self.segments = [
                LogSegment.open_existing(directory, base, self.config, self.budget)
                for base in bases
            ]
            assert marker is not None
            if self.segments and self.segments[-1].next_offset != marker[0][0]:
                _log.warning(
                    "storage.open.marker_mismatch",
                    directory=str(directory),
                    marker_log_end_offset=marker[0][0],
                    found_log_end_offset=self.segments[-1].next_offset,
                )
                for segment in self.segments:
                    segment.close()
                clean = False
        if not clean:
            self._recover(bases, recovery_point)
        if not self.segments:
            self.segments = [
                LogSegment.create(directory, checkpointed_start, self.config, self.budget)
            ]
        for segment in self.segments:
            segment.created_ms = now_ms
        if not self.segments[-1].active:
            self.segments[-1].activate()
        self._bases = [segment.base_offset for segment in self.segments]
        # The marker must be gone, durably, before the log can change.
        if remove_file(directory / CLEAN_SHUTDOWN_FILE):
            fsync_directory(directory)
        self.log_start_offset = min(
            max(checkpointed_start, self.segments[0].base_offset), self.log_end_offset
        )
        if start_rows is not None:
            self._checkpointed_log_start_offset = checkpointed_start
        self.recovery_point = (
            self.log_end_offset if clean else min(recovery_point, self.log_end_offset)
        )
        self._last_flush_ms = now_ms
        self._flushed_offset = self.log_end_offset
        self._load_epoch_cache(None if clean else self.recovery_point)
        if not clean:
            self.flush(now_ms)
        _log.info(
            "storage.log.opened",
            directory=str(directory),
            clean=clean,
            segments=len(self.segments),
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
        )

    def _recover(self, bases: list[int], recovery_point: int) -> None:
        """Unclean open: trust segments below the recovery point, scan the rest."""
        directory = self.directory
        first_scanned = max(0, bisect.bisect_right(bases, recovery_point) - 1)
        self.segments = [
            LogSegment.open_existing(directory, base, self.config, self.budget)
            for base in bases[:first_scanned]
        ]
        for index, base in enumerate(bases[first_scanned:], start=first_scanned):
            segment = LogSegment(directory, base, self.config, self.budget)
            segment.size = segment.log_path.stat().st_size
            is_last = index == len(bases) - 1
            if is_last:
                segment.activate()
            scanner = segment.rebuild_indexes(validate=True)
            file_bytes = segment.log_path.stat().st_size
            self.segments.append(segment)
            if scanner.stop_reason is not None:
                _log.warning(
                    "storage.recovery.truncated",
                    path=str(segment.log_path),
                    position=scanner.end_position,
                    next_offset=segment.next_offset,
                    file_bytes=file_bytes,
                    reason=scanner.stop_reason,
                )
                for later in bases[index + 1 :]:
                    _log.warning(
                        "storage.recovery.deleted_segment",
                        directory=str(directory),
                        base_offset=later,
                        reason="follows a corrupt batch",
                    )
                    LogSegment(directory, later, self.config, self.budget).delete_files()
                if not is_last:
                    segment.activate()
                segment.discard_tail()
                break
            if is_last or file_bytes != segment.size:
                segment.discard_tail()
        if self.segments and not self.segments[-1].active:
            self.segments[-1].activate()

    def _load_epoch_cache(self, scanned_from: int | None) -> None:
        """The checkpointed cache, fitted to the log; rebuilt from the batches if there
        is none. After an unclean stop (`scanned_from`: the recovery point) the epochs
        of the batches above the recovery point are assigned again: a crash may have
        lost their entries, which only `make_durable` makes durable."""
        cache = LeaderEpochCache.load(self.directory)
        if cache is None:
            cache = LeaderEpochCache(self.directory)
            for batch in self.iter_batch_headers():
                cache.assign(batch.partition_leader_epoch, batch.base_offset, persist=False)
            if cache.entries or self.log_end_offset > self.log_start_offset:
                cache.save()  # even empty: the next open must not scan the log again
        else:
            cache.truncate_from_end(self.log_end_offset)
            cache.truncate_from_start(self.log_start_offset)
            if scanned_from is not None and scanned_from < self.log_end_offset:
                changed = False
                for batch in self.iter_batch_headers(max(scanned_from, self.log_start_offset)):
                    changed |= cache.assign(
                        batch.partition_leader_epoch, batch.base_offset, persist=False
                    )
                if changed:
                    cache.save()
        self.epoch_cache = cache

    def update_config(self, config: LogConfig) -> None:
        """Apply changed topic settings (AlterConfigs); they take effect from the next
        append, roll, retention or compaction (index capacities at the next roll)."""
        self._fast = None
        self.config = config
        for segment in self.segments:
            segment.config = config

    # -- state ----------------------------------------------------------------------------

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def unflushed_messages(self) -> int:
        """Offsets appended since the last flush (Kafka's `log end - recovery point`)."""
        return self.log_end_offset - self._flushed_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)

    def segment_infos(self) -> list[SegmentInfo]:
        """What retention sees of each segment (oldest first)."""
        infos = []
        for segment in self.segments:
            timestamp = segment.max_timestamp
            if timestamp < 0:
                timestamp = int(segment.log_path.stat().st_mtime * 1000)
            infos.append(
                SegmentInfo(segment.base_offset, segment.next_offset, segment.size, timestamp)
            )
        return infos

    def _check_open(self) -> None:
        assert not self.closed, f"log {self.directory} is closed"

    # -- appending ------------------------------------------------------------------------

    def append_batch(
        self, batch: RecordBatchView, now_ms: int, leader_epoch: int | None = None
    ) -> int:
        """The produce path: append one validated batch as the leader; its base offset.

        The same as `append(batch, now_ms=now_ms, leader_epoch=leader_epoch)` (the last
        offset is the base offset plus `batch.last_offset_delta`), without building an
        `AppendInfo`. `batch` must have passed `RecordBatchView.validate()` (the produce
        handler's `iter_batches` does it): its CRC is not checked again, and its header
        fields are trusted as they are. The same errors as `append`, and an append
        that fails leaves the log unchanged.
        """
        fast = self._fast
        if fast is not None:
            # Within the limits `_arm` set, no roll, flush, file growth, epoch change
            # or index write is due: what is left of `append` is done inline here. It
            # must stay what `_append_one` + `LogSegment.record_batch` do (the tests in
            # tests/storage/test_fast_path.py compare the two).
            (
                segment,
                fd,
                end_max,
                offset_max,
                timestamp_max,
                now_max,
                size_max,
                epoch_max,
                interval,
                base_offset,
                offset_entries,
                time_entries,
            ) = fast
            batch_length = batch.batch_length
            size = batch_length + LOG_OVERHEAD_BYTES
            start = segment.size
            end = start + size
            first_offset = segment.next_offset
            last_offset = first_offset + batch.last_offset_delta
            max_timestamp = batch.max_timestamp
            if (
                end <= end_max
                and last_offset <= offset_max
                and max_timestamp <= timestamp_max
                and now_ms <= now_max
                and size <= size_max
                and (leader_epoch is None or leader_epoch <= epoch_max)
            ):
                position = batch.position
                head = _HEAD_PACK(
                    first_offset,
                    batch_length,
                    batch.partition_leader_epoch if leader_epoch is None else leader_epoch,
                )
                buffer = batch.buffer
                if buffer.__class__ is not memoryview:  # the broker's views have one
                    buffer = memoryview(buffer)
                rest = buffer[position + _HEAD_BYTES : position + size]
                # One pwritev of [patched header, the rest]: the input is not modified.
                # Fewer bytes than `size` (a full disk, a signal, or a view shorter than
                # its batch) falls through: the general path rewrites the whole batch
                # at the same place or raises, and nothing was counted yet.
                if os.pwritev(fd, (head, rest), start) == size:
                    timestamp = segment.max_timestamp  # so far, without this batch
                    if start - segment.index_mark > interval:
                        # `segment.add_index_entries`, inline (`_arm` saw room for it).
                        offset_entries += _OFFSET_ENTRY_PACK(last_offset - base_offset, start)
                        segment.index_mark = start
                        if timestamp > segment.last_indexed_timestamp:
                            time_entries += _TIME_ENTRY_PACK(
                                timestamp, segment.offset_of_max_timestamp - base_offset
                            )
                            segment.last_indexed_timestamp = timestamp
                    if max_timestamp > timestamp:
                        segment.max_timestamp = max_timestamp
                        segment.offset_of_max_timestamp = first_offset
                    if segment.verified_bytes == start:  # validated on the way in
                        segment.verified_bytes = end
                    segment.size = end
                    segment.next_offset = last_offset + 1
                    return first_offset
        return self._append(batch, now_ms, True, leader_epoch).first_offset

    def append(
        self,
        records: bytes | bytearray | memoryview | RecordBatchView,
        *,
        now_ms: int,
        assign_offsets: bool = True,
        leader_epoch: int | None = None,
    ) -> AppendInfo:
        """Append one or more v2 batches; offsets are assigned unless `assign_offsets`.

        `records` is the batch bytes (validated here: length, magic, CRC) or a
        `RecordBatchView` the caller already validated (see `append_batch`, the
        produce path). `leader_epoch` (the leader's epoch) is stamped into each batch;
        followers pass None and keep the epochs the leader stamped. The input is never
        modified (patched header fields are written separately). Raises ProtocolError:
        CORRUPT_MESSAGE (bad length/CRC/magic), MESSAGE_TOO_LARGE
        (`max.message.bytes`), OFFSET_OUT_OF_RANGE (a follower batch whose offset does
        not increase); the log is then unchanged.
        """
        if assign_offsets and self._fast is not None and not isinstance(records, _VIEW):
            # One whole batch of bytes (a produce request's usual content): validate
            # it as the produce handler does, then take the produce path.
            try:
                view = RecordBatchView(records)
            except ProtocolError:
                view = None  # the general path says what is wrong
            if view is not None and view.size == len(records):
                view.validate()
                records = view
        if records.__class__ is _VIEW and assign_offsets:
            assert isinstance(records, RecordBatchView)
            first_offset = self.append_batch(records, now_ms, leader_epoch)
            last_offset = first_offset + records.last_offset_delta
            return AppendInfo(
                first_offset,
                last_offset,
                records.max_timestamp,
                first_offset,
                records.last_offset_delta + 1,
                records.batch_length + LOG_OVERHEAD_BYTES,
            )
        return self._append(records, now_ms, assign_offsets, leader_epoch)

    def _append(
        self,
        records: bytes | bytearray | memoryview | RecordBatchView,
        now_ms: int,
        assign_offsets: bool,
        leader_epoch: int | None,
    ) -> AppendInfo:
        """`append` on the general path (which then arms the fast one for leaders)."""
        # Whatever this append does (a roll, a file growth that replaces the index
        # entries' buffers, a follower's batches), no earlier limits outlive it.
        self._fast = None
        if self.closed:
            self._check_open()
        if isinstance(records, RecordBatchView):
            data = records.bytes_view()
            batches = [_header_facts(data, 0)]
            if len(data) != batches[0][1]:
                raise _corrupt(f"record batch declares {batches[0][1]} bytes, {len(data)} present")
        else:
            data = records if isinstance(records, memoryview) else memoryview(records)
            batches = _validated_batches(data)
        if len(batches) == 1:
            return self._append_one(data, batches[0], now_ms, assign_offsets, leader_epoch)
        size_max = self.config.max_message_bytes
        next_offset = self.log_end_offset
        planned: list[tuple[int, int, int]] = []
        for position, size, batch_base_offset, last_delta, _, _ in batches:
            if size > size_max:
                raise ProtocolError(
                    ErrorCode.message_too_large,
                    f"record batch of {size} bytes exceeds max.message.bytes {size_max}",
                )
            base_offset = next_offset if assign_offsets else batch_base_offset
            if base_offset < next_offset:
                raise OffsetOutOfRangeError(
                    f"follower batch at offset {base_offset} is below the expected "
                    f"{next_offset} in {self.directory}"
                )
            planned.append((position, size, base_offset))
            next_offset = base_offset + last_delta + 1
        first_offset = planned[0][2]
        last_offset = next_offset - 1
        total = len(data)
        segment = self.active_segment
        segment.write_indexes_if_due()
        if segment.size and self._should_roll(
            segment, batches[0][4], first_offset, last_offset, total, now_ms
        ):
            segment = self._roll(first_offset, now_ms, total)
        elif segment.size + total > segment.capacity_bytes:
            segment.activate(max(self.config.segment_bytes, segment.size + total))
        start = segment.size
        segment.write_batches(
            data,
            start,
            [(position, size, base if assign_offsets else -1) for position, size, base in planned],
            leader_epoch,
        )
        max_timestamp, offset_of_max = -1, first_offset
        for (position, size, base_offset), facts in zip(planned, batches, strict=True):
            segment.record_batch(
                start + position, size, base_offset, base_offset + facts[3], facts[4]
            )
            if facts[4] > max_timestamp:
                max_timestamp, offset_of_max = facts[4], base_offset
            if leader_epoch is None and not assign_offsets:
                self.epoch_cache.assign(facts[5], base_offset)
        if leader_epoch is not None and leader_epoch > self.epoch_cache.latest_epoch:
            self.epoch_cache.assign(leader_epoch, first_offset)
        records_count = last_offset - first_offset + 1
        if (
            self.unflushed_messages >= self.config.flush_messages
            or now_ms - self._last_flush_ms >= self.config.flush_ms
        ):
            self.flush(now_ms)
        if assign_offsets:
            self._arm(now_ms)
        return AppendInfo(
            first_offset, last_offset, max_timestamp, offset_of_max, records_count, total
        )

    def _append_one(
        self,
        data: memoryview,
        facts: _BatchFacts,
        now_ms: int,
        assign_offsets: bool,
        leader_epoch: int | None,
    ) -> AppendInfo:
        """`append` of a single batch (every produce request of a modern client).

        The same steps as the general path, without its per-batch lists: this is the
        broker's hottest Python, and the benchmark measures it against `write()`.
        """
        _, size, batch_base_offset, last_delta, max_timestamp, epoch = facts
        if size > self.config.max_message_bytes:
            raise ProtocolError(
                ErrorCode.message_too_large,
                f"record batch of {size} bytes exceeds max.message.bytes "
                f"{self.config.max_message_bytes}",
            )
        segment = self.segments[-1]
        segment.write_indexes_if_due()
        first_offset = segment.next_offset
        if not assign_offsets:
            if batch_base_offset < first_offset:
                raise OffsetOutOfRangeError(
                    f"follower batch at offset {batch_base_offset} is below the expected "
                    f"{first_offset} in {self.directory}"
                )
            first_offset = batch_base_offset
        last_offset = first_offset + last_delta
        if segment.size and self._should_roll(
            segment, max_timestamp, first_offset, last_offset, size, now_ms
        ):
            segment = self._roll(first_offset, now_ms, size)
        elif segment.size + size > segment.capacity_bytes:
            segment.activate(max(self.config.segment_bytes, segment.size + size))
        start = segment.size
        segment.write_one(data, start, first_offset if assign_offsets else -1, leader_epoch)
        segment.record_batch(start, size, first_offset, last_offset, max_timestamp)
        if leader_epoch is None:
            if not assign_offsets:
                self.epoch_cache.assign(epoch, first_offset)
        elif leader_epoch > self.epoch_cache.latest_epoch:
            self.epoch_cache.assign(leader_epoch, first_offset)
        if (
            self.unflushed_messages >= self.config.flush_messages
            or now_ms - self._last_flush_ms >= self.config.flush_ms
        ):
            self.flush(now_ms)
        if assign_offsets:
            self._arm(now_ms)
        return AppendInfo(
            first_offset, last_offset, max_timestamp, first_offset, last_delta + 1, size
        )

    def _arm(self, now_ms: int) -> None:
        """Set the fast path's limits: while an append stays within them, the general
        path would not roll, grow the file, write index entries, flush or record a
        new leader epoch, and would treat the batch exactly as the fast path does."""
        segment = self.segments[-1]
        fd = segment.fd
        config = self.config
        if not segment.size or fd is None or segment.first_batch_timestamp is None or self.closed:
            self._fast = None
            return
        offset_entries = segment.offset_index.mirror
        time_entries = segment.time_index.mirror
        if offset_entries is None or time_entries is None:
            self._fast = None
            return
        end_max = min(
            config.segment_bytes,
            segment.capacity_bytes,
            # Every batch adds at most one entry to each index and is at least a
            # header long: the indexes cannot fill up (a roll) within this.
            segment.size + segment.index_room * BATCH_HEADER_BYTES,
            # Batched index writes are due (the general path writes them first).
            segment.size + _INDEX_WRITE_WINDOW_BYTES,
        )
        offset_max = min(
            segment.base_offset + RELATIVE_OFFSET_MAX,
            self._flushed_offset + config.flush_messages - 2,
        )
        now_max = self._last_flush_ms + config.flush_ms - 1
        first_timestamp = segment.first_batch_timestamp
        if first_timestamp >= 0:
            timestamp_max = first_timestamp + config.segment_ms
        else:
            timestamp_max = _UNBOUNDED
            now_max = min(now_max, segment.created_ms + config.segment_ms)
        self._fast = (
            segment,
            fd,
            end_max,
            offset_max,
            timestamp_max,
            now_max,
            config.max_message_bytes,
            self.epoch_cache.latest_epoch,
            config.index_interval_bytes,
            segment.base_offset,
            offset_entries,
            time_entries,
        )

    def _should_roll(
        self,
        segment: LogSegment,
        first_max_timestamp: int,
        first_offset: int,
        last_offset: int,
        total: int,
        now_ms: int,
    ) -> bool:
        del first_offset
        if segment.size + total > self.config.segment_bytes:
            return True
        if segment.indexes_full:
            return True
        if last_offset - segment.base_offset > RELATIVE_OFFSET_MAX:
            return True
        first_timestamp = segment.first_batch_timestamp
        if first_timestamp is not None and first_timestamp >= 0:
            waited_ms = first_max_timestamp - first_timestamp
        else:
            waited_ms = now_ms - segment.created_ms
        return waited_ms > self.config.segment_ms

    # -- rolling and flushing -----------------------------------------------------------

    def roll(self, now_ms: int = 0) -> LogSegment:
        """Seal the active segment (if it holds data) and start a new one at the end."""
        self._check_open()
        if not self.active_segment.size:
            return self.active_segment
        return self._roll(self.log_end_offset, now_ms, 0)

    def _roll(self, base_offset: int, now_ms: int, incoming_bytes: int) -> LogSegment:
        self._fast = None
        old = self.active_segment
        if self.on_seal is None:
            old.seal()
            # Every earlier segment was fsynced when it was sealed.
            self._set_recovery_point(old.next_offset)
        else:
            old.seal(sync=False)
            self._unsynced_seals.append([old.next_offset, 0])
            self.on_seal(old.log_path, old.next_offset)
        segment = LogSegment.create(
            self.directory,
            max(base_offset, old.next_offset),
            self.config,
            self.budget,
            capacity_bytes=max(self.config.segment_bytes, incoming_bytes),
        )
        segment.created_ms = now_ms
        fsync_directory(self.directory)
        self.segments.append(segment)
        self._bases.append(segment.base_offset)
        _log.info(
            "storage.segment.rolled",
            directory=str(self.directory),
            base_offset=segment.base_offset,
            sealed_bytes=old.size,
        )
        self.reap()
        return segment

    def seal_synced(self, next_offset: int) -> None:
        """The sealed segment ending at `next_offset` is durable (owner thread).

        The recovery point moves past the longest prefix of synced seals, so it never
        skips a segment whose sync is still running.
        """
        for entry in self._unsynced_seals:
            if entry[0] == next_offset:
                entry[1] = 1
        while self._unsynced_seals and self._unsynced_seals[0][1]:
            synced_to = self._unsynced_seals.pop(0)[0]
            if not self.closed and synced_to > self.recovery_point:
                self._set_recovery_point(synced_to)

    def _sync_unsynced_seals(self) -> None:
        for next_offset, synced in list(self._unsynced_seals):
            if not synced:
                segment = self._segment_ending_at(next_offset)
                if segment is not None:
                    sync_file(segment.log_path)
        self._unsynced_seals.clear()

    def _segment_ending_at(self, next_offset: int) -> LogSegment | None:
        for segment in self.segments:
            if segment.next_offset == next_offset and not segment.active:
                return segment
        return None

    def flush(self, now_ms: int = 0) -> None:
        """Make everything appended so far durable and move the recovery point to it."""
        self._check_open()
        self._sync_unsynced_seals()
        self.active_segment.flush()
        self._flushed_offset = self.log_end_offset
        self._last_flush_ms = now_ms
        self._fast = None
        self._set_recovery_point(self.log_end_offset)

    def maybe_flush(self, now_ms: int) -> bool:
        """Flush if `flush.ms` has passed since the last flush (the broker's timer)."""
        if self.unflushed_messages and now_ms - self._last_flush_ms >= self.config.flush_ms:
            self.flush(now_ms)
            return True
        return False

    def _save_log_start_offset(self) -> None:
        if self._checkpointed_log_start_offset != self.log_start_offset:
            write_checkpoint(self.directory / LOG_START_OFFSET_FILE, [(self.log_start_offset,)])
            self._checkpointed_log_start_offset = self.log_start_offset

    def _set_recovery_point(self, offset: int) -> None:
        self.epoch_cache.make_durable()  # no epoch below a recovery point may be lost
        if offset != self.recovery_point:
            self.recovery_point = offset
            write_checkpoint(self.directory / RECOVERY_POINT_FILE, [(offset,)])

    # -- reading --------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        max_offset: int | None = None,
        min_one_message: bool = True,
    ) -> LogReadResult:
        """Whole batches from the one holding `offset`, up to `max_bytes`.

        `max_offset` (exclusive; e.g. the high watermark) bounds which batches are
        returned. With `min_one_message` the first batch is returned even if larger than
        `max_bytes` (KIP-74). Raises OffsetOutOfRangeError outside
        [log_start_offset, log_end_offset], CorruptSegmentError for a corrupt batch.
        """
        self._check_open()
        log_end_offset = self.log_end_offset
        if offset < self.log_start_offset or offset > log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self.log_start_offset}, {log_end_offset}] "
                f"of {self.directory}"
            )
        index = bisect.bisect_right(self._bases, offset) - 1
        while offset < log_end_offset and 0 <= index < len(self.segments):
            segment = self.segments[index]
            start = segment.find_position(offset)
            if start is None:  # a compacted gap at the segment's end
                index += 1
                continue
            return self._read_segment(
                segment, start, offset, max_bytes, max_offset, min_one_message
            )
        return self._empty(offset)

    def _empty(self, offset: int) -> LogReadResult:
        return LogReadResult(
            _EMPTY, offset, offset, self.log_start_offset, self.log_end_offset, None
        )

    def _read_segment(
        self,
        segment: LogSegment,
        start: int,
        offset: int,
        max_bytes: int,
        max_offset: int | None,
        min_one_message: bool,
    ) -> LogReadResult:
        buffer = segment.readable_buffer()
        unpack = PREFIX.unpack_from
        end, size_limit = start, segment.size
        first_offset, next_offset = -1, offset
        while end < size_limit:
            base_offset, batch_length, *_, last_delta = unpack(buffer, end)
            if max_offset is not None and base_offset >= max_offset:
                break
            batch_end = end + batch_length + LOG_OVERHEAD_BYTES
            if batch_end - start > max_bytes and not (end == start and min_one_message):
                break
            if first_offset < 0:
                first_offset = base_offset
            end = batch_end
            next_offset = base_offset + last_delta + 1
        if end == start:
            return self._empty(offset)
        valid_end = segment.verify(start, end)
        if valid_end == start:
            raise CorruptSegmentError(
                f"corrupt record batch at position {start} of {segment.log_path}"
            )
        if valid_end < end:
            end, next_offset = start, offset
            while end < valid_end:
                base_offset, batch_length, *_, last_delta = unpack(buffer, end)
                end += batch_length + LOG_OVERHEAD_BYTES
                next_offset = base_offset + last_delta + 1
        segment.remember_position(next_offset, end)
        lease = segment.read_view(start, end)
        return LogReadResult(
            lease.view,
            first_offset,
            next_offset,
            self.log_start_offset,
            self.log_end_offset,
            lease,
        )

    def iter_batch_headers(self, start_offset: int | None = None) -> Iterator[RecordBatchView]:
        """Header-only views of each batch from the one holding `start_offset`.

        Each view wraps a copy of the 61-byte header (so it outlives any map); its
        fields are valid, `bytes_view()`/`validate()` are not. Cheap: no CRC, no
        records are decoded (the broker rebuilds producer state from these).
        """
        offset = self.log_start_offset if start_offset is None else start_offset
        for segment in list(self.segments):
            if segment.next_offset <= offset or not segment.size:
                continue
            position = segment.find_position(offset) or 0
            buffer = segment.readable_buffer()
            segment.pin()  # the caller may read other segments between items
            try:
                while position < segment.size:
                    header = bytes(buffer[position : position + BATCH_HEADER_BYTES])
                    batch = RecordBatchView(header)
                    yield batch
                    position += batch.size
            finally:
                segment.unpin()

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, max timestamp) of the first batch with max_timestamp >= ts.

        ListOffsets semantics at batch granularity: the offset is the batch's base
        offset (raised to the log start offset); None when no batch is that recent.
        `LATEST_TIMESTAMP`/`EARLIEST_TIMESTAMP` answer the log end/start offset.
        """
        self._check_open()
        if timestamp_ms == LATEST_TIMESTAMP:
            return self.log_end_offset, -1
        if timestamp_ms == EARLIEST_TIMESTAMP:
            return self.log_start_offset, -1
        for segment in self.segments:
            if segment.next_offset <= self.log_start_offset:
                continue
            found = segment.find_timestamp(timestamp_ms, self.log_start_offset)
            if found is not None:
                base_offset, max_timestamp = found
                return max(base_offset, self.log_start_offset), max_timestamp
        return None

    # -- removing data ---------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Follower truncation: drop everything at and after `offset`.

        Truncating into a batch drops the whole batch (the log end offset becomes its
        base offset), as Kafka does. Below the log start offset the log is emptied and
        restarted at `offset`.
        """
        self._check_open()
        if offset >= self.log_end_offset:
            return
        self._fast = None
        self.generation += 1
        if offset < self.log_start_offset:
            self._truncate_fully(offset)
            return
        while len(self.segments) > 1 and self.segments[-1].base_offset >= offset:
            self._delete_segment(self.segments.pop(), "truncated")
            self._bases.pop()
        segment = self.segments[-1]
        if not segment.active:
            segment.activate()
        segment.truncate_to(offset)
        self._after_truncation()
        _log.info(
            "storage.log.truncated",
            directory=str(self.directory),
            offset=offset,
            log_end_offset=self.log_end_offset,
        )

    def _truncate_fully(self, offset: int) -> None:
        for segment in self.segments:
            self._delete_segment(segment, "truncated fully")
        segment = LogSegment.create(self.directory, offset, self.config, self.budget)
        self.segments, self._bases = [segment], [offset]
        self._flushed_offset = offset
        self.log_start_offset = offset
        self._save_log_start_offset()
        self._after_truncation()

    def _after_truncation(self) -> None:
        self._flushed_offset = min(self._flushed_offset, self.log_end_offset)
        self.epoch_cache.truncate_from_end(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        write_checkpoint(self.directory / RECOVERY_POINT_FILE, [(self.recovery_point,)])

    def advance_start_offset(self, offset: int, *, high_watermark: int | None = None) -> bool:
        """DeleteRecords: move the log start offset up to `offset`; True if it moved.

        Raises OffsetOutOfRangeError past `high_watermark` (default: log end offset).
        Whole segments below the new start are deleted at once.
        """
        self._check_open()
        limit = self.log_end_offset if high_watermark is None else high_watermark
        if offset > limit:
            raise OffsetOutOfRangeError(
                f"cannot delete records up to {offset}: beyond {limit} in {self.directory}"
            )
        if offset <= self.log_start_offset:
            return False
        self.log_start_offset = offset
        self._save_log_start_offset()
        self.epoch_cache.truncate_from_start(offset)
        while len(self.segments) > 1 and self.segments[0].next_offset <= offset:
            self._delete_segment(self.segments.pop(0), "below log start offset")
            self._bases.pop(0)
        self.generation += 1
        return True

    def apply_retention(self, now_ms: int, *, high_watermark: int | None = None) -> list[int]:
        """Delete whole old segments past `retention.ms`/`retention.bytes` (never the
        active one, nothing at or above `high_watermark`); the base offsets deleted."""
        self._check_open()
        doomed = segments_to_delete(
            self.segment_infos(),
            self.config,
            now_ms=now_ms,
            log_start_offset=self.log_start_offset,
            high_watermark=self.log_end_offset if high_watermark is None else high_watermark,
        )
        for info in doomed:
            segment = self.segments.pop(0)
            self._bases.pop(0)
            assert segment.base_offset == info.base_offset
            self._delete_segment(segment, "retention")
        if doomed:
            self.generation += 1
            new_start = max(self.log_start_offset, self.segments[0].base_offset)
            if new_start != self.log_start_offset:
                self.log_start_offset = new_start
                self._save_log_start_offset()
                self.epoch_cache.truncate_from_start(new_start)
        self.reap()
        return [info.base_offset for info in doomed]

    def _delete_segment(self, segment: LogSegment, reason: str) -> None:
        _log.info(
            "storage.segment.deleted",
            path=str(segment.log_path),
            base_offset=segment.base_offset,
            next_offset=segment.next_offset,
            reason=reason,
        )
        segment.delete_files()
        self.retire(segment)

    def retire(self, segment: LogSegment) -> None:
        """Keep a segment removed from the log until its readers' maps can close."""
        if not segment.try_close_retired():
            self._graveyard.append(segment)

    def reap(self) -> int:
        """Close maps of deleted segments whose readers are gone; how many remain."""
        self._graveyard = [
            segment for segment in self._graveyard if not segment.try_close_retired()
        ]
        for segment in self.segments:
            segment.try_close_retired()
        return len(self._graveyard)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Clean shutdown: seal, checkpoint, write the clean-shutdown marker."""
        if self.closed:
            return
        self._fast = None
        self.flush(self._last_flush_ms)
        for segment in self.segments:
            segment.close()
        self._save_log_start_offset()
        # flush() made the epoch cache durable (`_set_recovery_point`).
        write_checkpoint(self.directory / CLEAN_SHUTDOWN_FILE, [(self.log_end_offset,)])
        self.closed = True
        self.reap()

    def delete(self, *, remove_files: bool = True) -> None:
        """Remove the partition directory (maps still viewed close when released).
        Without `remove_files` the log only lets go of its files and maps: the caller
        removes the directory (the broker renames it and deletes it off its loop)."""
        self._fast = None
        for segment in self.segments:
            if remove_files:
                self._delete_segment(segment, "log deleted")
            else:
                segment.delete_files(unlink=False)
                self.retire(segment)
        self.segments = []
        self.closed = True
        if remove_files:
            shutil.rmtree(self.directory, ignore_errors=True)

    def replace_segments(self, old: list[LogSegment], new: list[LogSegment]) -> None:
        """Swap in rewritten (compacted) segments for `old`; used by the cleaner."""
        self._fast = None
        first = self.segments.index(old[0])
        assert self.segments[first : first + len(old)] == old
        self.segments[first : first + len(old)] = new
        self._bases = [segment.base_offset for segment in self.segments]
        self.generation += 1
