"""Which segments retention deletes (PURE: metadata in, base offsets out).

Rules (Kafka's UnifiedLog.deleteOldSegments), applied oldest segment first:

- The active (last) segment is never deleted, nor a segment holding offsets at or
  above the high watermark (consumers and followers may still need it).
- A segment wholly below the log start offset is deleted (DeleteRecords moved it).
- With `cleanup.policy` containing delete:
  - time: a segment whose newest timestamp is older than `now_ms - retention.ms`;
  - size: while the log exceeds `retention.bytes`, the oldest segments whose removal
    keeps it at or above the limit.
- Deletion stops at the first segment that is kept: retention removes a prefix, so
  the log stays contiguous and the new log start offset is the first kept base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ottla.storage.config import LogConfig

__all__ = ["SegmentInfo", "segments_to_delete"]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What retention needs to know of one segment."""

    base_offset: int
    next_offset: int
    size_bytes: int
    max_timestamp_ms: int
    """Largest batch max-timestamp; the file's mtime when no batch carries one."""


def segments_to_delete(
    segments: Sequence[SegmentInfo],
    config: LogConfig,
    *,
    now_ms: int,
    log_start_offset: int,
    high_watermark: int,
) -> list[SegmentInfo]:
    """The prefix of `segments` (oldest first, active last) that retention removes."""
    doomed: list[SegmentInfo] = []
    excess_bytes = (
        sum(segment.size_bytes for segment in segments) - config.retention_bytes
        if config.delete_enabled and config.retention_bytes >= 0
        else -1
    )
    for segment in segments[:-1]:
        if segment.next_offset > high_watermark:
            break
        below_start = segment.next_offset <= log_start_offset
        too_old = (
            config.delete_enabled
            and config.retention_ms >= 0
            and now_ms - segment.max_timestamp_ms > config.retention_ms
        )
        too_big = excess_bytes >= segment.size_bytes
        if not (below_start or too_old or too_big):
            break
        doomed.append(segment)
        excess_bytes -= segment.size_bytes
    return doomed
