"""Each real client produces to and consumes from a real `ottla serve` process.

Proves the broker's basic data path end to end with kcat (librdkafka 2.0.2, the
Debian build), confluent-kafka (librdkafka 2.x, flexible versions, idempotence),
aiokafka and kafka-python (pre-flexible versions): auto-created and admin-created
topics, keys, headers, compression, and a consumer reading back exactly what was
produced.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.conftest import BrokerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run")
def test_kcat_produces_and_consumes(broker: BrokerProcess) -> None:
    lines = "\n".join(f"k{i}:v{i}" for i in range(20)) + "\n"
    subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-t", "kcat-topic", "-P", "-K:"],
        input=lines.encode(),
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-t", "kcat-topic", "-C", "-e", "-f", "%k=%s@%o\n"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    assert out.splitlines() == [f"k{i}=v{i}@{i}" for i in range(20)]


def test_confluent_idempotent_round_trip(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic("ck", 3, 1)]).values():
        assert future.result(15) is None
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
        }
    )
    for i in range(1000):
        producer.produce("ck", key=str(i).encode(), value=b"v" * 100, headers=[("h", b"x")])
    assert producer.flush(15) == 0
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("ck", i, 0) for i in range(3)])
    keys: set[int] = set()
    deadline = time.monotonic() + 30
    while len(keys) < 1000 and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is None or message.error():
            continue
        assert message.headers() == [("h", b"x")]
        keys.add(int(message.key() or b"-1"))
    consumer.close()
    assert keys == set(range(1000))


def test_aiokafka_round_trip(broker: BrokerProcess) -> None:
    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip")
        await producer.start()
        try:
            for i in range(100):
                await producer.send_and_wait("aio", key=b"k", value=str(i).encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "aio", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        values = []
        try:
            async with asyncio.timeout(30):
                async for message in consumer:
                    values.append(message.value)
                    if len(values) == 100:
                        break
        finally:
            await consumer.stop()
        return values

    assert asyncio.run(run()) == [str(i).encode() for i in range(100)]


def test_kafka_python_round_trip(broker: BrokerProcess) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="lz4")
    for i in range(100):
        producer.send("kp", key=b"k", value=str(i).encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        "kp",
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    values = [message.value for message in consumer]
    consumer.close()
    assert values == [str(i).encode() for i in range(100)]
