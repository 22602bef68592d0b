"""A Fetch's response-wide max_bytes limits its first partition too (KIP-74).

Found by librdkafka's own test 0082_fetch_max_bytes: a consumer with
`max.partition.fetch.bytes` 20 MB and `fetch.max.bytes` 1 MB got a 19 MB response for
its first partition and dropped it ("Invalid response size"), so it never read a
record. Kafka reads each partition up to min(its partition_max_bytes, what is left of
max_bytes); only a first batch larger than that comes whole (so a consumer always
progresses). Checked with a raw Fetch (how many batches come back) and with that
consumer's settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from ottla.protocol import Record, build_batch, iter_batches
from tests.integration.clients import client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, fetch_request, produce_partition

pytestmark = pytest.mark.timeout(60)

TOPIC = "limits"
BATCHES = 40
VALUE_BYTES = 100_000  # one record per batch, random so compression cannot shrink it


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("limits")) as started:
        client_for("confluent", started.bootstrap).create_topic(TOPIC, 1, {})
        with Wire(started.bootstrap) as wire:
            for i in range(BATCHES):
                batch = build_batch(
                    [Record(key=b"%d" % i, value=os.urandom(VALUE_BYTES))], base_timestamp=1
                )
                assert produce_partition(wire, TOPIC, 0, bytes(batch)).error_code == 0
        yield started


def _fetch(broker: BrokerProcess, max_bytes: int, partition_max_bytes: int) -> list[int]:
    """Base offsets of the batches one Fetch v12 returns from offset 0."""
    body = fetch_request(TOPIC, 0, 0, max_bytes, partition_max_bytes=partition_max_bytes)
    with Wire(broker.bootstrap) as wire:
        (partition,) = wire.request(1, 12, body).responses[0].partitions
    assert partition.error_code == 0
    return [batch.base_offset for batch in iter_batches(bytes(partition.records))]


def test_max_bytes_limits_the_first_partition(broker: BrokerProcess) -> None:
    # Two ~100 KB batches fit in 250 KB; the partition's own 20 MB limit is not the one.
    assert _fetch(broker, 250_000, 20_000_000) == [0, 1]
    assert _fetch(broker, 20_000_000, 250_000) == [0, 1]
    # A first batch larger than max_bytes still comes, whole and alone (KIP-74).
    assert _fetch(broker, 50_000, 20_000_000) == [0]


def test_librdkafka_reads_everything_with_a_small_fetch_max_bytes(broker: BrokerProcess) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "limits",
            "max.partition.fetch.bytes": 20_000_000,
            "fetch.max.bytes": 1_000_000,
            "receive.message.max.bytes": 1_000_512,
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    keys: list[bytes] = []
    try:
        while len(keys) < BATCHES:
            message = consumer.poll(10)
            assert message is not None, f"stalled after {len(keys)} records"
            assert message.error() is None, message.error()
            key = message.key()
            assert key is not None
            keys.append(key)
    finally:
        consumer.close()
    assert keys == [b"%d" % i for i in range(BATCHES)]
