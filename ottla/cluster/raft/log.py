"""The Raft log on disk: entries, snapshots and the quorum-state file of one node.

Layout, under `<data dir>/__cluster_metadata-0/` (Kafka's names):

- the segments of an `ottla.storage.Log`: one record batch per entry, whose base offset
  is the entry's offset and whose partition leader epoch is the entry's epoch (see
  codec.py). Entries are written with the offsets they carry, so after a snapshot is
  installed the log continues at the snapshot's end offset (a gap, as compaction leaves);
  entries below the latest snapshot's end are ignored when the log is opened.
- `%020d-%010d.checkpoint` (end offset, epoch): one snapshot of the state machine. The
  file is `OTTLASNP`, version, end offset, epoch, data length, data, and an xxh64 of all
  of that; it is written to a temp file, fsynced, renamed and the directory fsynced, so a
  reader sees a whole snapshot or none. A file whose checksum or shape is wrong is
  logged (`raft.snapshot.damaged`) and skipped; an older valid one is used instead.
- `quorum-state`: the election state in Kafka's JSON form (QuorumStateData v1), replaced
  atomically the same way. It must be readable: a damaged file could make this node vote
  twice in one epoch, so it stops startup (`RaftStorageError`) instead of being guessed.

`RaftStorage` carries out the persistence half of a `Ready` (install snapshot, truncate,
append, quorum-state, delete prefix, sync) in that order; the driver calls it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import structlog
import xxhash

from ottla.cluster.raft.codec import METADATA_TOPIC, batch_to_entries, entry_to_batch
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import Entry, OffsetAndEpoch
from ottla.cluster.raft.state import QuorumStateData
from ottla.protocol import ProtocolError, iter_batches
from ottla.storage import Log, LogConfig, write_file_atomically

__all__ = ["QUORUM_STATE_FILE", "RaftStorage", "RaftStorageError", "snapshot_file_name"]

_log = structlog.get_logger("ottla.raft")

QUORUM_STATE_FILE: Final = "quorum-state"
_SNAPSHOT_NAME: Final = re.compile(r"^(\d{20})-(\d{10})\.checkpoint$")
_SNAPSHOT_MAGIC: Final = b"OTTLASNP"
_SNAPSHOT_HEADER: Final = struct.Struct(">8sHqiq")
_CHECKSUM: Final = struct.Struct(">Q")
_CONFIG: Final = LogConfig(
    segment_bytes=64 * 1024 * 1024,
    retention_ms=-1,
    max_message_bytes=8 << 20,
    flush_messages=1 << 62,
    flush_ms=1 << 62,
)
_READ_BYTES: Final = 1 << 20


class RaftStorageError(Exception):
    """The Raft files cannot be trusted; the message names the file."""


def snapshot_file_name(snapshot_id: OffsetAndEpoch) -> str:
    return f"{snapshot_id.end_offset:020d}-{snapshot_id.epoch:010d}.checkpoint"


def encode_snapshot_file(snapshot: Snapshot) -> bytes:
    snapshot_id = snapshot.snapshot_id
    body = (
        _SNAPSHOT_HEADER.pack(
            _SNAPSHOT_MAGIC, 1, snapshot_id.end_offset, snapshot_id.epoch, len(snapshot.data)
        )
        + snapshot.data
    )
    return body + _CHECKSUM.pack(xxhash.xxh64_intdigest(body))


def decode_snapshot_file(data: bytes) -> Snapshot:
    """The snapshot in a file body (ValueError naming what is wrong)."""
    if len(data) < _SNAPSHOT_HEADER.size + _CHECKSUM.size:
        raise ValueError("truncated")
    body, (checksum,) = data[: -_CHECKSUM.size], _CHECKSUM.unpack(data[-_CHECKSUM.size :])
    if xxhash.xxh64_intdigest(body) != checksum:
        raise ValueError("checksum mismatch")
    magic, version, end_offset, epoch, size = _SNAPSHOT_HEADER.unpack_from(body)
    if magic != _SNAPSHOT_MAGIC or version != 1:
        raise ValueError(f"not a snapshot (magic {magic!r}, version {version})")
    if size != len(body) - _SNAPSHOT_HEADER.size:
        raise ValueError(f"declares {size} data bytes, has {len(body) - _SNAPSHOT_HEADER.size}")
    return Snapshot(OffsetAndEpoch(end_offset, epoch), body[_SNAPSHOT_HEADER.size :])


class RaftStorage:
    """One node's durable Raft state: what `RaftCore` starts from, and where a Ready goes."""

    def __init__(
        self,
        directory: Path,
        log_: Log,
        quorum_state: QuorumStateData | None,
        snapshot: Snapshot | None,
        entries: list[Entry],
    ) -> None:
        self.directory = directory
        self._log = log_
        self.quorum_state = quorum_state
        self.snapshot = snapshot
        self.entries = entries  # as loaded at open (for RaftCore); not kept up to date

    @classmethod
    def open(cls, data_dir: Path, now_ms: int = 0) -> RaftStorage:
        """Open (creating) `<data_dir>/__cluster_metadata-0/` and load its state."""
        directory = data_dir / f"{METADATA_TOPIC}-0"
        directory.mkdir(parents=True, exist_ok=True)
        quorum_state = _read_quorum_state(directory / QUORUM_STATE_FILE)
        snapshot = _latest_snapshot(directory)
        log_ = Log.open(directory, _CONFIG, now_ms=now_ms)
        start = max(log_.log_start_offset, snapshot.snapshot_id.end_offset if snapshot else 0)
        entries = _read_entries(log_, start)
        expected = snapshot.snapshot_id.end_offset if snapshot else 0
        if entries and entries[0].offset != expected:
            # The log prefix was deleted below a snapshot that is now unreadable.
            log_.close()
            raise RaftStorageError(
                f"{directory}: the log starts at {entries[0].offset} but no readable snapshot "
                f"covers the offsets below it"
            )
        _log.info(
            "raft.log.opened",
            directory=str(directory),
            entries=len(entries),
            snapshot=snapshot.snapshot_id if snapshot else None,
            quorum_state=quorum_state,
        )
        return cls(directory, log_, quorum_state, snapshot, entries)

    # ------------------------------------------------------------------ the Ready steps

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the log with `snapshot` (a follower catching up from the leader's)."""
        self.write_snapshot(snapshot)
        log_ = self._log
        if log_.log_end_offset > log_.log_start_offset:
            log_.truncate_to(log_.log_start_offset)
        self._delete_snapshots_before(snapshot.snapshot_id.end_offset)

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Write (and fsync) a snapshot file; it becomes the latest."""
        path = self.directory / snapshot_file_name(snapshot.snapshot_id)
        write_file_atomically(path, encode_snapshot_file(snapshot))
        self.snapshot = snapshot

    def truncate_to(self, offset: int) -> None:
        self._log.truncate_to(offset)

    def append(self, entries: Sequence[Entry], now_ms: int) -> None:
        if not entries:
            return
        data = b"".join(bytes(entry_to_batch(entry, now_ms)) for entry in entries)
        self._log.append(data, now_ms=now_ms, assign_offsets=False)

    def write_quorum_state(self, state: QuorumStateData) -> None:
        write_file_atomically(self.directory / QUORUM_STATE_FILE, state.to_json().encode())
        self.quorum_state = state

    def delete_prefix(self, log_start_offset: int) -> None:
        """Forget entries below `log_start_offset` (covered by the latest snapshot)."""
        log_ = self._log
        log_.advance_start_offset(min(log_start_offset, log_.log_end_offset))
        self._delete_snapshots_before(log_start_offset)

    def sync(self, now_ms: int = 0) -> None:
        self._log.flush(now_ms)

    def close(self) -> None:
        self._log.close()

    @property
    def log_end_offset(self) -> int:
        return self._log.log_end_offset

    def read_entries(self, start: int) -> list[Entry]:
        return _read_entries(self._log, start)

    def _delete_snapshots_before(self, end_offset: int) -> None:
        for path in self.directory.iterdir():
            match = _SNAPSHOT_NAME.match(path.name)
            if match and int(match.group(1)) < end_offset:
                path.unlink(missing_ok=True)


def _read_quorum_state(path: Path) -> QuorumStateData | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as error:
        raise RaftStorageError(f"{path} is damaged: {error}") from None
    try:
        return QuorumStateData.from_json(text)
    except ValueError as error:
        raise RaftStorageError(f"{path} is damaged: {error}") from None


def _latest_snapshot(directory: Path) -> Snapshot | None:
    found: list[tuple[int, int, Path]] = []
    for path in directory.iterdir():
        match = _SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    for end_offset, epoch, path in sorted(found, reverse=True):
        try:
            snapshot = decode_snapshot_file(path.read_bytes())
        except (OSError, ValueError) as error:
            _log.warning("raft.snapshot.damaged", path=str(path), reason=str(error))
            continue
        if snapshot.snapshot_id != OffsetAndEpoch(end_offset, epoch):
            _log.warning("raft.snapshot.damaged", path=str(path), reason="name mismatch")
            continue
        return snapshot
    return None


def _read_entries(log_: Log, start: int) -> list[Entry]:
    entries: list[Entry] = []
    offset = max(start, log_.log_start_offset)
    while offset < log_.log_end_offset:
        with log_.read(offset, _READ_BYTES) as result:
            try:
                for view in iter_batches(result.records):
                    entries.extend(e for e in batch_to_entries(view) if e.offset >= start)
            except ProtocolError as error:
                raise RaftStorageError(
                    f"{log_.directory}: unreadable metadata batch near offset {offset}: {error}"
                ) from None
            if result.next_offset <= offset:
                break
            offset = result.next_offset
    return entries
