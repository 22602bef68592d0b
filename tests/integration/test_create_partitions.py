"""CreatePartitions grows a topic; the new partitions take records at once.

confluent's AdminClient grows a 2-partition topic to 5: Metadata lists partitions
0..4 led by this broker, a record produced to partition 4 is consumed back, the
old partitions keep their data, and shrinking (to 3) is INVALID_PARTITIONS.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions  # type: ignore[attr-defined]

from tests.integration.clients import EARLIEST, Confluent, Rec
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, metadata

pytestmark = pytest.mark.timeout(60)


def test_create_partitions(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("growing", 2, {})
    client.produce("growing", [Rec(b"old", b"0", partition=0), Rec(b"old", b"1", partition=1)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert admin.create_partitions([NewPartitions("growing", 5)])["growing"].result(15) is None

    with Wire(broker.bootstrap) as wire:
        (topic,) = metadata(wire, ["growing"], allow_auto=False).topics
    assert sorted(p.partition_index for p in topic.partitions) == [0, 1, 2, 3, 4]
    assert {p.leader_id for p in topic.partitions} == {1}

    client.produce("growing", [Rec(b"new", b"4", partition=4)])
    assert [
        (g.partition, g.offset, g.value) for g in client.consume("growing", 4, EARLIEST, 1)
    ] == [(4, 0, b"4")]
    assert [g.value for g in client.consume("growing", 1, EARLIEST, 1)] == [b"1"]

    with pytest.raises(KafkaException) as shrink:
        admin.create_partitions([NewPartitions("growing", 3)])["growing"].result(15)
    assert shrink.value.args[0].code() == KafkaError.INVALID_PARTITIONS
