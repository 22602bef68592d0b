"""Auto-creation on Metadata and on Produce uses the broker's `num.partitions`.

With `--override num.partitions=3`, a Metadata request naming an unknown topic
creates it with three partitions and answers it at once; kafka-python's and
confluent's producers (Metadata with auto-creation allowed) create topics with
three partitions too; an explicit CreateTopics count still wins.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from tests.integration.clients import Confluent
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(60)


def _partition_counts(broker: BrokerProcess) -> dict[str, int]:
    with Wire(broker.bootstrap) as wire:
        return {t.name: len(t.partitions) for t in metadata(wire, None).topics}


def test_auto_create_uses_num_partitions(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory("num.partitions=3")  # type: ignore[operator]
    with Wire(broker.bootstrap) as wire:
        response = metadata(wire, ["by-metadata"], allow_auto=True)
        (topic,) = response.topics
        assert (topic.name, topic.error_code) == ("by-metadata", 0)
        assert sorted(p.partition_index for p in topic.partitions) == [0, 1, 2]
        assert all(p.leader_id == 1 for p in topic.partitions)

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("by-confluent", b"v")
    assert producer.flush(15) == 0
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap)
    kp.send("by-kafka-python", b"v").get(15)
    kp.close()
    Confluent(broker.bootstrap).create_topic("explicit", 5, {})

    counts = _partition_counts(broker)
    assert {name: counts[name] for name in counts if not name.startswith("__")} == {
        "by-metadata": 3,
        "by-confluent": 3,
        "by-kafka-python": 3,
        "explicit": 5,
    }
