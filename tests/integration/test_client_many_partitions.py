"""Every client produces to and consumes from a topic of 100 partitions.

Each client creates a 100-partition topic (kcat: auto-created with the broker's
`num.partitions=100`), produces 200 keyed records through its own partitioner plus
one record each to partitions 0 and 99 explicitly. Then: the high watermarks of the
100 partitions add up to 202 with records spread over many partitions; a consumer
of all 100 partitions reads back every record exactly once, each key always in one
partition; and the client itself reads partitions 0 and 99 in full.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.integration.clients import CLIENTS, EARLIEST, Rec, client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in

pytestmark = pytest.mark.timeout(120)

PARTITIONS = 100
KEYED = 200


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(
        tmp_path_factory.mktemp("many"), f"num.partitions={PARTITIONS}"
    ) as broker:
        yield broker


def _read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "observer", "enable.auto.commit": False}
    )
    seen: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        # Watermarks first: once the consumer fetches, each ListOffsets waits behind the
        # connection's long-poll Fetch (responses leave in request order, as in Kafka).
        watermarks = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), 15) for p in range(PARTITIONS)
        ]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        while len(seen) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            seen.append((int(message.partition() or 0), message.key() or b""))
    finally:
        consumer.close()
    assert all(low == 0 for low, _ in watermarks)
    assert sum(high for _, high in watermarks) == count
    return seen


@pytest.mark.parametrize("name", CLIENTS)
def test_hundred_partitions(shared_broker: BrokerProcess, name: str) -> None:
    client = client_for(name, shared_broker.bootstrap)
    topic = f"many-{name}"
    client.create_topic(topic, PARTITIONS, {})
    records = [Rec(f"key-{i}".encode(), f"v{i}".encode(), partition=None) for i in range(KEYED)]
    records += [Rec(b"first", b"to-0", partition=0), Rec(b"last", b"to-99", partition=99)]
    client.produce(topic, records, compression="lz4")

    seen = _read_all(shared_broker.bootstrap, topic, len(records))
    assert sorted(key for _, key in seen) == sorted(r.key or b"" for r in records)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for partition, key in seen:
        partitions_of[key].add(partition)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({partition for partition, _ in seen}) >= PARTITIONS // 2
    assert partitions_of[b"first"] == {0} and partitions_of[b"last"] == {99}

    for partition in (0, 99):
        expected = sorted(key for p, key in seen if p == partition)
        got = client.consume(topic, partition, EARLIEST, len(expected))
        assert {g.partition for g in got} == {partition}
        assert sorted(g.key or b"" for g in got) == expected
        assert [g.offset for g in got] == list(range(len(expected)))
