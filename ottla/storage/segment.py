"""One log segment: a `.log` file of record batches plus its two sparse indexes.

Rules of a segment's life (the owner thread makes every transition):

    state    | how it gets there                      | its `.log` file and map
    ---------+----------------------------------------+---------------------------------
    active   | created, or the last one after opening | preallocated to `segment.bytes`
             |                                        | (sparse), mapped; appended with
             |                                        | `pwritev` through its descriptor
    sealed   | `seal()` on roll or close              | trimmed to its data, fsynced;
             |                                        | mapped read-only on demand
    deleted  | `delete_files()`                       | unlinked; map closed once no
             |                                        | reader holds a view of it

Reader leases (house rule 5). `read_view()` hands out a memoryview of the map with a
`ReadLease`; the segment counts live leases. CPython refuses to close or resize a map
while views of it exist (`BufferError`), and reading a view past a file's end after
`ftruncate` raises SIGBUS. So, while leases are live:

- a map is never closed or resized in place: it is *retired* (kept in `_retired`) and
  closed when the last lease is released, or on a later `try_close_retired()`;
- the file never shrinks below the data: sealing trims only the unused preallocated
  tail (no view reaches there), and truncation overwrites the dropped bytes with
  zeros instead of cutting the file (a view of them then reads zeros, never SIGBUS).

Without leases, truncation cuts the file and extends it again (cheap zeroing).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

import structlog

from ottla.protocol import BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, ErrorCode, ProtocolError
from ottla.storage.checkpoints import remove_file
from ottla.storage.config import LogConfig
from ottla.storage.index import OffsetIndex, TimeIndex
from ottla.storage.recovery import BatchScanner, batch_view, segment_files

__all__ = ["CorruptSegmentError", "LogSegment", "MapBudget", "ReadLease"]

_log = structlog.get_logger()

# base_offset, batch_length, partition_leader_epoch, magic, crc, attributes, last_offset_delta
PREFIX: Final = struct.Struct(">qiibIhi")
_INT64: Final = struct.Struct(">q")
_INT32: Final = struct.Struct(">i")
_ZERO_CHUNK_BYTES: Final = 1024 * 1024
_IOV_MAX: Final = 1024
_INDEX_WRITE_BATCH: Final = 64


class CorruptSegmentError(ProtocolError):
    """A stored batch failed validation when read: it is never served (CORRUPT_MESSAGE)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.corrupt_message, message)


class MapBudget:
    """Caps how many *sealed* segments keep a memory map (and its descriptor) open.

    The least recently read sealed segment is unmapped when the cap is passed; it is
    mapped again on its next read. Shared by every log of a broker, because maps and
    descriptors are a per-process resource; active segments are not counted.
    """

    def __init__(self, sealed_maps_max: int = 1024) -> None:
        self.sealed_maps_max = sealed_maps_max
        self._mapped: OrderedDict[int, LogSegment] = OrderedDict()
        # Logs are owned by one thread each, but this budget is shared by all of them
        # and a broker closes its logs in parallel threads at shutdown.
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._mapped)

    def touch(self, segment: LogSegment) -> None:
        with self._lock:
            self._mapped[id(segment)] = segment
            self._mapped.move_to_end(id(segment))
            if len(self._mapped) > self.sealed_maps_max:
                for key, victim in list(self._mapped.items()):
                    if len(self._mapped) <= self.sealed_maps_max:
                        break
                    if victim is not segment and victim.unmap():
                        del self._mapped[key]

    def forget(self, segment: LogSegment) -> None:
        with self._lock:
            self._mapped.pop(id(segment), None)


DEFAULT_MAP_BUDGET: Final = MapBudget()
# Sent reads' pages are unmapped from this process in batches of this size.
PAGES_DROP_BATCH_BYTES: Final = 256 * 1024
# Read-end positions kept per segment: one per reader that keeps up, roughly.
_POSITION_HINTS_MAX: Final = 64


class ReadLease:
    """Keeps a segment's map (and the bytes under a read's view) alive until released.

    Release it when the view has been consumed (sent): the view is released with it
    and must not be touched afterwards. Releasing twice is harmless; a lease that is
    garbage collected unreleased releases itself.
    """

    __slots__ = ("_base", "_end", "_segment", "_start", "view")

    def __init__(
        self, segment: LogSegment, base: memoryview, view: memoryview, start: int, end: int
    ) -> None:
        self._segment: LogSegment | None = segment
        self._base = base
        self.view = view
        self._start = start
        self._end = end

    @property
    def released(self) -> bool:
        return self._segment is None

    def release(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.pages_sent(self._base.obj, self._start, self._end)
        for view in (self.view, self._base):
            # Someone may hold a buffer export of the view itself; the map then
            # stays retired until a later try_close_retired().
            with contextlib.suppress(BufferError):
                view.release()
        segment.lease_released()

    def __enter__(self) -> ReadLease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _drop_pages(source: object, start: int, end: int) -> None:
    """Unmap a sent read's pages from this process (they stay in the page cache).

    Reads are memoryviews of the segment's map, so every page a fetch touched would
    otherwise count in the broker's resident set: serving 1 GiB would show 1 GiB of
    RSS. MADV_DONTNEED on a shared file mapping only drops this process's page-table
    entries; the data stays cached and a later read faults it back in cheaply.
    """
    if not isinstance(source, mmap.mmap) or source.closed or end <= start:
        return
    page_start = start - start % mmap.PAGESIZE
    with contextlib.suppress(OSError, ValueError):
        source.madvise(mmap.MADV_DONTNEED, page_start, min(end, len(source)) - page_start)


def _rest_after(vectors: list[memoryview | bytes], written: int) -> list[memoryview | bytes]:
    """What remains of `vectors` after a (short) write of `written` bytes."""
    consumed = 0
    while consumed < len(vectors) and written >= len(vectors[consumed]):
        written -= len(vectors[consumed])
        consumed += 1
    rest = vectors[consumed:]
    if written:
        rest[0] = memoryview(rest[0])[written:]
    return rest


class LogSegment:
    """Batches from `base_offset` on, in `<base_offset:020d>.log` (+ indexes)."""

    def __init__(
        self, directory: Path, base_offset: int, config: LogConfig, budget: MapBudget
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        self.budget = budget
        self.log_path, index_path, time_index_path = segment_files(directory, base_offset)
        self.offset_index = OffsetIndex(index_path, base_offset)
        self.time_index = TimeIndex(time_index_path, base_offset)
        self.size = 0
        """Bytes of whole, valid batches (the file may be longer: preallocation)."""
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self.created_ms = 0
        """When the segment was created or opened (segment.ms when no batch has a time)."""
        self.active = False
        self.deleted = False
        self.verified_bytes = 0
        # next offset -> position where a read ended (see find_position).
        self._position_hints: dict[int, int] = {}
        """Prefix whose batches were CRC-checked since opening (never re-checked)."""
        self.flushed_bytes = 0
        self._fd: int | None = None
        """Open while active: appends are `pwritev` calls (see `write_batches`)."""
        self._map: mmap.mmap | None = None
        # Sent reads not yet dropped from the map (see pages_sent).
        self._drop_source: object = None
        self._drop_from = 0
        self._map_writable = False
        self._capacity = 0
        self._retired: list[mmap.mmap] = []
        self._leases = 0
        self.index_mark = 0
        """Position of the batch that got the last offset-index entry (0 before any):
        the next entry is due at the first batch more than `index.interval.bytes` past it."""
        self.last_indexed_timestamp = -1

    def __repr__(self) -> str:
        state = "active" if self.active else "deleted" if self.deleted else "sealed"
        return f"LogSegment({self.base_offset}..{self.next_offset}, {self.size} bytes, {state})"

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        config: LogConfig,
        budget: MapBudget,
        *,
        capacity_bytes: int | None = None,
    ) -> LogSegment:
        """A new, empty, active segment (stale files of the same name are replaced)."""
        for path in segment_files(directory, base_offset):
            remove_file(path)
        segment = cls(directory, base_offset, config, budget)
        segment.activate(capacity_bytes)
        return segment

    @classmethod
    def open_existing(
        cls, directory: Path, base_offset: int, config: LogConfig, budget: MapBudget
    ) -> LogSegment:
        """A sealed segment from its files, trusting their sizes (recovery checks them)."""
        segment = cls(directory, base_offset, config, budget)
        segment.size = segment.log_path.stat().st_size
        segment.flushed_bytes = segment.size
        whole_offset = segment.offset_index.load()
        whole_time = segment.time_index.load()
        problem = None
        if not (whole_offset and whole_time):
            problem = "index file missing or not whole entries"
        else:
            problem = segment.offset_index.sanity_problem(segment.size)
        if problem is None:
            problem = segment._load_tail()
        if problem is None:
            problem = segment.time_index.sanity_problem(segment.next_offset)
        if problem is not None:
            _log.warning(
                "storage.segment.index_rebuilt",
                path=str(segment.log_path),
                reason=problem,
            )
            segment.rebuild_indexes()
        return segment

    def _load_tail(self) -> str | None:
        """Find next_offset and max_timestamp by scanning from the last index entry."""
        last = self.offset_index.last_entry()
        position = last[1] if last is not None else 0
        mapped = self.readable_buffer()
        while position < self.size:
            if self.size - position < BATCH_HEADER_BYTES:
                return f"{self.size - position} trailing bytes at {position}"
            base_offset, batch_length, *_, last_delta = PREFIX.unpack_from(mapped, position)
            if batch_length <= 0 or position + batch_length + LOG_OVERHEAD_BYTES > self.size:
                return f"bad batch length {batch_length} at {position}"
            self.next_offset = base_offset + last_delta + 1
            max_timestamp = batch_view(mapped, position).max_timestamp
            if max_timestamp > self.max_timestamp:
                self.max_timestamp = max_timestamp
                self.offset_of_max_timestamp = base_offset
            position += batch_length + LOG_OVERHEAD_BYTES
        if self.size:
            self.first_batch_timestamp = batch_view(mapped, 0).max_timestamp
        self.index_mark = self.size  # as if indexed here: the next entry after an interval
        last_time = self.time_index.last_entry()
        if last_time is not None:
            self.last_indexed_timestamp = last_time[0]
            if last_time[0] > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = last_time
        return None

    # -- maps ---------------------------------------------------------------------------

    def activate(self, capacity_bytes: int | None = None) -> None:
        """Make this the active segment: preallocate the file and map it writable."""
        # Reopening the indexes reads their files: first write what is only in memory.
        self.offset_index.write_pending()
        self.time_index.write_pending()
        capacity = max(capacity_bytes or self.config.segment_bytes, self.size, 1)
        fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            file_bytes = os.fstat(fd).st_size
            if file_bytes < capacity:
                os.ftruncate(fd, capacity)
            capacity = max(capacity, file_bytes)
            new_map = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._close_fd()
        self._fd = fd
        self._retire_map()
        self._map, self._map_writable, self._capacity = new_map, True, capacity
        self.budget.forget(self)
        self.active = True
        self.offset_index.open_writable(self.config.segment_index_bytes)
        self.time_index.open_writable(self.config.segment_index_bytes)

    def readable_buffer(self) -> mmap.mmap | bytes:
        """The map to read from (mapping a sealed segment on demand)."""
        if self._map is None:
            if self.size == 0:
                return b""
            fd = os.open(self.log_path, os.O_RDONLY)
            try:
                self._map = mmap.mmap(fd, self.size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            self._map_writable = False
            self._capacity = self.size
        if not self.active:
            self.budget.touch(self)
        return self._map

    def _retire_map(self) -> None:
        if self._map is not None:
            self._retired.append(self._map)
            self._map = None
            self._map_writable = False
        self.try_close_retired()

    def try_close_retired(self) -> bool:
        """Close retired maps nobody views any more; True when none is left."""
        if self._leases:
            return not self._retired
        still_viewed = []
        for retired in self._retired:
            try:
                retired.close()
            except BufferError:
                still_viewed.append(retired)
        self._retired = still_viewed
        return not still_viewed

    def unmap(self) -> bool:
        """Drop a sealed segment's map to save maps/descriptors; False if it is leased."""
        if self.active or self._leases:
            return False
        self._retire_map()
        self.offset_index.close()
        self.time_index.close()
        return True

    def pin(self) -> None:
        """Hold the file as a lease does (the cleaner reads it from another thread)."""
        self._leases += 1

    def unpin(self) -> None:
        self.lease_released()

    def pages_sent(self, source: object, start: int, end: int) -> None:
        """A read of `source` (a map of this segment) from `start` to `end` was sent.

        Its pages are dropped from this process (`_drop_pages`) once reads have
        covered `PAGES_DROP_BATCH_BYTES` since the last drop, not after every read:
        a follower or consumer at the tail reads the same page once per record, and a
        drop per read made each read fault that page back in (and each madvise can
        cost the other cores a TLB flush).
        """
        if source is not self._drop_source:
            self._drop_source, self._drop_from = source, start
        elif start < self._drop_from:
            self._drop_from = start
        if end - self._drop_from >= PAGES_DROP_BATCH_BYTES:
            cut = end - end % mmap.PAGESIZE
            _drop_pages(source, self._drop_from, cut)
            self._drop_from = cut

    def lease_released(self) -> None:
        self._leases -= 1
        if not self._leases:
            self.try_close_retired()

    @property
    def leases(self) -> int:
        return self._leases

    @property
    def capacity_bytes(self) -> int:
        return self._capacity if self.active else self.size

    # -- appending ----------------------------------------------------------------------

    def __del__(self) -> None:
        # An abandoned (never closed) segment must not leak its descriptor.
        if getattr(self, "_fd", None) is not None:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, data: bytes | bytearray | memoryview, position: int) -> None:
        """Write `data` at `position` (beyond `size`, so not visible to readers yet)."""
        self._pwritev([memoryview(data)], position)

    def write_batches(
        self,
        data: memoryview,
        position: int,
        batches: list[tuple[int, int, int]],
        leader_epoch: int | None,
    ) -> None:
        """Write the batches of `data` at `position`, patching offsets and epochs.

        `batches` holds (position in data, size, base offset to stamp or -1 to keep).
        The input is never modified: the patched header fields go in as separate
        iovec entries of one `pwritev`. Appending through the page cache with
        `pwritev` rather than copying into the map avoids a page fault per 4 KiB of
        a fresh (sparse) mapping; on Linux the map sees the same page-cache pages,
        so readers read the bytes through the map as before.
        """
        if leader_epoch is None and len(batches) == 1:  # the common produce request
            start, size, base_offset = batches[0]
            head = _INT64.pack(base_offset) if base_offset >= 0 else data[start : start + 8]
            self._pwritev([head, data[start + 8 : start + size]], position)
            return
        vectors: list[memoryview | bytes] = []
        epoch = None if leader_epoch is None else _INT32.pack(leader_epoch)
        for start, size, base_offset in batches:
            if base_offset >= 0:
                vectors.append(_INT64.pack(base_offset))
            else:
                vectors.append(data[start : start + 8])
            if epoch is None:
                vectors.append(data[start + 8 : start + size])
            else:
                vectors.append(data[start + 8 : start + 12])
                vectors.append(epoch)
                vectors.append(data[start + 16 : start + size])
        self._pwritev(vectors, position)

    def write_one(
        self, batch: memoryview, position: int, base_offset: int, leader_epoch: int | None
    ) -> None:
        """`write_batches` for `batch` holding exactly one batch."""
        fd = self._fd
        assert fd is not None, "segment is not active"
        head = _INT64.pack(base_offset) if base_offset >= 0 else batch[:8]
        if leader_epoch is None:
            vectors = [head, batch[8:]]
        else:
            vectors = [head, batch[8:12], _INT32.pack(leader_epoch), batch[16:]]
        if os.pwritev(fd, vectors, position) != len(batch):
            # A short write (disk full, signal): finish it the slow way or raise.
            self._pwritev(vectors, position)

    def _pwritev(self, vectors: list[memoryview | bytes], position: int) -> None:
        fd = self._fd
        assert fd is not None, "segment is not active"
        if len(vectors) <= _IOV_MAX:
            expected = sum(len(vector) for vector in vectors)
            written = os.pwritev(fd, vectors, position)
            if written == expected:
                return
            vectors, position = _rest_after(vectors, written), position + written
        while vectors:
            chunk = vectors[:_IOV_MAX]
            written = os.pwritev(fd, chunk, position)
            position += written
            vectors = _rest_after(chunk, written) + vectors[len(chunk) :]

    def record_batch(
        self, position: int, size: int, base_offset: int, last_offset: int, max_timestamp: int
    ) -> None:
        """Account for a batch now written at `position` (indexes, timestamps, size).

        `Log.append_batch`'s fast path does the same inline (see `Log._arm`): keep them
        equal (tests/storage/test_fast_path.py compares the two).
        """
        if position - self.index_mark > self.config.index_interval_bytes:
            self.add_index_entries(position, last_offset)
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = max_timestamp
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = base_offset
        self.size = position + size
        self.next_offset = last_offset + 1
        if self.verified_bytes == position:  # appended batches were validated on the way in
            self.verified_bytes = self.size

    def add_index_entries(self, position: int, last_offset: int) -> None:
        """The sparse entries for the batch at `position`, whose turn it is (called
        before the batch's own timestamp is counted, as Kafka does)."""
        if not self.offset_index.is_full:
            self.offset_index.append(last_offset, position)
        self.add_time_entry()
        self.index_mark = position

    def add_time_entry(self) -> None:
        """A time-index entry for the largest timestamp so far, if it grew."""
        if self.max_timestamp > self.last_indexed_timestamp and not self.time_index.is_full:
            self.time_index.append(self.max_timestamp, self.offset_of_max_timestamp)
            self.last_indexed_timestamp = self.max_timestamp

    def write_indexes_if_due(self) -> None:
        """Write batched index entries; appends call it *before* changing anything,
        so an I/O error (a full disk) leaves the log as it was."""
        if (
            self.offset_index.pending_entries >= _INDEX_WRITE_BATCH
            or self.time_index.pending_entries >= _INDEX_WRITE_BATCH
        ):
            self.offset_index.write_pending()
            self.time_index.write_pending()

    @property
    def fd(self) -> int | None:
        """The descriptor appends write through (None unless active)."""
        return self._fd

    @property
    def index_room(self) -> int:
        """How many more entries both indexes can take before one is full."""
        return min(self.offset_index.room, self.time_index.room)

    @property
    def indexes_full(self) -> bool:
        return self.offset_index.is_full or self.time_index.is_full

    def rebuild_indexes(self, *, validate: bool = False) -> BatchScanner:
        """Re-derive both indexes, next_offset and timestamps by walking the batches.

        Stops at the first batch that is not whole (or not valid, with `validate`);
        the scanner's `end_position` and `stop_reason` say where and why.
        """
        was_active = self.active
        if not was_active:
            self.offset_index.open_writable(self.config.segment_index_bytes)
            self.time_index.open_writable(self.config.segment_index_bytes)
        self.offset_index.reset()
        self.time_index.reset()
        self._position_hints.clear()  # a truncation may move batch boundaries
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = None
        self.index_mark = 0
        self.last_indexed_timestamp = -1
        buffer = self.readable_buffer()
        scanner = BatchScanner(
            buffer,
            start=0,
            end=self._capacity if was_active else self.size,
            segment_base_offset=self.base_offset,
            expected_offset_min=self.base_offset,
            validate=validate,
        )
        for info in scanner:
            self.record_batch(
                info.position, info.size, info.base_offset, info.last_offset, info.max_timestamp
            )
        self.offset_index.write_pending()
        self.time_index.write_pending()
        self.size = scanner.end_position
        self.verified_bytes = self.size if validate else 0
        if not was_active:
            self.add_time_entry()
            self.offset_index.trim()
            self.time_index.trim()
        return scanner

    # -- reading ------------------------------------------------------------------------

    def find_position(self, offset: int) -> int | None:
        """Position of the batch holding `offset`, or of the first one after it.

        A reader that keeps up (a follower, a tailing consumer) asks next for the
        offset its last read ended before: that read's end position is remembered
        (`remember_position`) and checked with one header unpack, instead of a scan
        from the sparse index entry (up to 4 KiB of batch headers).
        """
        if offset >= self.next_offset:
            return None
        position = self._position_hints.get(offset)
        if position is not None and position < self.size:
            base_offset = PREFIX.unpack_from(self.readable_buffer(), position)[0]
            if base_offset >= offset:  # the read before it ended below `offset`
                return position
        _, position = self.offset_index.lookup(offset)
        buffer = self.readable_buffer()
        unpack = PREFIX.unpack_from
        size = self.size
        while position < size:
            base_offset, batch_length, *_, last_delta = unpack(buffer, position)
            if base_offset + last_delta >= offset:
                return int(position)
            position += batch_length + LOG_OVERHEAD_BYTES
        return None

    def remember_position(self, next_offset: int, position: int) -> None:
        """A read ended at batch boundary `position`, its batches all below `next_offset`."""
        hints = self._position_hints
        if len(hints) >= _POSITION_HINTS_MAX:
            hints.clear()
        hints[next_offset] = position

    def find_timestamp(self, timestamp_ms: int, offset_min: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch with max_timestamp >= ts
        among those holding offsets >= `offset_min`."""
        if self.max_timestamp < timestamp_ms:
            return None
        entry = self.time_index.lookup(timestamp_ms)
        position = 0 if entry is None else self.find_position(entry[1]) or 0
        buffer = self.readable_buffer()
        while position < self.size:
            batch = batch_view(buffer, position)
            if batch.max_timestamp >= timestamp_ms and batch.last_offset >= offset_min:
                return batch.base_offset, batch.max_timestamp
            position += batch.size
        return None

    def verify(self, start: int, end: int) -> int:
        """CRC-check the batches in [start, end) not yet verified; the valid end.

        Returns `end` when all is well, else the position of the first bad batch
        (logged as `storage.read.corrupt_batch`; it is never served).
        """
        if end <= self.verified_bytes:
            return end
        position = self.verified_bytes if start <= self.verified_bytes else start
        buffer = self.readable_buffer()
        while position < end:
            try:
                batch = batch_view(buffer, position)
                batch.validate()
                if not self.base_offset <= batch.base_offset < self.next_offset:
                    raise ProtocolError(
                        ErrorCode.corrupt_message,
                        f"batch offset {batch.base_offset} outside the segment",
                    )
            except ProtocolError as error:
                _log.error(
                    "storage.read.corrupt_batch",
                    path=str(self.log_path),
                    position=position,
                    reason=str(error),
                )
                return position
            if position == self.verified_bytes:
                self.verified_bytes = position + batch.size
            position += batch.size
        return end

    def read_view(self, start: int, end: int) -> ReadLease:
        """A read-only view of bytes [start, end) under a lease."""
        buffer = self.readable_buffer()
        base = memoryview(buffer)
        view = base[start:end]
        if self._map_writable:
            view = view.toreadonly()
        self._leases += 1
        return ReadLease(self, base, view, start, end)

    # -- durability, truncation, sealing, deletion ----------------------------------------

    def flush(self) -> None:
        """msync the data appended since the last flush (and the index maps)."""
        if self.active and self._fd is not None and self.size > self.flushed_bytes:
            os.fdatasync(self._fd)
            self.offset_index.flush()
            self.time_index.flush()
        self.flushed_bytes = self.size

    def truncate_to(self, offset: int) -> None:
        """Drop the batches at and after the one holding `offset` (active segments only)."""
        assert self.active and self._map is not None
        position = self.find_position(offset)
        if position is None:
            return
        self._zero_from(position, self.size)
        self.size = position
        self.flushed_bytes = min(self.flushed_bytes, position)
        verified = min(self.verified_bytes, position)
        self.rebuild_indexes()
        self.verified_bytes = verified

    def _zero_from(self, position: int, old_end: int) -> None:
        """Make the active file read as zeros from `position` (at least to `old_end`)."""
        assert self.active and self._map is not None
        if self._leases:
            # Views may cover the dropped bytes: overwrite them, never cut the file.
            for chunk_start in range(position, old_end, _ZERO_CHUNK_BYTES):
                chunk_end = min(old_end, chunk_start + _ZERO_CHUNK_BYTES)
                self.write(bytes(chunk_end - chunk_start), chunk_start)
            return
        fd = os.open(self.log_path, os.O_RDWR)
        try:
            os.ftruncate(fd, position)
            os.ftruncate(fd, self._capacity)
        finally:
            os.close(fd)

    def discard_tail(self) -> None:
        """Recovery: remove whatever lies after the valid data, durably."""
        if self.active:
            self._zero_from(self.size, self._capacity)
        fd = os.open(self.log_path, os.O_RDWR)
        try:
            if not self.active:
                os.ftruncate(fd, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def seal(self, sync: bool = True) -> None:
        """Roll or close: flush, write the final time entry, trim files, fsync.

        With `sync=False` the data is not fsynced here: the caller syncs the file
        later (off the event loop, see `Log.on_seal`) and only then moves the
        recovery point past it, so a crash in between rescans this segment.
        """
        if not self.active:
            return
        if sync:
            self.flush()
        self.add_time_entry()
        self.offset_index.trim()
        self.time_index.trim()
        assert self._fd is not None
        # Only the unused preallocated tail goes: no view reaches past `size`.
        os.ftruncate(self._fd, self.size)
        if sync:
            os.fsync(self._fd)
        self._close_fd()
        self.active = False
        self._retire_map()

    def close(self) -> None:
        """Seal if active and drop maps (retired while leased)."""
        self.seal()
        self._retire_map()
        self.budget.forget(self)
        self.offset_index.close()
        self.time_index.close()

    def delete_files(self, *, unlink: bool = True) -> None:
        """Unlink the files (unless not `unlink`: the caller removes the directory); the
        map is closed once no lease views it."""
        self._close_fd()
        self.active = False
        self.deleted = True
        self._retire_map()
        self.budget.forget(self)
        self.offset_index.close()
        self.time_index.close()
        if not unlink:
            return
        for path in segment_files(self.directory, self.base_offset):
            remove_file(path)
