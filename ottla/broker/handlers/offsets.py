"""ListOffsets v1-v10, DeleteRecords v0-v2, OffsetForLeaderEpoch v2-v4.

ListOffsets timestamps: -2 earliest (log start offset), -1 latest (high watermark;
the last stable offset for read_committed), -3 max timestamp (KIP-734: the first
record holding the largest timestamp), -4 earliest local (the log start here: no
tiered storage), -5 earliest pending upload (none: -1); otherwise the first record
whose timestamp is >= the given one, or -1/-1 when none is. Storage finds the batch
from the time index; the handler decodes that one batch to answer the exact record
(as Kafka does), so the offset may lie inside a batch.

DeleteRecords moves the log start offset (-1 means the high watermark);
an offset above the high watermark is OFFSET_OUT_OF_RANGE.

OffsetForLeaderEpoch answers (epoch, end offset) from the leader-epoch cache:
the end offset of the largest epoch <= the requested one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.protocol import (
    DecodedRequest,
    ErrorCode,
    TimestampType,
    decode_records,
    iter_batches,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.partitions import Partition
    from ottla.broker.server import Connection

__all__ = ["handle_delete_records", "handle_list_offsets", "handle_offset_for_leader_epoch"]

EARLIEST = -2
LATEST = -1
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_PENDING_UPLOAD = -5


def _lookup(broker: Broker, topic: str, index: int) -> tuple[Partition | None, ErrorCode]:
    partition = broker.partition(topic, index)
    if partition is not None:
        return partition, ErrorCode.none
    return None, broker.unhosted_error(topic, index)


def _epoch_error(partition: Partition, current_leader_epoch: int) -> ErrorCode:
    if current_leader_epoch < 0 or current_leader_epoch == partition.leader_epoch:
        return ErrorCode.none
    if current_leader_epoch < partition.leader_epoch:
        return ErrorCode.fenced_leader_epoch
    return ErrorCode.unknown_leader_epoch


def _answer_partitions(
    broker: Broker,
    request: DecodedRequest,
    topic_cls: Any,
    topic_field: str,
    index_field: str,
    answer: Callable[[Partition | None, ErrorCode, int, Any], Any],
) -> Any:
    """The response to a request of per-topic partition lists, in request order: each
    partition looked up here (`_lookup`), its `current_leader_epoch` checked where the
    request has one, and answered by `answer(partition, error, index, item)`, which gets
    the partition only when that error is none. ListOffsets, DeleteRecords and
    OffsetForLeaderEpoch answer in this shape, under different field names (`topic_field`,
    `index_field`)."""
    topics = []
    for topic in request.body.topics:
        name = getattr(topic, topic_field)
        partitions = []
        for item in topic.partitions:
            index = int(getattr(item, index_field))
            partition, code = _lookup(broker, name, index)
            if partition is not None:
                code = _epoch_error(partition, int(getattr(item, "current_leader_epoch", -1)))
            usable = partition if code is ErrorCode.none else None
            partitions.append(answer(usable, code, index, item))
        topics.append(make(topic_cls, **{topic_field: name}, partitions=tuple(partitions)))
    return make(response_type(request), throttle_time=NO_THROTTLE, topics=tuple(topics))


def handle_list_offsets(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    module = response_module(request)

    def answer(partition: Partition | None, code: ErrorCode, index: int, item: Any) -> Any:
        offset, timestamp, epoch = -1, -1, -1
        if partition is not None:
            offset, timestamp, epoch = _list_offset(partition, int(item.timestamp))
        return make(
            module.ListOffsetsPartitionResponse,
            partition_index=index,
            error_code=code,
            timestamp=timestamp,
            offset=offset,
            leader_epoch=epoch,
        )

    return _answer_partitions(
        broker, request, module.ListOffsetsTopicResponse, "name", "partition_index", answer
    )


def _list_offset(partition: Partition, timestamp: int) -> tuple[int, int, int]:
    """(offset, timestamp, leader epoch) answering a ListOffsets query."""
    epoch = partition.leader_epoch
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return (
            partition.log_start_offset,
            -1,
            partition.epoch_for_offset(partition.log_start_offset),
        )
    if timestamp == LATEST:
        return partition.high_watermark, -1, epoch
    if timestamp == EARLIEST_PENDING_UPLOAD:
        return -1, -1, -1
    if timestamp == MAX_TIMESTAMP:
        found = partition.max_timestamp_offset()
        if found is None:
            return -1, -1, -1
        offset, max_timestamp = _record_in_batch(partition, found[0], found[1], last=True)
        return offset, max_timestamp, partition.epoch_for_offset(offset)
    if timestamp < 0:
        return -1, -1, -1
    found = partition.log.offset_for_timestamp(timestamp)
    if found is None or found[0] >= partition.high_watermark:
        return -1, -1, -1
    offset, record_timestamp = _record_in_batch(partition, found[0], timestamp)
    return offset, record_timestamp, partition.epoch_for_offset(offset)


def _record_in_batch(
    partition: Partition, batch_offset: int, timestamp: int, last: bool = False
) -> tuple[int, int]:
    """(offset, timestamp) of the record in the batch at `batch_offset` that answers.

    Storage finds batches; Kafka answers records: the first record whose timestamp
    is >= `timestamp` or, with `last`, the first record holding the batch's largest
    timestamp (KIP-734). LogAppendTime batches stamp every record with the batch's
    max timestamp, so their first record answers.
    """
    read = partition.read(batch_offset, 1, min_one_batch=True)
    if read is None:
        return batch_offset, timestamp
    try:
        batch = next(iter_batches(read.records, validate=False, allow_partial_tail=True), None)
        if batch is None:
            return batch_offset, timestamp
        first = max(batch.base_offset, partition.log_start_offset)
        if batch.timestamp_type is TimestampType.LOG_APPEND_TIME:
            return first, batch.max_timestamp
        target = batch.max_timestamp if last else timestamp
        base_offset, base_timestamp = batch.base_offset, batch.base_timestamp
        records = decode_records(batch)
        del batch
    finally:
        read.release()
    for record in records:
        offset = base_offset + record.offset_delta
        record_timestamp = base_timestamp + record.timestamp_delta
        if offset >= first and record_timestamp >= target:
            return offset, record_timestamp
    return first, timestamp


def handle_delete_records(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    module = response_module(request)

    def answer(partition: Partition | None, code: ErrorCode, index: int, item: Any) -> Any:
        low_watermark = -1
        if partition is not None:
            offset = int(item.offset)
            if offset == -1:
                offset = partition.high_watermark
            if offset < 0 or offset > partition.high_watermark:
                code = ErrorCode.offset_out_of_range
            else:
                if offset > partition.log_start_offset:
                    partition.log.advance_start_offset(offset)
                    partition.log_start_moved()
                low_watermark = partition.log_start_offset
        return make(
            module.DeleteRecordsPartitionResult,
            partition_index=index,
            low_watermark=low_watermark,
            error_code=code,
        )

    return _answer_partitions(
        broker, request, module.DeleteRecordsTopicResult, "name", "partition_index", answer
    )


def handle_offset_for_leader_epoch(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    module = response_module(request)

    def answer(partition: Partition | None, code: ErrorCode, index: int, item: Any) -> Any:
        epoch, end_offset = -1, -1
        if partition is not None:
            epoch, end_offset = partition.log.epoch_cache.end_offset_for(
                int(item.leader_epoch), partition.log_end_offset
            )
        return make(
            module.EpochEndOffset,
            error_code=code,
            partition=index,
            leader_epoch=epoch,
            end_offset=end_offset,
        )

    return _answer_partitions(
        broker, request, module.OffsetForLeaderTopicResult, "topic", "partition", answer
    )
