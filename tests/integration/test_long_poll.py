"""Long-poll fetches (Kafka's DelayedFetch) against a real broker, over the raw wire.

A fetch that finds fewer than min_bytes waits: it is answered when data arrives
(long before its max_wait), or at max_wait with what there is — every time, even
when the loop's timer fires a hair before the deadline; a connection closed while
its fetch waits leaves the broker serving; requests pipelined behind a waiting fetch
are answered after it, in order.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from ottla.protocol import ErrorCode, Record, build_batch
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_request, metadata, produce_partition

TOPIC = "polls"


def _fetch_body(offset: int, max_wait_ms: int, min_bytes: int = 1) -> Any:
    return fetch_request(TOPIC, 0, offset, max_wait_ms=max_wait_ms, min_bytes=min_bytes)


def _records(response: Any) -> bytes:
    partition = response.responses[0].partitions[0]
    assert partition.error_code == ErrorCode.none
    return bytes(partition.records or b"")


def test_waiting_fetches_are_answered_at_max_wait_every_time(broker: BrokerProcess) -> None:
    with Wire(broker.bootstrap) as wire:
        metadata(wire, [TOPIC])
        for _ in range(200):
            # The wire's socket timeout (15 s) fails the test if one is never answered.
            assert _records(wire.request(1, 12, _fetch_body(0, max_wait_ms=5))) == b""


def test_a_waiting_fetch_is_answered_when_data_arrives(broker: BrokerProcess) -> None:
    batch = bytes(build_batch([Record(key=b"k", value=b"long-polled")]))
    with Wire(broker.bootstrap) as consumer, Wire(broker.bootstrap) as producer:
        metadata(consumer, [TOPIC])
        for offset in range(5):
            started = time.monotonic()
            correlation_id = consumer.send(1, 12, _fetch_body(offset, max_wait_ms=60_000))
            assert produce_partition(producer, TOPIC, 0, batch, acks=1).error_code == 0
            frame = consumer.recv_frame()  # within the wire's 15 s, far below max_wait
            assert struct.unpack_from(">i", frame)[0] == correlation_id
            assert time.monotonic() - started < 15
            assert b"long-polled" in frame


def test_pipelined_requests_wait_behind_a_waiting_fetch_in_order(broker: BrokerProcess) -> None:
    with Wire(broker.bootstrap) as wire:
        metadata(wire, [TOPIC])
        first = wire.send(1, 12, _fetch_body(0, max_wait_ms=300))
        second = wire.send(1, 12, _fetch_body(0, max_wait_ms=0, min_bytes=0))
        assert struct.unpack_from(">i", wire.recv_frame())[0] == first
        assert struct.unpack_from(">i", wire.recv_frame())[0] == second


def test_closing_a_connection_with_a_waiting_fetch_leaves_the_broker_serving(
    broker: BrokerProcess,
) -> None:
    batch = bytes(build_batch([Record(key=b"k", value=b"after-close")]))
    for _ in range(20):
        wire = Wire(broker.bootstrap)
        metadata(wire, [TOPIC])
        wire.send(1, 12, _fetch_body(0, max_wait_ms=60_000))
        wire.close()
    with Wire(broker.bootstrap) as wire:
        assert produce_partition(wire, TOPIC, 0, batch, acks=1).error_code == 0
        assert b"after-close" in _records(wire.request(1, 12, _fetch_body(0, max_wait_ms=1000)))
