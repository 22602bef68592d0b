"""ElectLeaders v0-v2: leader elections an operator asks for, run on the active controller;
AlterPartitionReassignments / ListPartitionReassignments (KIP-455) likewise.

Decided by `cluster.elect_leaders` (PREFERRED or UNCLEAN; v0 has no election type and
means PREFERRED) and committed as PartitionChangeRecords; received by another node the
request is forwarded to the active controller (handlers/controller.on_controller).
A null topic list means every partition; then only partitions that got a new leader or
failed otherwise than ELECTION_NOT_NEEDED are answered, as Kafka does. Simplified: the
answer comes once the election is committed in the metadata log, not once the new
leaders have taken over (Kafka waits for that up to `timeout_ms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.cluster import (
    ELECTION_PREFERRED,
    ElectionResult,
    MetadataImage,
    MetadataRecord,
    OngoingReassignment,
    ReassignmentResult,
    alter_reassignments,
    elect_leaders,
    list_reassignments,
)
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = [
    "handle_alter_partition_reassignments",
    "handle_elect_leaders",
    "handle_list_partition_reassignments",
]


def _partition_errors_by_topic(
    results: Sequence[ElectionResult | ReassignmentResult],
    topic_cls: Any,
    topic_field: str,
    partitions_field: str,
    partition_cls: Any,
    index_field: str,
) -> tuple[Any, ...]:
    """Per-partition (error code, message) results grouped into kio topic entries,
    in the order the topics first appear: ElectLeaders and AlterPartitionReassignments
    answer in this same shape under different field names."""
    by_topic: dict[str, list[ElectionResult | ReassignmentResult]] = {}
    for result in results:
        by_topic.setdefault(result.topic, []).append(result)
    return tuple(
        make(
            topic_cls,
            **{
                topic_field: topic,
                partitions_field: tuple(
                    make(
                        partition_cls,
                        **{index_field: r.partition_id},
                        error_code=r.error_code,
                        error_message=r.error_message,
                    )
                    for r in items
                ),
            },
        )
        for topic, items in by_topic.items()
    )


async def handle_elect_leaders(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """ElectLeaders v0-v2 (see the module docstring)."""
    body = request.body
    module = response_module(request)
    election_type = int(getattr(body, "election_type", ELECTION_PREFERRED))
    wanted: list[tuple[str, int]] | None = None
    if body.topic_partitions is not None:
        wanted = [
            (str(topic.topic), int(index))
            for topic in body.topic_partitions
            for index in topic.partitions
        ]
    shutting_down = broker.controller.sessions.shutting_down

    def decide(image: MetadataImage) -> tuple[list[MetadataRecord], list[ElectionResult]]:
        return elect_leaders(image, election_type, wanted, shutting_down)

    results = await broker.controller.write(decide)
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        replica_election_results=_partition_errors_by_topic(
            results,
            module.ReplicaElectionResult,
            "topic",
            "partition_result",
            module.PartitionResult,
            "partition_id",
        ),
    )


async def handle_alter_partition_reassignments(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """AlterPartitionReassignments v0-v1 (KIP-455): decided by
    `cluster.alter_reassignments`; answered once the records are committed. The added
    replicas then catch up and the controller completes each reassignment on the ISR
    change that brings its last target replica in sync (`ControllerShell.alter_partition`).
    v1's `allow_replication_factor_change` false refuses a target of another size
    (INVALID_REPLICATION_FACTOR), as Kafka does."""
    body = request.body
    module = response_module(request)
    allow_resize = bool(getattr(body, "allow_replication_factor_change", True))
    wanted: list[tuple[str, int, tuple[int, ...] | None]] = [
        (
            str(topic.name),
            int(p.partition_index),
            None if p.replicas is None else tuple(int(r) for r in p.replicas),
        )
        for topic in body.topics
        for p in topic.partitions
    ]
    shutting_down = broker.controller.sessions.shutting_down

    def decide(image: MetadataImage) -> tuple[list[MetadataRecord], list[ReassignmentResult]]:
        refused: dict[tuple[str, int], ReassignmentResult] = {}
        if not allow_resize:
            for name, index, target in wanted:
                topic = image.topics_by_name.get(name)
                partition = topic.partitions.get(index) if topic is not None else None
                if target is None or partition is None:
                    continue
                size = len(partition.replicas) - len(partition.adding_replicas)
                if len(target) != size:
                    refused[(name, index)] = ReassignmentResult(
                        name,
                        index,
                        ErrorCode.invalid_replication_factor,
                        f"The replication factor is changed from {size} to {len(target)}",
                    )
        records, results = alter_reassignments(
            image, [w for w in wanted if (w[0], w[1]) not in refused], shutting_down
        )
        by_key = {(r.topic, r.partition_id): r for r in results}
        by_key.update(refused)
        return records, [by_key[(name, index)] for name, index, _ in wanted]

    results = await broker.controller.write(decide)
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        responses=_partition_errors_by_topic(
            results,
            module.ReassignableTopicResponse,
            "name",
            "partitions",
            module.ReassignablePartitionResponse,
            "partition_index",
        ),
    )


async def handle_list_partition_reassignments(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """ListPartitionReassignments v0: the reassignments in progress in the active
    controller's image (`cluster.list_reassignments`), of every partition (null topics)
    or of those asked."""
    body = request.body
    module = response_module(request)
    wanted: list[tuple[str, int]] | None = None
    if body.topics is not None:
        wanted = [
            (str(topic.name), int(index))
            for topic in body.topics
            for index in topic.partition_indexes
        ]
    ongoing = list_reassignments(broker.image, wanted)
    by_topic: dict[str, list[OngoingReassignment]] = {}
    for item in ongoing:
        by_topic.setdefault(item.topic, []).append(item)
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        topics=tuple(
            make(
                module.OngoingTopicReassignment,
                name=topic,
                partitions=tuple(
                    make(
                        module.OngoingPartitionReassignment,
                        partition_index=r.partition_id,
                        replicas=r.replicas,
                        adding_replicas=r.adding_replicas,
                        removing_replicas=r.removing_replicas,
                    )
                    for r in items
                ),
            )
            for topic, items in by_topic.items()
        ),
    )
