"""The broker compacts `cleanup.policy=compact` topics in the background.

A compacted topic with tiny segments receives many updates of a few keys; the
broker's cleaner (run every 200 ms here) rewrites the sealed segments so a
consumer reading from the beginning sees, per key, the latest value — and offsets
keep their original numbering (compaction leaves gaps, never renumbers).
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess

KEYS = 5
ROUNDS = 200


def _read_all(bootstrap: str, end_offset: int) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("compacted", 0, 0)])
    records: list[tuple[int, bytes, bytes]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = [m for m in consumer.consume(1000, 0.5) if not m.error()]
        records += [(m.offset() or 0, m.key() or b"", m.value() or b"") for m in messages]
        if records and records[-1][0] >= end_offset - 1:
            break
    consumer.close()
    return records


def test_compacted_topic_keeps_the_latest_value_per_key(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory("log.cleaner.backoff.ms=200")  # type: ignore[operator]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = NewTopic(
        "compacted",
        1,
        1,
        config={"cleanup.policy": "compact", "segment.bytes": "4096"},
    )
    for future in admin.create_topics([topic]).values():
        assert future.result(15) is None
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for round_number in range(ROUNDS):
        for key in range(KEYS):
            producer.produce("compacted", key=f"k{key}".encode(), value=f"{round_number}".encode())
        producer.flush(10)
    end_offset = ROUNDS * KEYS

    deadline = time.monotonic() + 30
    while True:
        records = _read_all(broker.bootstrap, end_offset)
        if len(records) < end_offset // 4 or time.monotonic() > deadline:
            break
    assert len(records) < end_offset // 4, f"no compaction: {len(records)} records remain"
    latest = {key: value for _, key, value in records}
    assert latest == {f"k{key}".encode(): str(ROUNDS - 1).encode() for key in range(KEYS)}
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets must stay unique and increasing"
    assert offsets[-1] == end_offset - 1, "the last offset keeps its number"
