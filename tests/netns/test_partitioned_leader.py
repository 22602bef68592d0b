"""A partition leader cut off from the other two by packet drop (not a kill) (issue 7).

Three voters in network namespaces (tests/netns/harness.py), broker.session.timeout.ms
3000 (heartbeat 500 ms), replica.lag.time.max.ms 3000, fast quorum timeouts. A topic
with 3 partitions, replication factor 3 and min.insync.replicas=2; partition P is one
whose leader (the victim) is not the quorum leader. 40 records are produced to P with
acks=all through confluent-kafka, then nft DROP rules cut the victim off from the other
two nodes; the test process still reaches it.

Proves, clause by clause:
- the cut-off leader stops acknowledging acks=all writes: two Produce requests (acks=-1)
  sent straight to it are answered with an error (NOT_ENOUGH_REPLICAS, its _AFTER_APPEND
  variant, REQUEST_TIMED_OUT or NOT_LEADER_OR_FOLLOWER), never NONE;
- the majority elects a new leader for P from the ISR (not the victim, not -1, a higher
  leader epoch, the victim out of the ISR), which takes acks=all writes (40 more records);
- the victim appended the unacknowledged records locally: before healing, its log end
  offset (read from its partition directory: ListOffsets answers the high watermark)
  is beyond the new leader's high watermark at the election, and its log holds them;
- after healing, the victim truncates that divergent tail and rejoins: every node's
  Metadata has it back in P's ISR, its log holds, batch for batch and byte for byte,
  what the new leader's holds, and none of the unacknowledged records;
- no acknowledged record is lost: a consumer reads P's 80 acknowledged records exactly
  once, in order, and nothing else.
"""

from __future__ import annotations

import datetime
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from ottla.protocol import ErrorCode, Record, build_batch
from tests.integration.wire import Wire, fetch_partition, kio_module
from tests.netns.harness import NetnsCluster, until

SESSION_MS = 3000
TOPIC = "cut"
ACKED_EACH = 40
PRODUCE_TIMEOUT_MS = 2000
REFUSALS = {
    ErrorCode.not_enough_replicas,
    ErrorCode.not_enough_replicas_after_append,
    ErrorCode.request_timed_out,
    ErrorCode.not_leader_or_follower,
}

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.netns_overrides(
        f"broker.session.timeout.ms={SESSION_MS}",
        "broker.heartbeat.interval.ms=500",
        "replica.lag.time.max.ms=3000",
        "replica.fetch.backoff.ms=100",
        "controller.quorum.election.timeout.ms=500",
        "controller.quorum.fetch.timeout.ms=1000",
        "controller.quorum.request.timeout.ms=1000",
    ),
]

State = dict[int, tuple[int, int, tuple[int, ...]]]


def _state(cluster: NetnsCluster, node_id: int) -> State:
    """partition -> (leader, leader epoch, ISR) in `node_id`'s Metadata."""
    for entry in cluster.metadata(node_id).topics:
        if entry.name == TOPIC and entry.error_code is ErrorCode.none:
            return {
                int(p.partition_index): (
                    int(p.leader_id),
                    int(p.leader_epoch),
                    tuple(sorted(int(r) for r in p.isr_nodes)),
                )
                for p in entry.partitions
            }
    return {}


def _batches(directory: Path) -> list[bytes]:
    """The record batches in a partition directory's segment files, in offset order (the
    active segment is preallocated: its zero-filled tail ends the scan)."""
    batches: list[bytes] = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        position = 0
        while position + 12 <= len(data):
            (length,) = struct.unpack_from(">i", data, position + 8)
            if length <= 0 or position + 12 + length > len(data):
                break
            batches.append(data[position : position + 12 + length])
            position += 12 + length
    return batches


def _log_end_offset(batches: list[bytes]) -> int:
    if not batches:
        return 0
    (base_offset,) = struct.unpack_from(">q", batches[-1], 0)
    (last_offset_delta,) = struct.unpack_from(">i", batches[-1], 23)  # after the CRC, attributes
    return int(base_offset) + int(last_offset_delta) + 1


def _produce_raw(cluster: NetnsCluster, node_id: int, partition: int, keys: list[bytes]) -> Any:
    """Produce v9 acks=-1 of one batch straight to `node_id`; its error code."""
    batch = build_batch([Record(key=k, value=b"x") for k in keys], base_timestamp=1)
    module = kio_module(0, 9)
    body = module.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(milliseconds=PRODUCE_TIMEOUT_MS),
        topic_data=(
            module.TopicProduceData(
                name=TOPIC,
                partition_data=(
                    module.PartitionProduceData(index=partition, records=bytes(batch)),
                ),
            ),
        ),
    )
    with Wire(cluster.nodes[node_id].bootstrap) as wire:
        response = wire.request(0, 9, body)
    return response.responses[0].partition_responses[0].error_code


def _produce_acked(bootstrap: str, partition: int, keys: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    errors: list[object] = []
    for key in keys:
        producer.produce(
            TOPIC,
            key=key,
            value=b"x",
            partition=partition,
            on_delivery=lambda e, _m: errors.append(e) if e else None,
        )
    assert producer.flush(30) == 0
    assert errors == []


def _consume(bootstrap: str, partition: int, expected: int) -> list[bytes]:
    """Keys of the partition from offset 0 until its end (polled with a deadline)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(TOPIC, partition, 0)])
    keys: list[bytes] = []
    at_end = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not (at_end and len(keys) >= expected):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                at_end = at_end or error.code() == KafkaError._PARTITION_EOF
                continue
            at_end = False
            keys.append(message.key() or b"")
    finally:
        consumer.close()
    return keys


def test_a_partitioned_leader_stops_acking_and_truncates_its_divergent_tail(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    quorum_leader = cluster.leader()
    code = cluster.create_topic(
        quorum_leader,
        TOPIC,
        partitions=3,
        replication_factor=3,
        configs={"min.insync.replicas": "2"},
    )
    assert code is ErrorCode.none

    def settled() -> State | None:
        state = _state(cluster, quorum_leader)
        full = len(state) == 3 and all(isr == (1, 2, 3) for _l, _e, isr in state.values())
        return state if full else None

    before = until(settled, 15.0, "three partitions, ISR of three")
    assert before is not None
    # Keep the quorum on the majority side where the placement allows it.
    partition = min(before, key=lambda p: (before[p][0] == quorum_leader, p))
    victim, epoch_before, _isr = before[partition]
    majority = [n for n in cluster.nodes if n != victim]
    directories = {n: cluster.nodes[n].data_dir / f"{TOPIC}-{partition}" for n in cluster.nodes}

    acked_before = [f"acked-before-{i}".encode() for i in range(ACKED_EACH)]
    _produce_acked(cluster.bootstrap_servers, partition, acked_before)

    cluster.isolate(victim)

    # 1. The cut-off leader acknowledges no acks=all write.
    unacked = [[f"unacked-{r}-{i}".encode() for i in range(5)] for r in range(2)]
    codes = [_produce_raw(cluster, victim, partition, keys) for keys in unacked]
    print(f"the cut-off leader {victim} answered acks=all writes with {codes}")
    assert all(c in REFUSALS for c in codes), codes

    # 2. The majority elects a new leader from the ISR.
    def elected() -> tuple[int, int, tuple[int, ...]] | None:
        states = [_state(cluster, n)[partition] for n in majority]
        lead, epoch, isr = states[0]
        ok = lead in majority and epoch > epoch_before and victim not in isr
        return states[0] if ok and all(s == states[0] for s in states) else None

    after = until(elected, SESSION_MS / 1000 + 15, "a new leader elected by the majority")
    assert after is not None
    new_leader = after[0]
    with Wire(cluster.nodes[new_leader].bootstrap) as wire:
        data = fetch_partition(wire, TOPIC, partition, 0)
    assert data.error_code is ErrorCode.none
    high_watermark = int(data.high_watermark)
    assert high_watermark == ACKED_EACH

    # 3. The victim appended the records it never acknowledged: a divergent tail.
    victim_before_heal = _batches(directories[victim])
    victim_end = _log_end_offset(victim_before_heal)
    print(f"victim log end offset {victim_end}, new leader's high watermark {high_watermark}")
    assert victim_end > high_watermark
    assert any(b"unacked-" in batch for batch in victim_before_heal)

    acked_after = [f"acked-after-{i}".encode() for i in range(ACKED_EACH)]
    _produce_acked(",".join(cluster.nodes[n].bootstrap for n in majority), partition, acked_after)

    # 4. Healed, the victim truncates, catches up and rejoins the ISR.
    cluster.heal(victim)
    healed_at = time.monotonic()

    def rejoined() -> bool:
        return all(_state(cluster, n)[partition][2] == (1, 2, 3) for n in cluster.nodes)

    until(rejoined, 30.0, "the old leader back in the ISR on every node")
    print(f"back in the ISR {time.monotonic() - healed_at:.2f} s after healing")

    def same_logs() -> dict[int, list[bytes]] | None:
        logs = {n: _batches(directory) for n, directory in directories.items()}
        return logs if logs[victim] == logs[new_leader] and logs[victim] else None

    logs = until(same_logs, 15.0, "the old leader's log equal to the new leader's")
    assert logs is not None
    assert _log_end_offset(logs[victim]) == 2 * ACKED_EACH
    assert not any(b"unacked-" in batch for batch in logs[victim])

    # 5. Every acknowledged record, exactly once, in order; nothing else.
    keys = _consume(cluster.bootstrap_servers, partition, 2 * ACKED_EACH)
    assert keys == acked_before + acked_after
