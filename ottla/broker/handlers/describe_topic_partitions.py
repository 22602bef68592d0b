"""DescribeTopicPartitions v0 (KIP-966): topics' partitions, paginated.

What Metadata says about topics (leader, replicas, ISR, offline replicas per partition)
without the broker list, in pages: the Java AdminClient (3.8+) and kafka-python (3.x)
describe topics with it when the broker lists it. As Kafka's
DescribeTopicPartitionsRequestHandler:

- an empty topic list means every topic; topics are answered in name order, each one's
  partitions by index;
- at most min(`ResponsePartitionLimit`, 2000) partitions (at least 1) per response;
  when more remain, `NextCursor` names the topic and partition to ask from next;
- a request's `Cursor` starts there: its topic must be among those requested (when
  any are), its partition index must not be negative, else every requested topic
  gets INVALID_REQUEST;
- a named topic that does not exist gets UNKNOWN_TOPIC_OR_PARTITION (or
  INVALID_TOPIC_EXCEPTION for a name Kafka would refuse) and no partitions;
- a partition without a leader gets LEADER_NOT_AVAILABLE; replicas on brokers that are
  fenced or not registered are listed as offline. No eligible leader replicas (KIP-966's
  ELR is not kept here): null, as Kafka answers with ELR off.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.broker.handlers.metadata import NOT_REQUESTED, partition_fields
from ottla.cluster import INTERNAL_TOPICS, MetadataImage, TopicImage, validate_topic_name
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_describe_topic_partitions"]

PARTITION_LIMIT_MAX = 2000  # Kafka's max.request.partition.size.limit default
_ZERO_UUID = uuid.UUID(int=0)


def handle_describe_topic_partitions(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    image = broker.image
    cursor = body.cursor
    cursor_topic = str(cursor.topic_name) if cursor is not None else ""
    fetch_all = not body.topics
    if fetch_all:
        names = sorted(n for n in image.topics_by_name if n >= cursor_topic)
    else:
        names = sorted({str(t.name) for t in body.topics if str(t.name) >= cursor_topic})
        if cursor is not None and cursor_topic not in names:
            return _invalid(request, module)
    if cursor is not None and int(cursor.partition_index) < 0:
        return _invalid(request, module)
    remaining = max(min(PARTITION_LIMIT_MAX, int(body.response_partition_limit)), 1)
    topics: list[Any] = []
    next_cursor = None
    for name in names:
        if remaining == 0:
            # The previous topics were answered whole: the next page starts here.
            next_cursor = make(module.Cursor, topic_name=name, partition_index=0)
            break
        topic = image.topics_by_name.get(name)
        if topic is None:
            if not fetch_all:
                topics.append(_missing(module, name))
            continue
        start = int(cursor.partition_index) if cursor is not None and name == cursor_topic else 0
        indexes = sorted(i for i in topic.partitions if i >= start)
        page = indexes[:remaining]
        topics.append(_topic(module, image, topic, page))
        if len(indexes) > len(page):
            next_cursor = make(module.Cursor, topic_name=name, partition_index=indexes[len(page)])
            break
        remaining -= len(page)
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        topics=tuple(topics),
        next_cursor=next_cursor,
    )


def _topic(module: Any, image: MetadataImage, topic: TopicImage, indexes: list[int]) -> Any:
    partitions = tuple(
        make(
            module.DescribeTopicPartitionsResponsePartition,
            **partition_fields(image, topic, index),
            eligible_leader_replicas=None,
            last_known_elr=None,
        )
        for index in indexes
    )
    return _entry(module, ErrorCode.none, topic.name, topic.topic_id, partitions)


def _missing(module: Any, name: str) -> Any:
    invalid = validate_topic_name(name) is not None
    code = ErrorCode.invalid_topic_exception if invalid else ErrorCode.unknown_topic_or_partition
    return _entry(module, code, name)


def _invalid(request: DecodedRequest, module: Any) -> Any:
    """Kafka's error response for a bad cursor: every requested topic, INVALID_REQUEST
    (is_internal false, as Kafka's getErrorResponse leaves it)."""
    topics = tuple(
        _entry(module, ErrorCode.invalid_request, str(topic.name), internal=False)
        for topic in request.body.topics
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, topics=topics, next_cursor=None)


def _entry(
    module: Any,
    code: ErrorCode,
    name: str,
    topic_id: uuid.UUID = _ZERO_UUID,
    partitions: tuple[Any, ...] = (),
    internal: bool | None = None,
) -> Any:
    return make(
        module.DescribeTopicPartitionsResponseTopic,
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=name in INTERNAL_TOPICS if internal is None else internal,
        partitions=partitions,
        topic_authorized_operations=NOT_REQUESTED,
    )
