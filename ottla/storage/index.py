"""Sparse, fixed-width, mmap'd segment indexes, as Kafka lays them out.

- Offset index (`.index`): 8-byte entries, big-endian `relative_offset:int32,
  position:int32`. The relative offset is that of the *last* offset of the batch
  starting at `position` (Kafka's convention); lookups find the largest entry at or
  below a target, then the log is scanned forward from that position.
- Time index (`.timeindex`): 12-byte entries `timestamp:int64, relative_offset:int32`;
  the timestamp is the largest batch max-timestamp seen so far in the segment and the
  offset is the base offset of the batch that first reached it, so timestamps strictly
  increase along the file.

An index is written only by its segment's owner. While its segment is active, its
entries live in memory (a bytearray mirror, searched directly) and are written to the
file with `pwrite` in batches (`write_pending`: before an append once enough are
pending, and on flush, roll and close): a store into a sparse mapped page on a full
disk is a SIGBUS that kills the process, a `pwrite` is an OSError the broker answers
with KAFKA_STORAGE_ERROR. The active segment's index files may therefore lack the
newest entries after a crash; recovery rebuilds them from the log.
`segment.index.bytes` caps the entries (a full index rolls the segment). Sealed
indexes are mapped read-only on demand; index maps are never handed out as views, so
they can always be closed.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

__all__ = ["OffsetIndex", "TimeIndex"]


class _MappedIndex:
    """Entries of one struct layout, sorted by their first field, in a mapped file."""

    ENTRY: struct.Struct = struct.Struct(">ii")

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._entries = 0
        self._map: mmap.mmap | None = None
        self._capacity_entries = 0
        self._fd: int | None = None
        self.mirror: bytearray | None = None
        """While open for appends: every entry, as in the file (the unwritten ones too);
        `entries` counts them. `Log.append_batch`'s fast path extends it directly."""
        self._written_entries = 0

    @property
    def entries(self) -> int:
        mirror = self.mirror
        return self._entries if mirror is None else len(mirror) // self.ENTRY.size

    @entries.setter
    def entries(self, count: int) -> None:
        assert self.mirror is None or count == len(self.mirror) // self.ENTRY.size
        self._entries = count

    def __del__(self) -> None:
        # An abandoned (never closed) index must not leak its descriptor.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    # -- opening and closing ----------------------------------------------------------

    def load(self) -> bool:
        """Read the entry count from the file size; False if the size is not whole entries."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.entries = 0
            return False
        self.entries = size // self.ENTRY.size
        return size % self.ENTRY.size == 0

    def open_writable(self, capacity_bytes: int) -> None:
        """Open for appends, at most `capacity_bytes` of entries (a full index rolls)."""
        self.close()
        entry_bytes = self.ENTRY.size
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            existing = os.pread(fd, self.entries * entry_bytes, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.mirror = bytearray(existing)
        self.entries = len(existing) // entry_bytes
        self._written_entries = self.entries
        self._capacity_entries = max(capacity_bytes // entry_bytes, self.entries + 1)

    def _ensure_map(self) -> mmap.mmap | bytearray | None:
        if self.mirror is not None:
            return self.mirror
        if self._map is None and self.entries:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self._map = mmap.mmap(fd, self.entries * self.ENTRY.size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        return self._map

    def close(self) -> None:
        """Unmap and close (the entry count is kept; reads map the file again)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._entries = self.entries
        self.mirror = None

    @property
    def pending_entries(self) -> int:
        return self.entries - self._written_entries

    def write_pending(self) -> None:
        """Write appended entries to the file (OSError, e.g. ENOSPC, surfaces here)."""
        if self._fd is None or self.mirror is None or self._written_entries >= self.entries:
            return
        size = self.ENTRY.size
        start, end = self._written_entries * size, self.entries * size
        written = os.pwrite(self._fd, memoryview(self.mirror)[start:end], start)
        self._written_entries += written // size
        if self._written_entries < self.entries:
            raise OSError(f"short write to {self.path}")

    def trim(self) -> None:
        """Cut the file to its entries and fsync it (the segment is being sealed)."""
        self.write_pending()
        fd = self._fd if self._fd is not None else os.open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            os.ftruncate(fd, self.entries * self.ENTRY.size)
            os.fsync(fd)
        finally:
            if fd != self._fd:
                os.close(fd)
        self.close()

    def flush(self) -> None:
        # No fsync: the active segment's indexes are rebuilt by any unclean recovery
        # (it lies at or after the recovery point); sealing fsyncs them.
        self.write_pending()

    # -- entries ----------------------------------------------------------------------

    @property
    def is_full(self) -> bool:
        return self.mirror is not None and self.entries >= self._capacity_entries

    @property
    def room(self) -> int:
        """Entries that still fit (0 unless open for appends)."""
        return self._capacity_entries - self.entries if self.mirror is not None else 0

    def entry(self, index: int) -> tuple[int, int]:
        mapped = self._ensure_map()
        assert mapped is not None and 0 <= index < self.entries
        first, second = self.ENTRY.unpack_from(mapped, index * self.ENTRY.size)
        return int(first), int(second)

    def _append(self, first: int, second: int) -> None:
        # Entries are written with pwrite, not through a map: a store into a sparse
        # mapped page on a full disk is SIGBUS, a pwrite is an OSError.
        assert self.mirror is not None, "index is not open for appends"
        assert self.entries < self._capacity_entries, "index is full"
        self.mirror += self.ENTRY.pack(first, second)

    def _largest_at_most(self, key: int) -> int:
        """Position in the file of the last entry whose first field is <= key, or -1."""
        mapped = self._ensure_map()
        if mapped is None:
            return -1
        unpack = self.ENTRY.unpack_from
        size = self.ENTRY.size
        low, high = 0, self.entries - 1
        found = -1
        while low <= high:
            middle = (low + high) // 2
            if unpack(mapped, middle * size)[0] <= key:
                found = middle
                low = middle + 1
            else:
                high = middle - 1
        return found

    def truncate_entries(self, count: int) -> None:
        """Keep only the first `count` entries."""
        count = max(0, min(count, self.entries))
        if self.mirror is not None:
            del self.mirror[count * self.ENTRY.size :]
            self._written_entries = min(self._written_entries, count)
            assert self._fd is not None
            os.ftruncate(self._fd, self._written_entries * self.ENTRY.size)
        self.entries = count

    def reset(self) -> None:
        self.truncate_entries(0)


class OffsetIndex(_MappedIndex):
    """`.index`: relative last offset of a batch -> its byte position in the segment."""

    ENTRY = struct.Struct(">ii")

    def append(self, last_offset: int, position: int) -> None:
        self._append(last_offset - self.base_offset, position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or below `offset`; (base, 0) if none."""
        found = self._largest_at_most(offset - self.base_offset)
        if found < 0:
            return self.base_offset, 0
        relative, position = self.entry(found)
        return self.base_offset + relative, position

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries for batches whose last offset is >= `offset`."""
        self.truncate_entries(self._largest_at_most(offset - self.base_offset - 1) + 1)

    def last_entry(self) -> tuple[int, int] | None:
        if not self.entries:
            return None
        relative, position = self.entry(self.entries - 1)
        return self.base_offset + relative, position

    def sanity_problem(self, log_size_bytes: int) -> str | None:
        """Why this index cannot belong to a log of `log_size_bytes`, or None."""
        previous_offset, previous_position = -1, -1
        # Like Kafka, check the tail only: opening must not read whole indexes.
        for index in range(max(0, self.entries - 2), self.entries):
            relative, position = self.entry(index)
            if relative <= previous_offset or position <= previous_position:
                return f"entry {index} ({relative}, {position}) does not increase"
            if position >= log_size_bytes:
                return f"entry {index} points at {position}, past the log's {log_size_bytes}"
            previous_offset, previous_position = relative, position
        return None


class TimeIndex(_MappedIndex):
    """`.timeindex`: max timestamp so far -> relative base offset of the batch reaching it."""

    ENTRY = struct.Struct(">qi")

    def append(self, timestamp_ms: int, offset: int) -> None:
        self._append(timestamp_ms, offset - self.base_offset)

    def lookup(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(timestamp, offset) of the last entry with timestamp < `timestamp_ms`, or None."""
        found = self._largest_at_most(timestamp_ms - 1)
        if found < 0:
            return None
        timestamp, relative = self.entry(found)
        return timestamp, self.base_offset + relative

    def last_entry(self) -> tuple[int, int] | None:
        if not self.entries:
            return None
        timestamp, relative = self.entry(self.entries - 1)
        return timestamp, self.base_offset + relative

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries whose batch starts at or after `offset`."""
        keep = 0
        while keep < self.entries and self.entry(keep)[1] + self.base_offset < offset:
            keep += 1
        self.truncate_entries(keep)

    def sanity_problem(self, next_offset: int) -> str | None:
        previous_timestamp, previous_offset = -(2**63), -1
        for index in range(max(0, self.entries - 2), self.entries):
            timestamp, relative = self.entry(index)
            if timestamp <= previous_timestamp or relative < previous_offset:
                return f"entry {index} ({timestamp}, {relative}) does not increase"
            if self.base_offset + relative >= max(next_offset, self.base_offset + 1):
                return f"entry {index} names offset {self.base_offset + relative} past the log"
            previous_timestamp, previous_offset = timestamp, relative
        return None
