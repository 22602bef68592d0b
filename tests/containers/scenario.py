"""The container test's client side: run by tests/containers/run.sh once compose is up.

From the host (the compose network's bridge is local to it) with confluent-kafka:
waits until the three containers are healthy (`podman healthcheck run`: no systemd
here to schedule the image's HEALTHCHECK), checks they run as a non-root user,
creates a topic spread over the three nodes, produces with acks=all and consumes it
all back, SIGKILLs one container and keeps producing with acks=all, restarts it and
waits until it rejoins, consumes every acknowledged record exactly once and in order,
and finally stops each node with SIGTERM (clean exit 0, no kill after the grace time).

--replication-factor 3 (the default) is the full scenario: the victim leads
partitions, they move to in-sync replicas, every partition keeps taking acks=all
writes, the victim rejoins the ISR of every partition, no acknowledged record is lost.
--replication-factor 1: the victim's partitions go offline while writes to the other
nodes' partitions go on, and they come back online with their records.

Not a pytest module on purpose: `make test` must not need podman.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

TOPIC = "container-orders"
PARTITIONS = 6
PER_PARTITION = 40
_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


class Failure(Exception):
    """The scenario saw the cluster misbehave."""


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> float:
    """Poll `check` until it holds; the seconds it took. Raises Failure on timeout."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (KafkaException, subprocess.SubprocessError, OSError):
            pass
        if time.monotonic() - start > timeout_s:
            raise Failure(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=60
    )


def healthy(container: str) -> bool:
    return podman("healthcheck", "run", container, check=False).returncode == 0


class Cluster:
    """Kafka-side view of the cluster through one AdminClient."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})

    def metadata(self) -> Any:
        return self.admin.list_topics(timeout=5)

    def partitions(self) -> dict[int, Any]:
        """Partition id -> PartitionMetadata of the test topic (fresh metadata)."""
        topic = self.metadata().topics.get(TOPIC)
        if topic is None or topic.error is not None:
            return {}
        return dict(topic.partitions)

    def create_topic(self, replication_factor: int) -> None:
        futures = self.admin.create_topics(
            [NewTopic(TOPIC, PARTITIONS, replication_factor)], request_timeout=15
        )
        for future in futures.values():
            future.result(timeout=20)


class Records:
    """Every acknowledged record, by partition, in offset order."""

    def __init__(self) -> None:
        self.acked: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}

    def produce(
        self, bootstrap: str, partitions: Iterable[int], phase: str, timeout_s: float
    ) -> None:
        """Produce PER_PARTITION records to each partition with acks=all; all must be acked."""
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": int(timeout_s * 1000),
            }
        )
        errors: list[str] = []

        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(f"partition {message.partition()}: {error}")
            else:
                acked = self.acked[message.partition()]
                if message.offset() in acked:  # an acknowledged record was overwritten
                    errors.append(
                        f"partition {message.partition()} offset {message.offset()}: acked twice"
                        f" ({acked[message.offset()]!r}, now {message.value()!r}): data lost"
                    )
                acked[message.offset()] = message.value()

        wanted = list(partitions)
        for partition in wanted:
            for index in range(PER_PARTITION):
                producer.produce(
                    TOPIC,
                    value=f"{phase}-{partition}-{index}".encode(),
                    key=f"k{index}".encode(),
                    partition=partition,
                    on_delivery=delivered,
                )
            producer.poll(0)
        remaining = producer.flush(timeout_s + 5)
        if errors or remaining:
            raise Failure(f"{phase}: {remaining} unacknowledged, errors: {errors[:5]}")
        log(f"{phase}: {len(wanted) * PER_PARTITION} records acked (acks=all) on {wanted}")

    def verify(self, bootstrap: str) -> None:
        """Read every partition from the start: exactly the acked records, in order."""
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "container-test-verify",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            ends: dict[int, int] = {}
            for partition in range(PARTITIONS):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(TOPIC, partition), timeout=10
                )
                ends[partition] = int(high)
            consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
            seen: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
            deadline = time.monotonic() + 30
            while any(len(seen[p]) < ends[p] for p in range(PARTITIONS)):
                if time.monotonic() > deadline:
                    raise Failure(f"consumed {[len(s) for s in seen.values()]} of {ends}")
                for message in consumer.consume(500, timeout=1):
                    if message.error() is not None:
                        raise Failure(f"consume: {message.error()}")
                    value = message.value()
                    seen[int(message.partition() or 0)][int(message.offset() or 0)] = value or b""
        finally:
            consumer.close()
        for partition in range(PARTITIONS):
            acked, got = self.acked[partition], seen[partition]
            if list(got) != list(range(len(got))):
                raise Failure(f"partition {partition}: offsets not contiguous from 0")
            if {o: v for o, v in got.items() if o in acked} != acked:
                missing = sorted(set(acked) - set(got))[:5]
                raise Failure(f"partition {partition}: acked records lost or changed {missing}")
            if len(got) != len(acked):
                raise Failure(f"partition {partition}: {len(got)} records, {len(acked)} acked")
        total = sum(len(s) for s in seen.values())
        log(f"consumed all {total} acked records, once each, in order, from every partition")


def leaders(parts: dict[int, Any]) -> dict[int, int]:
    return {p: int(meta.leader) for p, meta in parts.items()}


def run(args: argparse.Namespace) -> None:
    nodes: dict[int, str] = {i + 1: name for i, name in enumerate(args.containers)}
    exercise(nodes, args.bootstrap, args.replication_factor)
    gc.collect()  # no client left to reconnect while the nodes stop
    stop_cleanly(nodes)


def exercise(nodes: dict[int, str], bootstrap: str, rf: int) -> None:
    """Health, produce/consume, SIGKILL of one node, restart and rejoin."""
    took = wait_for("all containers healthy", lambda: all(map(healthy, nodes.values())), 90, 1)
    log(f"HEALTHCHECK passes on all three containers ({took:.1f} s)")
    for name in nodes.values():
        uid = podman("exec", name, "id", "-u").stdout.strip()
        if uid == "0":
            raise Failure(f"{name} runs as root")
    log(f"nodes run as uid {uid}, not root")

    cluster = Cluster(bootstrap)
    wait_for("three brokers in Metadata", lambda: len(cluster.metadata().brokers) == 3, 60)
    brokers = {b.id: f"{b.host}:{b.port}" for b in cluster.metadata().brokers.values()}
    log(f"brokers advertise {brokers}")

    cluster.create_topic(rf)

    def placed() -> bool:
        parts = cluster.partitions()
        return len(parts) == PARTITIONS and all(
            meta.leader >= 0 and meta.error is None and len(meta.replicas) == rf
            for meta in parts.values()
        )

    wait_for("every partition to have a leader", placed, 30)
    parts = cluster.partitions()
    if set(leaders(parts).values()) != set(nodes):
        raise Failure(f"leaders not spread over the three nodes: {leaders(parts)}")
    log(f"topic {TOPIC}: {PARTITIONS} partitions, RF={rf}, leaders {leaders(parts)}")

    records = Records()
    records.produce(bootstrap, range(PARTITIONS), "before", 30)
    records.verify(bootstrap)

    controller = int(cluster.metadata().controller_id)
    victim = max(n for n in nodes if n != controller)  # not the active controller
    victim_parts = sorted(p for p, leader in leaders(parts).items() if leader == victim)
    others = sorted(p for p in range(PARTITIONS) if p not in victim_parts)
    survivors = ",".join(b for n, b in brokers.items() if n != victim)
    podman("kill", "-s", "KILL", nodes[victim])
    killed_at = time.monotonic()
    log(f"SIGKILLed {nodes[victim]} (node {victim}, leader of {victim_parts})")
    cluster_survivors = Cluster(survivors)

    if rf == 1:
        records.produce(survivors, others, "victim-down", 30)

        def offline() -> bool:
            now = leaders(cluster_survivors.partitions())
            return all(now[p] == -1 for p in victim_parts)

        wait_for("the victim's partitions to go offline", offline, 30)
        took = time.monotonic() - killed_at
        log(f"node {victim} fenced: its partitions offline {took:.1f} s after the kill")
    else:

        def moved() -> bool:
            now = cluster_survivors.partitions()
            return all(
                meta.leader not in (-1, victim) and victim not in meta.isrs for meta in now.values()
            )

        records.produce(survivors, range(PARTITIONS), "victim-down", 60)
        wait_for("leaders off the victim and the victim out of the ISR", moved, 30)
        took = time.monotonic() - killed_at
        log(f"leaders moved off node {victim}, it left every ISR ({took:.1f} s after the kill)")
    down_s = time.monotonic() - killed_at

    podman("start", nodes[victim])
    restarted_at = time.monotonic()
    wait_for(f"{nodes[victim]} healthy", lambda: healthy(nodes[victim]), 60, 1)
    if rf == 1:

        def back() -> bool:
            now = leaders(cluster.partitions())
            return all(now[p] == victim for p in victim_parts)

        wait_for("the victim's partitions back online on it", back, 60)
        took = time.monotonic() - restarted_at
        log(f"node {victim} rejoined: its partitions online again ({took:.1f} s after start)")
    else:

        def rejoined() -> bool:
            return all(victim in meta.isrs for meta in cluster.partitions().values())

        wait_for(f"node {victim} back in every ISR", rejoined, 60)
        took = time.monotonic() - restarted_at
        log(f"node {victim} rejoined the ISR of every partition ({took:.1f} s after start)")
    log(f"node {victim} was down {down_s:.1f} s")

    records.produce(bootstrap, range(PARTITIONS), "after", 30)
    records.verify(bootstrap)


def stop_cleanly(nodes: dict[int, str]) -> None:
    """`podman stop` (SIGTERM) of every node: each must exit 0 well before the grace time."""
    times: list[str] = []
    for name in nodes.values():
        start = time.monotonic()
        podman("stop", "-t", "20", name)
        took = time.monotonic() - start
        code = podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        if code != "0" or took > 10:
            raise Failure(f"{name}: SIGTERM stop took {took:.1f} s, exit code {code}")
        times.append(f"{took:.1f} s")
    log(f"SIGTERM: every node stopped cleanly, exit 0 ({', '.join(times)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="host:port,... of the nodes")
    parser.add_argument("--replication-factor", type=int, choices=(1, 3), default=3)
    parser.add_argument("containers", nargs=3, help="the three container names, node 1-3")
    args = parser.parse_args()
    try:
        run(args)
    except Failure as failure:
        log(f"FAIL: {failure}")
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
