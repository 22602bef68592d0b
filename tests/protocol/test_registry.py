"""The API registry, request dispatch rules and the response header rule hold.

Proves: every advertised API/version has kio request and response classes and the
flexible flag the registry reports matches kio's; Produce is advertised from v0 but
v0-v2 raise UnsupportedRequest; an unknown api key raises UnsupportedRequest with
the correlation id preserved; ApiVersions at an unknown high version (v9) raises
UnsupportedRequest carrying a decoded header; `build_api_versions_response` lists
the registry exactly (v0 body for UNSUPPORTED_VERSION); an ApiVersions response has
header v0 (no tag byte) at every version while a flexible Metadata v12 response has
the extra 0 byte.
"""

from __future__ import annotations

import datetime
import io
import struct
from typing import Any

import pytest
from kio.serial import entity_reader, entity_writer

from ottla.protocol import (
    SUPPORTED_APIS,
    ErrorCode,
    ProtocolError,
    RequestHeader,
    UnsupportedRequest,
    build_api_versions_response,
    decode_request,
    encode_response,
)

ADVERTISED = [
    (spec.api_key, version)
    for spec in SUPPORTED_APIS.values()
    for version in range(spec.min_version, spec.max_version + 1)
]


def _joined(chunks: list[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(bytes(chunk) for chunk in chunks)


def _request(api_key: int, version: int, correlation_id: int, flexible: bool) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test"
    return header + (b"\x00" if flexible else b"")


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED)
def test_every_advertised_version_has_kio_classes(api_key: int, version: int) -> None:
    spec = SUPPORTED_APIS[api_key]
    assert spec.advertises(version)
    if not spec.serves(version):
        assert (spec.name, version) in {("produce", 0), ("produce", 1), ("produce", 2)}
        return
    request_type = spec.request_type(version)
    response_type = spec.response_type(version)
    assert request_type.__api_key__ == api_key == response_type.__api_key__
    assert request_type.__version__ == version == response_type.__version__
    assert spec.flexible(version) is bool(request_type.__flexible__)
    assert callable(spec.request_reader(version))
    assert callable(spec.response_writer(version))


def test_registry_entries_are_sorted_and_unique() -> None:
    entries = SUPPORTED_APIS.api_version_entries()
    keys = [key for key, _, _ in entries]
    assert keys == sorted(set(keys))
    assert all(low <= high for _, low, high in entries)
    assert (0, 0, SUPPORTED_APIS[0].max_version) in entries


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_advertised_but_unsupported(version: int) -> None:
    frame = _request(0, version, 4242, flexible=False) + b"\x00" * 16
    with pytest.raises(UnsupportedRequest) as raised:
        decode_request(frame)
    assert raised.value.error_code is ErrorCode.unsupported_version
    assert raised.value.header.correlation_id == 4242
    assert raised.value.header.api_version == version


def test_unknown_api_key_keeps_correlation_id() -> None:
    frame = _request(9999, 0, 77, flexible=False)
    with pytest.raises(UnsupportedRequest) as raised:
        decode_request(frame)
    assert raised.value.header.correlation_id == 77
    assert raised.value.header.api_key == 9999


def test_unknown_api_key_with_garbage_header_keeps_correlation_id() -> None:
    frame = struct.pack(">hhi", 9999, 0, 78) + b"\x7f"
    with pytest.raises(UnsupportedRequest) as raised:
        decode_request(frame)
    assert raised.value.header.correlation_id == 78
    assert raised.value.header.client_id is None


def test_api_versions_at_unknown_high_version() -> None:
    # A future client sends ApiVersions v9 with a v2 header and a body ottla cannot read.
    frame = _request(18, 9, 31337, flexible=True) + b"\x05future"
    with pytest.raises(UnsupportedRequest) as raised:
        decode_request(frame)
    header = raised.value.header
    assert (header.api_key, header.api_version, header.correlation_id) == (18, 9, 31337)
    assert header.client_id == "test"
    assert header.header_version == 2


def test_version_above_max_is_unsupported() -> None:
    spec = SUPPORTED_APIS[3]
    frame = _request(3, spec.max_version + 1, 5, flexible=True)
    with pytest.raises(UnsupportedRequest) as raised:
        decode_request(frame)
    assert raised.value.header.correlation_id == 5


def test_short_frame_is_protocol_error() -> None:
    with pytest.raises(ProtocolError) as raised:
        decode_request(b"\x00\x03\x00")
    assert not isinstance(raised.value, UnsupportedRequest)
    assert raised.value.error_code is ErrorCode.invalid_request


def test_trailing_bytes_are_ignored_as_kafka_does() -> None:
    spec = SUPPORTED_APIS[18]
    body = io.BytesIO()
    entity_writer(spec.request_type(0))(body, spec.request_type(0)())
    frame = _request(18, 0, 1, flexible=False) + body.getvalue()
    assert decode_request(frame + b"\x00\x01").header.correlation_id == 1


def test_librdkafka_all_topics_metadata_v13_decodes() -> None:
    # librdkafka 2.16's Metadata v13 "all topics" request (list_topics()): a 4-byte
    # array placeholder where the compact count is one byte leaves 3 trailing bytes.
    frame = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")
    request = decode_request(frame)
    assert request.header.client_id == "rdkafka"
    assert request.body.topics is None


@pytest.mark.parametrize("version", range(5))
def test_api_versions_response_lists_the_registry(version: int) -> None:
    body = build_api_versions_response(version)
    assert type(body) is SUPPORTED_APIS[18].response_type(version)
    assert body.error_code is ErrorCode.none
    listed = [(e.api_key, e.min_version, e.max_version) for e in body.api_keys]
    assert listed == SUPPORTED_APIS.api_version_entries()
    if version > 0:
        assert body.throttle_time == datetime.timedelta(0)


def test_api_versions_unsupported_version_is_v0_body() -> None:
    body = build_api_versions_response(4, ErrorCode.unsupported_version)
    assert type(body) is SUPPORTED_APIS[18].response_type(0)
    assert body.error_code is ErrorCode.unsupported_version
    assert len(body.api_keys) == len(SUPPORTED_APIS)


def _body_bytes(body: Any) -> bytes:
    out = io.BytesIO()
    entity_writer(type(body))(out, body)
    return out.getvalue()


@pytest.mark.parametrize("version", range(5))
def test_api_versions_response_header_is_v0(version: int) -> None:
    header = RequestHeader(18, version, 0x0A0B0C0D, "c", 2 if version >= 3 else 1, 0)
    body = build_api_versions_response(version)
    wire = _joined(encode_response(header, body))
    body_bytes = _body_bytes(body)
    # size, correlation id, then the body at once: no tag byte even for v3+.
    assert wire == struct.pack(">i", 4 + len(body_bytes)) + b"\x0a\x0b\x0c\x0d" + body_bytes
    read, size = entity_reader(type(body))(wire, 8)
    assert read == body
    assert 8 + size == len(wire)


def test_flexible_metadata_response_header_has_tag_byte() -> None:
    spec = SUPPORTED_APIS[3]
    module = spec.response_module(12)
    body = spec.response_type(12)(
        throttle_time=datetime.timedelta(0),
        brokers=(module.MetadataResponseBroker(node_id=1, host="h", port=9092),),
        cluster_id="c",
        controller_id=1,
        topics=(),
    )
    header = RequestHeader(3, 12, 99, "c", 2, 0)
    wire = _joined(encode_response(header, body))
    body_bytes = _body_bytes(body)
    assert wire == struct.pack(">ii", 5 + len(body_bytes), 99) + b"\x00" + body_bytes


def test_non_flexible_metadata_response_header_has_no_tag_byte() -> None:
    spec = SUPPORTED_APIS[3]
    module = spec.response_module(8)
    body = spec.response_type(8)(
        throttle_time=datetime.timedelta(0),
        brokers=(module.MetadataResponseBroker(node_id=1, host="h", port=9092),),
        topics=(),
    )
    wire = _joined(encode_response(RequestHeader(3, 8, 99, "c", 1, 0), body))
    body_bytes = _body_bytes(body)
    assert wire == struct.pack(">ii", 4 + len(body_bytes), 99) + body_bytes
