"""Produce v3-v13 (advertised from v0; v0-v2 answered UNSUPPORTED_VERSION).

Version notes: v13 names topics by id; v8+ has record_errors (KIP-467: each record
that failed a per-record check, by index in its batch) and error_message;
v5+ log_start_offset; v2+ log_append_time (ms, as a datetime in kio; -1 -> None).

The records of each partition stay bytes: `Partition.append_records` validates
each batch header and CRC and appends it, O(1) Python work per batch. acks=0 gets
no response; acks=1 is answered after the local append. acks=-1 (issue 7): refused
with NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`; after the
append it waits (a callback per partition, called when the high watermark moves, no
polling, no task) until the high watermark passes the batch's last offset — then answered
(NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below the minimum meanwhile) — or
until the request's timeout (REQUEST_TIMED_OUT) or the loss of leadership
(NOT_LEADER_OR_FOLLOWER). One replica: the high watermark is the log end offset.
Produce to an unknown topic auto-creates it when `auto.create.topics.enable`.
A partition this node does not lead answers NOT_LEADER_OR_FOLLOWER; from v10 (KIP-951)
with `current_leader` (id and epoch from the image) and the leader's `node_endpoints`.
Transactional produce lands with the transactions issue: its batches are appended
as they are, visible to read_uncommitted consumers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import (
    NO_THROTTLE,
    has_field,
    make,
    response_module,
    response_type,
)
from ottla.broker.handlers.metadata import broker_endpoints
from ottla.broker.partitions import AppendOutcome, Partition
from ottla.broker.server import Deferred
from ottla.cluster import INTERNAL_TOPICS, validate_topic_name
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_produce"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _record_errors(module: Any, outcome: AppendOutcome) -> tuple[Any, ...]:
    """KIP-467 (v8+): the records that made the batch fail, by index, and why."""
    if not outcome.record_errors or not hasattr(module, "BatchIndexAndErrorMessage"):
        return ()
    return tuple(
        make(module.BatchIndexAndErrorMessage, batch_index=index, batch_index_error_message=why)
        for index, why in outcome.record_errors
    )


def _timestamp(ms: int) -> datetime.datetime | None:
    return None if ms < 0 else _EPOCH + datetime.timedelta(milliseconds=ms)


def handle_produce(
    broker: Broker, connection: Connection, request: DecodedRequest, auto_created: bool = False
) -> Any:
    body = request.body
    module = response_module(request)
    acks = int(body.acks)
    now = broker.clock()
    by_id = request.api_version >= 13
    if acks not in (-1, 0, 1):
        outcome_for_all: AppendOutcome | None = AppendOutcome(
            ErrorCode.invalid_required_acks, f"Invalid required acks {acks}"
        )
    else:
        outcome_for_all = None
    missing = [
        t.name
        for t in body.topic_data
        if not by_id and broker.image.topic(t.name) is None and validate_topic_name(t.name) is None
    ]
    creatable = [name for name in missing if name not in INTERNAL_TOPICS]
    if (
        creatable
        and not auto_created
        and outcome_for_all is None
        and broker.config.get("auto.create.topics.enable")
    ):
        from ottla.broker.handlers.admin import auto_create_on_demand  # noqa: PLC0415

        return auto_create_on_demand(handle_produce, broker, connection, request, creatable)
    topics: list[tuple[Any, list[Any]]] = []
    leaders_named: set[int] = set()
    acks_all: _AcksAll | None = None
    for topic_data in body.topic_data:
        if by_id:
            topic = broker.image.topics_by_id.get(topic_data.topic_id)
            name = topic.name if topic else None
        else:
            name = topic_data.name
            topic = broker.image.topic(name)
        partitions: list[Any] = []
        for partition_data in topic_data.partition_data:
            index = int(partition_data.index)
            if outcome_for_all is not None:
                outcome = outcome_for_all
            elif topic is None and name is not None and validate_topic_name(name) is not None:
                outcome = AppendOutcome(ErrorCode.invalid_topic_exception, "Invalid topic name")
            elif topic is None:
                code = ErrorCode.unknown_topic_id if by_id else ErrorCode.unknown_topic_or_partition
                outcome = AppendOutcome(code, "This server does not host this topic-partition.")
            else:
                partition = broker.partition(topic.name, index)
                if partition is None:
                    code = broker.unhosted_error(topic.name, index)
                    outcome = AppendOutcome(
                        code,
                        "This server cannot open this topic-partition's log."
                        if code is ErrorCode.kafka_storage_error
                        else "This server does not host this topic-partition.",
                    )
                elif partition_data.records is None:
                    outcome = AppendOutcome(ErrorCode.invalid_record, "Null records")
                elif acks == -1 and not partition.enough_replicas_for_acks_all():
                    outcome = AppendOutcome(
                        ErrorCode.not_enough_replicas,
                        f"The size of the current ISR {list(partition.isr)} is insufficient "
                        f"to satisfy the min.isr requirement of {partition.min_insync_replicas} "
                        f"for partition {partition.name}",
                    )
                else:
                    outcome = partition.append_records(partition_data.records, now)
                    if acks == -1 and outcome.error_code is ErrorCode.none:
                        if acks_all is None:
                            acks_all = _AcksAll(broker, request, topics, leaders_named)
                        last = outcome.last_offset
                        if not acks_all.wait(partition, partitions, len(partitions), last):
                            code = partition.acks_all_result_now(last)
                            if code is not ErrorCode.none:
                                outcome = AppendOutcome(code, None, outcome.base_offset)
            current_leader = None
            if outcome.error_code is ErrorCode.not_leader_or_follower and topic is not None:
                leader_id, leader_epoch = broker.leader_of(topic.name, index)
                leaders_named.add(leader_id)
                if has_field(module.PartitionProduceResponse, "current_leader"):
                    current_leader = make(
                        module.LeaderIdAndEpoch, leader_id=leader_id, leader_epoch=leader_epoch
                    )
            extra = {} if current_leader is None else {"current_leader": current_leader}
            partitions.append(
                make(
                    module.PartitionProduceResponse,
                    **extra,
                    index=index,
                    error_code=outcome.error_code,
                    base_offset=outcome.base_offset,
                    log_append_time=_timestamp(outcome.log_append_time_ms),
                    log_start_offset=outcome.log_start_offset,
                    record_errors=_record_errors(module, outcome),
                    error_message=outcome.error_message,
                )
            )
        topics.append((topic_data, partitions))
    if acks == 0:
        return None
    if acks_all is not None and acks_all.waiting:
        return acks_all.start(max(int(body.timeout.total_seconds() * 1000), 0) / 1000)
    return _response(broker, request, topics, leaders_named)


class _AcksAll:
    """An acks=all produce waiting until every partition's high watermark passed its
    batch: answered from the callback of the last partition to get there (in the
    follower fetch that moved it), or by its timer (REQUEST_TIMED_OUT for the rest)."""

    def __init__(
        self,
        broker: Broker,
        request: DecodedRequest,
        topics: list[tuple[Any, list[Any]]],
        leaders_named: set[int],
    ) -> None:
        self.broker = broker
        self.request = request
        self.topics = topics
        self.leaders_named = leaders_named
        self.deferred = Deferred()
        self.deferred.on_cancel(self._forget_all)
        # Partitions waited for, by key: (its callback, the partition); the key indexes
        # `_slots`, (the topic's response list, the partition's position in it).
        self.waiting: dict[int, tuple[Callable[[ErrorCode], None], Partition]] = {}
        self._slots: list[tuple[list[Any], int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._started = False

    def wait(self, partition: Partition, partitions: list[Any], position: int, last: int) -> bool:
        """Wait for `partition` to reach `last`; False if its answer is known now."""
        key = len(self._slots)
        reached = functools.partial(self._reached, key)
        if not partition.on_acks_all(last, reached):
            return False
        self._slots.append((partitions, position))
        self.waiting[key] = (reached, partition)
        return True

    def start(self, timeout_s: float) -> Deferred:
        self._started = True
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._timed_out)
        return self.deferred

    def _reached(self, key: int, code: ErrorCode) -> None:
        if self.waiting.pop(key, None) is None:
            return
        _set_code(self._slots[key], code)
        if not self.waiting and self._started:
            self._answer()

    def _timed_out(self) -> None:
        for key, (callback, partition) in self.waiting.items():
            partition.forget_acks_waiter(callback)
            _set_code(self._slots[key], ErrorCode.request_timed_out)
        self.waiting.clear()
        self._answer()

    def _answer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            body = _response(self.broker, self.request, self.topics, self.leaders_named)
        except Exception as error:
            self.deferred.fail(error)
            return
        self.deferred.complete(body)

    def _forget_all(self) -> None:
        """The connection closed: stop waiting."""
        if self._timer is not None:
            self._timer.cancel()
        for callback, partition in self.waiting.values():
            partition.forget_acks_waiter(callback)
        self.waiting.clear()


def _set_code(slot: tuple[list[Any], int], code: ErrorCode) -> None:
    partitions, position = slot
    if code is not ErrorCode.none:
        partitions[position] = dataclasses.replace(
            partitions[position], error_code=code, error_message=None
        )


def _response(
    broker: Broker,
    request: DecodedRequest,
    parts: list[tuple[Any, list[Any]]],
    leaders_named: set[int],
) -> Any:
    module = response_module(request)
    by_id = request.api_version >= 13
    topics = [
        make(
            module.TopicProduceResponse,
            name=topic_data.name if not by_id else None,
            topic_id=topic_data.topic_id if by_id else None,
            partition_responses=tuple(partitions),
        )
        for topic_data, partitions in parts
    ]
    endpoints = ()
    if leaders_named and has_field(response_type(request), "node_endpoints"):
        endpoints = tuple(
            make(module.NodeEndpoint, node_id=node, host=host, port=port, rack=rack)
            for node, host, port, rack in broker_endpoints(broker)
            if node in leaders_named
        )
    return make(
        response_type(request),
        responses=tuple(topics),
        throttle_time=NO_THROTTLE,
        node_endpoints=endpoints,
    )
