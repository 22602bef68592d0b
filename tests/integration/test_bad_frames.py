"""Unparseable frames close only their own connection; the broker keeps serving.

Garbage bytes (a negative size prefix, a frame too short for a request header, a
Metadata request whose body is cut short) and a frame larger than
`socket.request.max.bytes` each make the broker close that connection — the
oversized one as soon as its size prefix arrives, without waiting for the body.
Another connection opened beforehand keeps working, and a real client produces
and consumes afterwards.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.clients import EARLIEST, Confluent, Rec
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, kio_module, metadata, request_frame

pytestmark = pytest.mark.timeout(60)

MAX_FRAME_BYTES = 1 << 20


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(
        tmp_path_factory.mktemp("frames"), f"socket.request.max.bytes={MAX_FRAME_BYTES}"
    ) as broker:
        yield broker


def _truncated_metadata() -> bytes:
    module = kio_module(3, 12)
    body = module.MetadataRequest(
        topics=tuple(
            module.MetadataRequestTopic(topic_id=uuid.UUID(int=0), name=f"t{i}") for i in range(3)
        ),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    frame = request_frame(3, 12, 1, body)
    payload = frame[4:-6]
    return struct.pack(">i", len(payload)) + payload


GARBAGE = {
    "negative-size": b"\xff\xff\xff\xfe" + b"garbage!" * 4,
    "shorter-than-a-header": struct.pack(">i", 3) + b"\x00\x03\x00",
    "truncated-body": _truncated_metadata(),
}


def _client_still_works(broker: BrokerProcess, topic: str) -> None:
    client = Confluent(broker.bootstrap)
    client.produce(topic, [Rec(b"k", b"after")])
    got = client.consume(topic, 0, EARLIEST, 1)
    assert [(g.key, g.value) for g in got] == [(b"k", b"after")]


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_closes_only_that_connection(shared_broker: BrokerProcess, kind: str) -> None:
    with Wire(shared_broker.bootstrap) as bystander, Wire(shared_broker.bootstrap) as bad:
        assert metadata(bystander, None).brokers  # open and working before
        bad.send_raw(GARBAGE[kind])
        assert bad.closed_by_peer()
        assert metadata(bystander, None).brokers
    _client_still_works(shared_broker, f"after-{kind}")


def test_oversized_frame_closes_at_its_size_prefix(shared_broker: BrokerProcess) -> None:
    with Wire(shared_broker.bootstrap) as bystander, Wire(shared_broker.bootstrap) as bad:
        assert metadata(bystander, None).brokers
        # Only the prefix and a few bytes: the broker must not wait for the rest.
        bad.send_raw(struct.pack(">i", MAX_FRAME_BYTES + 1) + b"\x00\x03\x00\x0c")
        assert bad.closed_by_peer()
        assert metadata(bystander, None).brokers
    _client_still_works(shared_broker, "after-oversized")
