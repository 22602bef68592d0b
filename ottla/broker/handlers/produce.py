"""Produce v3-v13 (advertised from v0; v0-v2 answered UNSUPPORTED_VERSION).

Version notes: v13 names topics by id; v8+ has record_errors and error_message;
v5+ log_start_offset; v2+ log_append_time (ms, as a datetime in kio; -1 -> None).

The records of each partition stay bytes: `Partition.append_records` validates
each batch header and CRC and appends it, O(1) Python work per batch. acks=0 gets
no response; acks=1 is answered after the local append. acks=-1 (issue 7): refused
with NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`; after the
append it waits (a future per partition, woken when the high watermark moves, no
polling) until the high watermark passes the batch's last offset — then answered
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
from ottla.cluster import INTERNAL_TOPICS, validate_topic_name
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_produce"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


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
    waiting: list[tuple[list[Any], int, Partition, asyncio.Future[ErrorCode]]] = []
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
                    outcome = AppendOutcome(
                        ErrorCode.unknown_topic_or_partition
                        if index not in topic.partitions
                        else ErrorCode.not_leader_or_follower,
                        "This server does not host this topic-partition.",
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
                        future = partition.wait_acks_all(outcome.last_offset)
                        if future is not None:
                            waiting.append((partitions, len(partitions), partition, future))
                        else:
                            code = partition.acks_all_result_now(outcome.last_offset)
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
                    record_errors=(),
                    error_message=outcome.error_message,
                )
            )
        topics.append((topic_data, partitions))
    if acks == 0:
        return None
    if waiting:
        timeout_s = max(int(body.timeout.total_seconds() * 1000), 0) / 1000
        return _wait_acks_all(broker, request, topics, leaders_named, waiting, timeout_s)
    return _response(broker, request, topics, leaders_named)


async def _wait_acks_all(
    broker: Broker,
    request: DecodedRequest,
    topics: list[tuple[Any, list[Any]]],
    leaders_named: set[int],
    waiting: list[tuple[list[Any], int, Partition, asyncio.Future[ErrorCode]]],
    timeout_s: float,
) -> Any:
    """acks=all: answer once every partition's high watermark passed its batch."""
    futures = [future for _, _, _, future in waiting]
    await asyncio.wait(futures, timeout=timeout_s)
    for partitions, position, partition, future in waiting:
        if future.done():
            code = future.result()
        else:
            partition.forget_acks_waiter(future)
            future.cancel()
            code = ErrorCode.request_timed_out
        if code is not ErrorCode.none:
            partitions[position] = dataclasses.replace(
                partitions[position], error_code=code, error_message=None
            )
    return _response(broker, request, topics, leaders_named)


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
