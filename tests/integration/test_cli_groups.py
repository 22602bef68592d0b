"""`ottla groups` administers consumer groups of a real broker from the shell.

Proves, with confluent-kafka (librdkafka) consumers: `reset-offsets` creates offsets
for a group that does not exist yet; `list` and `describe` (human and --json) show a
stable group of three members with their decoded assignments, committed offsets,
log end offsets and lag, asking the coordinator FindCoordinator names; resetting an
active group is refused naming its state and deleting it is NON_EMPTY_GROUP (exit
1); once the group is Empty, `reset-offsets --to-earliest`, `--to-offset` (one
partition) and `--to-datetime` commit the planned offsets and a new consumer
resumes from exactly there (`--dry-run` commits nothing); `delete` removes the
group; an unknown group and an unreachable broker are one clear line, exit 1.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess

TOPIC = "orders"
GROUP = "billing"
PARTITIONS = 3
PER_PARTITION = 10
COMMITTED = 4
BASE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
WAIT_S = 60.0


def _ottla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ottla", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _prepare(bootstrap: str) -> None:
    """A 3-partition topic; record i of each partition is stamped BASE + i seconds."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    base_ms = int(BASE.timestamp() * 1000)
    for partition in range(PARTITIONS):
        for index in range(PER_PARTITION):
            producer.produce(
                TOPIC, b"v%d" % index, partition=partition, timestamp=base_ms + index * 1000
            )
    assert producer.flush(30) == 0


class Member:
    """A confluent-kafka group member polling in a thread; never commits."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "partition.assignment.strategy": "range",
            }
        )
        self.assigned: set[int] = set()
        self.first: dict[int, int] = {}
        self._stop = threading.Event()
        self.consumer.subscribe([TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _on_assign(self, _: Any, partitions: list[Any]) -> None:
        self.assigned = {p.partition for p in partitions}

    def _on_revoke(self, _: Any, partitions: list[Any]) -> None:
        self.assigned = set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            message = self.consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                self.first.setdefault(partition, offset)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.consumer.close()


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)  # polling other threads and processes
    raise AssertionError(f"timed out waiting for {what}")


def _describe(server: tuple[str, str]) -> dict[str, Any]:
    result = _ottla("groups", "describe", GROUP, "--json", *server)
    assert result.returncode == 0, result.stderr
    described: dict[str, Any] = json.loads(result.stdout)
    return described


def _resume_offsets(broker: BrokerProcess) -> dict[int, int]:
    """The first offset a new member of the (Empty) group reads in each partition;
    returns once the group is Empty again."""
    member = Member(broker.bootstrap)
    try:
        _wait(lambda: len(member.first) == PARTITIONS, "a record from every partition")
        return dict(member.first)
    finally:
        member.close()
        server = ("--bootstrap-server", broker.bootstrap)
        _wait(lambda: _describe(server)["state"] == "Empty", "the group to be Empty")


def test_groups_commands(broker_factory: Any) -> None:
    broker: BrokerProcess = broker_factory("group.initial.rebalance.delay.ms=0")
    server = ("--bootstrap-server", broker.bootstrap)
    _prepare(broker.bootstrap)

    # Offsets for a group that does not exist yet (a simple consumer's commit).
    created = _ottla(
        "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-offset", str(COMMITTED), *server
    )
    assert created.returncode == 0, created.stderr
    assert _describe(server)["state"] == "Empty"

    members = [Member(broker.bootstrap) for _ in range(3)]
    try:

        def stable() -> bool:
            owned = sorted(p for m in members for p in m.assigned)
            if owned != list(range(PARTITIONS)) or not all(m.assigned for m in members):
                return False
            described = _describe(server)
            return described["state"] == "Stable" and len(described["members"]) == 3

        _wait(stable, "a stable group of three members")
        listed = json.loads(_ottla("groups", "list", "--json", *server).stdout)
        assert listed == [
            {"group": GROUP, "state": "Stable", "type": "classic", "protocol_type": "consumer"}
        ]
        assert "billing  Stable  classic  consumer" in _ottla("groups", "list", *server).stdout

        described = _describe(server)
        assert described["protocol"] == "range"
        assert described["coordinator"]["port"] == broker.port
        assignments = sorted(
            (p, m["client_id"]) for m in described["members"] for p in m["assignment"][TOPIC]
        )
        assert [p for p, _ in assignments] == list(range(PARTITIONS))
        assert all(set(m["assignment"]) == {TOPIC} for m in described["members"])
        member_ids = {m["member_id"] for m in described["members"]}
        assert [(o["partition"], o["committed_offset"], o["log_end_offset"], o["lag"])
                for o in described["offsets"]] == [
            (p, COMMITTED, PER_PARTITION, PER_PARTITION - COMMITTED) for p in range(PARTITIONS)
        ]  # fmt: skip
        assert {o["member_id"] for o in described["offsets"]} == member_ids
        human = _ottla("groups", "describe", GROUP, *server).stdout
        assert "State: Stable" in human and "LOG-END-OFFSET" in human
        assert f"{TOPIC}:0" in human and f"{TOPIC}  0          {COMMITTED}" in human

        refused = _ottla(
            "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", *server
        )
        assert refused.returncode == 1
        assert "is Stable" in refused.stderr and "Traceback" not in refused.stderr
        not_empty = _ottla("groups", "delete", GROUP, *server)
        assert not_empty.returncode == 1
        assert "NON_EMPTY_GROUP: The group is not empty." in not_empty.stderr
    finally:
        for member in members:
            member.close()
    _wait(lambda: _describe(server)["state"] == "Empty", "the group to be Empty")

    reset = _ottla("groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", *server)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.split("\n")[0].split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
    assert _resume_offsets(broker) == dict.fromkeys(range(PARTITIONS), 0)

    one = _ottla(
        "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--partition", "1",
        "--to-offset", "7", "--json", *server,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == [
        {"group": GROUP, "topic": TOPIC, "partition": 1, "new_offset": 7, "error": None}
    ]
    assert _resume_offsets(broker) == {0: 0, 1: 7, 2: 0}

    moment = (BASE + datetime.timedelta(seconds=5, milliseconds=500)).isoformat()
    dry = _ottla(
        "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-datetime", moment,
        "--dry-run", "--json", *server,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert [r["new_offset"] for r in json.loads(dry.stdout)] == [6, 6, 6]
    assert [o["committed_offset"] for o in _describe(server)["offsets"]] == [0, 7, 0]
    applied = _ottla(
        "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-datetime", moment, *server
    )
    assert applied.returncode == 0, applied.stderr
    assert _resume_offsets(broker) == dict.fromkeys(range(PARTITIONS), 6)

    deleted = _ottla("groups", "delete", GROUP, *server)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted group {GROUP}"
    assert json.loads(_ottla("groups", "list", "--json", *server).stdout) == []
    unknown = _ottla("groups", "describe", GROUP, *server)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"ottla: group {GROUP}: GROUP_ID_NOT_FOUND: The group id does not exist."
    )


def test_groups_unreachable_broker_is_one_clear_line() -> None:
    result = _ottla("groups", "list", "--bootstrap-server", "127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("ottla: cannot connect to 127.0.0.1:1")
    assert len(result.stderr.strip().splitlines()) == 1
