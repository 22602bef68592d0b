"""`python -m bench.topic_creation [--partitions N] [--runs R]`: creating a large topic.

A node opens a new topic's partitions (directory, segment and index files,
partition.metadata) on its event loop, so while it does every other request it serves
waits. This measures both sides of that on one `ottla serve` (replication factor 1)
and on a cluster of three on loopback (replication factor 3, every node opens every
partition), each with defaults and a temporary data dir:

- create: from confluent-kafka's CreateTopics call to its result, for a topic of N
  partitions (default 1,000);
- writable: from the same call until a second producer has written one record to
  every partition of the new topic (it retries while a partition is not yet hosted:
  a node opens a large topic's partitions in a worker thread after the result);
- stall: a producer writes one 100 B record every 5 ms to another, one-partition topic
  throughout (acks=1 on one node, acks=all with min.insync.replicas=2 on three); the
  worst per-record latency (produce() to delivery callback) of the records sent from
  the CreateTopics call to a second after the topic was writable, against the median
  of the records sent in the second before it.

Each run creates and then deletes the topic; the table gives the median and range over
the runs. Everything shares the machine's cores. Returns 0 unless a run failed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.replication import Setup, cluster, create_topic, delete_topic, progress, single

__all__ = ["main"]

STEADY = "steady"
INTERVAL_S = 0.005
SETTLE_S = 1.0


@dataclass
class _Sent:
    at: float
    latency_ms: float | None = None
    error: str | None = None


class _SteadyProducer(threading.Thread):
    """Sends a record every INTERVAL_S until stopped; keeps each record's latency."""

    def __init__(self, bootstrap: str, acks: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.acks = acks
        self.records: list[_Sent] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "acks": self.acks, "linger.ms": 0}
        )
        value = bytes(100)
        next_send = time.perf_counter()
        while not self.stopping.is_set():
            sent = _Sent(time.perf_counter())
            self.records.append(sent)

            def delivered(error: KafkaError | None, _: Message, sent: _Sent = sent) -> None:
                if error is None:
                    sent.latency_ms = (time.perf_counter() - sent.at) * 1000
                else:
                    sent.error = str(error)

            producer.produce(STEADY, value, on_delivery=delivered)
            next_send += INTERVAL_S
            producer.poll(max(next_send - time.perf_counter(), 0))
        producer.flush(60)


@dataclass
class _Run:
    create_s: float
    writable_s: float
    worst_ms: float
    before_median_ms: float
    errors: int


def _one_run(setup: Setup, partitions: int, acks: str, run: int) -> _Run:
    replicas = len(setup.nodes)
    steady = _SteadyProducer(setup.bootstrap, acks)
    steady.start()
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    time.sleep(2 * SETTLE_S)  # the producer's connections and a second of baseline
    name = f"big-{run}"
    started = time.perf_counter()
    admin.create_topics([NewTopic(name, partitions, replicas)], request_timeout=120)[name].result(
        180
    )
    created = time.perf_counter()
    probe = Producer({"bootstrap.servers": setup.bootstrap, "acks": acks, "linger.ms": 5})
    for index in range(partitions):
        probe.produce(name, b"", partition=index)
    if probe.flush(180):
        raise RuntimeError(f"{name}: not every partition writable within 180 s")
    writable = time.perf_counter()
    time.sleep(SETTLE_S)  # records sent just after still meet the stall
    steady.stopping.set()
    steady.join(120)
    delete_topic(setup, name)
    before = [
        r.latency_ms
        for r in steady.records
        if started - SETTLE_S <= r.at < started and r.latency_ms is not None
    ]
    during = [r for r in steady.records if started <= r.at <= writable + SETTLE_S]
    return _Run(
        created - started,
        writable - started,
        max((r.latency_ms or 0.0) for r in during),
        statistics.median(before) if before else 0.0,
        sum(1 for r in steady.records if r.error is not None or r.latency_ms is None),
    )


def _measure(setup: Setup, partitions: int, runs: int) -> list[_Run]:
    replicas = len(setup.nodes)
    acks = "all" if replicas > 1 else "1"
    create_topic(setup, STEADY, 1, replicas, min(2, replicas))
    results = []
    for run in range(runs):
        progress(f"{setup.name}: run {run + 1} of {runs}, {partitions} partitions")
        results.append(_one_run(setup, partitions, acks, run))
    return results


def _row(name: str, partitions: int, results: list[_Run]) -> str:
    def spread(values: list[float], unit: str, digits: int) -> str:
        return (
            f"{statistics.median(values):.{digits}f} {unit} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})"
        )

    return (
        f"| {name} | {partitions} | {spread([r.create_s for r in results], 's', 2)} | "
        f"{spread([r.writable_s for r in results], 's', 2)} | "
        f"{spread([r.worst_ms for r in results], 'ms', 0)} | "
        f"{spread([r.before_median_ms for r in results], 'ms', 2)} | "
        f"{sum(r.errors for r in results)} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.topic_creation", description=__doc__)
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    rows = []
    for name, start in (("one node, RF 1", single), ("three nodes, RF 3", None)):
        with tempfile.TemporaryDirectory(prefix="ottla-bench-topics-") as work:
            setup = start(Path(work)) if start is not None else cluster(Path(work), "three")
            try:
                rows.append(
                    _row(name, args.partitions, _measure(setup, args.partitions, args.runs))
                )
            finally:
                setup.stop()
    print(
        "| setup | partitions | create (median, range) | writable (median, range) "
        "| worst produce latency meanwhile | median latency before | failed records |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
