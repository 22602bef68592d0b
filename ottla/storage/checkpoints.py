"""ottla's own small files in a partition directory, written atomically and checksummed.

Every checkpoint is a short text file:

    ottla-<kind> v1
    <one entry per line: integers separated by spaces>
    xxh64 <16 hex digits of xxhash64 over every byte above this line>

It is written to `<name>.tmp`, fsynced, renamed over `<name>`, and the directory is
fsynced, so a reader sees the old file or the new one, never half of one. A file whose
checksum, header or shape is wrong is reported (`storage.checkpoint.damaged`) and
treated as absent: the caller rebuilds the value from the log instead of trusting it.

The files (all per partition directory):

- `recovery-point-checkpoint`: one entry, the offset below which the log is known
  flushed; unclean recovery scans from the segment holding it.
- `log-start-offset-checkpoint`: one entry, the log start offset (DeleteRecords,
  retention).
- `leader-epoch-checkpoint`: entries `epoch start_offset`, ascending.
- `.clean-shutdown`: one entry, the log end offset at a clean close; present only
  while the log is closed cleanly, and removed (durably) when it is opened.

And one in the data directory itself, written by the broker:

- `replication-offset-checkpoint`: entries `topic_id partition high_watermark` (the
  topic id as an integer), one per hosted partition with a replication role
  (broker/high_watermarks.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog
import xxhash

__all__ = [
    "CLEAN_SHUTDOWN_FILE",
    "HIGH_WATERMARK_FILE",
    "LEADER_EPOCH_FILE",
    "LOG_START_OFFSET_FILE",
    "RECOVERY_POINT_FILE",
    "fsync_directory",
    "read_checkpoint",
    "write_checkpoint",
    "write_file_atomically",
]

RECOVERY_POINT_FILE: Final = "recovery-point-checkpoint"
LOG_START_OFFSET_FILE: Final = "log-start-offset-checkpoint"
LEADER_EPOCH_FILE: Final = "leader-epoch-checkpoint"
CLEAN_SHUTDOWN_FILE: Final = ".clean-shutdown"
HIGH_WATERMARK_FILE: Final = "replication-offset-checkpoint"
_VERSION: Final = "v1"

_log = structlog.get_logger()


def fsync_directory(directory: Path) -> None:
    """Make renames, creations and unlinks in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kind(path: Path) -> str:
    return "ottla-" + path.name.lstrip(".")


def write_file_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that a reader, or a restart after a crash, sees the
    old file or the new one, never half of one: a temp file beside it, fsynced, renamed
    over it, the directory fsynced. Without `durable` the two fsyncs are left to the
    caller (the rename is still atomic; a crash may lose the new file, not tear it)."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    if durable:
        fsync_directory(path.parent)


def write_checkpoint(path: Path, entries: Sequence[Sequence[int]], *, sync: bool = True) -> None:
    """Atomically replace `path` with `entries` (`write_file_atomically`)."""
    body = f"{_kind(path)} {_VERSION}\n" + "".join(
        " ".join(str(int(value)) for value in entry) + "\n" for entry in entries
    )
    data = body.encode() + f"xxh64 {xxhash.xxh64_hexdigest(body.encode())}\n".encode()
    write_file_atomically(path, data, durable=sync)


def read_checkpoint(path: Path, *, width: int) -> list[tuple[int, ...]] | None:
    """The entries of `path` (each `width` integers), or None if missing or damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    problem = _parse_problem(path, data, width)
    if isinstance(problem, str):
        _log.warning("storage.checkpoint.damaged", path=str(path), reason=problem)
        return None
    return problem


def _parse_problem(path: Path, data: bytes, width: int) -> list[tuple[int, ...]] | str:
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        return "truncated"
    checksum_line = lines[-2]
    body = data[: len(data) - len(checksum_line) - 1]
    if checksum_line != f"xxh64 {xxhash.xxh64_hexdigest(body)}".encode():
        return "checksum mismatch"
    if lines[0] != f"{_kind(path)} {_VERSION}".encode():
        return f"unexpected header {lines[0][:40]!r}"
    entries: list[tuple[int, ...]] = []
    for line in lines[1:-2]:
        try:
            entry = tuple(int(part) for part in line.split())
        except ValueError:
            return f"bad entry {line[:40]!r}"
        if len(entry) != width:
            return f"entry {line[:40]!r} has not {width} fields"
        entries.append(entry)
    return entries


def remove_file(path: Path) -> bool:
    """Unlink `path` if present; True if it was there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return True
    return False
