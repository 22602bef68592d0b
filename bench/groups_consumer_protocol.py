"""`python -m bench.groups_consumer_protocol [--quick]`: rebalances with the KIP-848
consumer protocol.

Starts `ottla serve` (temporary data dir) once per setting of
`group.consumer.heartbeat.interval.ms` (Kafka's default 5000, and ottla's default 500) and drives it
with confluent-kafka (librdkafka) consumers, `group.protocol=consumer`, in threads
of this process. `consumer_protocol_rebalance()`: a stable group of N members (3,
and 30) on a topic with 2N+2 partitions; then one more consumer is started.
Measured from just before it is created until every partition is owned again
(ownership tracked per member by the incremental on_assign/on_revoke callbacks) and
the new member owns some. With KIP-848 the coordinator computes the new target at
the newcomer's first heartbeat; the members giving partitions up learn of it at
their next heartbeat (so the heartbeat interval bounds the time), revoke, and the
newcomer gets the freed partitions at its next heartbeat. Nobody stops consuming
except for the partitions that move. Target: under 1 s for 3 members.

Each scenario runs `reps` times (fresh topic and group); the table shows the median
and the range. Returns 0 unless the broker died or a scenario failed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.broker import BrokerProcess, create_topic, free_port, progress

__all__ = ["consumer_protocol_rebalance", "main"]

TARGET_S = 1.0
SCENARIO_TIMEOUT_S = 90.0
POLL_S = 0.05
INTERVALS_MS = (5000, 500)


class Member:
    """One consumer-protocol librdkafka consumer polling in its own thread."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "client.id": name,
        }
        self._topic = topic
        self._lock = threading.Lock()
        self.owned: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _on_assign(self, _: Any, partitions: list[Any]) -> None:
        with self._lock:
            self.owned = self.owned | {p.partition for p in partitions}

    def _on_revoke(self, _: Any, partitions: list[Any]) -> None:
        with self._lock:
            self.owned = self.owned - {p.partition for p in partitions}

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.subscribe(
                [self._topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            while not self._stop.is_set():
                consumer.poll(POLL_S)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        self._thread.join(60)


@contextlib.contextmanager
def _members(bootstrap: str, group: str, topic: str, count: int) -> Iterator[list[Member]]:
    members = [Member(bootstrap, group, topic, f"{group}-m{i}") for i in range(count)]
    try:
        yield members
    finally:
        for member in members:
            member.stop()
        for member in members:
            member.join()


def _wait(broker: BrokerProcess, condition: Any, what: str) -> None:
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while not condition():
        broker.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {SCENARIO_TIMEOUT_S:.0f} s waiting for {what}")
        time.sleep(0.005)  # polling other threads' state; 5 ms resolution


def _owned_by_all(members: list[Member], partitions: int) -> bool:
    owned = sorted(p for m in members for p in m.owned)
    return owned == list(range(partitions)) and all(m.owned for m in members)


def consumer_protocol_rebalance(broker: BrokerProcess, size: int, rep: int) -> float:
    """Seconds from a new member's start until every partition of a stable
    consumer-protocol group of `size` members is owned again, the newcomer included."""
    partitions = 2 * size + 2
    suffix = uuid.uuid4().hex[:6]
    topic = group = f"kip848-{size}-{rep}-{suffix}"
    create_topic(broker.bootstrap, topic, partitions)
    with _members(broker.bootstrap, group, topic, size + 1) as everyone:
        stable, newcomer = everyone[:size], everyone[size]
        for member in stable:
            member.start()
        _wait(broker, lambda: _owned_by_all(stable, partitions), f"a stable group of {size}")
        time.sleep(1.0)  # let the group settle (no reconciliation in flight)
        if not _owned_by_all(stable, partitions):
            raise RuntimeError(f"the group of {size} was not stable")
        started = time.monotonic()
        newcomer.start()
        _wait(
            broker,
            lambda: _owned_by_all(everyone, partitions),
            f"partitions owned by all {size + 1} members",
        )
        return time.monotonic() - started


def _broker(work: Path, interval_ms: int) -> BrokerProcess:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "ottla",
        "serve",
        "--data-dir",
        str(work / f"ottla-data-{interval_ms}"),
        "--listen",
        f"127.0.0.1:{port}",
        "--override",
        f"group.consumer.heartbeat.interval.ms={interval_ms}",
    ]
    return BrokerProcess("ottla", command, port, work / f"ottla-{interval_ms}.log")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.groups_consumer_protocol", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="one repetition each")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (broker logs)")
    args = parser.parse_args(argv)
    reps = 1 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-kip848-"))
    lines = [
        "| group.consumer.heartbeat.interval.ms | members before the join | "
        "all owned again, s (median, range) | target | verdict |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    failed = died = False
    try:
        for interval_ms in INTERVALS_MS:
            broker = _broker(work, interval_ms)
            broker.start()
            progress(f"ottla pid {broker.pid} heartbeat interval {interval_ms} ms")
            try:
                for size in (3, 30):
                    samples: list[float] = []
                    for rep in range(reps):
                        try:
                            samples.append(consumer_protocol_rebalance(broker, size, rep))
                        except RuntimeError as error:
                            progress(f"!! group of {size}: {error}")
                            failed = True
                            break
                        progress(
                            f"interval {interval_ms} group of {size} rep {rep}: {samples[-1]:.2f} s"
                        )
                    if not samples:
                        continue
                    median = statistics.median(samples)
                    spread = f"{min(samples):.2f}-{max(samples):.2f}"
                    target = f"< {TARGET_S:.1f}" if size == 3 else ""
                    verdict = ("met" if median < TARGET_S else "missed") if size == 3 else ""
                    cells = [str(interval_ms), str(size), f"{median:.2f} ({spread})", target]
                    lines.append("| " + " | ".join([*cells, verdict]) + " |")
            finally:
                code = broker.stop()
                if code not in (0, None, -15):
                    died = True
                    print(f"!! ottla exited with {code}; log tail:\n{broker.log_tail()}")
    finally:
        if args.keep or died:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(lines))
    return 1 if died or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
