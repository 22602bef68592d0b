"""The group coordinator shell: futures, one timer, `__consumer_offsets` I/O.

It makes no Kafka decisions (those are in `state.py`); for every request it:

1. hands the input to `GroupCoordinatorState` with `now_ms` (and, for JoinGroup, a
   fresh random member id suffix) and gets `Effects` back;
2. persists `effects.records` to the group's partition of `__consumer_offsets`
   (synchronous appends on the event loop, so nothing interleaves);
3. resolves the futures of delayed JoinGroup/SyncGroup requests named by
   `effects.replies`;
4. arms one timer (`loop.call_at`) for `effects.deadline_ms`, whose callback runs
   `tick` through the same steps.

`__consumer_offsets` is created on first use (FindCoordinator or the first record
to persist) with `offsets.topic.num.partitions` partitions, `cleanup.policy=compact`
and a replication factor of `offsets.topic.replication.factor` capped by the live
brokers (a single node serves itself). A group lives in partition
`(java_string_hashcode(group_id) & 0x7fffffff) % partitions`, as in Kafka.

Coordination follows partition leadership (Kafka's onElection / onResignation): after
startup (`load()`, once the metadata log has caught up) and on every image change
(`on_image`), the groups of each `__consumer_offsets` partition this node has just
become leader of are read from its log (to the log end: the latest record per key
wins, tombstones delete), and those of each partition it no longer leads (or leads in
a new leader epoch, which another leader may have held in between) are unloaded,
their waiting JoinGroup/SyncGroup answered NOT_COORDINATOR. A request for a group
whose partition this node does not lead answers NOT_COORDINATOR, and before `load()`
COORDINATOR_LOAD_IN_PROGRESS (`coordinator_error`). While `__consumer_offsets` does
not exist yet, this node serves every group (the topic is created by the first write).

Group writes are acks=all writes, as in Kafka: the replies of a request (and the
`_apply` future handlers await) are held until the high watermark of the partition
passed the appended records, or fail after `GROUP_WRITE_TIMEOUT_MS` or on a lost
leadership, with Kafka's coordinator error translation (`group_write_error`).

Simplification: a failed write is not rolled back from the in-memory state (Kafka's
coordinator runtime reverts to a snapshot); the request is answered with the error.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.clocks import steady_wall_clock
from ottla.broker.groups.consumer_records import (
    ConsumerGroupKey,
    ConsumerGroupValue,
    decode_consumer_key,
    decode_consumer_value,
    encode_consumer_key,
    encode_consumer_value,
)
from ottla.broker.groups.consumer_state import ConsumerGroupConfig
from ottla.broker.groups.record_fields import RecordDecodeError
from ottla.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_value,
    encode_key,
    encode_offset_commit_value,
)
from ottla.broker.groups.state import (
    CoordinatorRecord,
    Effects,
    GroupConfig,
    GroupCoordinatorState,
    JoinRequest,
    JoinResult,
    SyncResult,
)
from ottla.cluster import MetadataRecord, NewTopic, TopicDefaults, create_topics
from ottla.protocol import (
    SUPPORTED_APIS,
    ErrorCode,
    ProtocolError,
    Record,
    build_batch,
    decode_records,
    iter_batches,
    make,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.partitions import Partition
    from ottla.cluster import MetadataImage

__all__ = [
    "GROUP_WRITE_TIMEOUT_MS",
    "OFFSETS_TOPIC",
    "GroupCoordinator",
    "group_write_error",
    "java_string_hashcode",
]

log = structlog.get_logger("ottla.groups")

OFFSETS_TOPIC = "__consumer_offsets"
_LOAD_READ_BYTES = 4 * 1024 * 1024
# Kafka's offsets.commit.timeout.ms default: how long a group write waits for its ISR.
GROUP_WRITE_TIMEOUT_MS = 5000

# A group write waiting for one partition's ISR: the partition, a future resolved
# with its acks=all result, and the callback registered for it (to forget it).
_Wait = tuple["Partition", "asyncio.Future[ErrorCode]", Callable[[ErrorCode], None]]


def _wait_acks_all(partition: Partition, last_offset: int) -> _Wait | None:
    """`Partition.on_acks_all` as a future; None when the answer is known now."""
    future: asyncio.Future[ErrorCode] = asyncio.get_running_loop().create_future()

    def resolve(code: ErrorCode) -> None:
        if not future.done():
            future.set_result(code)

    if not partition.on_acks_all(last_offset, resolve):
        return None
    return partition, future, resolve


def group_write_error(code: ErrorCode, offset_commit: bool = False) -> ErrorCode:
    """The error a group request answers for a failed `__consumer_offsets` append
    (Kafka's CoordinatorRuntime / GroupMetadataManager translation)."""
    if code in (
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.not_enough_replicas,
        ErrorCode.not_enough_replicas_after_append,
        ErrorCode.request_timed_out,
    ):
        return ErrorCode.coordinator_not_available
    if code in (ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error):
        return ErrorCode.not_coordinator
    if code in (
        ErrorCode.message_too_large,
        ErrorCode.record_list_too_large,
        ErrorCode.invalid_fetch_size,
    ):
        return (
            ErrorCode.invalid_commit_offset_size
            if offset_commit
            else ErrorCode.unknown_server_error
        )
    return code


def java_string_hashcode(text: str) -> int:
    """Java's `String.hashCode()` (over UTF-16 code units, int32 arithmetic)."""
    value = 0
    encoded = text.encode("utf-16-be")
    for index in range(0, len(encoded), 2):
        value = (31 * value + ((encoded[index] << 8) | encoded[index + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def group_config(broker: Broker) -> GroupConfig:
    config = broker.config
    return GroupConfig(
        initial_rebalance_delay_ms=int(config.get("group.initial.rebalance.delay.ms")),
        min_session_timeout_ms=int(config.get("group.min.session.timeout.ms")),
        max_session_timeout_ms=int(config.get("group.max.session.timeout.ms")),
        max_size=int(config.get("group.max.size")),
        offsets_retention_ms=int(config.get("offsets.retention.minutes")) * 60_000,
        consumer=ConsumerGroupConfig(
            session_timeout_ms=int(config.get("group.consumer.session.timeout.ms")),
            heartbeat_interval_ms=int(config.get("group.consumer.heartbeat.interval.ms")),
            max_size=int(config.get("group.consumer.max.size")),
            assignors=tuple(_names(config.get("group.consumer.assignors"))),
        ),
    )


def _names(value: object) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


class GroupCoordinator:
    """Owns the classic groups of this node and turns their effects into I/O."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        # Sessions and rebalance deadlines, commit and state timestamps (clocks.py):
        # a wall clock stepped back would keep a dead member for as long as it went.
        self.clock = steady_wall_clock(broker.clock, broker.monotonic_clock)
        self.state = GroupCoordinatorState(group_config(broker))
        self._tokens = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline_ms: int | None = None
        self._creating: asyncio.Future[Any] | None = None
        self._stopped = False
        self._loaded = False  # set by load(), once the metadata log has caught up
        # `__consumer_offsets` partitions whose groups are loaded -> their leader epoch.
        self._led: dict[int, int] = {}
        self._writes: set[asyncio.Future[ErrorCode]] = set()

    # -- the offsets topic ---------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        topic = self.broker.image.topic(OFFSETS_TOPIC)
        if topic is not None:
            return len(topic.partitions)
        return int(self.broker.config.get("offsets.topic.num.partitions"))

    def partition_for(self, group_id: str) -> int:
        return (java_string_hashcode(group_id) & 0x7FFFFFFF) % self.num_partitions

    def topic_missing(self) -> bool:
        return self.broker.image.topic(OFFSETS_TOPIC) is None

    def ensure_topic_soon(self) -> None:
        """Create `__consumer_offsets` if it is missing: at once on the leader of a quorum
        of one (so the write that needs it proceeds), else in the background."""
        if not self.topic_missing() or self._creating is not None:
            return
        if self.broker.raft is not None and self.broker.raft.is_leader:
            records = self._offsets_topic_records()
            if not records:
                return
            future = self.broker.propose_metadata_nowait(records)
            if future.done():
                return
            self._creating = future
        else:
            self._creating = asyncio.ensure_future(self.ensure_topic())
        self._creating.add_done_callback(self._created)

    def _created(self, task: asyncio.Future[Any]) -> None:
        self._creating = None
        if not task.cancelled() and task.exception() is not None:
            log.error("offsets_topic_not_created", error=repr(task.exception()))

    async def ensure_topic(self) -> None:
        """Create `__consumer_offsets` if it is missing: through the controller rules on
        the active controller, or a CreateTopics request to it from another node."""
        if not self.topic_missing():
            return
        broker = self.broker
        if broker.controller.is_active:
            records = self._offsets_topic_records()
            if records:
                await broker.append_metadata(records)
                log.info("offsets_topic_created")
            return
        spec = SUPPORTED_APIS[19]
        module = spec.request_module(spec.max_version)
        live = len(broker.live_broker_ids())
        replication = max(min(int(broker.config.get("offsets.topic.replication.factor")), live), 1)
        body = make(
            spec.request_type(spec.max_version),
            topics=(
                make(
                    module.CreatableTopic,
                    name=OFFSETS_TOPIC,
                    num_partitions=int(broker.config.get("offsets.topic.num.partitions")),
                    replication_factor=replication,
                    assignments=(),
                    configs=tuple(
                        make(module.CreatableTopicConfig, name=name, value=value)
                        for name, value in (
                            ("cleanup.policy", "compact"),
                            (
                                "segment.bytes",
                                str(broker.config.get("offsets.topic.segment.bytes")),
                            ),
                        )
                    ),
                ),
            ),
            timeout=datetime.timedelta(seconds=30),
            validate_only=False,
        )
        await broker.controller.call(body)

    def _offsets_topic_records(self) -> list[MetadataRecord]:
        broker = self.broker
        live = broker.live_broker_ids()
        replication = min(int(broker.config.get("offsets.topic.replication.factor")), len(live))
        new_topic = NewTopic(
            OFFSETS_TOPIC,
            num_partitions=int(broker.config.get("offsets.topic.num.partitions")),
            replication_factor=max(replication, 1),
            configs={
                "cleanup.policy": "compact",
                "segment.bytes": str(broker.config.get("offsets.topic.segment.bytes")),
            },
        )
        records, results = create_topics(
            broker.image,
            [new_topic],
            TopicDefaults(num_partitions=1, replication_factor=1),
            live,
            lambda _name, _value: None,
            uuid.uuid4,
            placement_start=len(broker.image.topics_by_name),
        )
        if not records:
            log.error("offsets_topic_not_created", error=results[0].error_message)
        return records

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Start coordinating: load the groups of every `__consumer_offsets` partition
        this node leads (at startup, once the metadata log has caught up)."""
        self._loaded = True
        self.on_image(self.broker.image)

    def on_image(self, image: MetadataImage) -> None:
        """Follow the leadership of `__consumer_offsets` partitions per `image`."""
        if not self._loaded or self._stopped:
            return
        topic = image.topic(OFFSETS_TOPIC)
        node_id = self.broker.node_id
        hosted = self.broker.replicas.get
        # A partition still being opened (partition_opener.py) is loaded once it is.
        led = (
            {}
            if topic is None
            else {
                i: p.leader_epoch
                for i, p in topic.partitions.items()
                if p.leader == node_id and hosted(OFFSETS_TOPIC, i) is not None
            }
        )
        resigned = {i for i, epoch in self._led.items() if led.get(i) != epoch}
        elected = sorted(i for i, epoch in led.items() if self._led.get(i) != epoch)
        if resigned:
            gone = [g for g in self.state.groups if self.partition_for(g) in resigned]
            for index in resigned:
                del self._led[index]
            self._apply(self.state.unload(gone))
            log.info("groups_unloaded", partitions=sorted(resigned), groups=len(gone))
        for index in elected:
            self._led[index] = led[index]
            self._load_partition(index, led[index])
        if elected:
            self._arm(self.state.next_deadline_ms())

    def coordinator_error(self, group_id: str) -> ErrorCode:
        """none if this node coordinates `group_id`, else NOT_COORDINATOR (another node
        leads its partition) or COORDINATOR_LOAD_IN_PROGRESS (still starting)."""
        if not self._loaded:
            return ErrorCode.coordinator_load_in_progress
        index = self.partition_for(group_id)
        if self.topic_missing() or index in self._led:
            return ErrorCode.none
        if self.broker.leader_of(OFFSETS_TOPIC, index)[0] == self.broker.node_id:
            return ErrorCode.coordinator_load_in_progress  # its partition is still opening
        return ErrorCode.not_coordinator

    def _load_partition(self, index: int, leader_epoch: int) -> None:
        """Restore the groups of one partition from its log (Kafka's onElection). Groups
        already in memory (served before the topic existed) are kept."""
        metadata: dict[str, GroupMetadataValue | None] = {}
        offsets: dict[str, dict[tuple[str, int], OffsetCommitValue | None]] = {}
        consumer: dict[str, dict[ConsumerGroupKey, ConsumerGroupValue | None]] = {}
        count = 0
        for key, value in self._read_partition(index):
            count += 1
            try:
                decoded = decode_key(key)
                if isinstance(decoded, OffsetCommitKey):
                    entry = None if value is None else decode_offset_commit_value(value)
                    group_offsets = offsets.setdefault(decoded.group, {})
                    group_offsets[(decoded.topic, decoded.partition)] = entry
                elif isinstance(decoded, GroupMetadataKey):
                    group = None if value is None else decode_group_metadata_value(value)
                    metadata[decoded.group] = group
                elif (consumer_key := decode_consumer_key(key)) is not None:
                    consumer_value = (
                        None if value is None else decode_consumer_value(consumer_key, value)
                    )
                    consumer.setdefault(consumer_key.group, {})[consumer_key] = consumer_value
            except RecordDecodeError as error:
                log.warning("offsets_record_skipped", partition=index, error=str(error))
        now = self.clock()
        loaded = 0
        present = set(self.state.groups)
        for group_id in sorted((set(metadata) | set(offsets)) - present):
            live_offsets = {k: v for k, v in offsets.get(group_id, {}).items() if v is not None}
            group_value = metadata.get(group_id)
            if group_value is None and not live_offsets:
                continue
            self.state.load(group_id, group_value, live_offsets, now)
            loaded += 1
        for group_id, values in sorted(consumer.items()):
            live = {k: v for k, v in values.items() if v is not None}
            if live and group_id not in present:
                self.state.load_consumer(group_id, live, now)
                loaded += 1
        log.info(
            "groups_loaded",
            partition=index,
            leader_epoch=leader_epoch,
            groups=loaded,
            records=count,
        )

    def _read_partition(self, index: int) -> Iterable[tuple[bytes, bytes | None]]:
        partition = self.broker.partition(OFFSETS_TOPIC, index)
        if partition is None:
            return
        offset = partition.log_start_offset
        while offset < partition.log_end_offset:
            result = partition.read(
                offset, _LOAD_READ_BYTES, True, max_offset=partition.log_end_offset
            )
            if result is None:
                return
            with result:
                data = bytes(result.records)
                next_offset = result.next_offset
            try:
                for batch in iter_batches(data):
                    if batch.is_control or batch.last_offset < offset:
                        continue
                    for record in decode_records(batch):
                        if record.key is not None:
                            yield record.key, record.value
            except ProtocolError as error:
                log.error("offsets_partition_unreadable", partition=index, error=str(error))
                return
            if next_offset <= offset:
                return
            offset = next_offset

    # -- requests ------------------------------------------------------------------------

    def join(self, group_id: str, request: JoinRequest) -> asyncio.Future[JoinResult]:
        token, future = self._waiter()
        self._apply(self.state.join(group_id, request, token, self.clock()))
        return future

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Sequence[tuple[str, bytes]],
    ) -> asyncio.Future[SyncResult]:
        token, future = self._waiter()
        effects = self.state.sync(
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignments,
            token,
            self.clock(),
        )
        self._apply(effects)
        return future

    def apply(self, effects: Effects) -> asyncio.Future[ErrorCode] | None:
        """Carry out the effects of a state call made by a handler; a future of the
        write's outcome (a Kafka error code, see `group_write_error`) if it appended
        records, for the handler to await before answering."""
        return self._apply(effects)

    @staticmethod
    def new_member_suffix() -> str:
        return str(uuid.uuid4())

    def _waiter(self) -> tuple[int, asyncio.Future[Any]]:
        token = next(self._tokens)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        return token, future

    # -- effects -------------------------------------------------------------------------

    def _apply(self, effects: Effects) -> asyncio.Future[ErrorCode] | None:
        durable = self._persist(effects.records) if effects.records else None
        if durable is None or (durable.done() and durable.result() is ErrorCode.none):
            self._reply(effects.replies, ErrorCode.none)
        elif effects.replies:
            replies = effects.replies
            durable.add_done_callback(lambda done: self._reply(replies, _outcome(done)))
        self._arm(effects.deadline_ms)
        return durable

    def _reply(
        self, replies: Sequence[tuple[int, JoinResult | SyncResult]], code: ErrorCode
    ) -> None:
        for token, result in replies:
            future = self._waiting.pop(token, None)
            if future is None or future.done():
                continue
            if code is ErrorCode.none:
                future.set_result(result)
            elif isinstance(result, JoinResult):
                future.set_result(JoinResult(group_write_error(code), result.member_id))
            else:
                future.set_result(SyncResult(group_write_error(code)))

    def _persist(self, records: Sequence[CoordinatorRecord]) -> asyncio.Future[ErrorCode]:
        """Append `records` to their partitions; a future of the outcome once every
        partition's high watermark passed them (Kafka appends group records acks=-1)."""
        self.ensure_topic_soon()
        topic_missing = self.topic_missing()
        now = self.clock()
        by_partition: dict[int, list[Record]] = {}
        for key, value in records:
            if isinstance(key, OffsetCommitKey | GroupMetadataKey):
                encoded_key = encode_key(key)
            else:
                encoded_key = encode_consumer_key(key)
            if value is None:
                encoded_value = None
            elif isinstance(value, OffsetCommitValue):
                encoded_value = encode_offset_commit_value(value)
            elif isinstance(value, GroupMetadataValue):
                encoded_value = encode_group_metadata_value(value)
            else:
                encoded_value = encode_consumer_value(value)
            index = self.partition_for(key.group)
            by_partition.setdefault(index, []).append(Record(encoded_key, encoded_value))
        code = ErrorCode.none
        waits: list[_Wait] = []
        for index, items in by_partition.items():
            partition = self.broker.partition(OFFSETS_TOPIC, index)
            if partition is None:
                log.error("offsets_partition_missing", partition=index)
                if not topic_missing:  # else served from memory until the topic exists
                    code = ErrorCode.not_leader_or_follower
                continue
            if not partition.enough_replicas_for_acks_all():
                code = ErrorCode.not_enough_replicas
                continue
            batch = build_batch(items, base_timestamp=now)
            outcome = partition.append_records(bytes(batch), now)
            if outcome.error_code.value != 0:
                log.error(
                    "offsets_append_failed",
                    partition=index,
                    error_code=outcome.error_code.name,
                    error=outcome.error_message,
                )
                code = outcome.error_code
                continue
            waiting = _wait_acks_all(partition, outcome.last_offset)
            if waiting is not None:
                waits.append(waiting)
            elif (now_code := partition.acks_all_result_now(outcome.last_offset)) is not (
                ErrorCode.none
            ):
                code = now_code
        if not waits or code is not ErrorCode.none:
            for partition, wait, callback in waits:
                partition.forget_acks_waiter(callback)
                wait.cancel()
            done: asyncio.Future[ErrorCode] = asyncio.get_running_loop().create_future()
            done.set_result(code)
            return done
        task = asyncio.ensure_future(self._wait_durable(waits))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    @staticmethod
    async def _wait_durable(waits: list[_Wait]) -> ErrorCode:
        await asyncio.wait([wait for _, wait, _ in waits], timeout=GROUP_WRITE_TIMEOUT_MS / 1000)
        code = ErrorCode.none
        for partition, wait, callback in waits:
            if wait.done() and not wait.cancelled():
                result = wait.result()
            else:
                partition.forget_acks_waiter(callback)
                wait.cancel()
                result = ErrorCode.request_timed_out
            if code is ErrorCode.none:
                code = result
        return code

    # -- the timer -----------------------------------------------------------------------

    def _arm(self, deadline_ms: int | None) -> None:
        if self._stopped or deadline_ms == self._timer_deadline_ms:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline_ms = deadline_ms
        if deadline_ms is None:
            return
        loop = asyncio.get_running_loop()
        delay_s = max(deadline_ms - self.clock(), 0) / 1000
        self._timer = loop.call_at(loop.time() + delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline_ms = None
        try:
            self._apply(self.state.tick(self.clock()))
        except Exception as error:  # a task boundary: log, keep the loop alive
            log.error("group_timer_failed", error=repr(error), exc_info=error)
            self._arm(self.state.next_deadline_ms())

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in list(self._waiting.values()):
            future.cancel()
        self._waiting.clear()
        for task in list(self._writes):
            task.cancel()


def _outcome(done: asyncio.Future[ErrorCode]) -> ErrorCode:
    if done.cancelled() or done.exception() is not None:
        return ErrorCode.not_coordinator
    return done.result()
