"""The replica manager: every partition this broker hosts, over `storage.Log`.

A `Partition` owns its log, its idempotent-producer state, its leader epoch and
high watermark, and the waiters of delayed fetches ("data arrived" futures).
Appends run synchronously on the event loop — validation is O(1) Python work per
batch (one header unpack and a hardware CRC) and the copy into the mmap'd segment
is one memcpy — so there is no await between checking producer state and appending
(house rule 7).

On a single node the high watermark is the log end offset; the replication issue
moves it with the in-sync replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from ottla.broker.producer_state import ProducerStateManager
from ottla.protocol import (
    ErrorCode,
    ProtocolError,
    RecordBatchView,
    TimestampType,
    decode_records,
    iter_batches,
)
from ottla.storage import Log, LogConfig, LogReadResult, sync_file

__all__ = ["AppendOutcome", "Partition", "ReplicaManager"]

log = structlog.get_logger("ottla.partitions")

_PRODUCER_SNAPSHOT = "producer-state.json"


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """Result of a produce to one partition (Kafka's PartitionProduceResponse)."""

    error_code: ErrorCode = ErrorCode.none
    error_message: str | None = None
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1


class Partition:
    """One hosted partition: log, producer state, epoch, high watermark, waiters."""

    def __init__(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        log_: Log,
        config: LogConfig,
        topic_configs: dict[str, str],
        leader_epoch: int,
    ) -> None:
        self.topic = topic
        self.index = index
        self.topic_id = topic_id
        self.log = log_
        self.config = config
        self.topic_configs = topic_configs
        self.leader_epoch = leader_epoch
        self.producers = ProducerStateManager()
        self._waiters: list[asyncio.Future[None]] = []
        self._rebuild_producer_state()

    # -- state ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.index}"

    @property
    def log_start_offset(self) -> int:
        return int(self.log.log_start_offset)

    @property
    def log_end_offset(self) -> int:
        return int(self.log.log_end_offset)

    @property
    def high_watermark(self) -> int:
        return int(self.log.log_end_offset)

    @property
    def last_stable_offset(self) -> int:
        return self.high_watermark

    @property
    def compacted(self) -> bool:
        return "compact" in self.topic_configs.get("cleanup.policy", "delete")

    @property
    def log_append_time(self) -> bool:
        return self.topic_configs.get("message.timestamp.type") == "LogAppendTime"

    def _snapshot_path(self) -> Path:
        return Path(self.log.directory) / _PRODUCER_SNAPSHOT

    def _rebuild_producer_state(self) -> None:
        """Producer state from the snapshot (if it matches) plus a replay of the tail."""
        start = self.log_start_offset
        path = self._snapshot_path()
        try:
            data = json.loads(path.read_text())
            if int(data["log_end_offset"]) <= self.log_end_offset:
                self.producers.restore(data["producers"])
                start = int(data["log_end_offset"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:
            log.warning("producer_snapshot_ignored", partition=self.name, error=str(error))
            self.producers.truncate()
        for batch in self.log.iter_batch_headers(start):
            self.producers.replay(batch)

    def write_producer_snapshot(self) -> None:
        """Persist producer state (atomic rename) so a restart replays less."""
        path = self._snapshot_path()
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {"log_end_offset": self.log_end_offset, "producers": self.producers.snapshot()}
            )
        )
        temporary.replace(path)

    # -- produce -------------------------------------------------------------------------

    def append_records(self, records: bytes, now_ms: int) -> AppendOutcome:
        """Validate and append a produce request's records for this partition."""
        try:
            batches = list(iter_batches(records))
        except ProtocolError as error:
            return AppendOutcome(error.error_code, str(error))
        if not batches:
            return AppendOutcome(ErrorCode.invalid_record, "Produce request holds no records")
        for batch in batches:
            problem = self._check_batch(batch, now_ms)
            if problem is not None:
                return problem
        first_offset = -1
        append_time = -1
        for batch in batches:
            check = self.producers.check(batch)
            if check.duplicate is not None:
                if first_offset < 0:
                    first_offset = check.duplicate.first_offset
                continue
            if check.error_code is not ErrorCode.none:
                return AppendOutcome(check.error_code, check.message)
            stored = batch
            if self.log_append_time:
                stored = RecordBatchView(bytearray(batch.bytes_view()))
                stored.set_log_append_time(now_ms)
                append_time = now_ms
            try:
                appended = self.log.append(stored, leader_epoch=self.leader_epoch, now_ms=now_ms)
            except ProtocolError as error:
                return AppendOutcome(error.error_code, str(error))
            except OSError as error:
                # Disk full or an I/O error: Kafka answers KAFKA_STORAGE_ERROR (the
                # client retries) rather than dropping the connection.
                log.error("append_failed", partition=self.name, error=str(error))
                return AppendOutcome(ErrorCode.kafka_storage_error, f"Cannot append: {error}")
            self.producers.record(stored, appended.first_offset)
            if first_offset < 0:
                first_offset = appended.first_offset
        self.wake_waiters()
        return AppendOutcome(
            base_offset=first_offset,
            log_append_time_ms=append_time,
            log_start_offset=self.log_start_offset,
        )

    def _check_batch(self, batch: RecordBatchView, now_ms: int) -> AppendOutcome | None:
        if batch.size > self.config.max_message_bytes:
            return AppendOutcome(
                ErrorCode.message_too_large,
                f"The record batch of {batch.size} bytes is larger than the topic's "
                f"max.message.bytes ({self.config.max_message_bytes})",
            )
        if batch.is_control:
            return AppendOutcome(ErrorCode.invalid_record, "Clients may not write control batches")
        if batch.records_count <= 0 or batch.last_offset_delta != batch.records_count - 1:
            return AppendOutcome(
                ErrorCode.invalid_record,
                f"Batch has records_count {batch.records_count} and last_offset_delta "
                f"{batch.last_offset_delta}",
            )
        if self.compacted:
            try:
                records = decode_records(batch)
            except ProtocolError as error:
                return AppendOutcome(error.error_code, str(error))
            if any(record.key is None for record in records):
                return AppendOutcome(
                    ErrorCode.invalid_record,
                    f"Compacted topic cannot accept message without key in topic partition "
                    f"{self.name}.",
                )
        if batch.timestamp_type is TimestampType.LOG_APPEND_TIME and not self.log_append_time:
            return AppendOutcome(
                ErrorCode.invalid_timestamp, "Clients may not send LogAppendTime batches"
            )
        return None

    # -- fetch ---------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, min_one_batch: bool) -> LogReadResult | None:
        """Whole batches from `offset` below the high watermark, under a lease; None if empty."""
        result = self.log.read(
            offset, max_bytes, max_offset=self.high_watermark, min_one_message=min_one_batch
        )
        if not result.records.nbytes:
            result.release()
            return None
        return result

    def epoch_for_offset(self, offset: int) -> int:
        """Leader epoch of the batch holding `offset` (from the leader-epoch cache)."""
        epoch = -1
        for entry_epoch, start in self.log.epoch_cache.entries:
            if start > offset:
                break
            epoch = entry_epoch
        return epoch

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the batch with the largest timestamp (ListOffsets -3)."""
        best: tuple[int, int] | None = None
        for batch in self.log.iter_batch_headers():
            if best is None or batch.max_timestamp > best[1]:
                best = (batch.base_offset, batch.max_timestamp)
        return best

    def add_waiter(self, future: asyncio.Future[None]) -> None:
        """Resolve `future` when the next batch is appended (a delayed fetch waits on it)."""
        self._waiters.append(future)

    def wake_waiters(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def remove_waiter(self, future: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(future)


def _sync_sealed_off_loop(log_: Log) -> Callable[[Path, int], None]:
    """`Log.on_seal` for the broker: fsync a rolled segment in a worker thread.

    Sealing a 1 GiB segment means syncing up to 1 GiB of dirty pages, about half a
    second on the event loop (every connection would stall); Kafka flushes rolled
    segments asynchronously too. The recovery point follows once the sync is done.
    """
    loop = asyncio.get_running_loop()

    def on_seal(path: Path, next_offset: int) -> None:
        future = loop.run_in_executor(None, sync_file, path)

        def synced(done: asyncio.Future[None]) -> None:
            if done.cancelled() or log_.closed:
                return
            error = done.exception()
            if error is not None:
                log.error("segment_sync_failed", path=str(path), error=repr(error))
                return
            log_.seal_synced(next_offset)

        future.add_done_callback(synced)

    return on_seal


class ReplicaManager:
    """All partitions of this broker, keyed by (topic, partition)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.partitions: dict[tuple[str, int], Partition] = {}

    def get(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def __iter__(self) -> Iterator[Partition]:
        return iter(list(self.partitions.values()))

    def open_partition(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        topic_configs: dict[str, str],
        leader_epoch: int,
        now_ms: int,
    ) -> Partition:
        existing = self.partitions.get((topic, index))
        if existing is not None:
            existing.config = config
            existing.topic_configs = topic_configs
            existing.log.update_config(config)
            existing.leader_epoch = leader_epoch
            return existing
        directory = self.data_dir / f"{topic}-{index}"
        log_ = Log.open(directory, config, now_ms=now_ms)
        log_.on_seal = _sync_sealed_off_loop(log_)
        partition = Partition(topic, index, topic_id, log_, config, topic_configs, leader_epoch)
        self.partitions[(topic, index)] = partition
        return partition

    def remove_topic(self, topic: str) -> None:
        """Close and delete every partition of `topic`."""
        for key in [k for k in self.partitions if k[0] == topic]:
            partition = self.partitions.pop(key)
            partition.wake_waiters()
            partition.log.delete()
        for directory in self.data_dir.glob(f"{topic}-*"):
            suffix = directory.name[len(topic) + 1 :]
            if suffix.isdigit() and directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        """Snapshot producer state and close every log, in parallel threads.

        Closing a log costs a few fsyncs (the active segment, its trim, the
        checkpoints); one after another that was ~50 ms per partition on a slow
        disk (450 partitions: 25 s). Logs share nothing but the map budget, which
        is locked, so they close concurrently and the fsyncs overlap.
        """
        partitions = list(self)
        if partitions:
            workers = min(_CLOSE_THREADS_MAX, len(partitions))
            with ThreadPoolExecutor(workers, thread_name_prefix="log-close") as pool:
                for partition, error in zip(
                    partitions, pool.map(_close_partition, partitions), strict=True
                ):
                    if error is not None:
                        log.error("log_close_failed", partition=partition.name, error=error)
        self.partitions.clear()


_CLOSE_THREADS_MAX = 16


def _close_partition(partition: Partition) -> str | None:
    """Write the producer snapshot and close the log; the error text, if any."""
    try:
        partition.write_producer_snapshot()
    except OSError as error:
        log.warning("producer_snapshot_failed", partition=partition.name, error=str(error))
    try:
        partition.log.close()
    except Exception as error:  # a thread boundary: report, let the others close
        return repr(error)
    return None
