"""Per-topic log settings (`LogConfig`), with Kafka's names and defaults.

Each field is a Kafka topic config with the dots spelled as underscores
(`segment.bytes` -> `segment_bytes`); `from_properties` parses the string form a
CreateTopics / AlterConfigs request or a properties file carries, and names the bad key
in its `ValueError`. Keys storage does not use (`compression.type`, ...) are ignored:
the broker owns the full topic-config registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["CLEANUP_POLICIES", "LONG_MAX", "LogConfig"]

LONG_MAX: Final = 2**63 - 1
CLEANUP_POLICIES: Final = frozenset({"delete", "compact"})
_INT_MAX: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The settings a partition log honours (defaults are Kafka's)."""

    segment_bytes: int = 1024 * 1024 * 1024
    """`segment.bytes`: roll the active segment before it would exceed this size."""
    segment_ms: int = 7 * 24 * 3600 * 1000
    """`segment.ms`: roll when the active segment's first batch is this much older."""
    segment_index_bytes: int = 10 * 1024 * 1024
    """`segment.index.bytes`: capacity of each index file (a full index rolls)."""
    index_interval_bytes: int = 4096
    """`index.interval.bytes`: log bytes between two sparse index entries."""
    retention_ms: int = 7 * 24 * 3600 * 1000
    """`retention.ms`: delete segments whose newest timestamp is older (-1: never)."""
    retention_bytes: int = -1
    """`retention.bytes`: delete oldest segments while the log is larger (-1: never)."""
    cleanup_policy: frozenset[str] = frozenset({"delete"})
    """`cleanup.policy`: any of {"delete", "compact"}."""
    min_compaction_lag_ms: int = 0
    """`min.compaction.lag.ms`: a record stays uncompacted at least this long."""
    delete_retention_ms: int = 24 * 3600 * 1000
    """`delete.retention.ms`: how long compaction keeps a tombstone."""
    max_message_bytes: int = 1024 * 1024 + 12
    """`max.message.bytes`: largest batch (log overhead included) append accepts."""
    flush_messages: int = LONG_MAX
    """`flush.messages`: fsync after this many records (default: leave it to the OS)."""
    flush_ms: int = LONG_MAX
    """`flush.ms`: fsync when the last flush is this old (default: leave it to the OS)."""

    @property
    def delete_enabled(self) -> bool:
        return "delete" in self.cleanup_policy

    @property
    def compact_enabled(self) -> bool:
        return "compact" in self.cleanup_policy

    def __post_init__(self) -> None:
        _check_range("segment.bytes", self.segment_bytes, 14, _INT_MAX)
        _check_range("segment.ms", self.segment_ms, 1, LONG_MAX)
        _check_range("segment.index.bytes", self.segment_index_bytes, 12, _INT_MAX)
        _check_range("index.interval.bytes", self.index_interval_bytes, 0, _INT_MAX)
        _check_range("retention.ms", self.retention_ms, -1, LONG_MAX)
        _check_range("retention.bytes", self.retention_bytes, -1, LONG_MAX)
        _check_range("min.compaction.lag.ms", self.min_compaction_lag_ms, 0, LONG_MAX)
        _check_range("delete.retention.ms", self.delete_retention_ms, 0, LONG_MAX)
        _check_range("max.message.bytes", self.max_message_bytes, 0, _INT_MAX)
        _check_range("flush.messages", self.flush_messages, 1, LONG_MAX)
        _check_range("flush.ms", self.flush_ms, 0, LONG_MAX)
        if not self.cleanup_policy or not self.cleanup_policy <= CLEANUP_POLICIES:
            raise ValueError(
                f"cleanup.policy: {sorted(self.cleanup_policy)} is not a non-empty subset "
                f"of {sorted(CLEANUP_POLICIES)}"
            )

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str], base: LogConfig | None = None
    ) -> LogConfig:
        """Parse Kafka topic-config strings over `base` (defaults when None)."""
        changes: dict[str, object] = {}
        for key, text in properties.items():
            field = _FIELD_BY_KEY.get(key)
            if field is None:
                continue
            if field == "cleanup_policy":
                policies = frozenset(part.strip() for part in text.split(",") if part.strip())
                if not policies or not policies <= CLEANUP_POLICIES:
                    raise ValueError(f"{key}: {text!r} is not a list of delete, compact")
                changes[field] = policies
                continue
            try:
                changes[field] = int(text.strip())
            except ValueError:
                raise ValueError(f"{key}: {text!r} is not an integer") from None
        return dataclasses.replace(base or cls(), **changes)  # type: ignore[arg-type]


_FIELD_BY_KEY: Final = {
    field.name.replace("_", "."): field.name for field in dataclasses.fields(LogConfig)
}


def _check_range(key: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key}: {value!r} is outside [{low}, {high}]")
