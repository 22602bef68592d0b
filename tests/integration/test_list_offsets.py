"""ListOffsets answers earliest, latest and max-timestamp (KIP-734), exactly per record.

Records with out-of-order timestamps are produced in two batches. confluent's
AdminClient.list_offsets answers earliest 0, latest 8 and max-timestamp the offset
and timestamp of the one record with the largest timestamp (inside a batch, not
the batch's first offset); after DeleteRecords, earliest follows the low
watermark. An empty partition answers earliest = latest = 0 and max-timestamp -1.
"""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from tests.integration.clients import Confluent, Rec
from tests.integration.conftest import BrokerProcess

pytestmark = pytest.mark.timeout(60)

EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]
MAX_TIMESTAMP = OffsetSpec.max_timestamp()  # type: ignore[no-untyped-call]

BASE_MS = 1_700_000_000_000
# offset -> timestamp: the largest (BASE + 9000) is at offset 2 of the first batch.
TIMESTAMPS = [BASE_MS + t for t in (1000, 3000, 9000, 2000, 4000, 5000, 6000, 7000)]


def _list(admin: AdminClient, topic: str, partition: int, spec: OffsetSpec) -> tuple[int, int]:
    tp = TopicPartition(topic, partition)
    result = admin.list_offsets({tp: spec})[tp].result(15)
    return int(result.offset), int(result.timestamp)


def test_list_offsets(broker: BrokerProcess) -> None:
    client = Confluent(broker.bootstrap)
    client.create_topic("listed", 2, {})
    records = [Rec(b"k", b"v%d" % i, timestamp_ms=ts) for i, ts in enumerate(TIMESTAMPS)]
    client.produce("listed", records[:4])
    client.produce("listed", records[4:])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    assert _list(admin, "listed", 0, EARLIEST)[0] == 0
    assert _list(admin, "listed", 0, LATEST)[0] == 8
    assert _list(admin, "listed", 0, MAX_TIMESTAMP) == (2, BASE_MS + 9000)
    assert _list(admin, "listed", 0, OffsetSpec.for_timestamp(BASE_MS + 2500)) == (
        1,
        BASE_MS + 3000,
    )

    tp = TopicPartition("listed", 0, 3)
    assert admin.delete_records([tp])[tp].result(15).low_watermark == 3
    assert _list(admin, "listed", 0, EARLIEST)[0] == 3

    assert _list(admin, "listed", 1, EARLIEST)[0] == 0
    assert _list(admin, "listed", 1, LATEST)[0] == 0
    assert _list(admin, "listed", 1, MAX_TIMESTAMP)[0] == -1
