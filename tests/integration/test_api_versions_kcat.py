"""ApiVersions v3+ responses have no tagged-field byte in their header; kcat works.

Raw: ApiVersions v3 and v4 are answered with the size, the correlation id and then
the body at once (response header v0, as Kafka does for this one API even when the
request is flexible); the body decodes to its exact length. End to end: kcat
(librdkafka 2.0.2, which misreads a tag byte there) lists metadata, produces keyed
records with headers through an auto-created topic and consumes them back.
"""

from __future__ import annotations

import json
import struct
import subprocess

import pytest
from kio.serial import entity_reader

from ottla.protocol import SUPPORTED_APIS
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, kio_module, request_frame

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_header_has_no_tag_byte(broker: BrokerProcess, version: int) -> None:
    module = kio_module(18, version)
    body = module.ApiVersionsRequest(client_software_name="ottla-test", client_software_version="1")
    with Wire(broker.bootstrap) as wire:
        wire.send_raw(request_frame(18, version, 31337, body))
        frame = wire.recv_frame()
    correlation_id, error_code = struct.unpack_from(">ih", frame)
    assert (correlation_id, error_code) == (31337, 0)  # error_code right after the id
    response_type = SUPPORTED_APIS[18].response_type(version)
    entity, size = entity_reader(response_type)(frame, 4)
    assert 4 + size == len(frame)
    assert (18, 0, 4) in [(k.api_key, k.min_version, k.max_version) for k in entity.api_keys]


def test_kcat_end_to_end(broker: BrokerProcess) -> None:
    def kcat(*args: str, data: bytes | None = None) -> str:
        result = subprocess.run(
            ["kcat", "-b", broker.bootstrap, *args],
            input=data,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()

    listing = json.loads(kcat("-L", "-J"))
    assert [b["id"] for b in listing["brokers"]] == [1]
    lines = b"".join(b"k%d:v%d\n" % (i, i) for i in range(10))
    kcat("-P", "-t", "kcat-e2e", "-K:", "-H", "trace=abc", "-z", "snappy", data=lines)
    out = kcat("-C", "-t", "kcat-e2e", "-e", "-J")
    got = [json.loads(line) for line in out.splitlines()]
    assert [(g["offset"], g["key"], g["payload"], g["headers"]) for g in got] == [
        (i, f"k{i}", f"v{i}", ["trace", "abc"]) for i in range(10)
    ]
    topic = json.loads(kcat("-L", "-J", "-t", "kcat-e2e"))["topics"][0]
    assert (topic["topic"], len(topic["partitions"])) == ("kcat-e2e", 1)
