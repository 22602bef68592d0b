"""One small adapter per real client, so each scenario runs the same steps with all four.

Each adapter creates topics through its client's admin API (kcat: auto-create on
Metadata), produces records (keys, headers, null keys and values, a codec, explicit
timestamps where the client can set them), consumes a partition from a start offset
(earliest, an offset, or after "latest" was resolved) and asks offsets_for_times.
The adapters return plain `Got` tuples so tests compare what each client saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewTopic as AioNewTopic
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import NewTopic as KpNewTopic

CLIENTS = ["confluent", "aiokafka", "kafka-python", "kcat"]
EARLIEST = "earliest"
LATEST = "latest"
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Rec:
    """A record to produce."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = 0  # None: the client's own partitioner picks
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Got:
    """A record as a consumer saw it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


class Tail(Protocol):
    """A consumer started at "latest" (clients may resolve it after returning)."""

    def poll(self, timeout_s: float) -> list[Got]: ...

    def close(self) -> None: ...


class Client(Protocol):
    name: str
    sets_timestamps: bool
    sets_per_record_headers: bool

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None: ...

    def produce(
        self, topic: str, records: Sequence[Rec], compression: str = "none", max_bytes: int = 0
    ) -> None: ...

    def consume(
        self, topic: str, partition: int, start: int | str, count: int, max_bytes: int = 0
    ) -> list[Got]: ...

    def tail(self, topic: str, partition: int) -> Tail: ...

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None: ...


def _deadline() -> float:
    return time.monotonic() + TIMEOUT_S


# -- confluent-kafka ---------------------------------------------------------------------


class Confluent:
    name = "confluent"
    sets_timestamps = True
    sets_per_record_headers = True

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(topic, partitions, 1, config=configs)])
        for future in futures.values():
            future.result(TIMEOUT_S)

    def produce(
        self, topic: str, records: Sequence[Rec], compression: str = "none", max_bytes: int = 0
    ) -> None:
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "compression.type": compression,
            "linger.ms": 5,
        }
        if max_bytes:
            settings["message.max.bytes"] = max_bytes
        producer = Producer(settings)
        errors: list[Any] = []

        def report(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(error)

        for record in records:
            producer.produce(
                topic,
                value=record.value,
                key=record.key,
                # -1: RD_KAFKA_PARTITION_UA, the configured partitioner picks
                partition=-1 if record.partition is None else record.partition,
                timestamp=record.timestamp_ms or 0,
                headers=list(record.headers) or None,
                on_delivery=report,
            )
        assert producer.flush(TIMEOUT_S) == 0
        assert errors == []

    def _consumer(self, max_bytes: int = 0) -> Consumer:
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "group.id": "adapter",
            "enable.auto.commit": False,
        }
        if max_bytes:
            settings["fetch.message.max.bytes"] = max_bytes
        return Consumer(settings)

    def consume(
        self, topic: str, partition: int, start: int | str, count: int, max_bytes: int = 0
    ) -> list[Got]:
        offset = {EARLIEST: OFFSET_BEGINNING, LATEST: OFFSET_END}.get(str(start), start)
        consumer = self._consumer(max_bytes)
        consumer.assign([TopicPartition(topic, partition, int(offset))])
        try:
            return _confluent_poll(consumer, count, _deadline())
        finally:
            consumer.close()

    def tail(self, topic: str, partition: int) -> Tail:
        consumer = self._consumer()
        consumer.assign([TopicPartition(topic, partition, OFFSET_END)])
        return _ConfluentTail(consumer)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        consumer = self._consumer()
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp_ms)], TIMEOUT_S
            )
        finally:
            consumer.close()
        assert found[0].error is None
        return None if found[0].offset < 0 else int(found[0].offset)


def _confluent_got(message: Any) -> Got:
    return Got(
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
        message.timestamp()[1],
    )


def _confluent_poll(consumer: Consumer, count: int, deadline: float) -> list[Got]:
    got: list[Got] = []
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        got.append(_confluent_got(message))
    return got


class _ConfluentTail:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def poll(self, timeout_s: float) -> list[Got]:
        message = self.consumer.poll(timeout_s)
        if message is None or message.error() is not None:
            return []
        return [_confluent_got(message)]

    def close(self) -> None:
        self.consumer.close()


# -- aiokafka ----------------------------------------------------------------------------


def _aio_got(message: Any) -> Got:
    return Got(
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple(message.headers or ()),
        message.timestamp,
    )


class Aiokafka:
    name = "aiokafka"
    sets_timestamps = True
    sets_per_record_headers = True

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        async def run() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                response = await admin.create_topics(
                    [AioNewTopic(topic, partitions, 1, topic_configs=configs)]
                )
            finally:
                await admin.close()
            errors = [t[1] for t in response.topic_errors]
            assert errors == [0], response

        asyncio.run(run())

    def produce(
        self, topic: str, records: Sequence[Rec], compression: str = "none", max_bytes: int = 0
    ) -> None:
        async def run() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                compression_type=None if compression == "none" else compression,
                max_request_size=max_bytes or 1048576,
                linger_ms=5,
            )
            await producer.start()
            try:
                futures = [
                    await producer.send(
                        topic,
                        value=record.value,
                        key=record.key,
                        partition=record.partition,
                        timestamp_ms=record.timestamp_ms,
                        headers=list(record.headers) or None,
                    )
                    for record in records
                ]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        asyncio.run(run())

    def consume(
        self, topic: str, partition: int, start: int | str, count: int, max_bytes: int = 0
    ) -> list[Got]:
        async def run() -> list[Got]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                max_partition_fetch_bytes=max_bytes or 1048576,
            )
            await consumer.start()
            tp = AioTopicPartition(topic, partition)
            consumer.assign([tp])
            if start == EARLIEST:
                await consumer.seek_to_beginning(tp)
            elif start == LATEST:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, int(start))
            got: list[Got] = []
            deadline = _deadline()
            try:
                while len(got) < count and time.monotonic() < deadline:
                    batches = await consumer.getmany(tp, timeout_ms=500)
                    got.extend(_aio_got(m) for m in batches.get(tp, []))
            finally:
                await consumer.stop()
            return got

        return asyncio.run(run())

    def tail(self, topic: str, partition: int) -> Tail:
        return _AioTail(self.bootstrap, topic, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        async def run() -> int | None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
            await consumer.start()
            try:
                tp = AioTopicPartition(topic, partition)
                found = await consumer.offsets_for_times({tp: timestamp_ms})
            finally:
                await consumer.stop()
            return None if found[tp] is None else int(found[tp].offset)

        return asyncio.run(run())


class _AioTail:
    """An aiokafka consumer on its own event loop, positioned at the end."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.tp = AioTopicPartition(topic, partition)

        async def start() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            await consumer.start()
            consumer.assign([self.tp])
            await consumer.seek_to_end(self.tp)
            await consumer.position(self.tp)  # resolve "latest" now
            return consumer

        self.consumer = self.loop.run_until_complete(start())

    def poll(self, timeout_s: float) -> list[Got]:
        batches = self.loop.run_until_complete(
            self.consumer.getmany(self.tp, timeout_ms=int(timeout_s * 1000))
        )
        return [_aio_got(m) for m in batches.get(self.tp, [])]

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


# -- kafka-python ------------------------------------------------------------------------


def _kp_got(message: Any) -> Got:
    return Got(
        message.partition,
        message.offset,
        message.key,
        message.value,
        tuple(message.headers or ()),
        message.timestamp,
    )


class KafkaPython:
    name = "kafka-python"
    sets_timestamps = True
    sets_per_record_headers = True

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([KpNewTopic(topic, partitions, 1, topic_configs=configs)])
        finally:
            admin.close()

    def produce(
        self, topic: str, records: Sequence[Rec], compression: str = "none", max_bytes: int = 0
    ) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            compression_type=None if compression == "none" else compression,
            max_request_size=max_bytes or 1048576,
            linger_ms=5,
        )
        try:
            futures = [
                producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=record.partition,
                    timestamp_ms=record.timestamp_ms,
                    headers=list(record.headers) or None,
                )
                for record in records
            ]
            producer.flush(TIMEOUT_S)
            for future in futures:
                future.get(TIMEOUT_S)
        finally:
            producer.close()

    def _consumer(self, max_bytes: int = 0) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=max_bytes or 1048576,
        )

    def consume(
        self, topic: str, partition: int, start: int | str, count: int, max_bytes: int = 0
    ) -> list[Got]:
        consumer = self._consumer(max_bytes)
        tp = KpTopicPartition(topic, partition)
        consumer.assign([tp])
        if start == EARLIEST:
            consumer.seek_to_beginning(tp)
        elif start == LATEST:
            consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, int(start))
        got: list[Got] = []
        deadline = _deadline()
        try:
            while len(got) < count and time.monotonic() < deadline:
                batches = consumer.poll(timeout_ms=500)
                got.extend(_kp_got(m) for m in batches.get(tp, []))
        finally:
            consumer.close()
        return got

    def tail(self, topic: str, partition: int) -> Tail:
        consumer = self._consumer()
        tp = KpTopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)  # resolve "latest" now
        return _KpTail(consumer, tp)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        consumer = self._consumer()
        tp = KpTopicPartition(topic, partition)
        try:
            found = consumer.offsets_for_times({tp: timestamp_ms})
        finally:
            consumer.close()
        return None if found[tp] is None else int(found[tp].offset)


class _KpTail:
    def __init__(self, consumer: KafkaConsumer, tp: KpTopicPartition) -> None:
        self.consumer = consumer
        self.tp = tp

    def poll(self, timeout_s: float) -> list[Got]:
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [_kp_got(m) for m in batches.get(self.tp, [])]

    def close(self) -> None:
        self.consumer.close()


# -- kcat (librdkafka 2.0.2) -------------------------------------------------------------


def _kcat_got(line: str) -> Got:
    data = json.loads(line)
    headers = data.get("headers") or []
    pairs = tuple(
        (str(headers[i]), str(headers[i + 1]).encode()) for i in range(0, len(headers), 2)
    )

    def raw(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    return Got(
        data["partition"], data["offset"], raw(data["key"]), raw(data["payload"]), pairs, data["ts"]
    )


class Kcat:
    """kcat can set neither timestamps nor per-record headers: one header set per run."""

    name = "kcat"
    sets_timestamps = False
    sets_per_record_headers = False

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def _run(self, args: list[str], data: bytes | None = None) -> str:
        result = subprocess.run(
            ["kcat", "-b", self.bootstrap, *args],
            input=data,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        # kcat has no admin API: a producer's Metadata request auto-creates the topic with
        # the broker's num.partitions (the caller starts the broker with the wanted count).
        self._run(["-P", "-t", topic, "-X", "allow.auto.create.topics=true", "-c", "0"], b"")
        deadline = _deadline()
        while time.monotonic() < deadline:
            listing = json.loads(self._run(["-L", "-J", "-t", topic]))
            found = [t for t in listing["topics"] if t["topic"] == topic and not t.get("error")]
            if found:
                assert len(found[0]["partitions"]) == partitions, found
                return
        raise AssertionError(f"kcat: topic {topic} was not auto-created")

    def produce(
        self, topic: str, records: Sequence[Rec], compression: str = "none", max_bytes: int = 0
    ) -> None:
        # One kcat run per (partition, headers) group; each record is a file so values may
        # hold any byte; -Z turns empty keys and values into nulls.
        groups: dict[tuple[int | None, tuple[tuple[str, bytes], ...]], list[Rec]] = {}
        for record in records:
            groups.setdefault((record.partition, record.headers), []).append(record)
        for (partition, headers), group in groups.items():
            args = ["-P", "-t", topic, "-Z", "-z", compression]
            if partition is not None:
                args += ["-p", str(partition)]
            for name, value in headers:
                args += ["-H", f"{name}={value.decode()}"]
            if max_bytes:
                args += ["-X", f"message.max.bytes={max_bytes}"]
            if all(r.key is None for r in group) and any(len(r.value or b"") > 4096 for r in group):
                with tempfile.TemporaryDirectory() as directory:
                    paths = []
                    for index, record in enumerate(group):
                        path = os.path.join(directory, f"{index:06d}")
                        with open(path, "wb") as out:
                            out.write(record.value or b"")
                        paths.append(path)
                    self._run([*args, *paths])
                continue
            lines = b"".join((r.key or b"") + b"\t" + (r.value or b"") + b"\n" for r in group)
            for record in group:
                assert b"\n" not in (record.value or b"") + (record.key or b"")
                assert b"\t" not in (record.key or b"")
            self._run([*args, "-K", "\t"], lines)

    def consume(
        self, topic: str, partition: int, start: int | str, count: int, max_bytes: int = 0
    ) -> list[Got]:
        offset = {EARLIEST: "beginning", LATEST: "end"}.get(str(start), str(start))
        args = ["-C", "-t", topic, "-p", str(partition), "-o", offset, "-c", str(count), "-J"]
        if max_bytes:
            args += ["-X", f"fetch.message.max.bytes={max_bytes}"]
        return [_kcat_got(line) for line in self._run(args).splitlines() if line]

    def tail(self, topic: str, partition: int) -> Tail:
        return _KcatTail(self.bootstrap, topic, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        # -Q -J prints {"<topic>": {"topic": ..., "<partition>": {"offset": N}}}
        listing = json.loads(self._run(["-Q", "-J", "-t", f"{topic}:{partition}:{timestamp_ms}"]))
        offset = int(listing[topic][str(partition)]["offset"])
        return None if offset < 0 else offset


class _KcatTail:
    """kcat -C -o end in the background, lines read as they come."""

    def __init__(self, bootstrap: str, topic: str, partition: int) -> None:
        command = ["kcat", "-b", bootstrap, "-C", "-u", "-J", "-o", "end"]
        self.process = subprocess.Popen(
            [*command, "-t", topic, "-p", str(partition)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def poll(self, timeout_s: float) -> list[Got]:
        assert self.process.stdout is not None
        if self.selector.select(timeout_s):
            self.buffer += self.process.stdout.read() or b""
        *lines, self.buffer = self.buffer.split(b"\n")
        return [_kcat_got(line.decode()) for line in lines if line]

    def close(self) -> None:
        self.selector.close()
        self.process.kill()
        self.process.wait(TIMEOUT_S)


FACTORIES: dict[str, Callable[[str], Client]] = {
    "confluent": Confluent,
    "aiokafka": Aiokafka,
    "kafka-python": KafkaPython,
    "kcat": Kcat,
}


def client_for(name: str, bootstrap: str) -> Client:
    return FACTORIES[name](bootstrap)
