"""A partition leader restarted after a crash answers its checkpointed high watermark.

Three real nodes; 200 records written with acks=all to a topic with replication factor
3; once every node's `replication-offset-checkpoint` holds the high watermark, all
three are SIGKILLed at once (nobody is fenced, so the ISR stays all three). Two come
back, the partition's leader among them; the third, in the ISR but down, keeps the high
watermark from moving (it is the minimum over the ISR) until its session ends, a
minute here. In that window the leader's ListOffsets "latest" is what it restored:
all 200 records (Kafka's ReplicaManager starts a log's high watermark from the
checkpoint). Before the checkpoint, a leader with followers started from its log
start: "latest" answered 0, and a consumer resetting to latest would re-read it all.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ottla.broker import high_watermarks
from tests.integration.conftest import BrokerProcess, start_three_nodes
from tests.integration.rawclient import log_end_offsets
from tests.integration.test_cluster_quorum import FAST, _leader, _until
from tests.integration.test_replication import _brokers, _create, _state
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(180)

TOPIC = "checkpointed"
RECORDS = 200


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[int, BrokerProcess]]:
    started = start_three_nodes(
        tmp_path,
        "hwCheckpointTestClust1",
        [
            "broker.session.timeout.ms=60000",  # the window the assertion runs in
            "broker.heartbeat.interval.ms=500",
            "replica.high.watermark.checkpoint.interval.ms=100",
            *FAST,
        ],
    )
    yield started
    for node in started.values():
        node.stop(signal.SIGKILL)


def test_a_restarted_leader_answers_its_checkpointed_high_watermark(
    nodes: dict[int, BrokerProcess],
) -> None:
    bootstrap = ",".join(n.bootstrap for n in nodes.values())
    _until(lambda: _brokers(nodes[1].bootstrap) == 3, 30)
    _create(bootstrap, TOPIC, 2)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(TOPIC, value=b"%d" % i)
    assert producer.flush(30) == 0
    leader, _, isr = _state(nodes, TOPIC)
    assert sorted(isr) == [1, 2, 3]
    with Wire(nodes[leader].bootstrap) as wire:
        topic_id = metadata(wire, [TOPIC], allow_auto=False).topics[0].topic_id

    def checkpointed() -> bool:
        return all(
            high_watermarks.load(n.data_dir).get((topic_id, 0)) == RECORDS for n in nodes.values()
        )

    _until(checkpointed, 15)
    quorum_leader = _leader(nodes)
    down = next(n for n in nodes if n not in (leader, quorum_leader))
    for node in nodes.values():
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
    for node in nodes.values():
        node.stop(signal.SIGKILL)

    for node_id, node in nodes.items():
        if node_id != down:
            node.start()

    def latest() -> int | None:
        try:
            (offset,) = log_end_offsets(nodes[leader].port, TOPIC, 1)
        except (OSError, AssertionError):
            return None
        return offset if offset >= 0 else None

    _until(lambda: latest() is not None, 60)
    assert _state({k: v for k, v in nodes.items() if k != down}, TOPIC)[2] == isr  # unchanged
    assert latest() == RECORDS
