"""Group coordinator APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, DescribeGroups, ListGroups,
DeleteGroups (classic protocol), ConsumerGroupHeartbeat and ConsumerGroupDescribe
(the KIP-848 consumer protocol).

Each handler turns a kio request into inputs of `ottla.broker.groups.state` (through
the broker's `GroupCoordinator`) and the outcome into the response of the requested
version. Kafka decisions live in the state machine; what is decided here is only what
Kafka decides in KafkaApis before its coordinator sees a request (unknown topics), and
whether this node coordinates the group at all (`GroupCoordinator.coordinator_error`:
NOT_COORDINATOR when another node leads its `__consumer_offsets` partition,
COORDINATOR_LOAD_IN_PROGRESS while starting), answered in each API's error shape.
Handlers whose state call appended records answer once the write is durable (the
`__consumer_offsets` high watermark passed it); a failed write answers the coordinator
error Kafka translates it to (`group_write_error`).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ottla.broker.controller import ControllerUnavailableError
from ottla.broker.groups.consumer_state import HeartbeatRequest, TopicInfo
from ottla.broker.groups.coordinator import OFFSETS_TOPIC, group_write_error
from ottla.broker.groups.state import (
    GroupState,
    JoinRequest,
    JoinResult,
    LeaveMember,
    OffsetAndMetadata,
    OffsetCommitEntry,
)
from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.broker.handlers.metadata import broker_endpoints
from ottla.cluster import NotLeaderError
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.groups.coordinator import GroupCoordinator
    from ottla.broker.server import Connection
    from ottla.cluster import MetadataImage

__all__ = [
    "handle_consumer_group_describe",
    "handle_consumer_group_heartbeat",
    "handle_delete_groups",
    "handle_describe_groups",
    "handle_find_coordinator",
    "handle_heartbeat",
    "handle_join_group",
    "handle_leave_group",
    "handle_list_groups",
    "handle_offset_commit",
    "handle_offset_delete",
    "handle_offset_fetch",
    "handle_sync_group",
]

log = structlog.get_logger("ottla.groups")

GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
_OPERATIONS_NOT_REQUESTED = -2147483648
# Kafka's AclOperation codes a group supports: READ (3), DELETE (6), DESCRIBE (8).
_GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
_ZERO_UUID = uuid.UUID(int=0)
_CONSUMER_MEMBER_TYPE = 1  # ConsumerGroupDescribe v1: a member of the consumer protocol
_Item = TypeVar("_Item")


def _ms(value: datetime.timedelta | int) -> int:
    if isinstance(value, datetime.timedelta):
        return value // datetime.timedelta(milliseconds=1)
    return int(value)


def _coordinator(broker: Broker) -> GroupCoordinator:
    groups: GroupCoordinator = broker.groups
    return groups


def _not_here(broker: Broker, group_id: str) -> ErrorCode:
    """none if this node coordinates `group_id`, else the error to answer."""
    return _coordinator(broker).coordinator_error(group_id)


def _done(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


async def _written(durable: asyncio.Future[ErrorCode] | None) -> ErrorCode:
    """none once a group write is durable (or there was none), else the write's error."""
    if durable is None:
        return ErrorCode.none
    return await durable


def _when_written(
    durable: asyncio.Future[ErrorCode] | None, answer: Callable[[ErrorCode], Any]
) -> Any:
    """`answer(none)` at once when the state call wrote nothing, else an awaitable of
    `answer(the write's outcome)` once the write is durable or has failed (each API
    answers a failed write in its own shape, translated by `group_write_error`)."""
    if durable is None:
        return answer(ErrorCode.none)

    async def once_written() -> Any:
        return answer(await durable)

    return once_written()


def _client_host(connection: Connection) -> str:
    host = connection.peer.rsplit(":", 1)[0]
    return f"/{host}"


# -- error answers -------------------------------------------------------------------------


def _response(request: DecodedRequest, error: ErrorCode, **fields: Any) -> Any:
    """The response of the request's version with top-level `error` and `fields` (an
    error answer: the API's empty fields; kio keeps those the version has)."""
    return make(response_type(request), throttle_time=NO_THROTTLE, error_code=error, **fields)


# What a described group answers in the fields its summary does not give (an error
# answer: all of them): DescribeGroups' protocol, ConsumerGroupDescribe's epochs and
# assignor. kio keeps the fields the API's class has.
_EMPTY_DESCRIBED_GROUP: dict[str, Any] = {
    "protocol_type": "",
    "protocol_data": "",
    "group_epoch": -1,
    "assignment_epoch": -1,
    "assignor_name": "",
}


def _described_group(
    cls: type[Any],
    group_id: str,
    group_state: str,
    operations: int,
    error: ErrorCode = ErrorCode.none,
    message: str | None = None,
    members: tuple[Any, ...] = (),
    **fields: Any,
) -> Any:
    """A DescribeGroups or ConsumerGroupDescribe group entry; without `members` and
    `fields`, the entry of a group answering only `error`."""
    return make(
        cls,
        **(_EMPTY_DESCRIBED_GROUP | fields),
        error_code=error,
        error_message=message,
        group_id=group_id,
        group_state=group_state,
        members=members,
        authorized_operations=operations,
    )


def _topic_entries(
    layout: Iterable[tuple[Any, Iterable[_Item]]],
    topic_cls: Any,
    partition: Callable[[_Item], Any],
) -> tuple[Any, ...]:
    """Response topics in request order, each keyed by `topic_id` where the version has
    one (v10 offset APIs; None writes the zero id) else by `name`, with
    `partition(item)` for each of its partitions' items."""
    entries = []
    key_field = "topic_id" if "topic_id" in topic_cls.__dataclass_fields__ else "name"
    for key, items in layout:
        partitions = tuple(partition(item) for item in items)
        entries.append(make(topic_cls, **{key_field: key}, partitions=partitions))
    return tuple(entries)


# Per topic of a request: (name or topic id, [(partition, its error, or None where the
# group's answer goes)]).
_PartitionLayout = list[tuple[Any, list[tuple[int, ErrorCode | None]]]]


def _partition_errors_by_topic(
    layout: _PartitionLayout, answers: Iterable[ErrorCode], topic_cls: Any, partition_cls: Any
) -> tuple[Any, ...]:
    """Per-topic kio entries of per-partition errors, in request order: each partition's
    own error (decided before the group saw the request), else the next of `answers`.
    OffsetCommit and OffsetDelete answer in this shape."""
    remaining = iter(answers)

    def partition(item: tuple[int, ErrorCode | None]) -> Any:
        index, error = item
        code = error if error is not None else next(remaining)
        return make(partition_cls, partition_index=index, error_code=code)

    return _topic_entries(layout, topic_cls, partition)


# -- FindCoordinator -----------------------------------------------------------------------


async def _find_coordinator_after_topic(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """Create `__consumer_offsets` through the quorum, then answer FindCoordinator (with
    COORDINATOR_NOT_AVAILABLE while this node has not applied the new topic yet).

    The creation may fail for a while in a cluster: the quorum's leadership moves while
    the write is in flight (NotLeaderError), no controller answers, or the commit takes
    longer than its timeout. The client is then told COORDINATOR_NOT_AVAILABLE, which it
    retries, as Kafka answers while its offsets topic cannot be created yet."""
    try:
        await _coordinator(broker).ensure_topic()
    except (NotLeaderError, ControllerUnavailableError, TimeoutError) as error:
        log.info("offsets_topic_not_created_yet", error=str(error) or type(error).__name__)
    return _answer_find_coordinator(broker, request)


def handle_find_coordinator(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """FindCoordinator v0-v6.

    v1 adds key_type (0 GROUP, 1 TRANSACTION) and error_message; v4 batches keys in
    `coordinator_keys` and answers one Coordinator per key: the leader of the group's
    `__consumer_offsets` partition (COORDINATOR_NOT_AVAILABLE while it has none). A GROUP
    lookup creates `__consumer_offsets` if it is
    missing (as Kafka does). Another key type is INVALID_REQUEST.
    Simplified: no authorization (no GROUP/TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
    """
    key_type = int(getattr(request.body, "key_type", GROUP_KEY_TYPE))
    if key_type == GROUP_KEY_TYPE and _coordinator(broker).topic_missing():
        return _find_coordinator_after_topic(broker, connection, request)
    return _answer_find_coordinator(broker, request)


def _answer_find_coordinator(broker: Broker, request: DecodedRequest) -> Any:
    body = request.body
    version = request.api_version
    key_type = int(getattr(body, "key_type", GROUP_KEY_TYPE))
    keys = list(body.coordinator_keys) if version >= 4 else [body.key]
    node_id, host, port = -1, "", -1
    wanted = _coordinator_node(broker, keys[0] if keys else "", key_type)
    for node, node_host, node_port, _ in broker_endpoints(broker):
        if node == wanted:
            node_id, host, port = node, node_host, node_port
    error = ErrorCode.none
    message = None
    if key_type not in (GROUP_KEY_TYPE, TRANSACTION_KEY_TYPE):
        error, message = ErrorCode.invalid_request, f"Unknown coordinator type {key_type}"
    elif node_id < 0:
        error = ErrorCode.coordinator_not_available
    if error is not ErrorCode.none:
        node_id, host, port = -1, "", -1
    if version >= 4 and len(keys) > 1:
        return _find_coordinators(broker, request, keys, key_type, error, message)
    if version < 4:
        return make(
            response_type(request),
            throttle_time=NO_THROTTLE,
            error_code=error,
            error_message=message,
            node_id=node_id,
            host=host,
            port=port,
        )
    module = response_module(request)
    coordinators = tuple(
        make(
            module.Coordinator,
            key=key,
            node_id=node_id,
            host=host,
            port=port,
            error_code=error,
            error_message=message,
        )
        for key in body.coordinator_keys
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, coordinators=coordinators)


def _coordinator_node(broker: Broker, key: str, key_type: int) -> int:
    """The leader of the group's `__consumer_offsets` partition (transactions: this node,
    until the transaction coordinator lands)."""
    if key_type != GROUP_KEY_TYPE:
        return broker.node_id
    coordinator = _coordinator(broker)
    leader, _ = broker.leader_of(OFFSETS_TOPIC, coordinator.partition_for(key))
    return leader


def _find_coordinators(
    broker: Broker,
    request: DecodedRequest,
    keys: list[str],
    key_type: int,
    error: ErrorCode,
    message: str | None,
) -> Any:
    module = response_module(request)
    endpoints = {node: (host, port) for node, host, port, _ in broker_endpoints(broker)}
    coordinators = []
    for key in keys:
        node = _coordinator_node(broker, key, key_type)
        host, port = endpoints.get(node, ("", -1))
        code = (
            error
            if error is not ErrorCode.none
            else (ErrorCode.none if node in endpoints else ErrorCode.coordinator_not_available)
        )
        coordinators.append(
            make(
                module.Coordinator,
                key=key,
                node_id=node if code is ErrorCode.none else -1,
                host=host if code is ErrorCode.none else "",
                port=port if code is ErrorCode.none else -1,
                error_code=code,
                error_message=message,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, coordinators=tuple(coordinators))


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------------------


def handle_join_group(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """JoinGroup v0-v9.

    v1 adds rebalance_timeout (v0: the session timeout); v4 makes a new dynamic
    member rejoin with the id handed out by MEMBER_ID_REQUIRED (KIP-394); v5 adds
    group_instance_id (static membership, KIP-345); v7 returns protocol_type and a
    nullable protocol_name; v8 adds reason (logged only); v9 skip_assignment
    (KIP-814: a returning static leader keeps the current assignment).
    The response waits until the rebalance completes (or is answered at once on an
    error). Simplified: no group authorization.
    """
    body = request.body
    version = request.api_version
    session_timeout_ms = _ms(body.session_timeout)
    rebalance = getattr(body, "rebalance_timeout", None)
    instance_id = getattr(body, "group_instance_id", None)
    join = JoinRequest(
        member_id=body.member_id,
        group_instance_id=instance_id,
        client_id=connection.client_id or "",
        client_host=_client_host(connection),
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=session_timeout_ms if rebalance is None else _ms(rebalance),
        protocol_type=body.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
        require_known_member_id=version >= 4 and not body.member_id and instance_id is None,
        new_member_suffix=_coordinator(broker).new_member_suffix(),
    )
    error = _not_here(broker, body.group_id)
    future: asyncio.Future[JoinResult]
    if error is not ErrorCode.none:
        future = _done(JoinResult(error, body.member_id))
    else:
        future = _coordinator(broker).join(body.group_id, join)
    module = response_module(request)
    cls = response_type(request)

    async def respond() -> Any:
        result = await future
        members = tuple(
            make(
                module.JoinGroupResponseMember,
                member_id=member_id,
                group_instance_id=instance,
                metadata=metadata,
            )
            for member_id, instance, metadata in result.members
        )
        protocol_name = result.protocol_name
        return make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=result.error,
            generation_id=result.generation_id,
            protocol_type=result.protocol_type,
            protocol_name=protocol_name if version >= 7 else (protocol_name or ""),
            leader=result.leader,
            skip_assignment=result.skip_assignment,
            member_id=result.member_id,
            members=members,
        )

    return respond()


def handle_sync_group(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """SyncGroup v0-v5.

    v3 adds group_instance_id; v5 carries protocol_type and protocol_name, checked
    against the group's (INCONSISTENT_GROUP_PROTOCOL). Followers' responses wait for
    the leader's assignments; each member receives its own.
    """
    body = request.body
    error = _not_here(broker, body.group_id)
    if error is not ErrorCode.none:
        return _response(request, error, protocol_type=None, protocol_name=None, assignment=b"")
    future = _coordinator(broker).sync(
        body.group_id,
        int(body.generation_id),
        body.member_id,
        getattr(body, "group_instance_id", None),
        getattr(body, "protocol_type", None),
        getattr(body, "protocol_name", None),
        [(a.member_id, bytes(a.assignment)) for a in body.assignments],
    )
    cls = response_type(request)

    async def respond() -> Any:
        result = await future
        return make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=result.error,
            protocol_type=result.protocol_type,
            protocol_name=result.protocol_name,
            assignment=result.assignment,
        )

    return respond()


def handle_heartbeat(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """Heartbeat v0-v4. v3 adds group_instance_id. REBALANCE_IN_PROGRESS tells a member
    to rejoin."""
    body = request.body
    coordinator = _coordinator(broker)
    error = _not_here(broker, body.group_id)
    if error is not ErrorCode.none:
        return _response(request, error)
    error, effects = coordinator.state.heartbeat(
        body.group_id,
        int(body.generation_id),
        body.member_id,
        getattr(body, "group_instance_id", None),
        coordinator.clock(),
    )
    return _when_written(
        coordinator.apply(effects),
        lambda written: _response(
            request, error if written is ErrorCode.none else group_write_error(written)
        ),
    )


def handle_leave_group(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """LeaveGroup v0-v5.

    v0-v2 name one member (its error is the top-level error); v3+ batch members,
    each by member id and/or group_instance_id (KIP-345), with one error each; v5
    adds a reason (logged only).
    """
    body = request.body
    version = request.api_version
    coordinator = _coordinator(broker)
    not_here = _not_here(broker, body.group_id)
    if not_here is not ErrorCode.none:
        return _response(request, not_here, members=())
    if version < 3:
        leaving = [LeaveMember(body.member_id)]
    else:
        leaving = [LeaveMember(m.member_id, m.group_instance_id) for m in body.members]
    error, errors, effects = coordinator.state.leave(body.group_id, leaving, coordinator.clock())
    return _when_written(
        coordinator.apply(effects),
        lambda written: _leave_response(
            request,
            error if written is ErrorCode.none else group_write_error(written),
            errors,
            leaving,
        ),
    )


def _leave_response(
    request: DecodedRequest, error: ErrorCode, errors: list[ErrorCode], leaving: list[LeaveMember]
) -> Any:
    version = request.api_version
    if version < 3:
        return _response(request, errors[0] if error is ErrorCode.none and errors else error)
    module = response_module(request)
    members = tuple(
        make(
            module.MemberResponse,
            member_id=item.member_id,
            group_instance_id=item.group_instance_id,
            error_code=member_error,
        )
        for item, member_error in zip(leaving, errors, strict=False)
    )
    return _response(request, error, members=members)


# -- offsets -------------------------------------------------------------------------------


def handle_offset_commit(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """OffsetCommit v2-v10.

    v2-v4 carry retention_time (ignored, as Kafka 2.1+ does: offsets expire
    `offsets.retention.minutes` after their group empties); v6 adds
    committed_leader_epoch; v7 group_instance_id; v10 names topics by topic_id
    (UNKNOWN_TOPIC_ID for an unknown id). Partitions missing from the metadata get
    UNKNOWN_TOPIC_OR_PARTITION; metadata above 4096 bytes OFFSET_METADATA_TOO_LARGE.
    generation -1 with an empty member id is a simple consumer storing offsets
    without joining (only while the group is Empty).
    """
    body = request.body
    image = broker.image
    coordinator = _coordinator(broker)
    entries: list[OffsetCommitEntry] = []
    layout: _PartitionLayout = []
    by_id = request.api_version >= 10
    for topic in body.topics:
        topic_id = topic.topic_id if by_id else None  # None: the zero id, no topic's
        if by_id:
            topic_image = image.topics_by_id.get(topic_id) if topic_id is not None else None
            missing = ErrorCode.unknown_topic_id
        else:
            topic_image = image.topic(topic.name)
            missing = ErrorCode.unknown_topic_or_partition
        partitions: list[tuple[int, ErrorCode | None]] = []
        for item in topic.partitions:
            index = int(item.partition_index)
            if topic_image is None or index not in topic_image.partitions:
                partitions.append((index, missing))
                continue
            partitions.append((index, None))
            entries.append(
                OffsetCommitEntry(
                    topic=topic_image.name,
                    partition=index,
                    offset=int(item.committed_offset),
                    leader_epoch=int(getattr(item, "committed_leader_epoch", -1)),
                    metadata=item.committed_metadata,
                )
            )
        layout.append((topic_id if by_id else topic.name, partitions))
    not_here = _not_here(broker, body.group_id)
    if not_here is not ErrorCode.none:
        return _commit_response(request, layout, itertools.repeat(not_here))
    errors, effects = coordinator.state.commit_offsets(
        body.group_id,
        int(body.generation_id_or_member_epoch),
        body.member_id,
        getattr(body, "group_instance_id", None),
        entries,
        coordinator.clock(),
    )

    def answer(written: ErrorCode) -> Any:
        if written is ErrorCode.none:
            return _commit_response(request, layout, errors)
        failed = group_write_error(written, offset_commit=True)
        answers = [failed if e is ErrorCode.none else e for e in errors]
        return _commit_response(request, layout, answers)

    return _when_written(coordinator.apply(effects), answer)


def _commit_response(
    request: DecodedRequest, layout: _PartitionLayout, errors: Iterable[ErrorCode]
) -> Any:
    module = response_module(request)
    topics = _partition_errors_by_topic(
        layout, errors, module.OffsetCommitResponseTopic, module.OffsetCommitResponsePartition
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, topics=topics)


# Per topic of an OffsetFetch answer: (name or topic id, [(partition, offset, error)]).
_FetchedTopics = list[tuple[Any, list[tuple[int, OffsetAndMetadata | None, ErrorCode]]]]


def _fetch_topics(topics: _FetchedTopics, topic_cls: Any, partition_cls: Any) -> tuple[Any, ...]:
    """OffsetFetch's per-topic entries (v0-v7 and v8+ name their classes differently);
    a partition without a committed offset answers -1 and empty metadata."""

    def partition(item: tuple[int, OffsetAndMetadata | None, ErrorCode]) -> Any:
        index, value, error = item
        return make(
            partition_cls,
            partition_index=index,
            committed_offset=value.offset if value is not None else -1,
            committed_leader_epoch=value.leader_epoch if value is not None else -1,
            metadata=value.metadata if value is not None else "",
            error_code=error,
        )

    return _topic_entries(topics, topic_cls, partition)


def _fetch_group(
    broker: Broker,
    group_id: str,
    topics: Any,
    by_id: bool,
    member: tuple[str | None, int] | None = None,
) -> tuple[ErrorCode, _FetchedTopics]:
    """(group error, [(topic name or id, [(partition, offset, error)])]) of one group;
    `member`: (member id, member epoch) of a v9+ request (checked for consumer groups)."""
    image = broker.image
    state = _coordinator(broker).state
    not_here = _not_here(broker, group_id)
    if not_here is not ErrorCode.none:
        if topics is None:
            return not_here, []
        keys = [(t.topic_id if by_id else t.name, t.partition_indexes) for t in topics]
        return not_here, [(k, [(int(i), None, not_here) for i in ids]) for k, ids in keys]
    if member is not None:
        error = state.validate_offset_fetch(group_id, member[0], member[1])
        if error is not ErrorCode.none:
            return error, []
    if topics is None:
        error, found = state.fetch_offsets(group_id, None)
        grouped: dict[Any, list[tuple[int, OffsetAndMetadata | None, ErrorCode]]] = {}
        for (committed_topic, index), value in found.items():
            key: Any = committed_topic
            if by_id:
                topic_image = image.topic(committed_topic)
                if topic_image is None:
                    continue
                key = topic_image.topic_id
            grouped.setdefault(key, []).append((index, value, ErrorCode.none))
        return error, list(grouped.items())
    wanted: list[tuple[str, int]] = []
    layout: list[tuple[Any, list[tuple[int, str | None]]]] = []
    for topic in topics:
        name: str | None = None
        if by_id:
            topic_image = image.topics_by_id.get(topic.topic_id)
            name = topic_image.name if topic_image is not None else None
            key = topic.topic_id
        else:
            name = key = topic.name
        indexes = [int(i) for i in topic.partition_indexes]
        layout.append((key, [(i, name) for i in indexes]))
        if name is not None:
            wanted += [(name, i) for i in indexes]
    error, found = state.fetch_offsets(group_id, wanted)
    result = []
    for key, items in layout:
        partitions: list[tuple[int, OffsetAndMetadata | None, ErrorCode]] = []
        for index, known in items:
            if known is None:
                partitions.append((index, None, ErrorCode.unknown_topic_id))
            else:
                partitions.append((index, found.get((known, index)), ErrorCode.none))
        result.append((key, partitions))
    return error, result


def handle_offset_fetch(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """OffsetFetch v1-v10.

    v2 allows topics=null (every committed partition) and adds a top-level error;
    v5 adds committed_leader_epoch; v7 require_stable; v8 batches groups; v9 adds
    member_id/member_epoch (checked for KIP-848 consumer groups: UNKNOWN_MEMBER_ID,
    STALE_MEMBER_EPOCH; a null member id with epoch -1 is an admin client);
    v10 names topics by topic_id. A partition with no committed offset answers -1
    and empty metadata. Simplified: require_stable never waits (ottla has no
    transactional offset commits yet, so nothing is pending).
    """
    body = request.body
    version = request.api_version
    module = response_module(request)
    by_id = version >= 10
    if version < 8:
        error, topics = _fetch_group(broker, body.group_id, body.topics, by_id=False)
        items = _fetch_topics(
            topics, module.OffsetFetchResponseTopic, module.OffsetFetchResponsePartition
        )
        return _response(request, error, topics=items)
    groups = []
    for group in body.groups:
        member = (getattr(group, "member_id", None), int(getattr(group, "member_epoch", -1)))
        error, topics = _fetch_group(
            broker, group.group_id, group.topics, by_id=by_id, member=member
        )
        items = _fetch_topics(
            topics, module.OffsetFetchResponseTopics, module.OffsetFetchResponsePartitions
        )
        groups.append(
            make(
                module.OffsetFetchResponseGroup,
                group_id=group.group_id,
                topics=items,
                error_code=error,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, groups=tuple(groups))


def handle_offset_delete(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """OffsetDelete v0 (KIP-496).

    Deletes committed offsets of partitions the group is not subscribed to: an
    Empty group's always; for a live "consumer" group, topics absent from every
    member's subscription (else GROUP_SUBSCRIBED_TO_TOPIC; other protocol types
    count as subscribed to everything). Unknown group: GROUP_ID_NOT_FOUND; unknown
    partitions: UNKNOWN_TOPIC_OR_PARTITION.
    """
    body = request.body
    image = broker.image
    coordinator = _coordinator(broker)
    wanted: list[tuple[str, int]] = []
    layout: _PartitionLayout = []
    for topic in body.topics:
        topic_image = image.topic(topic.name)
        partitions: list[tuple[int, ErrorCode | None]] = []
        for item in topic.partitions:
            index = int(item.partition_index)
            if topic_image is None or index not in topic_image.partitions:
                partitions.append((index, ErrorCode.unknown_topic_or_partition))
            else:
                partitions.append((index, None))
                wanted.append((topic.name, index))
        layout.append((topic.name, partitions))
    error = _not_here(broker, body.group_id)
    if error is not ErrorCode.none:
        return _response(request, error, topics=())
    error, errors, effects = coordinator.state.delete_offsets(body.group_id, wanted)
    return _when_written(
        coordinator.apply(effects),
        lambda written: _offset_delete_response(
            request,
            group_write_error(written)
            if written is not ErrorCode.none and error is ErrorCode.none
            else error,
            errors,
            layout,
        ),
    )


def _offset_delete_response(
    request: DecodedRequest, error: ErrorCode, errors: list[ErrorCode], layout: _PartitionLayout
) -> Any:
    if error is not ErrorCode.none:
        return _response(request, error, topics=())
    module = response_module(request)
    topics = _partition_errors_by_topic(
        layout, errors, module.OffsetDeleteResponseTopic, module.OffsetDeleteResponsePartition
    )
    return _response(request, ErrorCode.none, topics=topics)


# -- group administration ----------------------------------------------------------------------


def handle_describe_groups(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """DescribeGroups v0-v6.

    v3 adds include_authorized_operations (answered with READ, DELETE, DESCRIBE:
    there are no ACLs); v4 group_instance_id of members; v6 error_message and
    GROUP_ID_NOT_FOUND for an unknown group (earlier versions: state Dead, no
    error). Member metadata and assignments are filled in for Stable groups only,
    and protocol_data names the protocol then, as Kafka does. A consumer-protocol
    group is shown with protocol type "consumer", its own state, its assignor as
    protocol_data and its members without metadata or assignment bytes.
    """
    body = request.body
    version = request.api_version
    module = response_module(request)
    state = _coordinator(broker).state
    operations = (
        _GROUP_OPERATIONS
        if getattr(body, "include_authorized_operations", False)
        else _OPERATIONS_NOT_REQUESTED
    )
    groups = []
    for group_id in body.groups:
        not_here = _not_here(broker, group_id) if group_id else ErrorCode.none
        here = group_id and not_here is ErrorCode.none
        summary = state.describe(group_id) if here else None
        if summary is None:
            error: ErrorCode
            message: str | None
            group_state = GroupState.DEAD.value
            if not_here is not ErrorCode.none:
                error, message, group_state = not_here, None, ""
            elif not group_id:
                error, message = ErrorCode.invalid_group_id, "Group id must not be empty"
            elif version >= 6:
                error, message = ErrorCode.group_id_not_found, f"Group {group_id} not found."
            else:
                error, message = ErrorCode.none, None
            groups.append(
                _described_group(
                    module.DescribedGroup, group_id, group_state, operations, error, message
                )
            )
            continue
        members = tuple(
            make(
                module.DescribedGroupMember,
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata,
                member_assignment=m.assignment,
            )
            for m in summary.members
        )
        groups.append(
            _described_group(
                module.DescribedGroup,
                group_id,
                summary.state_name,
                operations,
                members=members,
                protocol_type=summary.protocol_type,
                protocol_data=summary.protocol_name,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, groups=tuple(groups))


def handle_list_groups(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """ListGroups v0-v5.

    v4 adds states_filter and group_state; v5 types_filter and group_type
    ("classic" or "consumer"). Filters compare case-insensitively, as Kafka does.
    """
    body = request.body
    module = response_module(request)
    states = {s.lower() for s in getattr(body, "states_filter", ())}
    types = {t.lower() for t in getattr(body, "types_filter", ())}
    groups = []
    for summary in _coordinator(broker).state.list_groups():
        if types and summary.group_type not in types:
            continue
        if states and summary.state_name.lower() not in states:
            continue
        groups.append(
            make(
                module.ListedGroup,
                group_id=summary.group_id,
                protocol_type=summary.protocol_type,
                group_state=summary.state_name,
                group_type=summary.group_type,
            )
        )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        groups=tuple(groups),
    )


def handle_delete_groups(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """DeleteGroups v0-v2.

    Only Empty groups are deleted (NON_EMPTY_GROUP otherwise); their offsets and
    metadata get tombstones in `__consumer_offsets`. Unknown: GROUP_ID_NOT_FOUND;
    empty id: INVALID_GROUP_ID.
    """
    module = response_module(request)
    coordinator = _coordinator(broker)
    outcomes: list[tuple[str, ErrorCode, asyncio.Future[ErrorCode] | None]] = []
    for group_id in request.body.groups_names:
        error = _not_here(broker, group_id) if group_id else ErrorCode.none
        durable = None
        if error is ErrorCode.none:
            error, effects = coordinator.state.delete_group(group_id)
            durable = coordinator.apply(effects)
        outcomes.append((group_id, error, durable))

    def respond(results: list[tuple[str, ErrorCode]]) -> Any:
        items = tuple(
            make(module.DeletableGroupResult, group_id=group_id, error_code=error)
            for group_id, error in results
        )
        return make(response_type(request), throttle_time=NO_THROTTLE, results=items)

    if all(durable is None for _, _, durable in outcomes):
        return respond([(group_id, error) for group_id, error, _ in outcomes])

    async def after_writes() -> Any:
        results = []
        for group_id, error, durable in outcomes:
            written = await _written(durable)
            failed = error is ErrorCode.none and written is not ErrorCode.none
            results.append((group_id, group_write_error(written) if failed else error))
        return respond(results)

    return after_writes()


# -- the consumer protocol (KIP-848) -------------------------------------------------------


class _ImageTopics(Mapping[str, TopicInfo]):
    """The metadata image's non-internal topics, as the consumer group machine sees them."""

    def __init__(self, image: MetadataImage) -> None:
        self._topics = image.topics_by_name

    def __getitem__(self, name: str) -> TopicInfo:
        topic = self._topics[name]
        if topic.is_internal:
            raise KeyError(name)
        return TopicInfo(topic.topic_id, topic.name, len(topic.partitions))

    def __iter__(self) -> Iterator[str]:
        return (name for name, topic in self._topics.items() if not topic.is_internal)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _consumer_heartbeat_error(request: DecodedRequest, error: ErrorCode) -> Any:
    """A ConsumerGroupHeartbeat answering only `error`: the member's id and epoch as sent,
    no assignment."""
    body = request.body
    return _response(
        request,
        error,
        error_message=None,
        member_id=body.member_id or None,
        member_epoch=int(body.member_epoch),
        heartbeat_interval=datetime.timedelta(0),
        assignment=None,
    )


def handle_consumer_group_heartbeat(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """ConsumerGroupHeartbeat v0-v1 (KIP-848).

    Joins (member epoch 0), heartbeats, leaves (-1; -2 for a static member that will
    return) a consumer group; the answer carries the member epoch, the heartbeat
    interval and, when it changed or the request was a full one, the member's
    assignment. v0: a member without an id gets one from the coordinator; v1: the
    client generates its id (a UUID) and may subscribe by regex
    (`subscribed_topic_regex`, Python `re` full match over non-internal topics).
    The rules are `ottla.broker.groups.consumer_state`'s. Simplified: no group
    authorization.
    """
    body = request.body
    version = request.api_version
    coordinator = _coordinator(broker)
    not_here = _not_here(broker, body.group_id) if body.group_id else ErrorCode.none
    if not_here is not ErrorCode.none:
        return _consumer_heartbeat_error(request, not_here)
    owned = None
    if body.topic_partitions is not None:
        owned = tuple(
            (tp.topic_id, tuple(int(p) for p in tp.partitions))
            for tp in body.topic_partitions
            if tp.topic_id is not None
        )
    names = body.subscribed_topic_names
    heartbeat = HeartbeatRequest(
        member_id=body.member_id,
        member_epoch=int(body.member_epoch),
        instance_id=body.instance_id,
        rack_id=body.rack_id,
        rebalance_timeout_ms=_ms(body.rebalance_timeout),
        subscribed_topic_names=None if names is None else tuple(str(n) for n in names),
        subscribed_topic_regex=getattr(body, "subscribed_topic_regex", None),
        server_assignor=body.server_assignor,
        owned=owned,
        client_id=connection.client_id or "",
        client_host=_client_host(connection),
        version=version,
        new_member_id=str(uuid.uuid4()) if version == 0 and not body.member_id else "",
    )
    result, effects = coordinator.state.consumer_heartbeat(
        body.group_id, heartbeat, _ImageTopics(broker.image), coordinator.clock()
    )
    durable = coordinator.apply(effects)
    module = response_module(request)
    assignment = None
    if result.assignment is not None:
        assignment = make(
            module.Assignment,
            topic_partitions=tuple(
                make(module.TopicPartitions, topic_id=topic_id, partitions=partitions)
                for topic_id, partitions in result.assignment
            ),
        )
    response = make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=result.error,
        error_message=result.error_message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=result.heartbeat_interval_ms),
        assignment=assignment,
    )
    return _when_written(
        durable,
        lambda written: (
            response
            if written is ErrorCode.none
            else _consumer_heartbeat_error(request, group_write_error(written))
        ),
    )


def handle_consumer_group_describe(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """ConsumerGroupDescribe v0-v1 (KIP-848).

    Per group: state (Empty, Assigning, Reconciling, Stable), group and assignment
    epochs, the assignor, and each member's epoch, subscription, current and target
    assignment (topic ids with names). v1 adds member_type (1: consumer protocol).
    A classic or unknown group is GROUP_ID_NOT_FOUND, an empty id INVALID_GROUP_ID.
    include_authorized_operations is answered with READ, DELETE, DESCRIBE (no ACLs).
    """
    body = request.body
    module = response_module(request)
    state = _coordinator(broker).state
    topics_by_id = broker.image.topics_by_id
    operations = (
        _GROUP_OPERATIONS if body.include_authorized_operations else _OPERATIONS_NOT_REQUESTED
    )

    def assignment(partitions: tuple[tuple[uuid.UUID, tuple[int, ...]], ...]) -> Any:
        items = []
        for topic_id, indexes in partitions:
            topic = topics_by_id.get(topic_id)
            items.append(
                make(
                    module.TopicPartitions,
                    topic_id=topic_id,
                    topic_name=topic.name if topic is not None else "",
                    partitions=indexes,
                )
            )
        return make(module.Assignment, topic_partitions=tuple(items))

    groups = []
    for group_id in body.group_ids:
        error, message, summary = state.consumer_describe(group_id)
        not_here = _not_here(broker, group_id) if group_id else ErrorCode.none
        if not_here is not ErrorCode.none:
            error, message, summary = not_here, None, None
        if summary is None:
            groups.append(
                _described_group(
                    module.DescribedGroup, group_id, "Dead", operations, error, message
                )
            )
            continue
        members = tuple(
            make(
                module.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed_topic_names,
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=assignment(m.assignment),
                target_assignment=assignment(m.target_assignment),
                member_type=_CONSUMER_MEMBER_TYPE,
            )
            for m in summary.members
        )
        groups.append(
            _described_group(
                module.DescribedGroup,
                group_id,
                summary.state,
                operations,
                members=members,
                group_epoch=summary.group_epoch,
                assignment_epoch=summary.assignment_epoch,
                assignor_name=summary.assignor_name,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, groups=tuple(groups))
