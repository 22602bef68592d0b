"""FindCoordinator while `__consumer_offsets` cannot be created yet: a retriable error.

A GROUP lookup creates the offsets topic when it is missing, through the quorum. In a
cluster that write can fail for a while: the quorum's leadership moves while it is in
flight (NotLeaderError), no controller answers, or the commit outlasts its timeout. The
client must then get COORDINATOR_NOT_AVAILABLE, which every Kafka client retries, not a
handler failure. Found by tests/netns/test_nemesis.py: the checker's consumer looked up
its group while the quorum leader changed, and the node logged a traceback. Here one
real broker runs in-process with its offsets-topic creation made to fail that way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.static.primitive import i8

from ottla.broker import Broker
from ottla.broker.controller import ControllerUnavailableError
from ottla.cluster import NotLeaderError
from ottla.config import load_config
from ottla.protocol import ErrorCode
from tests.integration.rawclient import request


@pytest.mark.parametrize(
    "error",
    [
        NotLeaderError(2, 7),
        ControllerUnavailableError("no active controller answered within 1 s"),
        TimeoutError(),
    ],
)
async def test_a_failed_offsets_topic_creation_answers_coordinator_not_available(
    tmp_path: Path, error: Exception
) -> None:
    config = load_config(
        overrides=["listeners=PLAINTEXT://127.0.0.1:0"], data_dir=str(tmp_path), environ={}
    )
    broker = Broker(config)
    await broker.start()
    attempts: list[str] = []

    async def failing_creation() -> None:
        attempts.append("ensure_topic")
        raise error

    broker.groups.ensure_topic = failing_creation  # type: ignore[method-assign]
    try:
        body = FindCoordinatorRequest(key_type=i8(0), coordinator_keys=("g",))
        response = await asyncio.to_thread(request, broker.bound_ports[0], body)
        assert attempts == ["ensure_topic"]
        (coordinator,) = response.coordinators
        assert coordinator.error_code is ErrorCode.coordinator_not_available
        assert coordinator.node_id == -1
        # The broker keeps serving: the next lookup, with creation working, finds it.
        del broker.groups.ensure_topic
        response = await asyncio.to_thread(request, broker.bound_ports[0], body)
        (found,) = response.coordinators
        assert found.error_code is ErrorCode.none and found.node_id == 1
    finally:
        await broker.stop()
