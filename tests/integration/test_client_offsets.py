"""Every client consumes from earliest, from latest and by timestamp.

Each client creates a topic and produces ten records (with explicit, increasing
timestamps where the client can set them; kcat's carry the produce time). Then:
- earliest: the client reads all ten from offset 0;
- latest: a consumer started at the end sees none of the ten, only records produced
  after it started (the test keeps producing until the consumer sees one);
- timestamp: offsets_for_times for each record's timestamp answers the first offset
  whose timestamp is at least that one (computed from what was consumed), and a
  timestamp past the last record answers "none".
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.clients import CLIENTS, EARLIEST, Got, Rec, client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in

pytestmark = pytest.mark.timeout(120)

BASE_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("offsets")) as broker:
        yield broker


def _records(timestamps: bool) -> list[Rec]:
    return [
        Rec(
            f"k{i}".encode(),
            f"old-{i}".encode(),
            timestamp_ms=BASE_MS + 1000 * i if timestamps else None,
        )
        for i in range(10)
    ]


@pytest.mark.parametrize("name", CLIENTS)
def test_earliest_latest_and_timestamp(shared_broker: BrokerProcess, name: str) -> None:
    client = client_for(name, shared_broker.bootstrap)
    topic = f"offsets-{name}"
    client.create_topic(topic, 1, {})
    client.produce(topic, _records(client.sets_timestamps))

    earliest = client.consume(topic, 0, EARLIEST, 10)
    assert [(g.offset, g.value) for g in earliest] == [(i, f"old-{i}".encode()) for i in range(10)]
    if client.sets_timestamps:
        assert [g.timestamp_ms for g in earliest] == [BASE_MS + 1000 * i for i in range(10)]

    for record in earliest:
        expected = min(g.offset for g in earliest if g.timestamp_ms >= record.timestamp_ms)
        assert client.offset_for_time(topic, 0, record.timestamp_ms) == expected
    assert client.offset_for_time(topic, 0, BASE_MS - 1) == 0
    assert client.offset_for_time(topic, 0, max(g.timestamp_ms for g in earliest) + 1) is None

    tail = client.tail(topic, 0)
    try:
        seen: list[Got] = []
        deadline = time.monotonic() + 30
        produced = 0
        while not seen and time.monotonic() < deadline:
            client.produce(topic, [Rec(b"k", f"new-{produced}".encode())])
            produced += 1
            seen = tail.poll(1.0)
    finally:
        tail.close()
    assert seen, "the consumer at latest saw nothing"
    assert all((g.value or b"").startswith(b"new-") and g.offset >= 10 for g in seen)
