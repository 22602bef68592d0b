"""A full disk is a clean error, not a crash.

The broker's data dir lives on a 3 MiB tmpfs; a producer fills it. Appends that
no longer fit are answered KAFKA_STORAGE_ERROR (the client sees a retriable storage
error), the broker keeps running and keeps serving what it stored: a consumer
still reads every record that was acknowledged.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from tests.integration.conftest import BrokerProcess, free_port


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_answers_storage_error_and_keeps_serving(small_disk: Path) -> None:
    # The data dir is the mount point itself, so the broker log (written beside the
    # data dir) stays on the normal disk.
    broker = BrokerProcess(small_disk, free_port())
    broker.start()
    try:
        acknowledged: list[bytes] = []
        errors: list[int] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is None:
                acknowledged.append(message.value() or b"")
            else:
                errors.append(error.code())

        producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 5000, "retries": 0}
        )
        for i in range(5000):
            while True:
                try:
                    producer.produce(
                        "fill", str(i).encode().ljust(1000, b"."), on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(30)
        assert errors, "the disk never filled up"
        assert set(errors) == {KafkaError.KAFKA_STORAGE_ERROR}
        assert acknowledged
        assert broker.process is not None and broker.process.poll() is None

        # A group-less consumer: this test is about the data path, not coordinators.
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
        consumer.assign([KafkaTopicPartition("fill", 0)])
        consumer.seek_to_beginning()
        read: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(read) < len(acknowledged) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                read += [r.value for r in records]
        consumer.close()
        assert read == acknowledged
    finally:
        broker.stop()
