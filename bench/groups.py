"""`python -m bench.groups [--quick] [--no-tansu]`: how fast classic consumer groups form.

Starts `ottla serve` (temporary data dir, default group settings, so
`group.initial.rebalance.delay.ms` is 3000) and, unless `--no-tansu`, Tansu
(`memory://` storage) on free ports, and drives them with confluent-kafka
(librdkafka) consumers in threads of this process, default consumer settings except
`auto.offset.reset=earliest` (the records are already there) and, in (b), a
`client.id` per member:

(a) first record of a new group: a 6-partition topic holding 600 records; 3
    consumers of a brand-new group are created and subscribe at once (one thread
    each). Measured from just before the threads start until the first record
    reaches any consumer, and until all 3 have a non-empty assignment (on_assign).
    Target: within group.initial.rebalance.delay.ms (3 s) + 1 s.
(b) classic rebalance on join: a stable group of N members (3, and 30) on a topic
    with 2N+2 partitions; then one more consumer is started. Measured from just
    before it is created until every partition is owned again, with each member's
    ownership tracked by on_assign/on_revoke (librdkafka's default assignors are
    eager: all members revoke, rejoin, and get new assignments) and the new member
    owning some. The existing members learn of the rebalance from a Heartbeat
    answered REBALANCE_IN_PROGRESS, so librdkafka's heartbeat.interval.ms (3000 by
    default) sets most of the time on any broker: the newcomer starts 1 s after the
    group is seen stable, and the old members' next Heartbeat is due about 2 s later.
    A second row times the rest: from the last old member's revocation (its
    Heartbeat answer) until every partition is owned (rejoin, JoinGroup, SyncGroup).

Each scenario runs `reps` times (fresh topic and group); the table shows the
median and the range. Returns 0 unless a broker died or a scenario failed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.broker import (
    TANSU_BINARY,
    BrokerProcess,
    create_topic,
    ottla_process,
    progress,
    tansu_process,
)

__all__ = ["main"]

FIRST_RECORD_TARGET_S = 3.0 + 1.0
FIRST_PARTITIONS = 6
FIRST_RECORDS = 600
FIRST_MEMBERS = 3
SCENARIO_TIMEOUT_S = 90.0
POLL_S = 0.05


@dataclass(frozen=True)
class Scale:
    reps: int
    group_sizes: tuple[int, ...]


FULL = Scale(reps=3, group_sizes=(3, 30))
QUICK = Scale(reps=1, group_sizes=(3, 30))


class Member:
    """One librdkafka consumer polling in its own thread; records what it saw, when."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str) -> None:
        self.name = name
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "client.id": name,
        }
        self._topic = topic
        self.owned: frozenset[int] = frozenset()
        self.assigned_at: float | None = None  # first non-empty assignment
        self.first_record_at: float | None = None
        self.revoked_at: list[float] = []
        self.error: str | None = None
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _on_assign(self, _: Any, partitions: list[Any]) -> None:
        self.owned = frozenset(p.partition for p in partitions)
        if self.owned and self.assigned_at is None:
            self.assigned_at = time.monotonic()
        self.changed.set()

    def _on_revoke(self, _: Any, partitions: list[Any]) -> None:
        self.owned = frozenset()
        self.revoked_at.append(time.monotonic())
        self.changed.set()

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            while not self._stop.is_set():
                message = consumer.poll(POLL_S)
                if message is None:
                    continue
                if message.error() is not None:
                    self.error = str(message.error())
                elif self.first_record_at is None:
                    self.first_record_at = time.monotonic()
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        self._thread.join(60)


@contextlib.contextmanager
def members_of(bootstrap: str, group: str, topic: str, count: int) -> Iterator[list[Member]]:
    members = [Member(bootstrap, group, topic, f"{group}-m{i}") for i in range(count)]
    try:
        yield members
    finally:
        for member in members:
            member.stop()
        for member in members:
            member.join()


def wait_until(condition: Any, what: str, timeout_s: float = SCENARIO_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.005)  # polling other threads' state; 5 ms resolution


def fill(bootstrap: str, topic: str, partitions: int, records: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for index in range(records):
        producer.produce(topic, b"x" * 100, partition=index % partitions)
    if producer.flush(30) != 0:
        raise RuntimeError("records not delivered")


def first_record(broker: BrokerProcess, rep: int) -> tuple[float, float]:
    """(a): seconds to the first record at any member, and to all members assigned."""
    topic, group = f"first-{rep}-{uuid.uuid4().hex[:6]}", f"first-{rep}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, FIRST_PARTITIONS)
    fill(broker.bootstrap, topic, FIRST_PARTITIONS, FIRST_RECORDS)
    with members_of(broker.bootstrap, group, topic, FIRST_MEMBERS) as members:
        started = time.monotonic()
        for member in members:
            member.start()

        def done() -> bool:
            broker.check_alive()
            return all(m.assigned_at is not None for m in members) and any(
                m.first_record_at is not None for m in members
            )

        wait_until(done, "3 assigned members and a first record")
        first = min(m.first_record_at for m in members if m.first_record_at is not None)
        assigned = max(m.assigned_at for m in members if m.assigned_at is not None)
        return first - started, assigned - started


def alive(broker: BrokerProcess) -> bool:
    broker.check_alive()  # raises if it died
    return True


def owned_by_all(members: list[Member], partitions: int) -> bool:
    owned = sorted(p for m in members for p in m.owned)
    return owned == list(range(partitions)) and all(m.owned for m in members)


def rebalance_on_join(broker: BrokerProcess, size: int, rep: int) -> tuple[float, float]:
    """(b): seconds from a new member's start until every partition is owned again, and
    from the last old member's revocation (its Heartbeat answered
    REBALANCE_IN_PROGRESS) until then: the rejoin + JoinGroup + SyncGroup part."""
    partitions = 2 * size + 2
    suffix = uuid.uuid4().hex[:6]
    topic, group = f"join-{size}-{rep}-{suffix}", f"join-{size}-{rep}-{suffix}"
    create_topic(broker.bootstrap, topic, partitions)
    with members_of(broker.bootstrap, group, topic, size + 1) as everyone:
        stable, newcomer = everyone[:size], everyone[size]
        for member in stable:
            member.start()
        wait_until(
            lambda: alive(broker) and owned_by_all(stable, partitions),
            f"a stable group of {size}",
        )
        time.sleep(1.0)  # no rebalance in flight (members joining late would start one)
        if not owned_by_all(stable, partitions):
            raise RuntimeError(f"the group of {size} was not stable")
        started = time.monotonic()
        newcomer.start()
        wait_until(
            lambda: alive(broker) and owned_by_all(everyone, partitions),
            f"partitions owned by all {size + 1} members",
        )
        done = time.monotonic()
        revoked = max(r for m in stable for r in m.revoked_at if r >= started)
        return done - started, done - revoked


@dataclass
class Row:
    metric: str
    target_s: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def cell(self, name: str) -> str:
        if name in self.errors:
            return f"failed: {self.errors[name]}"
        values = self.samples.get(name)
        if not values:
            return "-"
        median = statistics.median(values)
        spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
        return f"{median:.2f}{spread}"

    def verdict(self) -> str:
        values = self.samples.get("ottla")
        if self.target_s is None or not values:
            return ""
        return "PASS" if statistics.median(values) <= self.target_s else "FAIL"


def measure(rows: dict[str, Row], broker: BrokerProcess, scale: Scale) -> None:
    name = broker.name
    first = rows.setdefault(
        "first", Row("(a) new group of 3: first record, s", FIRST_RECORD_TARGET_S)
    )
    assigned = rows.setdefault("assigned", Row("(a) new group of 3: all 3 assigned, s"))
    for rep in range(scale.reps):
        try:
            seconds, all_assigned = first_record(broker, rep)
        except RuntimeError as error:
            first.errors[name] = assigned.errors[name] = str(error)[:120]
            break
        first.samples.setdefault(name, []).append(seconds)
        assigned.samples.setdefault(name, []).append(all_assigned)
        progress(
            f"{name} (a) rep {rep}: first record {seconds:.2f} s, all assigned {all_assigned:.2f} s"
        )
    for size in scale.group_sizes:
        row = rows.setdefault(
            f"join-{size}", Row(f"(b) member joins a stable group of {size}: all owned, s")
        )
        tail = rows.setdefault(
            f"join-{size}-tail", Row("&nbsp;&nbsp;of which after the last revocation, s")
        )
        for rep in range(scale.reps):
            try:
                seconds, after_revoke = rebalance_on_join(broker, size, rep)
            except (RuntimeError, ValueError) as error:
                row.errors[name] = tail.errors[name] = str(error)[:120]
                break
            row.samples.setdefault(name, []).append(seconds)
            tail.samples.setdefault(name, []).append(after_revoke)
            progress(
                f"{name} (b) group of {size} rep {rep}: {seconds:.2f} s "
                f"({after_revoke:.2f} s after the last revocation)"
            )


def table(rows: dict[str, Row], names: list[str]) -> str:
    lines = [
        "| metric | " + " | ".join(names) + " | target | verdict |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: | --- |",
    ]
    for row in rows.values():
        target = f"≤ {row.target_s:.1f}" if row.target_s is not None else ""
        cells = " | ".join(row.cell(n) for n in names)
        lines.append(f"| {row.metric} | {cells} | {target} | {row.verdict()} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.groups", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition each")
    parser.add_argument("--no-tansu", action="store_true", help="ottla only")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (broker logs)")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="bench-groups-"))
    brokers = [ottla_process(work)]
    if not args.no_tansu:
        if TANSU_BINARY.exists():
            brokers.append(tansu_process(work))
        else:
            progress(f"no Tansu binary at {TANSU_BINARY}; ottla only")
    rows: dict[str, Row] = {}
    died = False
    try:
        # One broker at a time: group timing is sensitive to a busy CPU (2 cores here).
        for broker in brokers:
            broker.start()
            progress(f"{broker.name} pid {broker.pid} on {broker.bootstrap}")
            try:
                measure(rows, broker, scale)
            finally:
                code = broker.stop()
                if code not in (0, None, -15):
                    died = True
                    print(f"!! {broker.name} exited with {code}; log tail:\n{broker.log_tail()}")
    finally:
        if args.keep or died:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows, [b.name for b in brokers]))
    failed = any(row.errors.get("ottla") for row in rows.values())
    return 1 if died or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
