"""Controller APIs between nodes, and the forwarding of admin requests.

- BrokerRegistration v0-v4, BrokerHeartbeat v0-v2, AllocateProducerIds v0: Kafka's
  broker-to-controller requests. ottla's nodes send them to the active controller
  carried in an Envelope (or handle them in place on the leader; see
  broker/controller.py); a node that is not the active controller answers
  NOT_CONTROLLER. Simplified: no features, log dirs or rack in the registration;
  `is_caught_up` is always true (the sender waited for the metadata offset);
  want_fence is ignored; want_shut_down starts a controlled shutdown
  (cluster/controller/fencing.py) answered `should_shut_down` once it is complete.
- AlterPartition v2-v3: a partition leader's ISR shrink/expand (broker/isr.py), decided
  by `cluster.alter_partition` on the active controller and committed as a
  PartitionChangeRecord. Simplified: the members' broker epochs (KIP-903) are not checked.
- `on_controller(handler)`: CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs
  and IncrementalAlterConfigs run on the active controller. Received by another node,
  the original request is forwarded (Envelope) and the controller's response returned
  once this node applied the resulting metadata. When no controller answers in time
  (or the controller cannot commit within the call's timeout) the client gets the
  request's own response with REQUEST_TIMED_OUT on every item (controller_errors.py),
  as Kafka's broker answers, and retries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.controller import ControllerUnavailableError
from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.broker.handlers.controller_errors import controller_error_response
from ottla.cluster import Endpoint, NotLeaderError
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = [
    "handle_allocate_producer_ids",
    "handle_alter_partition",
    "handle_broker_heartbeat",
    "handle_broker_registration",
    "on_controller",
]

log = structlog.get_logger("ottla.forwarding")

PRODUCER_ID_BLOCK = 1000

Handler = Callable[["Broker", "Connection", DecodedRequest], Any]


def on_controller(handler: Handler) -> Handler:
    """`handler` runs on the active controller (see the module docstring)."""

    async def run(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
        forwarded = broker.controller.is_forwarded(request)
        try:
            if forwarded or broker.controller.is_active:
                try:
                    result = handler(broker, connection, request)
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                except NotLeaderError:
                    if forwarded:
                        raise
            return await broker.controller.forward_request(request)
        except (ControllerUnavailableError, TimeoutError) as error:
            if forwarded:
                raise  # the Envelope answers REQUEST_TIMED_OUT to the forwarding node
            log.warning("controller_request_timed_out", api=request.spec.name, error=str(error))
            message = str(error) or "the active controller did not commit in time"
            return controller_error_response(request, ErrorCode.request_timed_out, message)

    run.__doc__ = handler.__doc__
    return run


def _not_controller(request: DecodedRequest, **fields: Any) -> Any:
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.not_controller,
        **fields,
    )


async def handle_broker_registration(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """BrokerRegistration v0-v4 (see the module docstring)."""
    body = request.body
    if not broker.controller.is_active:
        return _not_controller(request, broker_epoch=-1)
    if body.cluster_id != broker.cluster_id:
        return make(
            response_type(request),
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.inconsistent_cluster_id,
            broker_epoch=-1,
        )
    endpoints = tuple(
        Endpoint(lst.name, lst.host, int(lst.port), int(lst.security_protocol))
        for lst in body.listeners
    )
    epoch = await broker.controller.registration(
        int(body.broker_id), body.incarnation_id, endpoints
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        broker_epoch=epoch,
    )


async def handle_broker_heartbeat(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """BrokerHeartbeat v0-v2 (see the module docstring)."""
    body = request.body
    if not broker.controller.is_active:
        return _not_controller(request, is_caught_up=False, is_fenced=True, should_shut_down=False)
    result = await broker.controller.heartbeat(
        int(body.broker_id), int(body.broker_epoch), bool(body.want_shut_down)
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=result.error_code,
        is_caught_up=True,
        is_fenced=result.fenced,
        should_shut_down=result.should_shut_down,
    )


async def handle_allocate_producer_ids(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """AllocateProducerIds v0: the next block of PRODUCER_ID_BLOCK ids, cluster-wide."""
    body = request.body
    if not broker.controller.is_active:
        return _not_controller(request, producer_id_start=-1, producer_id_len=0)
    start = await broker.controller.allocate_producer_ids(
        int(body.broker_id), int(body.broker_epoch), PRODUCER_ID_BLOCK
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        producer_id_start=start,
        producer_id_len=PRODUCER_ID_BLOCK,
    )


def _new_isr(item: Any, version: int) -> tuple[int, ...]:
    """The proposed ISR: broker ids in v2, (id, broker epoch) entries from v3 (KIP-903)."""
    if version >= 3:
        return tuple(int(b.broker_id) for b in item.new_isr_with_epochs)
    return tuple(int(b) for b in item.new_isr)


async def handle_alter_partition(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """AlterPartition v2-v3 (see the module docstring)."""
    body = request.body
    module = response_module(request)
    if not broker.controller.is_active:
        return make(
            response_type(request),
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.not_controller,
            topics=(),
        )
    topics = []
    for topic in body.topics:
        partitions = []
        for item in topic.partitions:
            result = await broker.controller.alter_partition(
                int(body.broker_id),
                topic.topic_id,
                int(item.partition_index),
                int(item.leader_epoch),
                int(item.partition_epoch),
                _new_isr(item, request.api_version),
            )
            partitions.append(
                make(
                    module.PartitionData,
                    partition_index=item.partition_index,
                    error_code=result.error_code,
                    leader_id=result.leader_id,
                    leader_epoch=result.leader_epoch,
                    isr=result.isr,
                    leader_recovery_state=0,
                    partition_epoch=result.partition_epoch,
                )
            )
        topics.append(make(module.TopicData, topic_id=topic.topic_id, partitions=tuple(partitions)))
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        topics=tuple(topics),
    )
