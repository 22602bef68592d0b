"""The replica manager: every partition this broker hosts, over `storage.Log`.

A `Partition` owns its log, its idempotent-producer state, its leader epoch and
high watermark, and the waiters of delayed fetches ("data arrived" callbacks).
Appends run synchronously on the event loop — validation is O(1) Python work per
batch (one header unpack and a hardware CRC) and the copy into the mmap'd segment
is one memcpy — so there is no await between checking producer state and appending
(house rule 7).

Replication (issue 7): a partition is a leader, a follower or neither (leader -1),
per the metadata image (`set_role`). A leader keeps a `cluster.replication.LeaderState`:
its high watermark is the minimum log end offset over the ISR (with an ISR of one,
e.g. a single node, it is the log end offset), moved by its own appends and by
followers' fetches (`follower_fetched`); acks=all produces wait on `on_acks_all`
callbacks, called when the watermark passes their batch (no polling). Waiters are
called synchronously, from the append or fetch that woke them, so a produce response
or a follower's fetch response leaves in the same event-loop turn as its cause. A follower appends
the leader's batches as they are (`append_as_follower`: offsets and epochs kept,
producer state replayed) and takes its high watermark from the leader's responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ottla.broker import partition_dirs
from ottla.broker.producer_state import ProducerStateManager
from ottla.cluster import LeaderState
from ottla.protocol import (
    ErrorCode,
    ProtocolError,
    RecordBatchView,
    TimestampType,
    decode_records,
    iter_batches,
)
from ottla.storage import Log, LogConfig, LogReadResult, sync_file

__all__ = [
    "AppendOutcome",
    "Partition",
    "ReplicaManager",
    "open_partition_log",
]

log = structlog.get_logger("ottla.partitions")

_PRODUCER_SNAPSHOT = "producer-state.json"
_NO_ROLE = -2
_LONG_MAX = 2**63 - 1
_BEFORE_MAX = "message.timestamp.before.max.ms"
_AFTER_MAX = "message.timestamp.after.max.ms"


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """Result of a produce to one partition (Kafka's PartitionProduceResponse)."""

    error_code: ErrorCode = ErrorCode.none
    error_message: str | None = None
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    last_offset: int = -1
    # (index in the batch, why) of each record that failed validation (KIP-467).
    record_errors: tuple[tuple[int, str], ...] = ()


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
        self.topic_configs = topic_configs  # sets timestamp_bounds too
        self.leader_epoch = leader_epoch
        self.producers = ProducerStateManager()
        # Delayed fetches: consumers' wake when the high watermark moves, followers'
        # when a batch is appended (a watermark move gives them nothing to read).
        self._waiters: list[Callable[[], None]] = []
        self._replica_waiters: list[Callable[[], None]] = []
        # Replication: None until the image names a role (a partition alone is a leader
        # whose high watermark is its log end offset).
        self.replication: LeaderState | None = None
        self.follower_of = -1  # the leader this replica follows, -1 when not a follower
        self.role: tuple[int, int] = (_NO_ROLE, -1)  # (leader, leader epoch) last applied
        self.isr: tuple[int, ...] = ()
        self._follower_high_watermark = 0
        # The high watermark the checkpoint held when this replica was opened (0: none):
        # where it starts on taking its first role (broker/high_watermarks.py).
        self._restored_high_watermark = 0
        self._acks_waiters: list[tuple[int, Callable[[ErrorCode], None]]] = []
        # Leader: the follower fetch sessions this partition is idle in (fetch_sessions.py)
        # -> that follower's id; told (and emptied) at any change.
        self._idle_in: dict[Any, int] = {}
        # Told when the disk refuses this leader's append (the broker decides whether to
        # stop so that another in-sync replica leads: Broker.log_dir_failed).
        self.on_storage_error: Callable[[Partition, OSError], None] | None = None
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
        state = self.replication
        if state is not None:
            return state.high_watermark
        if self.role[0] != _NO_ROLE:  # a follower, or offline (leader -1)
            return min(self._follower_high_watermark, int(self.log.log_end_offset))
        return int(self.log.log_end_offset)

    @property
    def has_role(self) -> bool:
        """A leader, follower or offline replica per the image (not just opened)."""
        return self.role[0] != _NO_ROLE

    def restore_high_watermark(self, offset: int) -> None:
        """The checkpointed high watermark of this replica, read at startup."""
        self._restored_high_watermark = offset

    def _starting_high_watermark(self) -> int:
        """A replica's high watermark when it takes its first role after opening: the
        checkpoint's, within the log (never its log end: that tail may be uncommitted)."""
        return min(max(self._restored_high_watermark, self.log_start_offset), self.log_end_offset)

    @property
    def min_insync_replicas(self) -> int:
        try:
            return int(self.topic_configs.get("min.insync.replicas", "1"))
        except ValueError:
            return 1

    # -- replication ---------------------------------------------------------------------

    def become_leader(
        self,
        node_id: int,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        partition_epoch: int,
        now_ms: int,
    ) -> None:
        """This node leads from `leader_epoch` on: follower state starts fresh; the high
        watermark starts where this replica knew it to be (never above what the ISR has)."""
        self.leader_epoch = leader_epoch
        self.follower_of = -1
        self.isr = isr
        # Opened at startup with other replicas: the watermark starts at the checkpoint's
        # (or the log start) and the ISR's fetches move it up.
        fresh = self.role[0] == _NO_ROLE and len(replicas) > 1
        start = self._starting_high_watermark() if fresh else self.high_watermark
        self._changed()  # sessions idle on the last term's follower state read it again
        self.replication = LeaderState(
            node_id, replicas, isr, partition_epoch, start, self.log_end_offset, now_ms
        )
        self._leader_appended()

    def update_leader_isr(
        self, replicas: tuple[int, ...], isr: tuple[int, ...], partition_epoch: int, now_ms: int
    ) -> None:
        """The committed ISR of a partition this node still leads changed."""
        state = self.replication
        assert state is not None
        self.isr = isr
        self._changed(wake=False)
        if state.update_isr(replicas, isr, partition_epoch, self.log_end_offset, now_ms):
            self._high_watermark_moved()
        else:
            self._complete_acks()  # a shrink may complete waiters with an error

    def become_follower(self, leader_id: int, leader_epoch: int, isr: tuple[int, ...]) -> None:
        """This node follows `leader_id` (or nobody, -1); waiting acks=all produces fail."""
        self._follower_high_watermark = (
            self.high_watermark if self.has_role else self._starting_high_watermark()
        )
        self.replication = None
        self.follower_of = leader_id
        self.leader_epoch = leader_epoch
        self.isr = isr
        waiters, self._acks_waiters = self._acks_waiters, []
        for _, callback in waiters:
            _call(callback, ErrorCode.not_leader_or_follower)
        self.wake_waiters()

    def follower_fetched(self, replica_id: int, fetch_offset: int, now_ms: int) -> None:
        """Leader: a follower's Fetch at `fetch_offset` (its log end offset)."""
        state = self.replication
        if state is not None and state.follower_fetched(
            replica_id, fetch_offset, self.log_end_offset, now_ms
        ):
            self._high_watermark_moved()

    def _leader_appended(self) -> bool:
        """Leader: its own append; True when that moved the high watermark (and woke
        the waiters)."""
        state = self.replication
        if state is not None and state.leader_appended(self.log_end_offset):
            self._high_watermark_moved()
            return True
        return False

    def _high_watermark_moved(self) -> None:
        self._complete_acks()
        self._wake(replicas=False)

    def _complete_acks(self) -> None:
        state = self.replication
        if state is None or not self._acks_waiters:
            return
        minimum = self.min_insync_replicas
        pending: list[tuple[int, Callable[[ErrorCode], None]]] = []
        finished: list[tuple[Callable[[ErrorCode], None], ErrorCode]] = []
        for last_offset, callback in self._acks_waiters:
            result = state.acks_all_result(last_offset, minimum)
            if result is None:
                pending.append((last_offset, callback))
            else:
                finished.append((callback, result))
        self._acks_waiters = pending
        for callback, result in finished:
            _call(callback, result)

    def enough_replicas_for_acks_all(self) -> bool:
        state = self.replication
        return state is None or state.enough_replicas(self.min_insync_replicas)

    def on_acks_all(self, last_offset: int, callback: Callable[[ErrorCode], None]) -> bool:
        """False if `last_offset` is below the high watermark already (answer now, see
        `acks_all_result_now`), else True: `callback(error code)` is called once it is,
        or when leadership ends (until `forget_acks_waiter(callback)`)."""
        state = self.replication
        if state is None:
            return False
        if state.acks_all_result(last_offset, self.min_insync_replicas) is not None:
            return False
        self._acks_waiters.append((last_offset, callback))
        return True

    def acks_all_result_now(self, last_offset: int) -> ErrorCode:
        state = self.replication
        if state is None:
            return ErrorCode.none
        return state.acks_all_result(last_offset, self.min_insync_replicas) or ErrorCode.none

    def forget_acks_waiter(self, callback: Callable[[ErrorCode], None]) -> None:
        """Stop waiting: `callback` was given to `on_acks_all`."""
        self._acks_waiters = [(o, c) for o, c in self._acks_waiters if c is not callback]

    def append_as_follower(
        self, records: memoryview | bytes, high_watermark: int, now_ms: int
    ) -> int:
        """Follower: append the leader's batches as they are; the number of bytes kept."""
        size = len(records)
        if size:
            self.log.append(records, now_ms=now_ms, assign_offsets=False)
            # The log checked every batch's length and CRC: replay without a second pass.
            for batch in iter_batches(records, validate=False):
                self.producers.replay(batch)
        self._follower_high_watermark = max(self._follower_high_watermark, high_watermark)
        return size

    def truncate_to(self, offset: int) -> None:
        """Follower: drop a divergent tail at and after `offset`; producer state replays."""
        if offset >= self.log_end_offset:
            return
        self.log.truncate_to(offset)
        self._follower_high_watermark = min(self._follower_high_watermark, self.log_end_offset)
        self.producers.truncate()
        with contextlib.suppress(FileNotFoundError):
            self._snapshot_path().unlink()
        self._rebuild_producer_state()

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
            # Views over a memoryview: storage then slices each batch without making one.
            batches = list(iter_batches(memoryview(records)))
        except ProtocolError as error:
            return AppendOutcome(error.error_code, str(error))
        if not batches:
            return AppendOutcome(ErrorCode.invalid_record, "Produce request holds no records")
        for batch in batches:
            problem = self._check_batch(batch, now_ms)
            if problem is not None:
                return problem
        first_offset = -1
        last_offset = -1
        append_time = -1
        for batch in batches:
            check = self.producers.check(batch)
            if check.duplicate is not None:
                if first_offset < 0:
                    first_offset = check.duplicate.first_offset
                last_offset = check.duplicate.last_offset
                continue
            if check.error_code is not ErrorCode.none:
                return AppendOutcome(check.error_code, check.message)
            stored = batch
            if self.log_append_time:
                stored = RecordBatchView(bytearray(batch.bytes_view()))
                stored.set_log_append_time(now_ms)
                append_time = now_ms
            try:
                base_offset = self.log.append_batch(stored, now_ms, self.leader_epoch)
            except ProtocolError as error:
                return AppendOutcome(error.error_code, str(error))
            except OSError as error:
                # Disk full or an I/O error: Kafka answers KAFKA_STORAGE_ERROR (the
                # client retries) rather than dropping the connection.
                log.error("append_failed", partition=self.name, error=str(error))
                if self.on_storage_error is not None:
                    _call(self.on_storage_error, self, error)
                return AppendOutcome(ErrorCode.kafka_storage_error, f"Cannot append: {error}")
            self.producers.record(stored, base_offset)
            if first_offset < 0:
                first_offset = base_offset
            last_offset = base_offset + stored.last_offset_delta
        self._wake(replicas=True)
        if not self._leader_appended() and self.replication is None:
            self.wake_waiters()  # no replication state: the watermark is the log end
        return AppendOutcome(
            base_offset=first_offset,
            last_offset=last_offset,
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
        if batch.timestamp_type is TimestampType.LOG_APPEND_TIME and not self.log_append_time:
            return AppendOutcome(
                ErrorCode.invalid_timestamp, "Clients may not send LogAppendTime batches"
            )
        bounds = None if self.log_append_time else self.timestamp_bounds
        if self.compacted or bounds is not None:
            return self._check_records(batch, now_ms, bounds)
        return None

    @property
    def topic_configs(self) -> dict[str, str]:
        """The topic's effective configs (broker defaults overlaid with its own)."""
        return self._topic_configs

    @topic_configs.setter
    def topic_configs(self, configs: dict[str, str]) -> None:
        self._topic_configs = configs
        # (before, after) from `message.timestamp.before.max.ms`/`after.max.ms`, or None
        # when neither bounds anything (both Long.MAX, Kafka's defaults, which the
        # effective configs list): then no batch pays for decoding its records.
        try:
            before = int(configs.get(_BEFORE_MAX, _LONG_MAX))
            after = int(configs.get(_AFTER_MAX, _LONG_MAX))
        except ValueError:
            before = after = _LONG_MAX
        unbounded = before >= _LONG_MAX and after >= _LONG_MAX
        self.timestamp_bounds: tuple[int, int] | None = None if unbounded else (before, after)

    def _check_records(
        self, batch: RecordBatchView, now_ms: int, bounds: tuple[int, int] | None
    ) -> AppendOutcome | None:
        """Kafka's per-record checks (LogValidator): a key on every record of a compacted
        topic; on CreateTime topics with `message.timestamp.before.max.ms`/`after.max.ms`
        set, every timestamp within [now - before, now + after]. Every failing record is
        listed (KIP-467: its index in the batch and why, Produce v8+ `record_errors`);
        the batch is refused with INVALID_TIMESTAMP if a timestamp failed, else
        INVALID_RECORD, with Kafka's messages."""
        try:
            records = decode_records(batch)
        except ProtocolError as error:
            return AppendOutcome(error.error_code, str(error))
        compacted = self.compacted
        low, high = (now_ms - bounds[0], now_ms + bounds[1]) if bounds is not None else (0, 0)
        errors: list[tuple[int, str]] = []
        bad_timestamp = False
        for index, record in enumerate(records):
            if compacted and record.key is None:
                errors.append(
                    (
                        index,
                        "Compacted topic cannot accept message without key in topic partition "
                        f"{self.name}.",
                    )
                )
                continue
            timestamp = batch.base_timestamp + record.timestamp_delta
            if bounds is not None and timestamp != -1 and not low <= timestamp <= high:
                bad_timestamp = True
                errors.append(
                    (
                        index,
                        f"Timestamp {timestamp} of message with offset {record.offset_delta} is "
                        f"out of range. The timestamp should be within [{low}, {high}]",
                    )
                )
        if not errors:
            return None
        if bad_timestamp:
            return AppendOutcome(
                ErrorCode.invalid_timestamp,
                "One or more records have been rejected due to invalid timestamp",
                record_errors=tuple(errors),
            )
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
        return AppendOutcome(
            ErrorCode.invalid_record,
            f"One or more records have been rejected due to {len(errors)} record errors in "
            f"total, and only showing the first three errors at most: [{shown}]",
            record_errors=tuple(errors),
        )

    # -- fetch ---------------------------------------------------------------------------

    def read(
        self, offset: int, max_bytes: int, min_one_batch: bool, max_offset: int | None = None
    ) -> LogReadResult | None:
        """Whole batches from `offset` below `max_offset` (default: the high watermark;
        followers read to the log end), under a lease; None if empty."""
        result = self.log.read(
            offset,
            max_bytes,
            max_offset=self.high_watermark if max_offset is None else max_offset,
            min_one_message=min_one_batch,
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

    def add_waiter(self, callback: Callable[[], None], replica: bool = False) -> None:
        """Call `callback` once, when there may be more to read (a delayed fetch waits on
        it): a follower's (`replica`) at the next append, a consumer's at the next
        high-watermark move; any waiter when leadership changes or the partition goes."""
        (self._replica_waiters if replica else self._waiters).append(callback)

    def wake_waiters(self) -> None:
        """Call (and forget) every waiter, at once: a delayed fetch answers from here."""
        self._wake(replicas=True)
        self._wake(replicas=False)

    def mark_idle(self, session: Any, replica_id: int) -> bool:
        """Leader: follower `replica_id`'s fetch session (a `FetchSession`) leaves this
        partition out until it changes; False (nothing done) if that follower may not
        (not in sync)."""
        state = self.replication
        if state is None or not state.follower_idle(replica_id, session.clock):
            return False
        if len(self._idle_in) >= len(state.followers):  # drop closed sessions first
            self._idle_in = {s: r for s, r in self._idle_in.items() if not s.closed}
        self._idle_in[session] = replica_id
        session.partition_idle((self.topic, self.index))
        return True

    def session_forgot(self, session: Any) -> None:
        """A follower's session no longer fetches this partition: if it was idle there,
        that follower is caught up only as of the session's fetches so far."""
        replica_id = self._idle_in.pop(session, None)
        state = self.replication
        if replica_id is not None and state is not None:
            state.follower_active(replica_id)

    def log_start_moved(self) -> None:
        """Retention or DeleteRecords moved the log start: followers hear of it."""
        self._changed(wake=False)

    def _changed(self, wake: bool = True) -> None:
        """Anything a follower's fetch would report changed: idle sessions read it
        again, at once (`wake`: records to send, a leadership change) or at their next
        fetch (a high-watermark, ISR or log-start move: a parked follower fetch is not
        answered for those; it is woken at this partition's next append instead)."""
        if not self._idle_in:
            return
        idle, self._idle_in = self._idle_in, {}
        state = self.replication
        key = (self.topic, self.index)
        for session, replica_id in idle.items():
            if state is not None:
                state.follower_active(replica_id)
            try:
                waker = session.partition_changed(key, wake)
            except Exception as error:
                log.error("partition_waiter_failed", error=repr(error), exc_info=error)
                continue
            if waker is not None and waker not in self._replica_waiters:
                self._replica_waiters.append(waker)

    def _wake(self, replicas: bool) -> None:
        """Call (and forget) the followers' or the consumers' waiters."""
        self._changed(wake=replicas)
        if replicas:
            waiters, self._replica_waiters = self._replica_waiters, []
        else:
            waiters, self._waiters = self._waiters, []
        for callback in waiters:
            _call(callback)

    def remove_waiter(self, callback: Callable[[], None]) -> None:
        for waiters in (self._waiters, self._replica_waiters):
            if callback in waiters:  # not after a wake, which took the list
                waiters.remove(callback)


def _call(callback: Callable[..., None], *args: object) -> None:
    """Call a waiter; its failure is logged, never raised into the append or fetch
    that woke it."""
    try:
        callback(*args)
    except Exception as error:
        log.error("partition_waiter_failed", error=repr(error), exc_info=error)


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
        self.on_storage_error: Callable[[Partition, OSError], None] | None = None
        # {(topic id, partition): high watermark} from the checkpoint read at startup,
        # each taken by the partition's first opening (broker/high_watermarks.py).
        self.restored_high_watermarks: dict[tuple[uuid.UUID, int], int] = {}
        # Directories whose partition.metadata is written but not yet fsynced: synced
        # in a worker thread, a batch per event-loop turn (partition_dirs docstring).
        self._unsynced_topic_ids = _TurnBatches(sync_topic_ids, "partition_metadata_sync")
        # Partitions a worker thread is opening now (broker/partition_opener.py): their
        # directories are that thread's until it is done, so removals leave them be.
        self.opening: set[tuple[str, int]] = set()
        # Renamed directories of deleted partitions, removed in a worker thread.
        self._doomed = _TurnBatches(partition_dirs.remove_trees, "partition_dir_removal")

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
        log_, unsynced = open_partition_log(
            self.data_dir / f"{topic}-{index}", topic_id, config, now_ms
        )
        partition = Partition(topic, index, topic_id, log_, config, topic_configs, leader_epoch)
        return self.register(partition, unsynced=unsynced)

    def register(self, partition: Partition, *, unsynced: bool = False) -> Partition:
        """Host a partition whose log `open_partition_log` opened (here or in a worker
        thread, broker/partition_opener.py); `unsynced`: its partition.metadata is to
        be fsynced (in a worker thread, with this loop turn's others)."""
        log_ = partition.log
        if unsynced:
            self._unsynced_topic_ids.add(log_.directory)
        log_.on_seal = _sync_sealed_off_loop(log_)
        partition.on_storage_error = self.on_storage_error
        restored = self.restored_high_watermarks.pop((partition.topic_id, partition.index), None)
        if restored is not None:
            partition.restore_high_watermark(restored)
        self.partitions[(partition.topic, partition.index)] = partition
        return partition

    def remove_partition(self, topic: str, index: int) -> None:
        """Close and delete one partition (this broker no longer replicates it)."""
        partition = self.partitions.pop((topic, index), None)
        if partition is not None:
            partition.wake_waiters()
            partition.log.delete(remove_files=False)
        directory = self.data_dir / f"{topic}-{index}"
        if (topic, index) not in self.opening:
            self._delete_later(directory)

    def remove_topic(self, topic: str) -> None:
        """Close and delete every partition of `topic`."""
        for key in [k for k in self.partitions if k[0] == topic]:
            partition = self.partitions.pop(key)
            partition.wake_waiters()
            partition.log.delete(remove_files=False)
        for directory in self.data_dir.glob(f"{topic}-*"):
            suffix = directory.name[len(topic) + 1 :]
            if not suffix.isdigit() or (topic, int(suffix)) in self.opening:
                continue
            self._delete_later(directory)

    def _delete_later(self, directory: Path) -> None:
        """Rename the directory now (its name is free at once) and remove it in a
        worker thread, a batch per event-loop turn (partition_dirs docstring). A
        directory the disk will not rename stays (logged): the rest of the metadata
        change still applies, and at the next start the directory is set aside as a
        stray, or a same-named topic's first open sets it aside."""
        try:
            doomed = partition_dirs.mark_for_deletion(directory)
        except OSError as error:
            log.error("partition_delete_failed", directory=str(directory), error=str(error))
            return
        if doomed is not None:
            self._doomed.add(doomed)

    def close(self) -> None:
        """Snapshot producer state and close every log, in parallel threads.

        Closing a log costs a few fsyncs (the active segment, its trim, the
        checkpoints); one after another that was ~50 ms per partition on a slow
        disk (450 partitions: 25 s). Logs share nothing but the map budget, which
        is locked, so they close concurrently and the fsyncs overlap.
        """
        self._doomed.drain()
        self._unsynced_topic_ids.drain()
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


def open_partition_log(
    directory: Path, topic_id: uuid.UUID, config: LogConfig, now_ms: int
) -> tuple[Log, bool]:
    """Open (or create) one partition's log directory: the event loop's part of
    `open_partition`, or a worker thread's. True with it if partition.metadata was
    written and still needs an fsync (`sync_topic_ids`)."""
    partition_dirs.claim(directory, topic_id)  # a same-named old topic's dir goes aside
    log_ = Log.open(directory, config, now_ms=now_ms)
    return log_, partition_dirs.record(directory, topic_id, durable=False)


def sync_topic_ids(directories: list[Path]) -> None:
    for directory in directories:
        partition_dirs.sync_topic_id(directory)


class _TurnBatches:
    """Directories collected during one event-loop turn, handed to `job` as one batch
    in a worker thread at the end of the turn (file-system work that must not hold
    the loop); `drain` runs what is pending in place (at close). A failure is logged
    as `<what>_failed`."""

    def __init__(self, job: Callable[[list[Path]], None], what: str) -> None:
        self.job = job
        self.what = what
        self._pending: list[Path] = []

    def add(self, directory: Path) -> None:
        self._pending.append(directory)
        if len(self._pending) == 1:  # the first of this turn's batch
            asyncio.get_running_loop().call_soon(self._hand_off)

    def _hand_off(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            future = asyncio.get_running_loop().run_in_executor(None, self.job, batch)
            future.add_done_callback(self._report)

    def _report(self, future: asyncio.Future[None]) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            log.error(f"{self.what}_failed", error=repr(error))

    def drain(self) -> None:
        batch, self._pending = self._pending, []
        try:
            self.job(batch)
        except OSError as error:
            log.error(f"{self.what}_failed", error=repr(error))


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
