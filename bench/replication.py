"""`python -m bench.replication [--quick]`: the cost of replication and the leader failover.

(a) Throughput and latency, three nodes vs one, from the same run. One `ottla serve`
    with defaults and a cluster of three (`controller.quorum.voters` naming all three,
    otherwise defaults) run side by side on loopback, each with a temporary data dir.
    Topics have 6 partitions (as in Kafka's 2014 benchmark); on the cluster with
    replication factor 3 and min.insync.replicas=2, on the single node replication
    factor 1. confluent-kafka (librdkafka) drives them from this process:
    - produce throughput: a fixed number of 100 B and 1 KiB values (no key), default
      producer settings, from the first `produce()` to the end of `flush()`, once one
      warm-up record per partition is acknowledged (steady state: every follower is
      fetching before the clock starts, as topics were made in advance in Kafka's
      2014 benchmark; the same for every setup); the one
      node with acks=1 against the three nodes with acks=all; a diagnostic column gives
      the three nodes with acks=1 (the cost of the cluster without waiting for
      followers). Each scenario runs `reps` times on a fresh topic, alternating which
      setup goes first; the table shows the median (range and the brokers' total CPU
      seconds in the notes).
    - produce latency: one record every 1/rate s, `linger.ms=0`, per-record time from
      `produce()` to its delivery callback; p99 (p50 in the notes). Measured first,
      on brokers holding no other topic; a diagnostic row repeats the 100 B case after
      `--idle-partitions` (default 36) idle partitions, 6 per topic, were created (on
      the cluster with replication factor 3), since a follower's fetch session holds
      every partition it follows.
    Every topic is deleted after its run, so each scenario starts on the same brokers.
    Ratios are such that higher is better: throughput(three, acks=all) /
    throughput(one, acks=1), and p99(one, acks=1) / p99(three, acks=all).
    Target >= 0.5 (Kafka 2014: 421,823 vs 821,557 records/s, 0.51).
(b) Failover with default settings: a separate fresh cluster of three with defaults
    (`broker.session.timeout.ms` 9000, `broker.heartbeat.interval.ms` 2000,
    `controller.quorum.fetch.timeout.ms` 2000), a topic with one partition, replication
    factor 3, min.insync.replicas=2. An idempotent acks=all producer (librdkafka
    defaults otherwise) sends a record every 10 ms; once it has been acknowledged for
    a second, the partition leader gets SIGKILL. Measured: from the kill to the
    acknowledgement of the first record produced after it. The survivors' logs split
    it: controller election (`raft.role_changed` to Leader, only when the killed node
    was the active controller), fencing (`brokers_fenced` on the controller), the new
    partition leader (`partition_leader`). The killed node restarts and rejoins the
    ISR before the next run. Target under 3 s; median, min and max over the runs.

Everything shares the machine's cores. Prints the tables; returns 0 unless a run failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.broker import (
    CLIENT_TIMEOUT_S,
    BrokerProcess,
    DeliveryErrors,
    Throughput,
    format_value,
    free_port,
    paced,
    percentile,
    produce_all,
)

__all__ = ["main"]

RATIO_TARGET = 0.5
FAILOVER_TARGET_S = 3.0
PARTITIONS = 6
CLUSTER_ID = "benchReplicationClus1"
ONE, THREE = "one node", "three nodes"
IDLE_TOPICS = 6  # 6-partition topics created for the diagnostic latency row


@dataclass(frozen=True)
class Scale:
    small_records: int
    large_records: int
    reps: int
    latency_rate: int
    latency_s: float
    failovers: int


FULL = Scale(1_000_000, 300_000, 3, 1_000, 10.0, 5)
QUICK = Scale(100_000, 30_000, 1, 1_000, 2.0, 2)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- processes -------------------------------------------------------------------------------


@dataclass
class Setup:
    """One broker or a cluster of three, with its bootstrap list."""

    name: str
    nodes: dict[int, BrokerProcess]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values() if n.process is not None)

    def cpu_seconds(self) -> float:
        return sum(n.cpu_seconds() for n in self.nodes.values() if n.process is not None)

    def run_queue_wait_s(self) -> float:
        """Seconds the brokers' threads have spent runnable but waiting for a CPU."""
        return sum(
            run_queue_wait_s(n.process.pid) for n in self.nodes.values() if n.process is not None
        )

    def check_alive(self) -> None:
        for node in self.nodes.values():
            node.check_alive()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


def run_queue_wait_s(pid: int) -> float:
    """Run-queue wait of all threads of `pid` so far (/proc/PID/task/*/schedstat).

    On a shared machine this is the time a broker was ready to work but had no core:
    the part of a slow run that its own CPU time does not explain.
    """
    total_ns = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(path.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total_ns / 1e9


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _command(data_dir: Path, port: int, overrides: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "ottla", "serve", "--data-dir", str(data_dir)]
    command += ["--listen", f"127.0.0.1:{port}"]
    for item in overrides:
        command += ["--override", item]
    return command


def single(work: Path) -> Setup:
    port = free_port()
    node = BrokerProcess("one", _command(work / "one", port, []), port, work / "one.log")
    node.start()
    return Setup(ONE, {1: node})


def cluster(work: Path, name: str) -> Setup:
    ports = {n: free_port() for n in (1, 2, 3)}
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in ports.items())
    nodes = {
        n: BrokerProcess(
            f"{name}-{n}",
            _command(
                work / f"{name}-{n}",
                ports[n],
                [f"node.id={n}", f"controller.quorum.voters={voters}", f"cluster.id={CLUSTER_ID}"],
            ),
            ports[n],
            work / f"{name}-{n}.log",
        )
        for n in (1, 2, 3)
    }
    for node in nodes.values():
        node.start()
    setup = Setup(name, nodes)
    deadline = time.monotonic() + 60
    while True:
        try:
            brokers = AdminClient({"bootstrap.servers": setup.bootstrap}).list_topics(timeout=5)
            if len(brokers.brokers) == 3:
                return setup
        except Exception:
            pass  # the quorum is still forming
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: three brokers not registered within 60 s")
        time.sleep(0.2)  # polling cluster formation


def create_topic(setup: Setup, name: str, partitions: int, replicas: int, min_isr: int) -> None:
    """Create and wait until every partition has a leader and a full ISR."""
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    config = {"min.insync.replicas": str(min_isr)}
    futures = admin.create_topics([NewTopic(name, partitions, replicas, config=config)])
    futures[name].result(30)
    wait_isr(setup, name, replicas, partitions)


def topic_state(setup: Setup, name: str) -> list[tuple[int, list[int]]]:
    """(leader, isr) per partition, asked of the live nodes."""
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    topic = admin.list_topics(name, timeout=5).topics.get(name)
    if topic is None or topic.error is not None:
        return []
    return [(p.leader, sorted(p.isrs)) for _, p in sorted(topic.partitions.items())]


def wait_isr(
    setup: Setup, name: str, replicas: int, partitions: int, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = topic_state(setup, name)
        except Exception:
            state = []
        if len(state) == partitions and all(
            leader >= 0 and len(isr) == replicas for leader, isr in state
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{setup.name}: {name} not fully in sync: {state}")
        time.sleep(0.1)  # polling metadata


# -- (a) throughput and latency --------------------------------------------------------------


def produce_throughput(
    setup: Setup, topic: str, size: int, count: int, acks: str
) -> tuple[Throughput, float]:
    """The run's throughput and the brokers' run-queue wait (s) during it."""
    errors = DeliveryErrors()
    producer = Producer({"bootstrap.servers": setup.bootstrap, "acks": acks, "on_delivery": errors})
    producer.list_topics(topic, timeout=10)
    value = bytes(size)
    # Steady state, as Kafka's 2014 benchmark (topics made in advance, 50M records):
    # one acknowledged record per partition first, so every partition's followers are
    # fetching before the clock starts (same for every setup; it is not counted).
    for partition in range(PARTITIONS):
        producer.produce(topic, value, partition=partition)
    if producer.flush(CLIENT_TIMEOUT_S):
        raise RuntimeError(f"{setup.name} {topic}: warm-up records not delivered in time")
    cpu0, wait0 = setup.cpu_seconds(), setup.run_queue_wait_s()
    start = time.perf_counter()
    produce_all(producer, topic, value, count)
    left = producer.flush(CLIENT_TIMEOUT_S)
    seconds = time.perf_counter() - start
    cpu, wait = setup.cpu_seconds() - cpu0, setup.run_queue_wait_s() - wait0
    if left:
        raise RuntimeError(f"{setup.name} {topic}: {left} records not delivered in time")
    errors.check(f"{setup.name} {topic}")
    return Throughput(count, seconds, size, cpu), wait


def produce_latency(setup: Setup, topic: str, size: int, acks: str, scale: Scale) -> list[float]:
    """Per-record ms from produce() to delivery, paced, linger.ms=0."""
    producer = Producer({"bootstrap.servers": setup.bootstrap, "acks": acks, "linger.ms": 0})
    producer.list_topics(topic, timeout=10)
    value = bytes(size)
    for _ in range(100):  # warm the connections
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

    paced(scale.latency_rate, scale.latency_s, send, producer.poll)
    producer.flush(30)
    errors.check(f"{setup.name} paced produce to {topic}")
    return latencies


@dataclass
class Cell:
    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass
class Row:
    metric: str
    unit: str
    higher_is_better: bool
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, column: str) -> Cell:
        return self.cells.setdefault(column, Cell())

    def ratio(self) -> float | None:
        one, three = self.cell(ONE).median, self.cell(THREE).median
        if not one or not three:
            return None
        return three / one if self.higher_is_better else one / three


COLUMNS = (ONE, THREE, "three nodes, acks=1")


def delete_topic(setup: Setup, topic: str) -> None:
    """Delete and wait until no node lists it (follower fetchers forget its partitions)."""
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 30
    while any(
        topic in AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=5).topics
        for node in setup.nodes.values()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{setup.name}: {topic} still listed 30 s after its deletion")
        time.sleep(0.1)  # polling metadata


def latency_row(
    row: Row, setups: Sequence[tuple[str, Setup, str]], size: int, scale: Scale, keep: bool
) -> None:
    for column, setup, acks in setups:
        topic = f"lat{size}-{uuid.uuid4().hex[:8]}"
        replicas = len(setup.nodes)
        create_topic(setup, topic, 1, replicas, min(2, replicas))
        latencies = produce_latency(setup, topic, size, acks, scale)
        setup.check_alive()
        if not keep:
            delete_topic(setup, topic)
        cell = row.cell(column)
        cell.samples.append(percentile(latencies, 0.99))
        cell.notes.append(f"p50 {percentile(latencies, 0.5):.2f}")
        progress(f"{row.metric} {column}: p99 {cell.samples[-1]:.2f} ms")


def bench_cost(
    work: Path, scale: Scale, idle_partitions: int = IDLE_TOPICS * PARTITIONS
) -> list[Row]:
    one = single(work)
    three = cluster(work, "three")
    progress(
        f"one node on {one.bootstrap}; three nodes on {three.bootstrap}; load {load_average()}"
    )
    rows: list[Row] = []
    pair = ((ONE, one, "1"), (THREE, three, "all"))
    try:
        # Latency first, on otherwise empty brokers; each topic is deleted after its run.
        for size in (100, 1024):
            label = "100 B" if size == 100 else "1 KiB"
            row = Row(f"p99 latency {label}, {scale.latency_rate}/s, linger.ms=0", "ms", False)
            rows.append(row)
            latency_row(row, pair, size, scale, keep=False)
        for size, count in ((100, scale.small_records), (1024, scale.large_records)):
            label = "100 B" if size == 100 else "1 KiB"
            row = Row(f"produce {label}, {PARTITIONS} partitions", "rec/s", True)
            rows.append(row)
            runs = [(ONE, one, "1"), (THREE, three, "all"), (COLUMNS[2], three, "1")]
            for rep in range(scale.reps):
                ordered = runs[rep % 3 :] + runs[: rep % 3]
                for column, setup, acks in ordered:
                    topic = f"t{size}-{uuid.uuid4().hex[:8]}"
                    replicas = len(setup.nodes)
                    create_topic(setup, topic, PARTITIONS, replicas, min(2, replicas))
                    result, wait_s = produce_throughput(setup, topic, size, count, acks)
                    setup.check_alive()
                    delete_topic(setup, topic)
                    cell = row.cell(column)
                    cell.samples.append(result.records_per_s)
                    note = (
                        f"{result.records_per_s:,.0f} rec/s in {result.seconds:.2f} s: brokers' "
                        f"cpu {result.broker_cpu_s:.2f} s, run-queue wait {wait_s:.2f} s, "
                        f"load {load_average()}"
                    )
                    cell.notes.append(note)
                    progress(f"{row.metric} {column} acks={acks}: {note}")
        # Diagnostic: the same latency with idle replicated partitions on the brokers.
        sizes = [PARTITIONS] * (idle_partitions // PARTITIONS)
        sizes += [idle_partitions % PARTITIONS] if idle_partitions % PARTITIONS else []
        for i, size in enumerate(sizes):
            for setup in (one, three):
                replicas = len(setup.nodes)
                create_topic(setup, f"idle{i}", size, replicas, min(2, replicas))
        idle = sum(sizes)
        row = Row(
            f"p99 latency 100 B, {scale.latency_rate}/s, with {idle} idle partitions (diagnostic)",
            "ms",
            False,
        )
        rows.append(row)
        latency_row(row, pair, 100, scale, keep=True)
    finally:
        one.stop()
        three.stop()
    return rows


def cost_table(rows: list[Row]) -> str:
    lines = [
        "| metric | unit | one node, acks=1 | three nodes, acks=all (RF 3, min ISR 2) "
        "| ratio | target | verdict | three nodes, acks=1 |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for row in rows:
        cells = []
        for column in COLUMNS:
            cell = row.cells.get(column)
            if cell is None or cell.median is None:
                cells.append("")
                continue
            text = format_value(cell.median)
            if len(cell.samples) > 1:
                text += f" ({format_value(min(cell.samples))}-{format_value(max(cell.samples))})"
            if len(cell.notes) == 1 and "rec/s" not in cell.notes[0]:
                text += f"; {cell.notes[0]}"
            cells.append(text)
        ratio = row.ratio()
        verdict = "" if ratio is None else ("met" if ratio >= RATIO_TARGET else "MISSED")
        target = f">= {RATIO_TARGET}"
        if "diagnostic" in row.metric:
            verdict = target = ""
        shown = "" if ratio is None else f"{ratio:.2f}"
        lines.append(
            f"| {row.metric} | {row.unit} | {cells[0]} | {cells[1]} | {shown} "
            f"| {target} | {verdict} | {cells[2]} |"
        )
    runs = [
        f"- {row.metric}, {column}: {note}"
        for row in rows
        for column in COLUMNS
        for note in (row.cells[column].notes if column in row.cells else [])
        if "rec/s" in note
    ]
    if runs:
        lines += ["", "Each throughput run (brokers' CPU and run-queue wait summed):", *runs]
    return "\n".join(lines)


# -- (b) failover ----------------------------------------------------------------------------


FAILOVER_TOPIC = "failover"
LEADER = "new partition leader"
FENCED = "broker fenced"
SEND_EVERY_S = 0.01
STEADY_S = 1.0


@dataclass
class Failover:
    killed: int
    total_s: float
    phases: dict[str, float]  # event name -> seconds after the kill


def _events_after(
    nodes: list[BrokerProcess], since: float
) -> Iterator[tuple[float, dict[str, Any]]]:
    for node in nodes:
        for line in node.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
                at = datetime.datetime.fromisoformat(event["timestamp"]).timestamp()
            except (ValueError, KeyError):
                continue
            if at >= since:
                yield at, event


def _phases(nodes: list[BrokerProcess], killed_wall: float) -> dict[str, float]:
    firsts: dict[str, float] = {}
    for at, event in _events_after(nodes, killed_wall):
        name = str(event.get("event"))
        if name == "raft.role_changed" and event.get("role") == "Leader":
            key = "controller elected"
        elif name == "brokers_fenced":
            key = FENCED
        elif name == "partition_leader" and event.get("partition") == f"{FAILOVER_TOPIC}-0":
            key = LEADER
        else:
            continue
        firsts[key] = min(firsts.get(key, at), at)
    return {key: at - killed_wall for key, at in firsts.items()}


def one_failover(setup: Setup) -> Failover:
    wait_isr(setup, FAILOVER_TOPIC, 3, 1)
    leader = topic_state(setup, FAILOVER_TOPIC)[0][0]
    victim = setup.nodes[leader]
    producer = Producer(
        {"bootstrap.servers": setup.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    errors: list[str] = []
    acked_after_kill: list[float] = []
    first_after: list[int] = []  # sequence number of the first record sent after the kill

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(str(error))
        elif first_after and int(message.value() or b"-1") >= first_after[0]:
            acked_after_kill.append(time.monotonic())

    sequence = 0
    started = time.monotonic()
    killed_at = killed_wall = 0.0
    deadline = started + 90
    try:
        while not acked_after_kill:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no acks=all write within {deadline - killed_at:.0f} s of the kill"
                )
            if errors:
                raise RuntimeError(f"delivery failed: {errors[:3]}")
            if not first_after and time.monotonic() - started >= STEADY_S:
                assert victim.process is not None
                killed_wall, killed_at = time.time(), time.monotonic()
                victim.process.kill()
                first_after.append(sequence)
            producer.produce(FAILOVER_TOPIC, str(sequence).encode(), on_delivery=delivered)
            sequence += 1
            producer.poll(SEND_EVERY_S)  # paces the sends; delivery callbacks run here
        total = acked_after_kill[0] - killed_at
        producer.flush(30)
    finally:
        victim.process.wait(10)  # type: ignore[union-attr]
        victim.process = None
    survivors = [n for i, n in setup.nodes.items() if i != leader]
    result = Failover(leader, total, _phases(survivors, killed_wall))
    victim.start()  # rejoins; the next run waits for the full ISR
    return result


def bench_failover(work: Path, scale: Scale) -> list[Failover]:
    setup = cluster(work, "failover")
    results: list[Failover] = []
    try:
        create_topic(setup, FAILOVER_TOPIC, 1, 3, 2)
        for run in range(scale.failovers):
            result = one_failover(setup)
            results.append(result)
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(result.phases.items()))
            progress(
                f"failover {run + 1}: killed node {result.killed}; first ack after "
                f"{result.total_s:.2f} s ({phases})"
            )
        wait_isr(setup, FAILOVER_TOPIC, 3, 1)
    finally:
        setup.stop()
    return results


def failover_table(results: list[Failover]) -> str:
    def stats(values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return f"{statistics.median(ms):.0f} | {min(ms):.0f} | {max(ms):.0f} | {len(ms)}"

    totals = [r.total_s for r in results]
    verdict = "met" if statistics.median(totals) < FAILOVER_TARGET_S else "MISSED"
    lines = [
        "| measure (from the SIGKILL of the partition leader) "
        "| median ms | min ms | max ms | runs |",
        "|---|---:|---:|---:|---:|",
        f"| first acks=all write acknowledged (target < 3 s: {verdict}) | {stats(totals)} |",
    ]
    for key in ("controller elected", "broker fenced", "new partition leader"):
        values = [r.phases[key] for r in results if key in r.phases]
        if values:
            lines.append(f"|   of which: -> {key} (survivors' logs) | {stats(values)} |")
    # acks=all can complete once a live node leads the partition and the dead replica
    # has left the ISR (on fencing): the later of the two; then it is up to the client.
    client = [
        r.total_s - max(r.phases[LEADER], r.phases[FENCED])
        for r in results
        if LEADER in r.phases and FENCED in r.phases
    ]
    if client:
        lines.append(f"|   later of those two -> first ack (client side) | {stats(client)} |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--only", choices=("cost", "failover"), help="run one part only")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (broker logs)")
    parser.add_argument(
        "--idle-partitions",
        type=int,
        default=IDLE_TOPICS * PARTITIONS,
        help="idle partitions (6 per topic) for the diagnostic latency row",
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="ottla-bench-replication-"))
    failed = False
    cost: list[Row] = []
    failovers: list[Failover] = []
    try:
        if args.only in (None, "cost"):
            try:
                cost = bench_cost(work, scale, args.idle_partitions)
            except Exception as error:
                failed = True
                print(f"!! throughput/latency: {type(error).__name__}: {error}", flush=True)
        if args.only in (None, "failover"):
            try:
                failovers = bench_failover(work, scale)
            except Exception as error:
                failed = True
                print(f"!! failover: {type(error).__name__}: {error}", flush=True)
    finally:
        if failed or args.keep:
            print(f"work dir (broker logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    if cost:
        print(cost_table(cost))
        print()
    if failovers:
        print(failover_table(failovers))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
