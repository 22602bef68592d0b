"""Registry of handlers: api key -> handler, and the ApiVersions answer.

Every API in `SUPPORTED_APIS` must have a handler here (checked at startup), so
what ottla advertises is what it serves. ApiVersions lives here because it speaks
for the registry itself:

- an ApiVersions request at a version ottla does not know gets UNSUPPORTED_VERSION
  with the supported ranges in a v0 body (KIP-511), so the client retries at a
  version we list; any other request ottla does not serve closes its connection, as
  Kafka does;
- v3+ requests carry the client's software name and version, which must match
  Kafka's pattern (else INVALID_REQUEST); they are kept on the connection.
- the response carries no tagged fields (librdkafka 2.0.2 misreads them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers import (
    admin,
    config_resources,
    controller,
    describe_topic_partitions,
    groups,
    leadership,
    log_dirs,
    metadata,
    offsets,
    produce,
    producer_ids,
    quorum,
)
from ottla.broker.server import Chunks, Connection
from ottla.protocol import (
    SUPPORTED_APIS,
    DecodedRequest,
    ErrorCode,
    UnsupportedRequest,
    build_api_versions_response,
    encode_response,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker

__all__ = ["Dispatcher"]

Handler = Callable[["Broker", Connection, DecodedRequest], Any]
_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")
_API_VERSIONS = 18


def handle_api_versions(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """ApiVersions v0-v4. See the module docstring for the rules."""
    body = request.body
    version = request.api_version
    if version >= 3:
        name = body.client_software_name
        software_version = body.client_software_version
        if not _SOFTWARE.fullmatch(name or "") or not _SOFTWARE.fullmatch(software_version or ""):
            return build_api_versions_response(version, ErrorCode.invalid_request)
        connection.state["client_software"] = (name, software_version)
    return build_api_versions_response(version)


HANDLERS: dict[int, Handler] = {
    _API_VERSIONS: handle_api_versions,
    0: produce.handle_produce,
    1: quorum.handle_fetch,  # metadata-partition fetches go to the Raft driver
    2: offsets.handle_list_offsets,
    3: metadata.handle_metadata,
    19: controller.on_controller(admin.handle_create_topics),
    20: controller.on_controller(admin.handle_delete_topics),
    21: offsets.handle_delete_records,
    22: producer_ids.handle_init_producer_id,
    23: offsets.handle_offset_for_leader_epoch,
    32: admin.handle_describe_configs,
    33: controller.on_controller(admin.handle_alter_configs),
    34: log_dirs.handle_alter_replica_log_dirs,
    35: admin.handle_describe_log_dirs,
    37: controller.on_controller(admin.handle_create_partitions),
    43: controller.on_controller(leadership.handle_elect_leaders),
    45: controller.on_controller(leadership.handle_alter_partition_reassignments),
    46: controller.on_controller(leadership.handle_list_partition_reassignments),
    44: controller.on_controller(admin.handle_incremental_alter_configs),
    60: metadata.handle_describe_cluster,
    74: config_resources.handle_list_config_resources,
    75: describe_topic_partitions.handle_describe_topic_partitions,
    8: groups.handle_offset_commit,
    9: groups.handle_offset_fetch,
    10: groups.handle_find_coordinator,
    11: groups.handle_join_group,
    12: groups.handle_heartbeat,
    13: groups.handle_leave_group,
    14: groups.handle_sync_group,
    15: groups.handle_describe_groups,
    16: groups.handle_list_groups,
    42: groups.handle_delete_groups,
    47: groups.handle_offset_delete,
    68: groups.handle_consumer_group_heartbeat,
    69: groups.handle_consumer_group_describe,
    52: quorum.handle_raft_request,  # Vote
    53: quorum.handle_raft_request,  # BeginQuorumEpoch
    54: quorum.handle_raft_request,  # EndQuorumEpoch
    55: quorum.handle_describe_quorum,
    58: quorum.handle_envelope,
    59: quorum.handle_raft_request,  # FetchSnapshot
    62: controller.handle_broker_registration,
    63: controller.handle_broker_heartbeat,
    67: controller.handle_allocate_producer_ids,
    56: controller.handle_alter_partition,
}


class Dispatcher:
    """Routes decoded requests to handlers bound to one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        missing = [SUPPORTED_APIS[k].name for k in SUPPORTED_APIS if k not in HANDLERS]
        assert not missing, f"advertised APIs without a handler: {missing}"

    def handle(self, connection: Connection, request: DecodedRequest) -> Any:
        return HANDLERS[request.header.api_key](self.broker, connection, request)

    def handle_unsupported(self, unsupported: UnsupportedRequest) -> Chunks | None:
        """ApiVersions at a version this broker does not know: a v0 body with the ranges
        (KIP-511). Any other API or version not served: None, and the connection closes,
        as Kafka's SocketServer closes it (Kafka 4 also lists Produce v0-v2, for
        librdkafka's compression check, and closes on them the same way). No error body
        can be written there: the client would read it with the schema of a version this
        broker does not have (flexible headers, fields before the error code)."""
        header = unsupported.header
        if header.api_key == _API_VERSIONS:
            body = build_api_versions_response(0, ErrorCode.unsupported_version)
            return encode_response(header, body)
        return None
