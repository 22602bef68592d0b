"""A large topic's partitions open in a worker thread (broker/partition_opener.py).

On one real broker in the test's event loop, with the worker's batches held at a gate
the test opens: a topic of more than IN_PLACE_MAX partitions is opened by the worker,
not in place, and every partition ends up hosted, led and writable; one of at most
IN_PLACE_MAX is hosted as soon as CreateTopics returns. A topic deleted while its
partitions are in the worker leaves no directory and no partition behind, and one
deleted and created again under the same name ends up with the new topic id only.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker, partition_dirs, partition_opener
from tests.broker.inprocess import running_broker, until

LARGE = partition_opener.IN_PLACE_MAX + 40
BOUND_S = 60


class Gate:
    """Holds each worker batch until `open()`; records the partitions it was given."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.keys: list[tuple[str, int]] = []

    def __call__(self, data_dir: Path, batch: list[Any], now_ms: int) -> Any:
        self.keys += [spec.key for spec in batch]
        self.entered.set()
        self.opened.wait(BOUND_S)
        return self.real(data_dir, batch, now_ms)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with running_broker(tmp_path) as node:
        yield node


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    held = Gate(partition_opener._open_batch)
    monkeypatch.setattr(partition_opener, "_open_batch", held)
    return held


def _admin(broker: Broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.bound_ports[0]}"})


async def _create(broker: Broker, name: str, partitions: int) -> None:
    def create() -> None:
        admin = _admin(broker)
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)

    await asyncio.to_thread(create)


async def _delete(broker: Broker, name: str) -> None:
    def delete() -> None:
        admin = _admin(broker)
        admin.delete_topics([name])[name].result(30)

    await asyncio.to_thread(delete)


def _directories(broker: Broker, name: str) -> list[Path]:
    return sorted(broker.data_dir.glob(f"{name}-*"))


async def test_a_large_topic_opens_in_the_worker_and_every_partition_serves(
    broker: Broker, gate: Gate
) -> None:
    await _create(broker, "small", partition_opener.IN_PLACE_MAX)
    assert all(
        broker.partition("small", i) is not None for i in range(partition_opener.IN_PLACE_MAX)
    )
    assert gate.keys == []  # opened in place

    await _create(broker, "large", LARGE)
    await asyncio.to_thread(gate.entered.wait, BOUND_S)
    assert broker.partition("large", 0) is None  # not hosted while in the worker
    gate.opened.set()
    async with asyncio.timeout(BOUND_S):
        await broker.opener.idle()
    assert sorted(gate.keys) == sorted(("large", i) for i in range(LARGE))
    assert all(broker.partition("large", i) is not None for i in range(LARGE))

    def produce() -> int:
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.bound_ports[0]}"})
        for index in range(LARGE):
            producer.produce("large", b"v", partition=index)
        return producer.flush(30)

    assert await asyncio.to_thread(produce) == 0
    assert all(broker.partition("large", i).log_end_offset == 1 for i in range(LARGE))  # type: ignore[union-attr]


async def test_a_topic_deleted_while_opening_leaves_nothing(broker: Broker, gate: Gate) -> None:
    await _create(broker, "brief", LARGE)
    await asyncio.to_thread(gate.entered.wait, BOUND_S)
    assert broker.replicas.opening
    await _delete(broker, "brief")
    await until(lambda: broker.image.topic("brief") is None, BOUND_S, "brief deleted")
    gate.opened.set()
    async with asyncio.timeout(BOUND_S):
        await broker.opener.idle()
    assert not any(key[0] == "brief" for key in broker.replicas.partitions)
    assert _directories(broker, "brief") == []


async def test_a_topic_created_again_while_opening_keeps_only_its_new_id(
    broker: Broker, gate: Gate
) -> None:
    await _create(broker, "again", LARGE)
    await asyncio.to_thread(gate.entered.wait, BOUND_S)
    await _delete(broker, "again")
    await until(lambda: broker.image.topic("again") is None, BOUND_S, "again deleted")
    await _create(broker, "again", LARGE)
    topic = broker.image.topic("again")
    assert topic is not None
    gate.opened.set()
    async with asyncio.timeout(BOUND_S):
        await broker.opener.idle()
    hosted = [broker.replicas.get("again", i) for i in range(LARGE)]
    assert all(p is not None and p.topic_id == topic.topic_id for p in hosted)
    directories = _directories(broker, "again")
    assert len(directories) == LARGE
    for directory in directories:
        stored = partition_dirs.read_topic_id(directory)
        assert isinstance(stored, uuid.UUID) and stored == topic.topic_id
