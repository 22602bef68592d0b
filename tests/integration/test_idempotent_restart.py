"""An idempotent producer rides through broker restarts without loss or duplicates.

confluent-kafka with `enable.idempotence=true` and `acks=all` produces 100,000
records to a 3-partition topic through a fault-injecting proxy (the broker
advertises the proxy's address). Twice, the proxy swallows the broker's responses
while the producer keeps sending — so the broker appends batches the producer
never hears about — and the broker is stopped: first with SIGTERM, then with
SIGKILL, and restarted. When responses flow again the producer retries those
batches, and the restarted broker must recognise them as duplicates from producer
state rebuilt from its log. A consumer then reads every partition from the
beginning: each record exactly once and, per partition, in produced order.
"""

from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess, free_port
from tests.integration.proxy import Proxy
from tests.integration.rawclient import log_end_offsets

pytestmark = pytest.mark.timeout(300)

RECORDS = 100_000
PARTITIONS = 3


def test_idempotent_producer_across_sigterm_and_sigkill(broker_factory: object) -> None:
    proxy_port = free_port()
    broker: BrokerProcess = broker_factory(  # type: ignore[operator]
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}"
    )
    proxy = Proxy(proxy_port, broker.port)
    try:
        _run(broker, proxy)
    finally:
        proxy.close()


def _run(broker: BrokerProcess, proxy: Proxy) -> None:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{proxy.port}"})
    for future in admin.create_topics([NewTopic("idem", PARTITIONS, 1)]).values():
        assert future.result(15) is None
    delivered: list[int] = []
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, message: object) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            delivered.append(1)

    producer = Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "socket.timeout.ms": 2000,
            "request.timeout.ms": 2000,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20,
        }
    )
    # Responses are swallowed from `start` on; the broker is restarted after `start`
    # plus 10,000 records, once it has appended records whose acks were lost.
    faults = {RECORDS // 3: signal.SIGTERM, 2 * RECORDS // 3: signal.SIGKILL}
    pending: tuple[int, int] | None = None  # (restart at, signal)
    for i in range(RECORDS):
        while True:
            try:
                producer.produce(
                    "idem",
                    key=str(i % 97).encode(),
                    value=str(i).encode(),
                    partition=i % PARTITIONS,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if i in faults:
            # Let the producer get going (connected, acks flowing) first.
            deadline = time.monotonic() + 30
            while len(delivered) < i // 2 and time.monotonic() < deadline:
                producer.poll(0.01)
            proxy.drop_responses.set()
            pending = (i + 10_000, faults[i])
        elif pending is not None and i == pending[0]:
            _restart_after_lost_acks(broker, proxy, producer, pending[1], delivered)
            pending = None
    assert producer.flush(120) == 0
    assert not failures, failures[:5]
    assert len(delivered) == RECORDS
    _check_exactly_once_in_order(proxy.port)


def _restart_after_lost_acks(
    broker: BrokerProcess, proxy: Proxy, producer: Producer, sig: int, delivered: list[int]
) -> None:
    """Once the broker holds records whose acks were lost, restart it."""
    deadline = time.monotonic() + 30
    while True:
        producer.poll(0.05)
        appended = sum(log_end_offsets(broker.port, "idem", PARTITIONS))
        if appended > len(delivered):
            break
        assert time.monotonic() < deadline, "the broker appended nothing while acks were lost"
    broker.restart(sig)
    proxy.cut_connections()
    proxy.drop_responses.clear()


def _check_exactly_once_in_order(port: int) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "group.id": "checker",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition("idem", p, 0) for p in range(PARTITIONS)])
    per_partition: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    seen = 0
    deadline = time.monotonic() + 120
    while seen < RECORDS and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 0.5):
            if message.error():
                continue
            per_partition[message.partition() or 0].append(int(message.value() or b"-1"))
            seen += 1
    # Anything beyond RECORDS would be a duplicate: look for it briefly.
    for message in consumer.consume(10_000, 1.0):
        if not message.error():
            per_partition[message.partition() or 0].append(int(message.value() or b"-1"))
    consumer.close()
    for partition, values in per_partition.items():
        expected = list(range(partition, RECORDS, PARTITIONS))
        assert values == expected, (
            f"partition {partition}: {len(values)} values, "
            f"{len(values) - len(set(values))} duplicates, "
            f"{len(set(expected) - set(values))} missing"
        )
