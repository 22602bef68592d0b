"""Unknown APIs and versions close the connection, as Kafka's; ApiVersions is answered.

An unknown api key, a Metadata version beyond the advertised range and Produce v1
(advertised for librdkafka's compression check, as Kafka 4 does, but not served) each
close their connection, as Kafka's SocketServer does, and the broker goes on serving
others. (ottla used to answer them with a correlation id and a bare UNSUPPORTED_VERSION
int16, which a client reads with that API's own schema: kafka-python, pinned to a
version, and librdkafka with an old `broker.version.fallback` misread it.) ApiVersions at
a version ottla does not know (v9) is answered with a v0 body carrying the error and
the supported ranges (KIP-511), so the client can retry at a listed version — and the
same connection then serves that retry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from ottla.protocol import SUPPORTED_APIS
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, kio_module, metadata

pytestmark = pytest.mark.timeout(60)

UNSUPPORTED_VERSION = 35


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("unsupported")) as broker:
        yield broker


def _raw_request(api_key: int, version: int, correlation_id: int, tail: bytes) -> bytes:
    payload = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test" + tail
    return struct.pack(">i", len(payload)) + payload


@pytest.mark.parametrize(
    ("api_key", "version"),
    [(9999, 0), (3, 99), (0, 1)],
    ids=["unknown-api-key", "metadata-v99", "produce-v1-below-decodable"],
)
def test_unknown_api_or_version(shared_broker: BrokerProcess, api_key: int, version: int) -> None:
    with Wire(shared_broker.bootstrap) as wire:
        wire.send_raw(_raw_request(api_key, version, 4242, b"\x00" * 8))
        assert wire.closed_by_peer()
    with Wire(shared_broker.bootstrap) as wire:
        assert metadata(wire, None).brokers  # the broker still serves requests


def test_api_versions_v9_answers_v0_body_with_ranges(shared_broker: BrokerProcess) -> None:
    # A v3+-style body (compact strings, tagged fields) at a version nobody knows.
    body = b"\x06kcat!\x061.7.1\x00"
    with Wire(shared_broker.bootstrap) as wire:
        wire.send_raw(_raw_request(18, 9, 77, b"\x00" + body))
        frame = wire.recv_frame()
        correlation_id, error_code, count = struct.unpack_from(">ihi", frame)
        assert (correlation_id, error_code) == (77, UNSUPPORTED_VERSION)
        ranges = [struct.unpack_from(">hhh", frame, 10 + 6 * i) for i in range(count)]
        assert len(frame) == 10 + 6 * count  # a v0 body: no throttle time, no tags
        assert ranges == SUPPORTED_APIS.api_version_entries()
        assert (18, 0, 4) in ranges
        # The client retries at a listed version on the same connection.
        module = kio_module(18, 3)
        response = wire.request(
            18,
            3,
            module.ApiVersionsRequest(client_software_name="kcat", client_software_version="1.7.1"),
        )
        assert response.error_code == 0
        assert [(k.api_key, k.min_version, k.max_version) for k in response.api_keys] == ranges
