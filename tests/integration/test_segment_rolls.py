"""Segment rolls sync the sealed segment off the event loop, and lose nothing.

A topic with 64 KiB segments receives ~2 MB; every roll hands its segment to a
worker thread for the fsync, and the partition's recovery point (its checkpoint
file) follows once those syncs finish. Then the broker is SIGKILLed and restarted:
every acknowledged record is still there, in order.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess

RECORDS = 2000


def _recovery_point(partition_dir: Path) -> int:
    try:
        text = (partition_dir / "recovery-point-checkpoint").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return int(text[1].split()[0])


def test_rolled_segments_are_synced_and_survive_sigkill(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = NewTopic("rolls", 1, 1, config={"segment.bytes": str(64 * 1024)})
    for future in admin.create_topics([topic]).values():
        assert future.result(15) is None
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "batch.size": 16384})
    for i in range(RECORDS):
        producer.produce("rolls", value=str(i).encode().ljust(1000, b"."))
    assert producer.flush(30) == 0

    partition_dir = broker.data_dir / "rolls-0"
    segments = sorted(partition_dir.glob("*.log"))
    assert len(segments) > 10
    last_sealed_end = int(segments[-1].name.removesuffix(".log"))
    deadline = time.monotonic() + 20
    while _recovery_point(partition_dir) < last_sealed_end:
        assert time.monotonic() < deadline, "the recovery point never followed the rolls"
        time.sleep(0.05)  # polling a file another process writes, bounded by the deadline

    broker.restart(signal.SIGKILL)
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("rolls", 0, 0)])
    values: list[int] = []
    deadline = time.monotonic() + 30
    while len(values) < RECORDS and time.monotonic() < deadline:
        values += [
            int((m.value() or b"").rstrip(b"."))
            for m in consumer.consume(1000, 0.5)
            if not m.error()
        ]
    consumer.close()
    assert values == list(range(RECORDS))
