"""Leader-epoch cache of one partition: which leader epoch started at which offset.

Rules (Kafka's LeaderEpochFileCache):

- Entries `(epoch, start_offset)` strictly increase in both fields.
- `assign(epoch, start_offset)` is called for each appended batch's leader epoch; it
  adds an entry only when `epoch` is newer than the latest one (a batch of the current
  epoch changes nothing). An entry with a larger start offset than the new one is
  dropped first (it cannot be, but a follower's log is authoritative).
- `truncate_from_end(end_offset)`: a follower truncated its log; entries starting at
  or after `end_offset` go.
- `truncate_from_start(start_offset)`: the log start moved; entries wholly below it
  go, and the earliest survivor is moved up to `start_offset`.
- `end_offset_for(epoch)` answers OffsetForLeaderEpoch: the start offset of the first
  epoch after `epoch` (or the log end offset when `epoch` is the latest), together
  with the largest epoch <= the requested one. An epoch older than every entry ends
  where the first entry starts, and is answered as itself: whatever a replica holds
  of it is not in this log (its data may have been removed, or it was written by a
  leader whose writes this log never had). Undefined (-1, -1) only for an empty cache.

The cache is written to `leader-epoch-checkpoint` whenever it changes. A truncation
is made durable at once; a new epoch (`assign`, on the produce and replication path)
is only written, and made durable by `make_durable`, which the log calls before it
moves its recovery point (Kafka's KAFKA-15046: two fsyncs per partition per
leadership change on the request path stalled every request behind them on a busy
disk). A crash may lose such an entry only above the recovery point, and an unclean
open rebuilds those from the batches it scans (`Log._load_epoch_cache`).
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path
from typing import Final

from ottla.storage.checkpoints import LEADER_EPOCH_FILE, read_checkpoint, write_checkpoint

__all__ = ["UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "LeaderEpochCache"]

UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1


class LeaderEpochCache:
    """epoch -> start offset for one partition, checkpointed in its directory."""

    def __init__(self, directory: Path, entries: list[tuple[int, int]] | None = None) -> None:
        self.path = directory / LEADER_EPOCH_FILE
        self._unsynced = False  # written since the last fsync (`make_durable`)
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for epoch, start_offset in entries or ():
            self._epochs.append(epoch)
            self._starts.append(start_offset)

    @classmethod
    def load(cls, directory: Path) -> LeaderEpochCache | None:
        """The checkpointed cache, or None when missing or damaged (rebuild from the log)."""
        rows = read_checkpoint(directory / LEADER_EPOCH_FILE, width=2)
        if rows is None:
            return None
        entries = [(row[0], row[1]) for row in rows]
        for (epoch_a, start_a), (epoch_b, start_b) in itertools.pairwise(entries):
            if epoch_b <= epoch_a or start_b < start_a:
                return None
        return cls(directory, entries)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts, strict=True))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    def save(self) -> None:
        """Write the checkpoint, durably."""
        write_checkpoint(self.path, self.entries)
        self._unsynced = False

    def make_durable(self) -> None:
        """fsync what `assign` wrote without (the log's flush calls this first)."""
        if self._unsynced:
            self.save()

    def assign(self, epoch: int, start_offset: int, *, persist: bool = True) -> bool:
        """Record that `epoch` starts at `start_offset`; True if the cache changed."""
        if epoch < 0 or (self._epochs and epoch <= self._epochs[-1]):
            return False
        while self._starts and self._starts[-1] >= start_offset:
            self._epochs.pop()
            self._starts.pop()
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        if persist:
            write_checkpoint(self.path, self.entries, sync=False)
            self._unsynced = True
        return True

    def truncate_from_end(self, end_offset: int, *, persist: bool = True) -> None:
        keep = bisect.bisect_left(self._starts, end_offset)
        if keep < len(self._starts):
            del self._epochs[keep:], self._starts[keep:]
            if persist:
                self.save()

    def truncate_from_start(self, start_offset: int, *, persist: bool = True) -> None:
        # The last entry starting at or below start_offset survives, moved up to it.
        first = bisect.bisect_right(self._starts, start_offset) - 1
        if first < 0 or (first == 0 and self._starts[0] == start_offset):
            return
        del self._epochs[:first], self._starts[:first]
        self._starts[0] = start_offset
        if persist:
            self.save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= `epoch`, end offset of that epoch), as OffsetForLeaderEpoch
        (an epoch older than every entry: itself, ending where the first one starts)."""
        if not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch < self._epochs[0]:
            return epoch, self._starts[0]
        if epoch >= self._epochs[-1]:
            return self._epochs[-1], log_end_offset
        index = bisect.bisect_right(self._epochs, epoch) - 1
        return self._epochs[index], self._starts[index + 1]
