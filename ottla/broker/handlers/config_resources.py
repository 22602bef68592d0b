"""ListConfigResources v0-v1 (KIP-1142; v0 was ListClientMetricsResources, KIP-714).

v0 lists client-metrics resources: ottla keeps none (no KIP-714 telemetry), so the list
is empty. v1 lists the resources of the asked types (all supported types when none is
asked), as Kafka's KafkaApis does: TOPIC (every topic), BROKER (every live broker),
BROKER_LOGGER (this node); CLIENT_METRICS and GROUP are supported types with no
resources here. A type outside those five answers UNSUPPORTED_VERSION with no list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_list_config_resources"]

# ConfigResource types, as Kafka numbers them.
TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP = 2, 4, 8, 16, 32
SUPPORTED_TYPES = (TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP)


def handle_list_config_resources(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    module = response_module(request)
    if request.api_version == 0:
        return _response(request, ErrorCode.none, ())
    wanted = [int(t) for t in request.body.resource_types] or list(SUPPORTED_TYPES)
    if any(t not in SUPPORTED_TYPES for t in wanted):
        return _response(request, ErrorCode.unsupported_version, ())
    names: list[tuple[str, int]] = []
    if BROKER_LOGGER in wanted:
        names.append((str(broker.node_id), BROKER_LOGGER))
    if BROKER in wanted:
        image = broker.image
        live = sorted(b.broker_id for b in image.brokers.values() if not b.fenced)
        names.extend((str(broker_id), BROKER) for broker_id in live)
    if TOPIC in wanted:
        names.extend((name, TOPIC) for name in sorted(broker.image.topics_by_name))
    resources = tuple(
        make(module.ConfigResource, resource_name=name, resource_type=kind) for name, kind in names
    )
    return _response(request, ErrorCode.none, resources)


def _response(request: DecodedRequest, code: ErrorCode, resources: tuple[Any, ...]) -> Any:
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=code,
        config_resources=resources,
    )
