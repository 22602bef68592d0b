"""InitProducerId v0-v5 for idempotent producers.

A producer without a transactional id gets a fresh producer id and epoch 0; ids
come from blocks recorded in the metadata log (ProducerIdsRecord), so they are
never reused across restarts. A v3+ request carrying an existing (producer_id,
epoch) asks for an epoch bump (KIP-360): the same id with epoch + 1, or a fresh id
when the epoch is exhausted. Transactional ids land with the transactions issue;
until then a request carrying one is answered INVALID_REQUEST (an answer clients
surface as an error, where COORDINATOR_NOT_AVAILABLE would make them retry forever).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_type
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_init_producer_id"]

_EPOCH_MAX = 32767


async def handle_init_producer_id(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    cls = response_type(request)
    if body.transactional_id is not None:
        return make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.invalid_request,
            producer_id=-1,
            producer_epoch=-1,
        )
    producer_id = int(getattr(body, "producer_id", -1))
    epoch = int(getattr(body, "producer_epoch", -1))
    if producer_id >= 0 and 0 <= epoch < _EPOCH_MAX - 1:
        return make(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            producer_id=producer_id,
            producer_epoch=epoch + 1,
        )
    return make(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        producer_id=await broker.allocate_producer_id(),
        producer_epoch=0,
    )
