"""A deleted topic's directories are renamed at once and removed off the event loop
(partition_dirs.mark_for_deletion, ReplicaManager._delete_later).

On one real broker in the test's event loop: after DeleteTopics no `<topic>-<n>`
directory is left the moment the broker applied the deletion (the name is free for a
topic created again), and the renamed `-delete` directories are gone once the worker
ran; a topic created again at once under the same name starts empty; a `-delete`
directory a crash left behind is removed when the broker starts. A directory the disk
will not rename (a file system remounted read-only) is left where it is, logged, and
does not keep the rest of the deletion from applying: before, its OSError escaped the
image's application, and the other topic deleted by the same request stayed hosted.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker, partition_dirs
from tests.broker.inprocess import running_broker, until

BOUND_S = 30
PARTITIONS = 4


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    leftover = tmp_path / "gone-0.0123abcd-delete"  # a crash interrupted its removal
    leftover.mkdir(parents=True)
    (leftover / "00000000000000000000.log").write_bytes(b"x" * 100)
    async with running_broker(tmp_path) as node:
        yield node


def _bootstrap(broker: Broker) -> str:
    return f"127.0.0.1:{broker.bound_ports[0]}"


async def _admin(broker: Broker, action: str, *names: str) -> None:
    def call() -> None:
        admin = AdminClient({"bootstrap.servers": _bootstrap(broker)})
        if action == "create":
            futures = admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
        else:
            futures = admin.delete_topics(list(names))
        for future in futures.values():
            future.result(30)

    await asyncio.to_thread(call)


async def _produce(broker: Broker, name: str) -> None:
    def call() -> None:
        producer = Producer({"bootstrap.servers": _bootstrap(broker)})
        for index in range(PARTITIONS):
            producer.produce(name, b"v" * 1000, partition=index)
        assert producer.flush(30) == 0

    await asyncio.to_thread(call)


def _named(broker: Broker, pattern: str) -> list[Path]:
    return sorted(broker.data_dir.glob(pattern))


async def test_a_deleted_topic_is_renamed_at_once_and_removed_later(broker: Broker) -> None:
    assert _named(broker, "*-delete") == []  # the leftover went at startup
    await _admin(broker, "create", "orders")
    await _produce(broker, "orders")
    assert len(_named(broker, "orders-*")) == PARTITIONS

    await _admin(broker, "delete", "orders")
    assert _named(broker, "orders-[0-9]") == []  # applied before DeleteTopics answered
    await until(lambda: _named(broker, "orders-*") == [], BOUND_S, "renamed dirs removed")

    await _admin(broker, "create", "orders")
    await _admin(broker, "delete", "orders")
    await _admin(broker, "create", "orders")  # again at once, under the same name
    hosted = [broker.replicas.get("orders", index) for index in range(PARTITIONS)]
    assert all(p is not None and p.log_end_offset == 0 for p in hosted)
    await until(lambda: not _named(broker, "*-delete"), BOUND_S, "renamed dirs removed")
    assert len(_named(broker, "orders-*")) == PARTITIONS


async def test_a_directory_that_cannot_be_renamed_does_not_stop_the_deletion(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _admin(broker, "create", "stuck", "other")
    real = partition_dirs.mark_for_deletion

    def read_only(directory: Path) -> Path | None:
        if directory.name.startswith("stuck-"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(directory)

    monkeypatch.setattr(partition_dirs, "mark_for_deletion", read_only)
    await _admin(broker, "delete", "stuck", "other")  # one metadata change
    assert broker.image.topic("stuck") is None and broker.image.topic("other") is None
    assert not any(topic in ("stuck", "other") for topic, _ in broker.replicas.partitions)
    assert len(_named(broker, "stuck-[0-9]")) == PARTITIONS  # left where it was
    await until(lambda: _named(broker, "other-*") == [], BOUND_S, "other's dirs removed")
