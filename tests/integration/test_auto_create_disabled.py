"""With `auto.create.topics.enable=false` an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.

Metadata (even when the client allows auto-creation), Produce, Fetch and
ListOffsets on a topic that does not exist answer UNKNOWN_TOPIC_OR_PARTITION (3),
and the topic is not created; confluent-kafka's producer reports the same error.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer

from ottla.protocol import Record, build_batch
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition, metadata, produce_partition

pytestmark = pytest.mark.timeout(60)

UNKNOWN_TOPIC_OR_PARTITION = 3


def test_unknown_topic_is_not_created(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory("auto.create.topics.enable=false")  # type: ignore[operator]
    with Wire(broker.bootstrap) as wire:
        response = metadata(wire, ["missing"], allow_auto=True)
        assert [(t.name, t.error_code) for t in response.topics] == [
            ("missing", UNKNOWN_TOPIC_OR_PARTITION)
        ]
        batch = bytes(build_batch([Record(key=b"k", value=b"v")], base_timestamp=1))
        assert produce_partition(wire, "missing", 0, batch).error_code == (
            UNKNOWN_TOPIC_OR_PARTITION
        )
        assert fetch_partition(wire, "missing", 0, 0).error_code == UNKNOWN_TOPIC_OR_PARTITION
        assert metadata(wire, None).topics == ()
    errors: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "topic.metadata.propagation.max.ms": 500,
            "message.timeout.ms": 20000,
        }
    )
    producer.produce("missing", b"v", on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(15) == 0
    assert [e.code() if e else None for e in errors] in (
        [KafkaError.UNKNOWN_TOPIC_OR_PART],
        [KafkaError._UNKNOWN_TOPIC],
    )
