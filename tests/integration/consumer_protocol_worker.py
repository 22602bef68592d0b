"""A consumer-protocol (KIP-848) group member in its own process (so a test can SIGKILL it).

usage: python consumer_protocol_worker.py BOOTSTRAP TOPIC GROUP OUT [ASSIGNOR]

confluent-kafka with `group.protocol=consumer`: the broker assigns partitions and the
member reconciles incrementally (revocations and assignments arrive as separate
callbacks). Consumes TOPIC in GROUP, at most about 2,000 records a second, and
appends to OUT one line per event, flushed at once (group_worker.py's format):
  A <time> <partitions>  the member's whole assignment after a change (may be empty)
  R <p> <o>           record (partition, offset) processed
  C <p> <o>           a synchronous commit of next offset <o> for <p> succeeded
  F                   a commit failed (the records since the last C are uncommitted)
Commits happen after processing each batch, so a revocation (which runs inside
`consume`) never finds processed but uncommitted records.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import confluent_kafka

BATCH = 100
PAUSE_S = 0.05


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def run(bootstrap: str, topic: str, group: str, out: TextIO, assignor: str) -> None:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if assignor:
        config["group.remote.assignor"] = assignor
    consumer = confluent_kafka.Consumer(config)
    owned: set[int] = set()

    def report() -> None:
        _emit(out, f"A {time.time()} " + ",".join(str(p) for p in sorted(owned)))

    def on_assign(_: Any, partitions: list[Any]) -> None:
        owned.update(p.partition for p in partitions)
        report()

    def on_revoke(_: Any, partitions: list[Any]) -> None:
        owned.difference_update(p.partition for p in partitions)
        report()

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    while True:
        messages = consumer.consume(BATCH, 0.5)
        items = [(int(m.partition() or 0), int(m.offset() or 0)) for m in messages if not m.error()]
        if not items:
            continue
        commits: dict[int, int] = {}
        for partition, offset in items:
            _emit(out, f"R {partition} {offset}")
            commits[partition] = max(commits.get(partition, 0), offset + 1)
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


def main() -> None:
    bootstrap, topic, group, path = sys.argv[1:5]
    assignor = sys.argv[5] if len(sys.argv) > 5 else ""
    with open(path, "a") as out:
        run(bootstrap, topic, group, out, assignor)


if __name__ == "__main__":
    main()
