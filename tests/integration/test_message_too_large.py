"""A batch over the topic's `max.message.bytes` is refused with MESSAGE_TOO_LARGE.

Raw produce: a batch just over a topic's `max.message.bytes` (10000) gets
MESSAGE_TOO_LARGE (10) and a batch just under it is appended. confluent-kafka,
allowed to send bigger messages than the broker takes, gets MSG_SIZE_TOO_LARGE
for a 1.1 MB record against the broker default (message.max.bytes 1048588). In
both cases nothing oversized reaches the log.
"""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, Producer

from ottla.protocol import Record, build_batch
from tests.integration.clients import EARLIEST, Confluent
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition, produce_partition

pytestmark = pytest.mark.timeout(60)

MESSAGE_TOO_LARGE = 10
LIMIT = 10_000


def _batch_of(total_bytes: int) -> bytes:
    value = os.urandom(total_bytes)
    batch = build_batch([Record(key=b"k", value=value)], base_timestamp=1)
    while len(batch) > total_bytes:  # trim the value until the whole batch fits exactly
        value = value[: len(value) - (len(batch) - total_bytes)]
        batch = build_batch([Record(key=b"k", value=value)], base_timestamp=1)
    assert len(batch) == total_bytes, len(batch)
    return bytes(batch)


def test_raw_batch_over_topic_limit(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("small", 1, {"max.message.bytes": str(LIMIT)})
    with Wire(broker.bootstrap) as wire:
        over = produce_partition(wire, "small", 0, _batch_of(LIMIT + 1))
        assert over.error_code == MESSAGE_TOO_LARGE
        at_limit = produce_partition(wire, "small", 0, _batch_of(LIMIT))
        assert (at_limit.error_code, at_limit.base_offset) == (0, 0)
        assert fetch_partition(wire, "small", 0, 0).high_watermark == 1


def test_client_record_over_broker_default(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("default-limit", 1, {})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4_000_000})
    errors: list[KafkaError | None] = []
    producer.produce(
        "default-limit", os.urandom(1_100_000), on_delivery=lambda e, _m: errors.append(e)
    )
    producer.produce("default-limit", b"small", on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(30) == 0
    assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE, None]
    got = client.consume("default-limit", 0, EARLIEST, 1)
    assert [(g.offset, g.value) for g in got] == [(0, b"small")]
