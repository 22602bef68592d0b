"""Idempotent producer state of one partition (PURE).

Rules, as Kafka's ProducerStateManager/ProducerAppendInfo apply them to a batch
carrying a producer id (`producer_id >= 0`):

- epoch lower than the producer's current epoch -> INVALID_PRODUCER_EPOCH;
- epoch higher (a bump): the first sequence must be 0, unless the producer had no
  epoch yet -> else OUT_OF_ORDER_SEQUENCE_NUMBER; the batch cache restarts;
- same epoch: a batch whose (first, last) sequence matches one of the last five
  appended batches is a duplicate: it is not appended again and the producer gets
  the original batch's offsets with no error (what Kafka answers); otherwise the
  first sequence must follow the last one (wrapping at 2**31 - 1 -> 0) ->
  else OUT_OF_ORDER_SEQUENCE_NUMBER;
- a producer with no state (new, or forgotten after retention/expiry) is accepted
  at any sequence (KIP-360).

The state is rebuilt from batch headers (`replay`) when a log is opened, so a
restarted broker still recognises a retried duplicate; `snapshot`/`restore`
persist it so a restart replays only the log's tail.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ottla.protocol import ErrorCode, RecordBatchView

__all__ = ["BatchMetadata", "ProducerEntry", "ProducerStateManager", "SequenceCheck"]

CACHED_BATCHES = 5
_SEQUENCE_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    timestamp_ms: int


@dataclass(slots=True)
class ProducerEntry:
    producer_epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=CACHED_BATCHES))
    last_timestamp_ms: int = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1


@dataclass(frozen=True, slots=True)
class SequenceCheck:
    """Outcome of checking a batch: an error, a duplicate's original, or fine."""

    error_code: ErrorCode = ErrorCode.none
    message: str | None = None
    duplicate: BatchMetadata | None = None


_OK = SequenceCheck()


def _in_sequence(last: int, first: int) -> bool:
    return first == last + 1 or (first == 0 and last == _SEQUENCE_MAX)


class ProducerStateManager:
    """producer_id -> ProducerEntry for one partition; one owner (the partition)."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, batch: RecordBatchView) -> SequenceCheck:
        """Validate `batch` against the producer's state, without changing it."""
        producer_id = batch.producer_id
        if producer_id < 0:
            return _OK
        entry = self.producers.get(producer_id)
        if entry is None:
            return _OK
        epoch = batch.producer_epoch
        if epoch < entry.producer_epoch:
            return SequenceCheck(
                ErrorCode.invalid_producer_epoch,
                f"Epoch of producer {producer_id} at offset ... is {epoch}, which is smaller "
                f"than the last seen epoch {entry.producer_epoch}",
            )
        first = batch.base_sequence
        if epoch > entry.producer_epoch:
            if first != 0 and entry.producer_epoch >= 0:
                return SequenceCheck(
                    ErrorCode.out_of_order_sequence_number,
                    f"Invalid sequence number for new epoch of producer {producer_id}: "
                    f"{epoch} (request epoch), {first} (seq. number), "
                    f"{entry.producer_epoch} (current producer epoch)",
                )
            return _OK
        last = batch.last_sequence
        for cached in entry.batches:
            if cached.first_sequence == first and cached.last_sequence == last:
                return SequenceCheck(duplicate=cached)
        if entry.batches and not _in_sequence(entry.last_sequence, first):
            return SequenceCheck(
                ErrorCode.out_of_order_sequence_number,
                f"Out of order sequence number for producer {producer_id}: {first} "
                f"(incoming seq. number), {entry.last_sequence} (current end sequence number)",
            )
        return _OK

    def record(self, batch: RecordBatchView, base_offset: int | None = None) -> None:
        """Remember an appended batch; `base_offset` is where the log put it."""
        producer_id = batch.producer_id
        if producer_id < 0:
            return
        entry = self.producers.get(producer_id)
        if entry is None or batch.producer_epoch != entry.producer_epoch:
            entry = ProducerEntry(batch.producer_epoch)
            self.producers[producer_id] = entry
        first_offset = batch.base_offset if base_offset is None else base_offset
        if batch.base_sequence >= 0 and not batch.is_control:
            entry.batches.append(
                BatchMetadata(
                    batch.base_sequence,
                    batch.last_sequence,
                    first_offset,
                    first_offset + batch.last_offset_delta,
                    batch.max_timestamp,
                )
            )
        entry.last_timestamp_ms = batch.max_timestamp

    def replay(self, batch: RecordBatchView) -> None:
        """Apply a batch read back from the log (recovery): no checks."""
        self.record(batch)

    def truncate(self) -> None:
        """Forget everything (the log was truncated; the caller replays what remains)."""
        self.producers.clear()

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle longer than `expiration_ms`; returns how many."""
        idle = [
            pid
            for pid, entry in self.producers.items()
            if entry.last_timestamp_ms >= 0 and now_ms - entry.last_timestamp_ms > expiration_ms
        ]
        for pid in idle:
            del self.producers[pid]
        return len(idle)

    def snapshot(self) -> list[dict[str, Any]]:
        """A JSON-able copy of the state, for the producer snapshot file."""
        return [
            {
                "producer_id": pid,
                "producer_epoch": entry.producer_epoch,
                "last_timestamp_ms": entry.last_timestamp_ms,
                "batches": [
                    [
                        b.first_sequence,
                        b.last_sequence,
                        b.first_offset,
                        b.last_offset,
                        b.timestamp_ms,
                    ]
                    for b in entry.batches
                ],
            }
            for pid, entry in self.producers.items()
        ]

    def restore(self, data: list[dict[str, Any]]) -> None:
        """Replace the state with a snapshot's."""
        self.producers.clear()
        for item in data:
            entry = ProducerEntry(int(item["producer_epoch"]))
            entry.last_timestamp_ms = int(item["last_timestamp_ms"])
            for values in item["batches"]:
                entry.batches.append(BatchMetadata(*(int(v) for v in values)))
            self.producers[int(item["producer_id"])] = entry
