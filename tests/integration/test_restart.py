"""Topics, configs and data survive a SIGTERM restart and a SIGKILL restart.

Before the restart: topics created through confluent's AdminClient (one with
config overrides, one grown by CreatePartitions, one deleted), a config changed by
IncrementalAlterConfigs, records produced by confluent-kafka (gzip) and
kafka-python (zstd, acks=all), and DeleteRecords moving a low watermark. After the
broker is stopped by the signal and started again on the same data dir: the same
topics (same ids and partition counts; the deleted one still gone), the same
DYNAMIC_TOPIC_CONFIG values, the same watermarks, every record readable, and new
records continue at the old log end offsets.
"""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
)

from tests.integration.clients import EARLIEST, Confluent, Got, KafkaPython, Rec
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(120)


def _topics(broker: BrokerProcess) -> dict[str, tuple[object, int]]:
    with Wire(broker.bootstrap) as wire:
        return {
            t.name: (t.topic_id, len(t.partitions))
            for t in metadata(wire, None).topics
            if not t.name.startswith("__")
        }


def _overrides(broker: BrokerProcess, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(15)
    return {
        name: entry.value
        for name, entry in entries.items()
        if ConfigSource(entry.source) is ConfigSource.DYNAMIC_TOPIC_CONFIG
    }


def _watermarks(broker: BrokerProcess, partitions: list[tuple[str, int]]) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(t, p), 15) for t, p in partitions]
    finally:
        consumer.close()


def _contents(client: Confluent, topic: str, partition: int, low: int, high: int) -> list[Got]:
    got = client.consume(topic, partition, EARLIEST, high - low)
    assert [g.offset for g in got] == list(range(low, high))
    return got


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_state_survives_restart(broker: BrokerProcess, sig: signal.Signals) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("configured", 1, {"cleanup.policy": "compact", "retention.ms": "3600000"})
    client.create_topic("grown", 2, {})
    client.create_topic("deleted", 1, {})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert admin.create_partitions([NewPartitions("grown", 4)])["grown"].result(15) is None
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "configured",
        incremental_configs=[
            ConfigEntry("segment.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(15)
    assert admin.delete_topics(["deleted"])["deleted"].result(15) is None

    client.produce(
        "configured",
        [Rec(b"k%d" % i, b"v%d" % i, (("h", b"%d" % i),)) for i in range(50)],
        compression="gzip",
    )
    client.produce(
        "grown", [Rec(b"a%d" % i, b"%d" % i, partition=i % 4) for i in range(40)], "gzip"
    )
    KafkaPython(broker.bootstrap).produce(
        "grown", [Rec(b"b%d" % i, None, partition=3) for i in range(10)], "zstd"
    )
    tp = TopicPartition("grown", 0, 5)
    assert admin.delete_records([tp])[tp].result(15).low_watermark == 5

    partitions = [("configured", 0)] + [("grown", p) for p in range(4)]
    topics = _topics(broker)
    overrides = _overrides(broker, "configured")
    watermarks = _watermarks(broker, partitions)
    contents = {
        (t, p): _contents(client, t, p, low, high)
        for (t, p), (low, high) in zip(partitions, watermarks, strict=True)
    }
    assert set(topics) == {"configured", "grown"}
    assert overrides == {
        "cleanup.policy": "compact",
        "retention.ms": "3600000",
        "segment.ms": "7200000",
    }
    assert watermarks == [(0, 50), (5, 10), (0, 10), (0, 10), (0, 20)]

    broker.restart(sig)

    assert _topics(broker) == topics
    assert _overrides(broker, "configured") == overrides
    assert _watermarks(broker, partitions) == watermarks
    for (t, p), (low, high) in zip(partitions, watermarks, strict=True):
        assert _contents(client, t, p, low, high) == contents[(t, p)]
    client.produce("configured", [Rec(b"after", b"restart")])
    (after,) = client.consume("configured", 0, 50, 1)
    assert (after.offset, after.key, after.value) == (50, b"after", b"restart")
