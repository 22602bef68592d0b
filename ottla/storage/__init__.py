"""ottla.storage: partition logs on disk (synchronous files; no asyncio, no network).

`Log` is one partition directory of mmap-backed segments with Kafka's semantics:
append, read by offset or timestamp, truncation, DeleteRecords, retention,
compaction (`compact`, run off the event loop) and crash recovery. See
docs/storage.md for the on-disk layout.
"""

from ottla.storage.checkpoints import (
    HIGH_WATERMARK_FILE,
    fsync_directory,
    read_checkpoint,
    write_checkpoint,
    write_file_atomically,
)
from ottla.storage.cleaner import (
    CleanerJob,
    CleanerResult,
    abort_clean,
    clean,
    commit_clean,
    compact,
    prepare_clean,
)
from ottla.storage.config import LogConfig
from ottla.storage.epoch_cache import LeaderEpochCache
from ottla.storage.log import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AppendInfo,
    Log,
    LogReadResult,
    OffsetOutOfRangeError,
    sync_file,
)
from ottla.storage.retention import SegmentInfo, segments_to_delete
from ottla.storage.segment import CorruptSegmentError, LogSegment, MapBudget, ReadLease

__all__ = [
    "EARLIEST_TIMESTAMP",
    "HIGH_WATERMARK_FILE",
    "LATEST_TIMESTAMP",
    "AppendInfo",
    "CleanerJob",
    "CleanerResult",
    "CorruptSegmentError",
    "LeaderEpochCache",
    "Log",
    "LogConfig",
    "LogReadResult",
    "LogSegment",
    "MapBudget",
    "OffsetOutOfRangeError",
    "ReadLease",
    "SegmentInfo",
    "abort_clean",
    "clean",
    "commit_clean",
    "compact",
    "fsync_directory",
    "prepare_clean",
    "read_checkpoint",
    "segments_to_delete",
    "sync_file",
    "write_checkpoint",
    "write_file_atomically",
]
