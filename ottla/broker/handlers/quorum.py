"""The metadata quorum's APIs: KIP-595 requests between voters, DescribeQuorum, and the
broker-internal forwarding of metadata writes.

- Vote v0-v2 (v2: pre-vote, KIP-996), BeginQuorumEpoch v0-v1, EndQuorumEpoch v0-v1,
  FetchSnapshot v0-v1: handed to the Raft driver, which answers (codec.py maps versions).
- Fetch: a fetch of topic `__cluster_metadata` (by name before v13, by Kafka's
  METADATA_TOPIC_ID from v13) from a replica id >= 0 is a voter's Raft fetch and goes to
  the driver; every other Fetch is a consumer's or follower's and goes to fetch.py.
- DescribeQuorum v0-v2: answered by the leader from the core's view of the voters;
  another node answers NOT_LEADER_OR_FOLLOWER (Kafka's behaviour), so a tool retries
  against the leader. Simplified: no node endpoints in v2.
- Envelope v0 (broker-internal, Kafka's forwarding to the active controller):
  `request_data` is a whole controller request frame (header and body, no size prefix),
  e.g. a client's CreateTopics received by another node, or a node's BrokerHeartbeat.
  The leader runs it through its own handler (the controller rules on its up-to-date
  image) and answers with `response_data` = the 8-byte big-endian metadata offset its
  image reached, then the response frame; the forwarding node waits until it applied
  that offset before answering its client. A non-leader answers NOT_CONTROLLER.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.controller import envelope_response_data
from ottla.broker.handlers import fetch
from ottla.broker.handlers.build import make, response_module, response_type
from ottla.cluster import (
    METADATA_TOPIC,
    METADATA_TOPIC_ID,
    NotLeader,
    NotLeaderError,
    error_response,
)
from ottla.protocol import (
    DecodedRequest,
    ErrorCode,
    ProtocolError,
    UnsupportedRequest,
    decode_request,
    kio_body,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = [
    "handle_describe_quorum",
    "handle_envelope",
    "handle_fetch",
    "handle_raft_request",
]

log = structlog.get_logger("ottla.quorum")

# Requests the active controller decides: CreateTopics, DeleteTopics, AlterConfigs,
# CreatePartitions, ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments,
# IncrementalAlterConfigs, BrokerRegistration, BrokerHeartbeat, AllocateProducerIds.
CONTROLLER_APIS = frozenset({19, 20, 33, 37, 43, 44, 45, 46, 56, 62, 63, 67})
_FORWARD_TIMEOUT_S = 10.0
_BROKER_HEARTBEAT = 63


async def handle_raft_request(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    """Vote, BeginQuorumEpoch, EndQuorumEpoch, FetchSnapshot (see the module docstring)."""
    raft = broker.raft
    if raft is None:
        return error_response(request.body, ErrorCode.not_leader_or_follower)
    return await raft.handle(request.body)


def is_metadata_fetch(body: Any) -> bool:
    """A voter's fetch of the metadata partition (only that topic, from a replica)."""
    state = getattr(body, "replica_state", None)
    replica_id = (
        int(state.replica_id) if state is not None else int(getattr(body, "replica_id", -1))
    )
    if replica_id < 0 or len(body.topics) != 1:
        return False
    topic = body.topics[0]
    if getattr(topic, "topic_id", None) == METADATA_TOPIC_ID:
        return True
    return getattr(topic, "topic", None) == METADATA_TOPIC


def handle_fetch(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """Fetch v4-v18: Raft fetches to the driver, everything else to fetch.handle_fetch."""
    if is_metadata_fetch(request.body):
        # Read by fetch_wire.py (v12+): the Raft driver takes kio's entity.
        request = dataclasses.replace(request, body=kio_body(request))
        return handle_raft_request(broker, connection, request)
    return fetch.handle_fetch(broker, connection, request)


def handle_describe_quorum(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """DescribeQuorum v0-v2 (see the module docstring)."""
    module = response_module(request)
    raft = broker.raft
    info = raft.describe_quorum() if raft is not None else NotLeader(-1, -1)
    if isinstance(info, NotLeader):
        partition = make(
            module.PartitionData,
            partition_index=0,
            error_code=ErrorCode.not_leader_or_follower,
            error_message="not the quorum leader",
            leader_id=info.leader_id,
            leader_epoch=info.leader_epoch,
            high_watermark=-1,
            current_voters=(),
            observers=(),
        )
    else:

        def replica(state: Any) -> Any:
            return make(
                module.ReplicaState,
                replica_id=state.replica_id,
                replica_directory_id=None,
                log_end_offset=state.log_end_offset,
                last_fetch_timestamp=state.last_fetch_timestamp,
                last_caught_up_timestamp=state.last_caught_up_timestamp,
            )

        partition = make(
            module.PartitionData,
            partition_index=0,
            error_code=ErrorCode.none,
            error_message=None,
            leader_id=info.leader_id,
            leader_epoch=info.leader_epoch,
            high_watermark=info.high_watermark,
            current_voters=tuple(replica(s) for s in info.current_voters),
            observers=tuple(replica(s) for s in info.observers),
        )
    return make(
        response_type(request),
        error_code=ErrorCode.none,
        error_message=None,
        topics=(make(module.TopicData, topic_name=METADATA_TOPIC, partitions=(partition,)),),
        nodes=(),
    )


async def handle_envelope(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    """Envelope v0: a forwarded controller request (see the module docstring)."""
    cls = response_type(request)
    raft = broker.raft
    if raft is None or not raft.is_leader:
        return make(cls, error_code=ErrorCode.not_controller, response_data=None)
    try:
        inner = decode_request(bytes(request.body.request_data))
    except (ProtocolError, UnsupportedRequest) as error:
        code = getattr(error, "error_code", ErrorCode.unsupported_version)
        return make(cls, error_code=code, response_data=None)
    if inner.header.api_key not in CONTROLLER_APIS:
        return make(cls, error_code=ErrorCode.invalid_request, response_data=None)
    if inner.header.api_key == _BROKER_HEARTBEAT:
        broker.controller.heartbeat_connection(connection, inner.body.broker_id)
    try:
        response = await broker.controller.handle_local(inner, forwarded=True)
    except NotLeaderError:
        return make(cls, error_code=ErrorCode.not_controller, response_data=None)
    except TimeoutError:
        return make(cls, error_code=ErrorCode.request_timed_out, response_data=None)
    return make(
        cls,
        error_code=ErrorCode.none,
        response_data=envelope_response_data(broker.image.offset, inner, response),
    )
