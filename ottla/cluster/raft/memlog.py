"""The Raft core's view of the metadata log: entries, log start, latest snapshot, epochs.

PURE. The core keeps the log in memory and tells its shell (through `Ready`) what to write;
the shell maps it onto `ottla.storage.Log` and the snapshot files. The leader-epoch cache
(Kafka's `LeaderEpochFileCache`: the first offset of each epoch) is kept incrementally so
`end_offset_for_epoch` and `validate_offset_and_epoch` are cheap.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from ottla.cluster.raft.messages import Entry, OffsetAndEpoch

__all__ = ["RaftLog", "Snapshot", "ValidOffsetAndEpoch"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot of the state machine covering every offset below `snapshot_id.end_offset`."""

    snapshot_id: OffsetAndEpoch
    data: bytes


@dataclass(frozen=True, slots=True)
class ValidOffsetAndEpoch:
    """Kafka's ValidOffsetAndEpoch: `kind` is "valid", "diverging" or "snapshot"."""

    kind: str
    offset_and_epoch: OffsetAndEpoch


class RaftLog:
    """Entries `log_start_offset .. log_end_offset - 1`, plus the snapshot below them."""

    def __init__(self, snapshot: Snapshot | None = None, entries: Iterable[Entry] = ()) -> None:
        self.snapshot = snapshot
        self.log_start_offset = snapshot.snapshot_id.end_offset if snapshot else 0
        self._entries: list[Entry] = []
        # The leader-epoch cache: parallel lists of epochs and their first offsets.
        self._epochs: list[int] = []
        self._epoch_starts: list[int] = []
        for entry in entries:
            if entry.offset >= self.log_start_offset:
                self.append(entry)

    @property
    def log_end_offset(self) -> int:
        return self.log_start_offset + len(self._entries)

    @property
    def last_fetched_epoch(self) -> int:
        """The epoch of the entry at `log_end_offset - 1` (the snapshot's if the log is
        empty; -1 for an empty node)."""
        if self._entries:
            return self._entries[-1].epoch
        return self.snapshot.snapshot_id.epoch if self.snapshot else -1

    def last_offset_and_epoch(self) -> OffsetAndEpoch:
        return OffsetAndEpoch(self.log_end_offset, self.last_fetched_epoch)

    def entry(self, offset: int) -> Entry:
        return self._entries[offset - self.log_start_offset]

    def entries(self, start: int, end: int) -> list[Entry]:
        """Entries in `[start, end)`, clipped to the log."""
        base = self.log_start_offset
        return self._entries[max(start, base) - base : max(end, base) - base]

    def append(self, entry: Entry) -> None:
        assert entry.offset == self.log_end_offset, (entry.offset, self.log_end_offset)
        assert entry.epoch >= self.last_fetched_epoch, (entry.epoch, self.last_fetched_epoch)
        if not self._epochs or entry.epoch > self._epochs[-1]:
            self._epochs.append(entry.epoch)
            self._epoch_starts.append(entry.offset)
        self._entries.append(entry)

    def truncate_to(self, offset: int) -> None:
        """Remove every entry at `offset` and above."""
        assert offset >= self.log_start_offset, (offset, self.log_start_offset)
        del self._entries[offset - self.log_start_offset :]
        while self._epoch_starts and self._epoch_starts[-1] >= offset:
            self._epochs.pop()
            self._epoch_starts.pop()

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Drop the whole log and start after `snapshot` (a follower catching up)."""
        self.snapshot = snapshot
        self.log_start_offset = snapshot.snapshot_id.end_offset
        self._entries = []
        self._epochs = []
        self._epoch_starts = []

    def take_snapshot(self, snapshot: Snapshot) -> None:
        """Record a snapshot made locally at a committed offset and delete the log prefix
        it covers."""
        end = snapshot.snapshot_id.end_offset
        assert self.log_start_offset <= end <= self.log_end_offset
        kept = self._entries[end - self.log_start_offset :]
        self.install_snapshot(snapshot)
        for entry in kept:
            self.append(entry)

    def end_offset_for_epoch(self, epoch: int) -> OffsetAndEpoch:
        """The largest epoch <= `epoch` this log knows and the offset where it ends
        (the start of the next epoch, or the log end offset): Kafka's endOffsetForEpoch."""
        index = bisect.bisect_right(self._epochs, epoch)
        if index == 0:
            if self.snapshot is not None and self.snapshot.snapshot_id.epoch <= epoch:
                first = self._epoch_starts[0] if self._epoch_starts else self.log_end_offset
                return OffsetAndEpoch(first, self.snapshot.snapshot_id.epoch)
            first = self._epoch_starts[0] if self._epoch_starts else self.log_start_offset
            return OffsetAndEpoch(first if epoch >= 0 else self.log_start_offset, -1)
        found = self._epochs[index - 1]
        end = self._epoch_starts[index] if index < len(self._epochs) else self.log_end_offset
        return OffsetAndEpoch(end, found)

    def validate_offset_and_epoch(self, offset: int, epoch: int) -> ValidOffsetAndEpoch:
        """Kafka's validateOffsetAndEpoch: may a fetcher whose log ends at `offset` with
        last epoch `epoch` continue from `offset`? Otherwise where it diverges, or that it
        needs the snapshot."""
        if self.log_start_offset == 0 and offset == 0:
            return ValidOffsetAndEpoch("valid", OffsetAndEpoch(0, 0))
        snapshot = self.snapshot
        if snapshot is not None and (
            offset < self.log_start_offset
            or (offset == self.log_start_offset and epoch != snapshot.snapshot_id.epoch)
            or epoch < snapshot.snapshot_id.epoch
        ):
            return ValidOffsetAndEpoch("snapshot", snapshot.snapshot_id)
        end = self.end_offset_for_epoch(epoch)
        if end.epoch != epoch or end.end_offset < offset:
            return ValidOffsetAndEpoch("diverging", end)
        return ValidOffsetAndEpoch("valid", OffsetAndEpoch(offset, epoch))
