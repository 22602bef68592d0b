"""DeleteRecords moves the low watermark; consumers from earliest start there.

confluent's AdminClient deletes records before offset 4 of partition 0 and
kafka-python's before offset 2 of partition 1 (of ten each): the returned low
watermarks are 4 and 2, ListOffsets earliest answers them, a consumer from
earliest reads only the rest, and a fetch below the low watermark is
OFFSET_OUT_OF_RANGE. Deleting beyond the high watermark is OFFSET_OUT_OF_RANGE.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition

from tests.integration.clients import EARLIEST, Confluent, Rec
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition

pytestmark = pytest.mark.timeout(60)

OFFSET_OUT_OF_RANGE = 1


def test_delete_records(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("trimmed", 2, {})
    client.produce(
        "trimmed", [Rec(b"k", b"%d-%d" % (p, i), partition=p) for p in (0, 1) for i in range(10)]
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    result = admin.delete_records([TopicPartition("trimmed", 0, 4)])
    (deleted,) = [future.result(15) for future in result.values()]
    assert deleted.low_watermark == 4

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        kp_result = kp.delete_records({KpTopicPartition("trimmed", 1): 2})
    finally:
        kp.close()
    assert kp_result[KpTopicPartition("trimmed", 1)]["low_watermark"] == 2

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "w"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition("trimmed", 0), 15) == (4, 10)
        assert consumer.get_watermark_offsets(TopicPartition("trimmed", 1), 15) == (2, 10)
    finally:
        consumer.close()
    got = client.consume("trimmed", 0, EARLIEST, 6)
    assert [(g.offset, g.value) for g in got] == [(i, b"0-%d" % i) for i in range(4, 10)]
    with Wire(broker.bootstrap) as wire:
        assert fetch_partition(wire, "trimmed", 0, 3).error_code == OFFSET_OUT_OF_RANGE

    too_far = admin.delete_records([TopicPartition("trimmed", 0, 11)])
    with pytest.raises(KafkaException) as raised:
        next(iter(too_far.values())).result(15)
    assert raised.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
