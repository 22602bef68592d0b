"""ElectLeaders v0-v2: leader elections an operator asks for, run on the active controller.

Decided by `cluster.elect_leaders` (PREFERRED or UNCLEAN; v0 has no election type and
means PREFERRED) and committed as PartitionChangeRecords; received by another node the
request is forwarded to the active controller (handlers/controller.on_controller).
A null topic list means every partition; then only partitions that got a new leader or
failed otherwise than ELECTION_NOT_NEEDED are answered, as Kafka does. Simplified: the
answer comes once the election is committed in the metadata log, not once the new
leaders have taken over (Kafka waits for that up to `timeout_ms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.cluster import (
    ELECTION_PREFERRED,
    ElectionResult,
    MetadataImage,
    MetadataRecord,
    elect_leaders,
)
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_elect_leaders"]


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
    by_topic: dict[str, list[ElectionResult]] = {}
    for result in results:
        by_topic.setdefault(result.topic, []).append(result)
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        replica_election_results=tuple(
            make(
                module.ReplicaElectionResult,
                topic=topic,
                partition_result=tuple(
                    make(
                        module.PartitionResult,
                        partition_id=r.partition_id,
                        error_code=r.error_code,
                        error_message=r.error_message,
                    )
                    for r in items
                ),
            )
            for topic, items in by_topic.items()
        ),
    )
