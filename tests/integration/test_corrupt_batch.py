"""A produce batch with a bad CRC is refused with CORRUPT_MESSAGE and the log is unchanged.

Three good records are produced first. Then a batch whose payload was altered
after its CRC was computed — alone, and behind a good batch in the same request —
is answered with CORRUPT_MESSAGE (2). A consumer still reads exactly the three
good records and the high watermark did not move; the connection stays usable.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from ottla.protocol import Record, build_batch
from tests.integration.clients import EARLIEST, Confluent, Rec
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition, produce_partition

pytestmark = pytest.mark.timeout(60)

CORRUPT_MESSAGE = 2


def _corrupted() -> bytes:
    batch = build_batch([Record(key=b"bad", value=b"payload-bad")], base_timestamp=1)
    batch[-3] ^= 0xFF  # inside the last record's value, covered by the CRC
    return bytes(batch)


def test_bad_crc_is_refused_and_log_unchanged(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("crc", 1, {})
    client.produce("crc", [Rec(f"k{i}".encode(), f"v{i}".encode()) for i in range(3)])
    good = bytes(build_batch([Record(key=b"good", value=b"v")], base_timestamp=1))
    with Wire(broker.bootstrap) as wire:
        for records in (_corrupted(), good + _corrupted()):
            response = produce_partition(wire, "crc", 0, records)
            assert response.error_code == CORRUPT_MESSAGE
            assert response.base_offset == -1
        partition = fetch_partition(wire, "crc", 0, 0)
        assert partition.error_code == 0
        assert partition.high_watermark == 3
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "crc"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition("crc", 0), 15) == (0, 3)
    finally:
        consumer.close()
    got = client.consume("crc", 0, EARLIEST, 3)
    assert [(g.key, g.value) for g in got] == [
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(3)
    ]
