"""Metadata (v0-v13) and DescribeCluster (v0-v2).

Metadata version notes: v0 asks for all topics with an empty list, v1+ with null;
v4+ carries allow_auto_topic_creation; v10+ may name topics by id; v8-v10 carry
authorized-operation fields, which ottla (no ACLs yet) leaves at Kafka's "not
requested" value.

Auto-creation follows Kafka: a requested unknown topic is created with
`num.partitions` and `default.replication.factor` when `auto.create.topics.enable`
is on and the client allows it; the topic is answered at once (ottla creates
synchronously, so there is no LEADER_NOT_AVAILABLE round trip). Internal topic
names are never auto-created here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.cluster import (
    INTERNAL_TOPICS,
    MetadataImage,
    NewTopic,
    Role,
    TopicImage,
    validate_topic_name,
)
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["NOT_REQUESTED", "handle_describe_cluster", "handle_metadata", "partition_fields"]

NOT_REQUESTED = -2147483648  # authorized operations: not asked for (no ACLs here)


def broker_endpoints(
    broker: Broker, include_fenced: bool = False
) -> list[tuple[int, str, int, str | None]]:
    """(node id, host, port, rack) of every live broker, on the client listener."""
    result = []
    listener = broker.config.advertised_listeners[0].name
    for image in sorted(broker.image.brokers.values(), key=lambda b: b.broker_id):
        if image.fenced and not include_fenced:
            continue
        for name, host, port in image.endpoints:
            if name == listener:
                result.append((image.broker_id, host, port, image.rack))
                break
    return result


def handle_metadata(
    broker: Broker, connection: Connection, request: DecodedRequest, auto_created: bool = False
) -> Any:
    body = request.body
    module = response_module(request)
    version = request.api_version
    image = broker.image
    wanted: list[TopicImage | tuple[str | None, Any, ErrorCode]] = []
    if body.topics is None or (version == 0 and not body.topics):
        wanted.extend(image.topics_by_name.values())
    else:
        allow_auto = bool(getattr(body, "allow_auto_topic_creation", True)) and bool(
            broker.config.get("auto.create.topics.enable")
        )
        to_create: list[str] = []
        for item in body.topics:
            topic_id = getattr(item, "topic_id", None)
            if item.name is None and version < 12:
                # Names are nullable in requests from v10 but in responses only from
                # v12: Kafka refuses a null name (a lookup by id) below v12.
                wanted.append(("", None, ErrorCode.invalid_request))
                continue
            if item.name is None and topic_id is not None and topic_id.int != 0:
                found = image.topics_by_id.get(topic_id)
                wanted.append(found if found else (None, topic_id, ErrorCode.unknown_topic_id))
                continue
            name = item.name or ""
            found = image.topics_by_name.get(name)
            if found is not None:
                wanted.append(found)
            elif validate_topic_name(name) is not None:
                wanted.append((name, None, ErrorCode.invalid_topic_exception))
            elif allow_auto and name not in INTERNAL_TOPICS:
                to_create.append(name)
                wanted.append((name, None, ErrorCode.none))
            else:
                wanted.append((name, None, ErrorCode.unknown_topic_or_partition))
        if to_create:
            if not auto_created:  # create through the quorum, then answer (async)
                from ottla.broker.handlers.admin import auto_create_on_demand  # noqa: PLC0415

                return auto_create_on_demand(
                    handle_metadata, broker, connection, request, to_create
                )
            image = broker.image
            wanted = [
                image.topics_by_name.get(w[0], (w[0], None, ErrorCode.leader_not_available))
                if isinstance(w, tuple) and w[2] is ErrorCode.none and w[0] is not None
                else w
                for w in wanted
            ]
    topics = []
    for entry in wanted:
        if isinstance(entry, tuple):
            name, topic_id, error = entry
            topics.append(
                make(
                    module.MetadataResponseTopic,
                    error_code=error,
                    name=name,
                    topic_id=topic_id or _ZERO_UUID,
                    is_internal=False,
                    partitions=(),
                    topic_authorized_operations=NOT_REQUESTED,
                )
            )
            continue
        topics.append(_topic(module, image, entry))
    brokers = tuple(
        make(module.MetadataResponseBroker, node_id=node, host=host, port=port, rack=rack)
        for node, host, port, rack in broker_endpoints(broker)
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=_controller_id(broker),
        topics=tuple(topics),
        cluster_authorized_operations=NOT_REQUESTED,
        error_code=ErrorCode.none,
    )


def partition_fields(image: MetadataImage, topic: TopicImage, index: int) -> dict[str, Any]:
    """One partition as Metadata and DescribeTopicPartitions describe it: leader (or
    LEADER_NOT_AVAILABLE), epoch, replicas, ISR and the offline replicas (on brokers that
    are fenced or not registered: their copies cannot be read or elected now)."""
    partition = topic.partitions[index]
    brokers = image.brokers
    return {
        "error_code": ErrorCode.none if partition.leader >= 0 else ErrorCode.leader_not_available,
        "partition_index": index,
        "leader_id": partition.leader,
        "leader_epoch": partition.leader_epoch,
        "replica_nodes": partition.replicas,
        "isr_nodes": partition.isr,
        "offline_replicas": tuple(
            r
            for r in partition.replicas
            if (registered := brokers.get(r)) is None or registered.fenced
        ),
    }


def _topic(module: Any, image: MetadataImage, topic: TopicImage) -> Any:
    partitions = tuple(
        make(module.MetadataResponsePartition, **partition_fields(image, topic, index))
        for index in sorted(topic.partitions)
    )
    return make(
        module.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.name in INTERNAL_TOPICS,
        partitions=partitions,
        topic_authorized_operations=NOT_REQUESTED,
    )


def handle_describe_cluster(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """DescribeCluster v0-v2 (v1 adds endpoint_type: brokers only here; v2 is_fenced).

    Live brokers are listed, and fenced ones too when v2's include_fenced_brokers asks, and the
    controller is the quorum leader. Metadata lists only live brokers, as Kafka does."""
    module = response_module(request)
    endpoint_type = getattr(request.body, "endpoint_type", 1)
    if endpoint_type not in (1, 2):
        return make(
            response_type(request),
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.unsupported_endpoint_type,
            error_message=f"Unsupported endpoint type {endpoint_type}",
            endpoint_type=endpoint_type,
            cluster_id=broker.cluster_id,
            controller_id=-1,
            brokers=(),
            cluster_authorized_operations=NOT_REQUESTED,
        )
    brokers = tuple(
        make(
            module.DescribeClusterBroker,
            broker_id=node,
            host=host,
            port=port,
            rack=rack,
            is_fenced=broker.image.brokers[node].fenced,
        )
        for node, host, port, rack in broker_endpoints(
            broker, include_fenced=bool(getattr(request.body, "include_fenced_brokers", False))
        )
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=endpoint_type,
        cluster_id=broker.cluster_id,
        controller_id=_controller_id(broker),
        brokers=brokers,
        cluster_authorized_operations=NOT_REQUESTED,
    )


def _controller_id(broker: Broker) -> int:
    """The active controller: the metadata quorum's leader while this node is it or
    follows it; otherwise (no leader, or one this node lost: a Prospective node keeps
    the last leader's id, KIP-996) this node, which forwards a client's controller
    requests and answers them REQUEST_TIMED_OUT if no leader appears, as Kafka's
    brokers name a live broker. Named a dead or no controller, librdkafka's admin
    client never sends the request and fails on its own timeout instead."""
    raft = broker.raft
    if raft is not None and raft.role in (Role.LEADER, Role.FOLLOWER) and raft.leader_id >= 0:
        return raft.leader_id
    return broker.node_id


def _uuid_zero() -> Any:
    import uuid  # noqa: PLC0415

    return uuid.UUID(int=0)


_ZERO_UUID = _uuid_zero()
_ = NewTopic
