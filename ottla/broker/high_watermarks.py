"""The high-watermark checkpoint: `replication-offset-checkpoint` in the data directory,
as Kafka keeps one per log directory.

A partition's high watermark lives in memory: the leader's replication state, a
follower's copy of what its leader said. Without a record of it, a restarted replica
started from a guess: a follower from its log end offset (a tail that may never have
been committed, which it would count as committed if elected before it fetched), a
leader with followers from its log start (ListOffsets "latest" answered the log start
until the ISR fetched again). Kafka starts both from the checkpoint, written every
`replica.high.watermark.checkpoint.interval.ms` (5 s) and at shutdown, and so does
ottla (`Partition.restore_high_watermark`). A value lower than the truth is safe: it
only rises as the ISR fetches. The file never holds more than was committed when it was
written, and the restored value is kept within the log's bounds.

Entries are (topic id as an integer, partition index, high watermark), keyed by topic id
so that a topic deleted and re-created under its old name never inherits the old one's
watermark. The file is written atomically and checksummed (storage/checkpoints.py); a
damaged one is reported and ignored, and the partitions start as if there were none.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from ottla.broker.partitions import Partition
from ottla.storage import HIGH_WATERMARK_FILE, read_checkpoint, write_checkpoint

__all__ = ["Entries", "entries", "load", "save"]

Entries = list[tuple[int, int, int]]

# The periodic write runs in a thread; the one at shutdown must not interleave with it
# (both write the same temporary file).
_writing = threading.Lock()


def load(data_dir: Path) -> dict[tuple[uuid.UUID, int], int]:
    """{(topic id, partition): high watermark} of the last checkpoint ({} if none)."""
    found = read_checkpoint(data_dir / HIGH_WATERMARK_FILE, width=3) or []
    restored: dict[tuple[uuid.UUID, int], int] = {}
    for topic_id, index, high_watermark in found:
        if 0 <= topic_id < 2**128 and high_watermark >= 0:
            restored[(uuid.UUID(int=topic_id), index)] = high_watermark
    return restored


def entries(partitions: Iterable[Partition]) -> Entries:
    """The checkpoint's entries: every partition that took a replication role."""
    return sorted((p.topic_id.int, p.index, p.high_watermark) for p in partitions if p.has_role)


def save(data_dir: Path, checkpoint: Entries) -> None:
    """Replace the checkpoint with `checkpoint` (fsynced: blocking, run off the loop)."""
    with _writing:
        write_checkpoint(data_dir / HIGH_WATERMARK_FILE, checkpoint)
