"""A consumer-group member in its own process (so a test can SIGKILL it).

usage: python group_worker.py CLIENT BOOTSTRAP TOPIC GROUP OUT [INSTANCE_ID]

Consumes TOPIC in GROUP with CLIENT (confluent, aiokafka, kafka-python), at most
about 2,000 records a second, and appends to OUT one line per event, flushed at once:
  A <time> <partitions>  an assignment at unix time (comma-separated, may be empty)
  R <p> <o>           record (partition, offset) processed
  C <p> <o>           a synchronous commit of next offset <o> for <p> succeeded
  F                   a commit failed (the records since the last C are uncommitted)
Commits happen after processing each batch.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

import aiokafka
import aiokafka.errors
import confluent_kafka
import kafka
import kafka.errors
import kafka.structs

SESSION_TIMEOUT_MS = 6000
BATCH = 100
PAUSE_S = 0.05


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _record_batch(out: TextIO, items: list[tuple[int, int]]) -> dict[int, int]:
    next_offsets: dict[int, int] = {}
    for partition, offset in items:
        _emit(out, f"R {partition} {offset}")
        next_offsets[partition] = max(next_offsets.get(partition, 0), offset + 1)
    return next_offsets


def run_confluent(bootstrap: str, topic: str, group: str, out: TextIO, instance: str) -> None:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    if instance:
        config["group.instance.id"] = instance
    consumer = confluent_kafka.Consumer(config)

    def on_assign(_: Any, partitions: list[Any]) -> None:
        _emit(out, f"A {time.time()} " + ",".join(str(p.partition) for p in partitions))

    consumer.subscribe([topic], on_assign=on_assign)
    while True:
        messages = consumer.consume(BATCH, 0.5)
        items = [(int(m.partition() or 0), int(m.offset() or 0)) for m in messages if not m.error()]
        if not items:
            continue
        commits = _record_batch(out, items)
        try:
            consumer.commit(
                offsets=[confluent_kafka.TopicPartition(topic, p, o) for p, o in commits.items()],
                asynchronous=False,
            )
        except confluent_kafka.KafkaException:
            _emit(out, "F")
        else:
            for partition, offset in commits.items():
                _emit(out, f"C {partition} {offset}")
        time.sleep(PAUSE_S)


def run_kafka_python(bootstrap: str, topic: str, group: str, out: TextIO, instance: str) -> None:
    class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            _emit(out, f"A {time.time()} " + ",".join(str(p.partition) for p in assigned))

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
    )
    consumer.subscribe([topic], listener=Listener())
    while True:
        batches = consumer.poll(timeout_ms=500, max_records=BATCH)
        items = [(tp.partition, r.offset) for tp, rs in batches.items() for r in rs]
        if not items:
            continue
        commits = _record_batch(out, items)
        try:
            consumer.commit(
                {
                    kafka.TopicPartition(topic, p): kafka.structs.OffsetAndMetadata(o, "", -1)
                    for p, o in commits.items()
                }
            )
        except kafka.errors.KafkaError:
            _emit(out, "F")
        else:
            for partition, offset in commits.items():
                _emit(out, f"C {partition} {offset}")
        time.sleep(PAUSE_S)


async def run_aiokafka(bootstrap: str, topic: str, group: str, out: TextIO, instance: str) -> None:
    class Listener(aiokafka.ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, assigned: Any) -> None:
            _emit(out, f"A {time.time()} " + ",".join(str(p.partition) for p in assigned))

    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
    )
    consumer.subscribe([topic], listener=Listener())
    await consumer.start()
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
        items = [(tp.partition, r.offset) for tp, rs in batches.items() for r in rs]
        if not items:
            continue
        commits = _record_batch(out, items)
        try:
            await consumer.commit(
                {aiokafka.TopicPartition(topic, p): o for p, o in commits.items()}
            )
        except aiokafka.errors.KafkaError:
            _emit(out, "F")
        else:
            for partition, offset in commits.items():
                _emit(out, f"C {partition} {offset}")
        await asyncio.sleep(PAUSE_S)


def main() -> None:
    client, bootstrap, topic, group, path = sys.argv[1:6]
    instance = sys.argv[6] if len(sys.argv) > 6 else ""
    with open(path, "a") as out:
        if client == "confluent":
            run_confluent(bootstrap, topic, group, out, instance)
        elif client == "kafka-python":
            run_kafka_python(bootstrap, topic, group, out, instance)
        else:
            asyncio.run(run_aiokafka(bootstrap, topic, group, out, instance))


if __name__ == "__main__":
    main()
