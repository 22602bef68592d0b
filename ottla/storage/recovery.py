"""Checking what a segment file really holds, and finishing interrupted compactions.

`BatchScanner` walks the batches of a segment buffer from a position and stops at
the first thing that is not a whole, valid batch. What it found there is its
`stop_reason`:

- None: the buffer ended exactly at a batch boundary, or the next bytes are zeros.
  Zeros after the data are how a preallocated active segment ends, so they are the
  normal end of the log, not damage.
- a string: a torn batch (declared longer than what follows), a bad magic, length or
  CRC, or offsets that go backwards. Everything from `end_position` on is untrusted;
  recovery truncates it (Kafka's rule) with a `storage.recovery.truncated` warning.

`complete_interrupted_swaps` applies Kafka's rule for a compaction that was cut
short: `.cleaned` files are discarded (the old segments are intact); a `.log.swap`
file is the committed result, so the segments it replaces are deleted and it is
renamed into place.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple, cast

import structlog

from ottla.protocol import BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, ProtocolError, RecordBatchView
from ottla.storage.checkpoints import remove_file

__all__ = [
    "BatchInfo",
    "BatchScanner",
    "Buffer",
    "batch_view",
    "complete_interrupted_swaps",
    "segment_files",
]

_log = structlog.get_logger()

HEADER: Final = struct.Struct(">qiibIhiqqqhii")
RELATIVE_OFFSET_MAX: Final = 2**31 - 1
_ZERO_PROBE_BYTES: Final = 64

Buffer = bytes | bytearray | memoryview | mmap.mmap
"""What segments are read from: their maps, or bytes in tests and the cleaner."""


def batch_view(buffer: Buffer, position: int = 0) -> RecordBatchView:
    """A `RecordBatchView` over any segment buffer (an mmap works as bytes do)."""
    return RecordBatchView(cast(bytes, buffer), position)


class BatchInfo(NamedTuple):
    """Header facts of one batch found in a segment."""

    position: int
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int
    partition_leader_epoch: int


class BatchScanner:
    """Iterate the batches of `buffer[start:end]`, validating each when asked."""

    def __init__(
        self,
        buffer: Buffer,
        *,
        start: int,
        end: int,
        segment_base_offset: int,
        expected_offset_min: int,
        validate: bool = True,
    ) -> None:
        self._buffer = buffer
        self._start = start
        self._end = end
        self._segment_base_offset = segment_base_offset
        self._expected_offset_min = expected_offset_min
        self._validate = validate
        self.end_position = start
        self.next_offset = expected_offset_min
        self.stop_reason: str | None = None

    def __iter__(self) -> Iterator[BatchInfo]:
        buffer = self._buffer
        position, end = self._start, self._end
        unpack = HEADER.unpack_from
        while position < end:
            remaining = end - position
            if remaining < BATCH_HEADER_BYTES:
                probe = bytes(buffer[position:end])
                if probe.count(0) != len(probe):
                    self.stop_reason = f"{remaining} trailing bytes are not a whole batch"
                break
            base_offset, batch_length, epoch, magic = unpack(buffer, position)[:4]
            if base_offset == 0 and batch_length == 0:
                probe = bytes(buffer[position : min(end, position + _ZERO_PROBE_BYTES)])
                if probe.count(0) != len(probe):
                    self.stop_reason = "a zero batch length followed by data"
                break
            size = batch_length + LOG_OVERHEAD_BYTES
            problem = None
            if magic != 2:
                problem = f"magic {magic}"
            elif batch_length < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES:
                problem = f"batch length {batch_length}"
            elif size > remaining:
                problem = f"torn batch: declares {size} bytes, {remaining} present"
            elif base_offset < self._expected_offset_min:
                problem = f"offset {base_offset} below the expected {self._expected_offset_min}"
            if problem is None:
                view = batch_view(buffer, position)
                if self._validate:
                    try:
                        view.validate()
                    except ProtocolError as error:
                        problem = str(error)
                if problem is None and (
                    view.last_offset - self._segment_base_offset > RELATIVE_OFFSET_MAX
                ):
                    problem = f"offset {view.last_offset} does not fit the segment"
            if problem is not None:
                self.stop_reason = f"{problem} at position {position}"
                break
            last_offset = view.last_offset
            yield BatchInfo(position, size, base_offset, last_offset, view.max_timestamp, epoch)
            position += size
            self.end_position = position
            self._expected_offset_min = last_offset + 1
            self.next_offset = last_offset + 1


def segment_files(directory: Path, base_offset: int) -> tuple[Path, Path, Path]:
    """The `.log`, `.index` and `.timeindex` paths of the segment at `base_offset`."""
    stem = f"{base_offset:020d}"
    return (
        directory / f"{stem}.log",
        directory / f"{stem}.index",
        directory / f"{stem}.timeindex",
    )


def _swap_next_offset(path: Path) -> int | None:
    data = path.read_bytes()
    scanner = BatchScanner(
        data, start=0, end=len(data), segment_base_offset=0, expected_offset_min=0
    )
    last = None
    for info in scanner:
        last = info
    return None if last is None else last.last_offset + 1


def complete_interrupted_swaps(directory: Path) -> None:
    """Discard half-written compaction output; finish a committed swap (see module doc)."""
    for leftover in sorted(directory.glob("*.cleaned")) + sorted(directory.glob("*.tmp")):
        _log.info("storage.recovery.discard_leftover", path=str(leftover))
        remove_file(leftover)
    for leftover in sorted(directory.glob("*.deleted")):
        remove_file(leftover)
    for swap in sorted(directory.glob("*.log.swap")):
        base_offset = int(swap.name.split(".")[0])
        next_offset = _swap_next_offset(swap)
        covered_max = next_offset - 1 if next_offset is not None else base_offset
        for log_file in sorted(directory.glob("*.log")):
            other_base = int(log_file.stem)
            if base_offset <= other_base <= covered_max:
                for path in segment_files(directory, other_base):
                    remove_file(path)
        log_path, index_path, time_index_path = segment_files(directory, base_offset)
        # Indexes are rebuilt from the log, so a swap never trusts its index files.
        remove_file(swap.with_name(index_path.name + ".swap"))
        remove_file(swap.with_name(time_index_path.name + ".swap"))
        swap.replace(log_path)
        _log.warning(
            "storage.recovery.completed_swap",
            directory=str(directory),
            base_offset=base_offset,
            next_offset=next_offset,
        )
    for orphan in sorted(directory.glob("*.swap")):
        remove_file(orphan)
