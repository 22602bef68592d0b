"""A partition whose log cannot be opened (a full disk, an I/O error) fails alone, is
tried again, and says why (broker/partition_opener.py).

Real brokers in the test's event loop; `open_partition_log` (the directory and files
of a new partition) raises ENOSPC for the directories the test names until it says
stop. Before the fix, an OSError while opening a partition in place escaped the
image's application: the partitions after it in the same change were never opened and
no role of that change was applied, and nothing tried the failed one again, so a
topic created on a momentarily full disk stayed unwritable until a restart.

Checked here:
- in place: the failed partition's neighbours in the same change are hosted and
  writable; a write to the failed one, and ListOffsets for it, are answered
  KAFKA_STORAGE_ERROR; once the disk has room it is opened again and takes writes;
- in the worker thread (a topic of more than IN_PLACE_MAX partitions): the same;
- on three nodes: a node that cannot open a partition the image has it lead, with
  other replicas in the ISR, stops (`Broker.failed`) so that they lead, as for a
  failed append; the nodes that only follow keep running.
"""

from __future__ import annotations

import asyncio
import errno
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker, partition_opener, partitions
from tests.broker.inprocess import running_broker, running_cluster, until
from tests.integration.wire import Wire, kio_module

BOUND_S = 60
RETRY_S = 0.2
LARGE = partition_opener.IN_PLACE_MAX + 8
KAFKA_STORAGE_ERROR = 56


class FullDisk:
    """`open_partition_log`, raising ENOSPC for the named partition directories (under
    `root`, if given) while `full`."""

    def __init__(self, real: Any, names: set[str], root: Path | None = None) -> None:
        self.real = real
        self.names = names
        self.root = root
        self.full = True
        self.refused: list[str] = []

    def __call__(self, directory: Path, topic_id: uuid.UUID, config: Any, now_ms: int) -> Any:
        under_root = self.root is None or directory.parent == self.root
        if self.full and under_root and directory.name in self.names:
            self.refused.append(directory.name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(directory, topic_id, config, now_ms)


def _full_disk(monkeypatch: pytest.MonkeyPatch, names: set[str], root: Path | None) -> FullDisk:
    fault = FullDisk(partitions.open_partition_log, names, root)
    monkeypatch.setattr(partitions, "open_partition_log", fault)  # in place
    monkeypatch.setattr(partition_opener, "open_partition_log", fault)  # in the worker
    return fault


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with running_broker(tmp_path) as node:
        node.opener.retry_s = RETRY_S
        yield node


def _bootstrap(broker: Broker) -> str:
    return f"127.0.0.1:{broker.bound_ports[0]}"


async def _create(bootstrap: str, name: str, count: int, replicas: int = 1) -> None:
    def create() -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(name, count, replicas)])[name].result(30)

    await asyncio.to_thread(create)


async def _produce(bootstrap: str, topic: str, index: int) -> KafkaError | None:
    """One record to one partition, no retries: the broker's answer as the client saw it."""

    def produce() -> KafkaError | None:
        outcome: list[KafkaError | None] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            outcome.append(error)

        producer = Producer({"bootstrap.servers": bootstrap, "retries": 0})
        producer.produce(topic, b"v", partition=index, on_delivery=delivered)
        assert producer.flush(30) == 0
        return outcome[0]

    return await asyncio.to_thread(produce)


async def _list_offsets_error(bootstrap: str, topic: str, index: int) -> int:
    module = kio_module(2, 7)
    body = module.ListOffsetsRequest(
        replica_id=-1,
        isolation_level=0,
        topics=(
            module.ListOffsetsTopic(
                name=topic,
                partitions=(
                    module.ListOffsetsPartition(
                        partition_index=index, current_leader_epoch=-1, timestamp=-1
                    ),
                ),
            ),
        ),
    )

    def ask() -> int:
        with Wire(bootstrap) as wire:
            return int(wire.request(2, 7, body).topics[0].partitions[0].error_code)

    return await asyncio.to_thread(ask)


async def test_a_partition_that_fails_in_place_fails_alone_and_opens_once_there_is_room(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = _full_disk(monkeypatch, {"mixed-0"}, root=None)
    await _create(_bootstrap(broker), "mixed", 3)
    assert fault.refused == ["mixed-0"]
    assert broker.partition("mixed", 0) is None
    for index in (1, 2):  # the rest of the change still applied
        hosted = broker.partition("mixed", index)
        assert hosted is not None and hosted.replication is not None
        assert await _produce(_bootstrap(broker), "mixed", index) is None

    refused = await _produce(_bootstrap(broker), "mixed", 0)
    assert refused is not None and refused.code() == KafkaError.KAFKA_STORAGE_ERROR
    assert await _list_offsets_error(_bootstrap(broker), "mixed", 0) == KAFKA_STORAGE_ERROR
    assert await _list_offsets_error(_bootstrap(broker), "mixed", 1) == 0
    assert not broker.failed.is_set()  # alone with its data: it keeps serving

    fault.full = False
    await until(lambda: broker.partition("mixed", 0) is not None, BOUND_S, "mixed-0 opened")
    await until(
        lambda: broker.partition("mixed", 0).replication is not None,  # type: ignore[union-attr]
        BOUND_S,
        "mixed-0 led",
    )
    assert await _produce(_bootstrap(broker), "mixed", 0) is None
    assert broker.partition("mixed", 0).log_end_offset == 1  # type: ignore[union-attr]
    assert not broker.opener.failed


async def test_partitions_that_fail_in_the_worker_are_tried_again(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = {"wide-3", f"wide-{LARGE - 1}"}
    fault = _full_disk(monkeypatch, failing, root=None)
    await _create(_bootstrap(broker), "wide", LARGE)
    await until(lambda: set(fault.refused) >= failing, BOUND_S, "the worker tried them")
    async with asyncio.timeout(BOUND_S):
        await broker.opener.idle()
    assert set(broker.opener.failed) == {("wide", 3), ("wide", LARGE - 1)}
    assert all(
        (broker.partition("wide", i) is None) == (f"wide-{i}" in failing) for i in range(LARGE)
    )
    refused = await _produce(_bootstrap(broker), "wide", 3)
    assert refused is not None and refused.code() == KafkaError.KAFKA_STORAGE_ERROR

    fault.full = False
    await until(
        lambda: all(broker.partition("wide", i) is not None for i in range(LARGE)),
        BOUND_S,
        "every wide partition opened",
    )
    await until(lambda: not broker.opener.failed, BOUND_S, "nothing left to retry")
    assert await _produce(_bootstrap(broker), "wide", 3) is None


async def test_a_leader_that_cannot_open_its_partition_stops_for_the_in_sync_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_cluster(tmp_path, "openFailureCluster0001") as brokers:
        for broker in brokers.values():
            broker.opener.retry_s = RETRY_S
        # Node 1's disk refuses every partition of the topic; three partitions with
        # replication factor 3 give each node the leadership of one.
        fault = _full_disk(monkeypatch, {f"spread-{i}" for i in range(3)}, tmp_path / "node1")
        bootstrap = ",".join(_bootstrap(b) for b in brokers.values())
        await _create(bootstrap, "spread", 3, replicas=3)
        image = brokers[2].image.topics_by_name["spread"]
        assert 1 in {state.leader for state in image.partitions.values()}
        await until(brokers[1].failed.is_set, BOUND_S, "node 1 stops")
        assert "log directory" in (brokers[1].failure or "")
        assert fault.refused
        assert not brokers[2].failed.is_set() and not brokers[3].failed.is_set()
