"""Error responses of the controller APIs, for when the controller gave no answer.

CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs,
ElectLeaders and the partition reassignment APIs run on the active controller
(handlers/controller.py `on_controller`). When none answers in time (no quorum leader,
or the write is not committed within the call's timeout), Kafka's broker answers
REQUEST_TIMED_OUT in the request's own shape: every topic, resource or partition of the
request carries the error (Kafka's `AbstractRequest.getErrorResponse`), and admin
clients retry it. Dropping the connection instead, as ottla once did, reads to a client
as a broker crash.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.protocol import DecodedRequest, ErrorCode

__all__ = ["controller_error_response"]

_ZERO_UUID = uuid.UUID(int=0)

Builder = Callable[[DecodedRequest, Any, ErrorCode, str], Any]


def controller_error_response(request: DecodedRequest, code: ErrorCode, message: str) -> Any:
    """`request`'s response with `code` (and `message` where the version has one) on
    every item it named. Raises KeyError for an API that is not a controller API."""
    return _BUILDERS[request.spec.api_key](request, response_module(request), code, message)


def _create_topics(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    topics = tuple(
        make(
            m.CreatableTopicResult,
            name=topic.name,
            topic_id=_ZERO_UUID,
            error_code=code,
            error_message=message,
            topic_config_error_code=ErrorCode.none,
            num_partitions=-1,
            replication_factor=-1,
            configs=None,
        )
        for topic in request.body.topics
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, topics=topics)


def _delete_topics(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    body = request.body
    if request.api_version >= 6:
        named = [(t.name, t.topic_id) for t in body.topics]
    else:
        named = [(name, _ZERO_UUID) for name in body.topic_names]
    responses = tuple(
        make(
            m.DeletableTopicResult,
            name=name,
            topic_id=topic_id or _ZERO_UUID,
            error_code=code,
            error_message=message,
        )
        for name, topic_id in named
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, responses=responses)


def _alter_configs(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    """AlterConfigs and IncrementalAlterConfigs: one result per resource."""
    responses = tuple(
        make(
            m.AlterConfigsResourceResponse,
            error_code=code,
            error_message=message,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        for resource in request.body.resources
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, responses=responses)


def _create_partitions(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    results = tuple(
        make(m.CreatePartitionsTopicResult, name=topic.name, error_code=code, error_message=message)
        for topic in request.body.topics
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, results=results)


def _elect_leaders(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    results = tuple(
        make(
            m.ReplicaElectionResult,
            topic=topic.topic,
            partition_result=tuple(
                make(m.PartitionResult, partition_id=index, error_code=code, error_message=message)
                for index in topic.partitions
            ),
        )
        for topic in request.body.topic_partitions or ()
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=code,
        replica_election_results=results,
    )


def _alter_reassignments(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    responses = tuple(
        make(
            m.ReassignableTopicResponse,
            name=topic.name,
            partitions=tuple(
                make(
                    m.ReassignablePartitionResponse,
                    partition_index=partition.partition_index,
                    error_code=code,
                    error_message=message,
                )
                for partition in topic.partitions
            ),
        )
        for topic in request.body.topics
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        allow_replication_factor_change=getattr(
            request.body, "allow_replication_factor_change", True
        ),
        error_code=code,
        error_message=message,
        responses=responses,
    )


def _list_reassignments(request: DecodedRequest, m: Any, code: ErrorCode, message: str) -> Any:
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=code,
        error_message=message,
        topics=(),
    )


_BUILDERS: dict[int, Builder] = {
    19: _create_topics,
    20: _delete_topics,
    33: _alter_configs,
    37: _create_partitions,
    43: _elect_leaders,
    44: _alter_configs,
    45: _alter_reassignments,
    46: _list_reassignments,
}
