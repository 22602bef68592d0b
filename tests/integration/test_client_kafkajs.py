"""KafkaJS (pure JavaScript, node) works against a real ottla process.

Small node scripts under tests/integration/kafkajs/ (KafkaJS pinned in its
package.json and package-lock.json; `npm ci` there installs it, as .ci/run does) drive
the client; each takes a JSON spec and prints JSON, and these tests check every
record and answer:

- admin: createTopics (configs, an existing topic, an invalid name, a replication
  factor above the broker count), fetchTopicMetadata, listTopics, deleteTopics;
- producer: keys, headers (a repeated key too), null and empty keys and values, each codec
  KafkaJS has natively (none, gzip), and the idempotent producer (its producer id
  and consecutive sequences are in the stored batches), read back in order;
- consumer groups: two members share a topic's partitions (disjoint assignments
  covering all of them), each reads exactly its partitions in order and commits; one
  leaves and the other takes over at its commits;
  describeGroups and listGroups see the running group; a restarted member resumes
  from the committed offsets; fromBeginning against latest;
- offsets admin: fetchOffsets (unknown group, all topics, resolveOffsets),
  fetchTopicOffsets, fetchTopicOffsetsByTimestamp,
  setOffsets, resetOffsets to earliest and latest, and consumers starting where they
  say; describeGroups of an unknown group; deleteGroups;
- timestamps outside a topic's message.timestamp.before/after.max.ms are refused;
- an idempotent producer and a group member in one process live through a broker
  SIGKILL and restart (same producer id, sequences go on, reading resumes);
- three nodes: an RF=3 topic, a group across them, and the idempotent producer and a
  consumer following new leaders after a leader is SIGKILLed.

Node or KafkaJS missing is a failure naming the fix (`npm ci`), never a skip.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ottla.protocol import Compression, iter_batches
from tests.integration.conftest import BrokerProcess, shared_broker_in, start_three_nodes
from tests.integration.test_cluster_quorum import FAST, _until
from tests.integration.wire import Wire, fetch_partition, metadata

pytestmark = pytest.mark.timeout(240)

SCRIPTS = Path(__file__).parent / "kafkajs"
RUN_TIMEOUT_S = 90.0


def require_kafkajs() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: KafkaJS tests need node (apt-get install nodejs)")
    if not (SCRIPTS / "node_modules" / "kafkajs" / "package.json").exists():
        pytest.fail(f"KafkaJS is not installed: run `npm ci` in {SCRIPTS}")


@pytest.fixture(scope="module")
def kafkajs_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    require_kafkajs()
    with shared_broker_in(
        tmp_path_factory.mktemp("kafkajs"), "group.initial.rebalance.delay.ms=0"
    ) as broker:
        yield broker


def run(broker: BrokerProcess, script: str, **spec: Any) -> Any:
    """Runs kafkajs/<script>.js with `spec` (by default bootstrapped from `broker`);
    returns its last JSON line."""
    spec.setdefault("brokers", [broker.bootstrap])
    done = subprocess.run(
        ["node", str(SCRIPTS / f"{script}.js"), json.dumps(spec)],
        check=False,
        cwd=SCRIPTS,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (
        f"{script}.js exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
        f"stderr:\n{done.stderr[-6000:]}\nbroker log:\n{broker.log()}"
    )
    return json.loads(lines[-1])


def admin(broker: BrokerProcess, *ops: tuple[str, Any]) -> list[dict[str, Any]]:
    """Runs admin operations in order; each answer is {"result": ...} or {"error": ...}."""
    out = run(broker, "admin", ops=[{"op": op, "args": args} for op, args in ops])
    return list(out["results"])


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


Header = tuple[str, bytes]
Record = tuple[int, bytes | None, bytes | None, tuple[Header, ...]]  # partition, key, value


def message(record: Record) -> dict[str, Any]:
    partition, key, value, headers = record
    return {
        "partition": partition,
        "key": b64(key),
        "value": b64(value),
        "headers": [[name, b64(data)] for name, data in headers],
    }


def received(got: Sequence[dict[str, Any]]) -> list[tuple[int, int, Record]]:
    """(partition, offset, record) of each record a script read, in arrival order."""
    return [
        (
            g["partition"],
            g["offset"],
            (
                g["partition"],
                unb64(g["key"]),
                unb64(g["value"]),
                tuple((name, base64.b64decode(data)) for name, data in g["headers"]),
            ),
        )
        for g in got
    ]


def by_partition(items: Sequence[tuple[int, int, Record]]) -> dict[int, list[tuple[int, Record]]]:
    out: dict[int, list[tuple[int, Record]]] = {}
    for partition, offset, record in items:
        out.setdefault(partition, []).append((offset, record))
    return out


def expected_layout(records: Sequence[Record], start: dict[int, int] | None = None) -> Any:
    """What a reader must see: per partition, produce order at consecutive offsets."""
    out: dict[int, list[tuple[int, Record]]] = {}
    for record in records:
        partition = record[0]
        offset = (start or {}).get(partition, 0) + len(out.get(partition, []))
        out.setdefault(partition, []).append((offset, record))
    return out


def create_topic(broker: BrokerProcess, topic: str, partitions: int) -> None:
    [created] = admin(
        broker, ("createTopics", {"topics": [{"topic": topic, "numPartitions": partitions}]})
    )
    assert created == {"op": "createTopics", "result": True}


def produce(broker: BrokerProcess, topic: str, records: Sequence[Record], **options: Any) -> Any:
    out = run(
        broker,
        "produce",
        sends=[{"topic": topic, "messages": [message(r) for r in records], **options}],
    )
    return out["sent"]


def sample_records(partitions: int, count: int, tag: str) -> list[Record]:
    """Keys, headers (one repeated), a null key, a null value, an empty key, value and
    header value, spread round-robin over partitions."""
    records: list[Record] = []
    for i in range(count):
        headers: tuple[Header, ...] = (("origin", b"kafkajs"), ("seq", str(i).encode()))
        if i % 5 == 0:
            headers += (("seq", b"again"),)
        key: bytes | None = f"key-{i}".encode()
        value: bytes | None = f"{tag}-value-{i}".encode() * (1 + i % 3)
        if i == 3:
            key = None
        if i == 4:
            value = None
        if i == 6:
            key, value, headers = b"", b"", (*headers, ("empty", b""))
        records.append((i % partitions, key, value, headers))
    return records


# -- admin ----------------------------------------------------------------------------


def test_admin_creates_describes_and_deletes_topics(kafkajs_broker: BrokerProcess) -> None:
    configs = [
        {"name": "cleanup.policy", "value": "compact"},
        {"name": "retention.ms", "value": "3600000"},
    ]
    answers = admin(
        kafkajs_broker,
        ("createTopics", {"topics": [{"topic": "kjs-admin-a", "numPartitions": 3}]}),
        (
            "createTopics",
            {"topics": [{"topic": "kjs-admin-b", "numPartitions": 1, "configEntries": configs}]},
        ),
        ("createTopics", {"topics": [{"topic": "kjs-admin-a", "numPartitions": 3}]}),
        ("createTopics", {"topics": [{"topic": "bad name!", "numPartitions": 1}]}),
        (
            "createTopics",
            {"topics": [{"topic": "kjs-rf3", "numPartitions": 1, "replicationFactor": 3}]},
        ),
        ("fetchTopicMetadata", {"topics": ["kjs-admin-a", "kjs-admin-b"]}),
        (
            "describeConfigs",
            {"includeSynonyms": False, "resources": [{"type": 2, "name": "kjs-admin-b"}]},
        ),
        ("listTopics", []),
        ("deleteTopics", {"topics": ["kjs-admin-a"]}),
        ("listTopics", []),
    )
    (
        created_a,
        created_b,
        again,
        bad_name,
        too_many_replicas,
        metadata,
        configs_out,
        listed,
        deleted,
        after,
    ) = answers
    assert created_a["result"] is True and created_b["result"] is True
    assert again["result"] is False  # TOPIC_ALREADY_EXISTS: KafkaJS answers false
    assert [e["type"] for e in bad_name["error"]["errors"]] == ["INVALID_TOPIC_EXCEPTION"]
    assert [e["type"] for e in too_many_replicas["error"]["errors"]] == [
        "INVALID_REPLICATION_FACTOR"
    ]

    topics = {t["name"]: t["partitions"] for t in metadata["result"]["topics"]}
    assert sorted(topics) == ["kjs-admin-a", "kjs-admin-b"]
    assert sorted(p["partitionId"] for p in topics["kjs-admin-a"]) == [0, 1, 2]
    for partition in topics["kjs-admin-a"] + topics["kjs-admin-b"]:
        assert partition["partitionErrorCode"] == 0
        assert partition["replicas"] == [partition["leader"]] == partition["isr"]

    [resource] = configs_out["result"]["resources"]
    values = {
        c["configName"]: (c["configValue"], c["isDefault"]) for c in resource["configEntries"]
    }
    assert values["cleanup.policy"] == ("compact", False)
    assert values["retention.ms"] == ("3600000", False)

    assert {"kjs-admin-a", "kjs-admin-b"} <= set(listed["result"])
    assert "kjs-rf3" not in listed["result"] and "bad name!" not in listed["result"]
    assert deleted == {"op": "deleteTopics", "result": None}
    assert "kjs-admin-a" not in after["result"] and "kjs-admin-b" in after["result"]

    [gone] = admin(kafkajs_broker, ("fetchTopicMetadata", {"topics": ["kjs-admin-a"]}))
    assert gone["error"]["type"] == "UNKNOWN_TOPIC_OR_PARTITION"


# -- producer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "idempotent"), [("none", False), ("gzip", False), ("none", True), ("gzip", True)]
)
def test_produce_and_read_back(kafkajs_broker: BrokerProcess, codec: str, idempotent: bool) -> None:
    topic = f"kjs-produce-{codec}-{'idem' if idempotent else 'plain'}"
    create_topic(kafkajs_broker, topic, 3)
    first = sample_records(3, 15, "first")
    second = sample_records(3, 9, "second")
    sends = [
        {"topic": topic, "compression": codec, "messages": [message(r) for r in batch]}
        for batch in (first, second)
    ]
    sent = run(kafkajs_broker, "produce", sends=sends, idempotent=idempotent)["sent"]
    assert [sorted((a["partition"], a["errorCode"], a["baseOffset"]) for a in s) for s in sent] == [
        [(0, 0, 0), (1, 0, 0), (2, 0, 0)],
        [(0, 0, 5), (1, 0, 5), (2, 0, 5)],
    ]

    records = first + second
    out = run(
        kafkajs_broker,
        "consume",
        groupId=f"{topic}-reader",
        topics=[topic],
        fromBeginning=True,
        expect=len(records),
    )
    assert by_partition(received(out["received"])) == expected_layout(records)

    # The log holds KafkaJS' batches as sent: its codec, and for the idempotent
    # producer one producer id with sequences running on across the two sends.
    with Wire(kafkajs_broker.bootstrap) as wire:
        for partition in range(3):
            batches = list(iter_batches(bytes(fetch_partition(wire, topic, partition, 0).records)))
            assert len(batches) == 2
            assert {b.compression for b in batches} == {Compression[codec.upper()]}
            if idempotent:
                assert batches[0].producer_id >= 0
                assert {b.producer_id for b in batches} == {batches[0].producer_id}
                assert [(b.base_sequence, b.records_count) for b in batches] == [(0, 5), (5, 3)]
            else:
                assert {b.producer_id for b in batches} == {-1}


def test_produce_timestamps_outside_the_topic_bounds_are_invalid(
    kafkajs_broker: BrokerProcess,
) -> None:
    """message.timestamp.before.max.ms / after.max.ms bound every record's CreateTime
    (Kafka's LogValidator): a batch with one record outside is refused whole with
    INVALID_TIMESTAMP; a topic without bounds takes any timestamp."""
    hour_ms = 3600_000
    bounds = [
        {"name": "message.timestamp.before.max.ms", "value": str(hour_ms)},
        {"name": "message.timestamp.after.max.ms", "value": str(hour_ms)},
    ]
    [created] = admin(
        kafkajs_broker,
        (
            "createTopics",
            {
                "topics": [
                    {"topic": "kjs-ts-bounded", "numPartitions": 1, "configEntries": bounds},
                    {"topic": "kjs-ts-free", "numPartitions": 1},
                ]
            },
        ),
    )
    assert created["result"] is True
    now_ms = int(time.time() * 1000)

    def send(topic: str, *timestamps: int) -> dict[str, Any]:
        messages = [
            {"partition": 0, "key": None, "value": b64(f"ts-{t}".encode()), "timestamp": t}
            for t in timestamps
        ]
        return {"topic": topic, "messages": messages}

    sent = run(
        kafkajs_broker,
        "produce",
        errorsAreAnswers=True,
        retries=0,
        sends=[
            send("kjs-ts-bounded", now_ms, now_ms - 60_000),
            send("kjs-ts-bounded", now_ms - 2 * hour_ms),
            send("kjs-ts-bounded", now_ms + 2 * hour_ms),
            send("kjs-ts-bounded", now_ms, 1000),
            send("kjs-ts-bounded", now_ms + 1),
            send("kjs-ts-free", 1000, now_ms + 2 * hour_ms),
        ],
    )["sent"]
    ok, too_old, too_new, one_bad, ok_again, free = sent
    assert [(a["errorCode"], a["baseOffset"]) for a in ok] == [(0, 0)]
    for refused in (too_old, too_new, one_bad):
        assert "error" in refused and refused["error"]["type"] == "INVALID_TIMESTAMP", refused
    assert [(a["errorCode"], a["baseOffset"]) for a in ok_again] == [(0, 2)]
    assert [(a["errorCode"], a["baseOffset"]) for a in free] == [(0, 0)]

    out = run(
        kafkajs_broker,
        "consume",
        groupId="kjs-ts-reader",
        topics=["kjs-ts-bounded"],
        fromBeginning=True,
        expect=3,
    )
    assert [(g["offset"], g["timestamp"]) for g in out["received"]] == [
        (0, now_ms),
        (1, now_ms - 60_000),
        (2, now_ms + 1),
    ]


# -- consumer groups ------------------------------------------------------------------


def test_group_members_share_partitions_commit_and_resume(kafkajs_broker: BrokerProcess) -> None:
    topic, group = "kjs-group", "kjs-group-shared"
    create_topic(kafkajs_broker, topic, 4)
    records = sample_records(4, 40, "shared")
    after_leave = sample_records(4, 12, "after-leave")
    out = run(
        kafkajs_broker,
        "group",
        topic=topic,
        groupId=group,
        messages=[message(r) for r in records],
        moreMessages=[message(r) for r in after_leave],
    )

    assert out["partitions"] == [0, 1, 2, 3]
    a, b = out["members"]
    assert a["assignment"] and b["assignment"]
    assert sorted(a["assignment"] + b["assignment"]) == [0, 1, 2, 3]
    expected = expected_layout(records)
    for member in (a, b):
        got = by_partition(received(member["received"]))
        assert got == {p: expected[p] for p in member["assignment"]}, member["name"]

    # While both ran: describeGroups, listGroups, and a refused resetOffsets.
    [described] = out["described"]
    assert (described["groupId"], described["errorCode"], described["state"]) == (
        group,
        0,
        "Stable",
    )
    assert (described["protocolType"], described["protocol"]) == ("consumer", "RoundRobinAssigner")
    assert sorted((m["clientId"], m["assignment"][topic]) for m in described["members"]) == [
        ("member-a", a["assignment"]),
        ("member-b", b["assignment"]),
    ]
    assert {"groupId": group, "protocolType": "consumer"} in out["listed"]
    assert out["resetWhileRunning"]["message"] == (
        "The consumer group must have no running instances, current state: Stable"
    )
    # member-b left: member-a holds every partition and goes on from member-b's
    # commits (nothing re-read), then leaves too; the commits are the group's offsets.
    assert out["afterLeave"]["assignment"] == [0, 1, 2, 3]
    start = {p: len(expected[p]) for p in range(4)}
    assert by_partition(received(out["afterLeave"]["received"])) == expected_layout(
        after_leave, start
    )
    start = {p: start[p] + len(expected_layout(after_leave)[p]) for p in range(4)}
    [committed] = out["offsets"]
    assert {p["partition"]: p["offset"] for p in committed["partitions"]} == {
        p: str(start[p]) for p in range(4)
    }
    [after] = admin(kafkajs_broker, ("describeGroups", [[group]]))
    [empty] = after["result"]
    assert (empty["state"], empty["members"]) == ("Empty", [])

    # A restarted member resumes at the committed offsets (fromBeginning applies only
    # where nothing is committed): it reads the new records and nothing older.
    more = sample_records(4, 8, "after-restart")
    again = run(
        kafkajs_broker,
        "consume",
        groupId=group,
        topics=[topic],
        fromBeginning=True,
        expect=len(more),
        sendsAfterFirstFetch=[{"topic": topic, "messages": [message(r) for r in more]}],
    )
    assert by_partition(received(again["received"])) == expected_layout(more, start)
    assert again["assignment"] == {topic: [0, 1, 2, 3]}


def test_from_beginning_or_latest(kafkajs_broker: BrokerProcess) -> None:
    topic = "kjs-start"
    create_topic(kafkajs_broker, topic, 2)
    old = sample_records(2, 10, "old")
    produce(kafkajs_broker, topic, old)
    new = sample_records(2, 4, "new")
    later = [{"topic": topic, "messages": [message(r) for r in new]}]

    earliest = run(
        kafkajs_broker,
        "consume",
        groupId="kjs-start-earliest",
        topics=[topic],
        fromBeginning=True,
        expect=len(old),
    )
    assert by_partition(received(earliest["received"])) == expected_layout(old)

    latest = run(
        kafkajs_broker,
        "consume",
        groupId="kjs-start-latest",
        topics=[topic],
        fromBeginning=False,
        expect=len(new),
        sendsAfterFirstFetch=later,
    )
    assert by_partition(received(latest["received"])) == expected_layout(new, {0: 5, 1: 5})


# -- offsets admin --------------------------------------------------------------------


def test_offsets_admin(kafkajs_broker: BrokerProcess) -> None:
    topic, other, group = "kjs-offsets", "kjs-offsets-other", "kjs-offsets-group"
    create_topic(kafkajs_broker, topic, 2)
    create_topic(kafkajs_broker, other, 1)
    records = sample_records(2, 20, "offsets")
    produce(kafkajs_broker, topic, records)
    layout = expected_layout(records)

    def committed(answer: dict[str, Any]) -> dict[str, dict[int, str]]:
        return {
            t["topic"]: {p["partition"]: p["offset"] for p in t["partitions"]}
            for t in answer["result"]
        }

    unknown, set_topic, set_other, fetched, fetched_all, topic_offsets = admin(
        kafkajs_broker,
        ("fetchOffsets", {"groupId": group, "topics": [topic]}),
        (
            "setOffsets",
            {
                "groupId": group,
                "topic": topic,
                "partitions": [{"partition": 0, "offset": "3"}, {"partition": 1, "offset": "7"}],
            },
        ),
        (
            "setOffsets",
            {"groupId": group, "topic": other, "partitions": [{"partition": 0, "offset": "42"}]},
        ),
        ("fetchOffsets", {"groupId": group, "topics": [topic]}),
        ("fetchOffsets", {"groupId": group}),
        ("fetchTopicOffsets", [topic]),
    )
    assert committed(unknown) == {topic: {0: "-1", 1: "-1"}}
    assert set_topic["result"] is None and set_other["result"] is None
    assert committed(fetched) == {topic: {0: "3", 1: "7"}}
    assert committed(fetched_all) == {topic: {0: "3", 1: "7"}, other: {0: "42"}}
    assert sorted((p["partition"], p["low"], p["high"]) for p in topic_offsets["result"]) == [
        (0, "0", "10"),
        (1, "0", "10"),
    ]

    # A member starts where setOffsets put the group.
    out = run(kafkajs_broker, "consume", groupId=group, topics=[topic], expect=(10 - 3) + (10 - 7))
    assert by_partition(received(out["received"])) == {0: layout[0][3:], 1: layout[1][7:]}

    # resetOffsets to earliest stores Kafka's "earliest" marker (-2), which
    # resolveOffsets turns into the log start offset; a member then re-reads all.
    reset, marker, resolved, after = admin(
        kafkajs_broker,
        ("resetOffsets", {"groupId": group, "topic": topic, "earliest": True}),
        ("fetchOffsets", {"groupId": group, "topics": [topic]}),
        ("fetchOffsets", {"groupId": group, "topics": [topic], "resolveOffsets": True}),
        ("fetchOffsets", {"groupId": group, "topics": [topic]}),
    )
    assert reset["result"] is None
    assert committed(marker) == {topic: {0: "-2", 1: "-2"}}
    assert committed(resolved) == committed(after) == {topic: {0: "0", 1: "0"}}
    out = run(kafkajs_broker, "consume", groupId=group, topics=[topic], expect=len(records))
    assert by_partition(received(out["received"])) == layout

    # resetOffsets to latest stores -1, which is also "nothing committed" (a member
    # would fall back to fromBeginning); resolveOffsets commits the log end offsets,
    # and a member then reads only what arrives after it started.
    reset, marker, resolved = admin(
        kafkajs_broker,
        ("resetOffsets", {"groupId": group, "topic": topic}),
        ("fetchOffsets", {"groupId": group, "topics": [topic]}),
        ("fetchOffsets", {"groupId": group, "topics": [topic], "resolveOffsets": True}),
    )
    assert committed(marker) == {topic: {0: "-1", 1: "-1"}}
    assert committed(resolved) == {topic: {0: "10", 1: "10"}}
    new = sample_records(2, 4, "after-reset")
    out = run(
        kafkajs_broker,
        "consume",
        groupId=group,
        topics=[topic],
        fromBeginning=True,
        expect=len(new),
        sendsAfterFirstFetch=[{"topic": topic, "messages": [message(r) for r in new]}],
    )
    assert by_partition(received(out["received"])) == expected_layout(new, {0: 10, 1: 10})


def test_offsets_by_timestamp(kafkajs_broker: BrokerProcess) -> None:
    """fetchTopicOffsetsByTimestamp (ListOffsets v3): the first offset of the first
    batch whose largest timestamp reaches the target, record by record inside it, even
    when timestamps go back in time; past the newest, KafkaJS falls back to the log end."""
    topic = "kjs-by-time"
    create_topic(kafkajs_broker, topic, 1)

    def send(*timestamps: int) -> dict[str, Any]:
        messages = [
            {"partition": 0, "key": None, "value": b64(b"t"), "timestamp": t} for t in timestamps
        ]
        return {"topic": topic, "messages": messages}

    run(kafkajs_broker, "produce", sends=[send(1000), send(5000), send(2000, 3000)])
    answers = admin(
        kafkajs_broker,
        *[
            ("fetchTopicOffsetsByTimestamp", [topic, t])
            for t in (900, 1000, 1001, 2500, 5000, 5001)
        ],
    )
    assert [a["result"] for a in answers] == [
        [{"partition": 0, "offset": offset}] for offset in ("0", "0", "1", "1", "1", "4")
    ]


def test_describe_list_and_delete_groups(kafkajs_broker: BrokerProcess) -> None:
    topic, group = "kjs-groups-admin", "kjs-groups-admin-group"
    create_topic(kafkajs_broker, topic, 1)
    admin(
        kafkajs_broker,
        (
            "setOffsets",
            {"groupId": group, "topic": topic, "partitions": [{"partition": 0, "offset": "0"}]},
        ),
    )
    unknown, described, listed, deleted, deleted_unknown, listed_after = admin(
        kafkajs_broker,
        ("describeGroups", [["kjs-no-such-group"]]),
        ("describeGroups", [[group]]),
        ("listGroups", []),
        ("deleteGroups", [[group]]),
        ("deleteGroups", [["kjs-no-such-group"]]),
        ("listGroups", []),
    )
    assert unknown["result"] == [
        {
            "errorCode": 0,
            "groupId": "kjs-no-such-group",
            "state": "Dead",
            "protocolType": "",
            "protocol": "",
            "members": [],
        }
    ]
    assert described["result"] == [
        {
            "errorCode": 0,
            "groupId": group,
            "state": "Empty",
            "protocolType": "consumer",
            "protocol": "",
            "members": [],
        }
    ]
    assert {"groupId": group, "protocolType": "consumer"} in listed["result"]["groups"]
    assert deleted["result"] == [{"groupId": group, "errorCode": 0}]
    assert deleted_unknown["error"]["groups"] == [{"groupId": "kjs-no-such-group", "errorCode": 69}]
    assert group not in [g["groupId"] for g in listed_after["result"]["groups"]]


# -- a broker restart -----------------------------------------------------------------


def test_idempotent_producer_and_member_live_through_a_broker_restart(
    broker_factory: Any,
) -> None:
    """One KafkaJS process keeps its idempotent producer and group member while the
    broker is SIGKILLed and restarted: both reconnect, the producer goes on with its
    producer id and sequences (the broker recovered its producer state), and the member
    rejoins and reads on from its commits, every record once and in order."""
    require_kafkajs()
    broker: BrokerProcess = broker_factory("group.initial.rebalance.delay.ms=0")
    topic = "kjs-restart"
    create_topic(broker, topic, 2)
    phases = [sample_records(2, 10, "before"), sample_records(2, 10, "after")]
    spec = {
        "brokers": [broker.bootstrap],
        "retries": 10,
        "topic": topic,
        "groupId": "kjs-restart-group",
        "phases": [[message(r) for r in phase] for phase in phases],
    }
    process = subprocess.Popen(
        ["node", str(SCRIPTS / "restart.js"), json.dumps(spec)],
        cwd=SCRIPTS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        first = json.loads(process.stdout.readline() or "null")
        assert first is not None and first["phase"] == 0, process.stderr.read()  # type: ignore[union-attr]
        broker.restart(signal.SIGKILL)
        process.stdin.write("restarted\n")
        process.stdin.flush()
        second = json.loads(process.stdout.readline() or "null")
        done = json.loads(process.stdout.readline() or "null")
        stderr = process.communicate(timeout=RUN_TIMEOUT_S)[1]
    finally:
        process.kill()
    assert second is not None and done == {"done": True}, f"{stderr[-6000:]}\n{broker.log()}"
    assert process.returncode == 0, stderr[-6000:]
    assert by_partition(received(first["received"])) == expected_layout(phases[0])
    start = {p: len(rs) for p, rs in expected_layout(phases[0]).items()}
    assert by_partition(received(second["received"])) == expected_layout(phases[1], start)

    # The stored batches: one producer id, sequences running on across the restart.
    with Wire(broker.bootstrap) as wire:
        for partition in range(2):
            batches = list(iter_batches(bytes(fetch_partition(wire, topic, partition, 0).records)))
            assert len({b.producer_id for b in batches}) == 1
            assert batches[0].producer_id >= 0
            assert [(b.base_sequence, b.records_count) for b in batches] == [(0, 5), (5, 5)]


# -- a cluster of three ---------------------------------------------------------------


@pytest.fixture
def kafkajs_cluster(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    require_kafkajs()
    nodes = start_three_nodes(
        tmp_path,
        "kafkajsClusterTest0001",
        [
            *FAST,
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=3",
            "group.initial.rebalance.delay.ms=0",
        ],
    )
    # Kafka too refuses replication factor 3 until three brokers have registered.
    _until(lambda: _broker_count(nodes[1]) == 3, 30)
    yield nodes
    for node in nodes.values():
        node.stop(signal.SIGKILL)


def _broker_count(node: BrokerProcess) -> int:
    with Wire(node.bootstrap) as wire:
        return len(metadata(wire, [], allow_auto=False).brokers)


def test_cluster_routing_groups_and_a_lost_leader(
    kafkajs_cluster: dict[int, BrokerProcess],
) -> None:
    """On three nodes KafkaJS creates an RF=3 topic, two group members share it (the
    coordinator and the partition leaders spread over the nodes), and after the leader
    of partition 0 is SIGKILLed the idempotent producer follows the new leaders: a new
    group reads every record exactly once, in order."""
    nodes = kafkajs_cluster
    first = nodes[1]
    bootstrap = [node.bootstrap for node in nodes.values()]
    topic, group = "kjs-cluster", "kjs-cluster-group"
    created, described = admin(
        first,
        (
            "createTopics",
            {
                "topics": [
                    {
                        "topic": topic,
                        "numPartitions": 6,
                        "replicationFactor": 3,
                        "configEntries": [{"name": "min.insync.replicas", "value": "2"}],
                    }
                ],
                "timeout": 30000,
            },
        ),
        ("fetchTopicMetadata", {"topics": [topic]}),
    )
    assert created.get("result") is True, created
    [metadata] = described["result"]["topics"]
    leaders = {p["partitionId"]: p["leader"] for p in metadata["partitions"]}
    assert set(leaders.values()) == {1, 2, 3}
    assert all(sorted(p["replicas"]) == [1, 2, 3] for p in metadata["partitions"])

    records = sample_records(6, 36, "cluster")
    after_leave = sample_records(6, 12, "cluster-leave")
    out = run(
        first,
        "group",
        brokers=bootstrap,
        topic=topic,
        groupId=group,
        messages=[message(r) for r in records],
        moreMessages=[message(r) for r in after_leave],
    )
    expected = expected_layout(records)
    a, b = out["members"]
    assert sorted(a["assignment"] + b["assignment"]) == list(range(6))
    for member in (a, b):
        got = by_partition(received(member["received"]))
        assert got == {p: expected[p] for p in member["assignment"]}, member["name"]
    assert out["afterLeave"]["assignment"] == list(range(6))
    layout = expected_layout([*records, *after_leave])
    assert by_partition(received(out["afterLeave"]["received"])) == {
        p: layout[p][len(expected[p]) :] for p in range(6)
    }

    lost = leaders[0]
    nodes[lost].stop(signal.SIGKILL)
    survivors = [node.bootstrap for n, node in nodes.items() if n != lost]
    later = [sample_records(6, 12, f"after-kill-{i}") for i in range(2)]
    sent = run(
        nodes[next(n for n in nodes if n != lost)],
        "produce",
        brokers=bootstrap,
        retries=10,
        idempotent=True,
        sends=[{"topic": topic, "messages": [message(r) for r in batch]} for batch in later],
    )["sent"]
    assert all(a["errorCode"] == 0 for answer in sent for a in answer)

    everything = [*records, *after_leave, *later[0], *later[1]]
    out = run(
        nodes[next(n for n in nodes if n != lost)],
        "consume",
        brokers=survivors,
        retries=10,
        groupId="kjs-cluster-reader",
        topics=[topic],
        fromBeginning=True,
        expect=len(everything),
    )
    assert by_partition(received(out["received"])) == expected_layout(everything)
