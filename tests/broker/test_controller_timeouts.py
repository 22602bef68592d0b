"""Controller APIs with no controller answering: REQUEST_TIMED_OUT, not a dropped connection.

A node forwards CreateTopics, DeleteTopics, CreatePartitions, (Incremental)AlterConfigs,
ElectLeaders and the reassignment APIs to the active controller. When none answers in
time, Kafka's broker answers the request's own response with REQUEST_TIMED_OUT on every
topic, resource or partition it named, and admin clients retry. ottla used to treat it
as a handler failure and close the connection. Here one real broker runs in-process
with its controller made unreachable, as in a cluster that lost its quorum.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ottla.broker import Broker
from ottla.broker.controller import ControllerUnavailableError
from ottla.broker.handlers.controller_errors import controller_error_response
from ottla.cluster import NotLeaderError
from ottla.config import load_config
from ottla.protocol import SUPPORTED_APIS, DecodedRequest, ErrorCode, decode_request, make
from ottla.protocol.codec import encode_response
from tests.integration.rawclient import encode_request, request

TIMEOUT = datetime.timedelta(seconds=1)
TOPIC_RESOURCE = 2  # ConfigResource type TOPIC


def _create_topics(m: Any, t: type[Any], names: str = "ab") -> Any:
    topics = tuple(
        make(
            m.CreatableTopic,
            name=name,
            num_partitions=2,
            replication_factor=1,
            assignments=(),
            configs=(),
        )
        for name in names
    )
    return make(t, topics=topics, timeout=TIMEOUT, validate_only=False)


def _delete_topics(m: Any, t: type[Any]) -> Any:
    if hasattr(m, "DeleteTopicState"):
        states = tuple(make(m.DeleteTopicState, name=n, topic_id=uuid.UUID(int=0)) for n in "ab")
        return make(t, topics=states, timeout=TIMEOUT)
    return make(t, topic_names=("a", "b"), timeout=TIMEOUT)


def _alter_configs(m: Any, t: type[Any]) -> Any:
    config = make(m.AlterableConfig, name="retention.ms", config_operation=0, value="1000")
    resources = tuple(
        make(
            m.AlterConfigsResource, resource_type=TOPIC_RESOURCE, resource_name=n, configs=(config,)
        )
        for n in "ab"
    )
    return make(t, resources=resources, validate_only=False)


def _create_partitions(m: Any, t: type[Any]) -> Any:
    topics = tuple(make(m.CreatePartitionsTopic, name=n, count=3, assignments=None) for n in "ab")
    return make(t, topics=topics, timeout=TIMEOUT, validate_only=False)


def _elect_leaders(m: Any, t: type[Any]) -> Any:
    topics = (make(m.TopicPartitions, topic="a", partitions=(0, 1)),)
    return make(t, election_type=0, topic_partitions=topics, timeout=TIMEOUT)


def _alter_reassignments(m: Any, t: type[Any]) -> Any:
    partitions = tuple(
        make(m.ReassignablePartition, partition_index=i, replicas=(1,)) for i in (0, 1)
    )
    topics = (make(m.ReassignableTopic, name="a", partitions=partitions),)
    return make(t, timeout=TIMEOUT, allow_replication_factor_change=True, topics=topics)


def _list_reassignments(m: Any, t: type[Any]) -> Any:
    return make(t, timeout=TIMEOUT, topics=None)


REQUESTS: dict[int, Callable[[Any, type[Any]], Any]] = {
    19: _create_topics,
    20: _delete_topics,
    33: _alter_configs,
    37: _create_partitions,
    43: _elect_leaders,
    44: _alter_configs,
    45: _alter_reassignments,
    46: _list_reassignments,
}


def _body(api_key: int, version: int) -> Any:
    spec = SUPPORTED_APIS[api_key]
    return REQUESTS[api_key](spec.request_module(version), spec.request_type(version))


def _codes(response: Any) -> list[Any]:
    """Every error code in a response, top level and per item, depth first."""
    found = []
    for name in response.__dataclass_fields__:
        value = getattr(response, name)
        if name == "error_code":
            found.append(value)
        elif isinstance(value, tuple):
            for item in value:
                if hasattr(item, "__dataclass_fields__"):
                    found.extend(_codes(item))
    return found


def _items(response: Any) -> int:
    """How many topics, resources or partitions a response names."""
    count = 0
    for name in response.__dataclass_fields__:
        value = getattr(response, name)
        if isinstance(value, tuple):
            for item in value:
                if hasattr(item, "__dataclass_fields__"):
                    count += max(1, _items(item))
    return count


EXPECTED_ITEMS = {19: 2, 20: 2, 33: 2, 37: 2, 43: 2, 44: 2, 45: 2, 46: 0}


@pytest.mark.parametrize(
    ("api_key", "version"),
    [
        (key, version)
        for key in sorted(REQUESTS)
        for version in range(SUPPORTED_APIS[key].min_version, SUPPORTED_APIS[key].max_version + 1)
    ],
)
def test_every_version_gets_its_items_with_request_timed_out(api_key: int, version: int) -> None:
    body = _body(api_key, version)
    frame = encode_request(body, 7)[4:]
    decoded: DecodedRequest = decode_request(frame)
    response = controller_error_response(decoded, ErrorCode.request_timed_out, "no controller")
    codes = _codes(response)
    assert codes, f"{type(response).__name__} carries no error code"
    assert all(code == ErrorCode.request_timed_out for code in codes), codes
    # Every topic, resource or partition of the request is answered, and it encodes.
    assert _items(response) == EXPECTED_ITEMS[api_key]
    assert sum(len(chunk) for chunk in encode_response(decoded.header, response)) > 8


@pytest.mark.parametrize("failure", ["unreachable", "commit_timed_out"])
async def test_a_client_gets_request_timed_out_and_the_broker_keeps_serving(
    tmp_path: Path, failure: str
) -> None:
    config = load_config(
        overrides=["listeners=PLAINTEXT://127.0.0.1:0"], data_dir=str(tmp_path), environ={}
    )
    broker = Broker(config)
    await broker.start()
    controller = broker.controller
    port = broker.bound_ports[0]
    spec = SUPPORTED_APIS[19]
    # Topics the other requests name, so that the handlers get as far as the write.
    create = _create_topics(spec.request_module(7), spec.request_type(7))
    response = await asyncio.to_thread(request, port, create)
    assert [t.error_code for t in response.topics] == [ErrorCode.none] * 2
    calls: list[str] = []

    async def write(*_: Any, **__: Any) -> Any:
        calls.append("write")
        if failure == "unreachable":
            raise NotLeaderError(-1, 0)  # not the leader any more: forward it
        raise TimeoutError

    async def forward_request(request: DecodedRequest) -> Any:
        calls.append("forward")
        raise ControllerUnavailableError("no active controller answered within 30 s")

    controller.write = write  # type: ignore[method-assign]
    controller.forward_request = forward_request  # type: ignore[method-assign]
    try:
        for api_key in (19, 20, 33, 37, 43, 44, 45):
            calls.clear()
            version = SUPPORTED_APIS[api_key].max_version
            response = await asyncio.to_thread(request, port, _body(api_key, version))
            # (The broker's own background writes fail the same way, so only the
            # presence of this request's steps is checked.)
            assert "write" in calls
            assert ("forward" in calls) == (failure == "unreachable")
            codes = _codes(response)
            assert codes and all(c == ErrorCode.request_timed_out for c in codes), (api_key, codes)
        # The broker still serves: with its controller back, the topic is created.
        del controller.write, controller.forward_request
        create = _create_topics(spec.request_module(7), spec.request_type(7), names="c")
        response = await asyncio.to_thread(request, port, create)
        assert [t.error_code for t in response.topics] == [ErrorCode.none]
        assert broker.image.topic("c") is not None
    finally:
        await broker.stop()
