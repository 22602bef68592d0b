"""A fetch at an offset inside a batch returns the whole batch; clients skip the head.

Ten records are produced as one batch (raw Produce, so the batching is certain),
then three more as a second batch. A raw Fetch at offset 5 returns bytes that
start with the whole first batch (base offset 0, ten records) and continue with
the second, as Kafka does. Each real client, told to start at offset 5, gets
exactly records 5..12.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from ottla.protocol import Compression, Record, build_batch, iter_batches
from tests.integration.clients import CLIENTS, client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, fetch_partition, produce_partition

pytestmark = pytest.mark.timeout(60)

TOPIC = "mid-batch"


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("mid")) as broker:
        client_for("confluent", broker.bootstrap).create_topic(TOPIC, 1, {})
        first = build_batch(
            [Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(10)],
            base_timestamp=1_700_000_000_000,
            compression=Compression.LZ4,
        )
        second = build_batch(
            [Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(10, 13)],
            base_timestamp=1_700_000_000_000,
        )
        with Wire(broker.bootstrap) as wire:
            assert produce_partition(wire, TOPIC, 0, bytes(first)).base_offset == 0
            assert produce_partition(wire, TOPIC, 0, bytes(second)).base_offset == 10
        yield broker


def test_raw_fetch_returns_whole_batch(shared_broker: BrokerProcess) -> None:
    with Wire(shared_broker.bootstrap) as wire:
        partition = fetch_partition(wire, TOPIC, 0, 5)
    assert (partition.error_code, partition.high_watermark) == (0, 13)
    records = bytes(partition.records)
    batches = [(b.base_offset, b.records_count) for b in iter_batches(records)]
    assert batches == [(0, 10), (10, 3)]
    assert struct.unpack_from(">q", records)[0] == 0


@pytest.mark.parametrize("name", CLIENTS)
def test_client_starting_mid_batch(shared_broker: BrokerProcess, name: str) -> None:
    got = client_for(name, shared_broker.bootstrap).consume(TOPIC, 0, 5, 8)
    assert [(g.offset, g.key, g.value) for g in got] == [
        (i, b"k%d" % i, b"v%d" % i) for i in range(5, 13)
    ]
