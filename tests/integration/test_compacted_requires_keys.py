"""A compacted topic refuses records without a key with INVALID_RECORD.

On a `cleanup.policy=compact` topic: a raw batch holding keyless records (even
behind keyed ones) gets INVALID_RECORD (87), each keyless record listed by its index
(KIP-467 record_errors), and nothing is appended; confluent's
producer sees INVALID_RECORD for a keyless record while keyed records and a keyed
tombstone (null value) are accepted. The same keyless record is fine on a
delete-policy topic.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer

from ottla.protocol import Compression, Record, build_batch
from tests.integration.clients import EARLIEST, Confluent
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition, produce_partition

pytestmark = pytest.mark.timeout(60)

INVALID_RECORD = 87


def test_keyless_records_refused_on_compacted_topic(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("compacted", 1, {"cleanup.policy": "compact"})
    client.create_topic("deleting", 1, {})
    mixed = bytes(
        build_batch(
            [
                Record(key=b"a", value=b"1"),
                Record(key=None, value=b"no key"),
                Record(key=b"b", value=b"2"),
                Record(key=None, value=b"no key either"),
            ],
            base_timestamp=1,
            compression=Compression.GZIP,
        )
    )
    with Wire(broker.bootstrap) as wire:
        refused = produce_partition(wire, "compacted", 0, mixed)
        assert refused.error_code == INVALID_RECORD
        # KIP-467 (Produce v8+): every keyless record, by its index in the batch.
        why = "Compacted topic cannot accept message without key in topic partition compacted-0."
        assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
            (1, why),
            (3, why),
        ]
        assert refused.error_message.startswith(
            "One or more records have been rejected due to 2 record errors in total"
        )
        assert fetch_partition(wire, "compacted", 0, 0).high_watermark == 0
        assert produce_partition(wire, "deleting", 0, mixed).error_code == 0

    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    outcomes: list[int | None] = []

    def report(error: KafkaError | None, _message: object) -> None:
        outcomes.append(error.code() if error else None)

    producer.produce("compacted", key=b"k1", value=b"v1", on_delivery=report)
    assert producer.flush(15) == 0
    producer.produce("compacted", value=b"no key", on_delivery=report)
    assert producer.flush(15) == 0
    producer.produce("compacted", key=b"k1", value=None, on_delivery=report)
    assert producer.flush(15) == 0
    assert outcomes == [None, KafkaError.INVALID_RECORD, None]
    got = client.consume("compacted", 0, EARLIEST, 2)
    assert [(g.offset, g.key, g.value) for g in got] == [(0, b"k1", b"v1"), (1, b"k1", None)]
