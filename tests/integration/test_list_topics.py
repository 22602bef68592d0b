"""librdkafka's list_topics() (Metadata v13 for all topics) works against ottla.

librdkafka 2.16 sends that request with 3 bytes after the body (an array count
placeholder); Kafka ignores them, and so must ottla — before, the connection was
closed and list_topics() failed with _TRANSPORT.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import BrokerProcess


def test_list_topics_from_consumer_and_admin(broker: BrokerProcess) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("listed", b"x")
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    assert "listed" in consumer.list_topics(timeout=10).topics
    consumer.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert "listed" in metadata.topics
    assert metadata.topics["listed"].partitions[0].leader == 1
