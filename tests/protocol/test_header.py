"""Request headers v1/v2 decode correctly; response headers follow Kafka's rule.

Proves: v1 and v2 request headers decode field by field (a null client id, an empty
one, UTF-8, tagged fields in v2, `body_offset`); every truncation of a header raises
ProtocolError(INVALID_REQUEST); response header v0 is the correlation id alone, v1
adds the empty tag byte; the version rule gives ApiVersions v0 at every version.
"""

from __future__ import annotations

import struct

import pytest

from ottla.protocol import ErrorCode, ProtocolError, decode_request_header, encode_response_header
from ottla.protocol.header import response_header_version


def _header(
    api_key: int, version: int, correlation_id: int, client_id: bytes | None, tags: bytes = b""
) -> bytes:
    fixed = struct.pack(">hhi", api_key, version, correlation_id)
    client = b"\xff\xff" if client_id is None else struct.pack(">h", len(client_id)) + client_id
    return fixed + client + tags


def test_v1_header() -> None:
    frame = _header(3, 5, 12345, b"my-client") + b"BODY"
    header = decode_request_header(frame, flexible=False)
    assert (header.api_key, header.api_version, header.correlation_id) == (3, 5, 12345)
    assert header.client_id == "my-client"
    assert header.header_version == 1
    assert frame[header.body_offset :] == b"BODY"
    assert header.tagged_fields == ()


def test_v2_header_with_empty_tag_section() -> None:
    frame = _header(1, 12, -7, b"rdkafka", b"\x00") + b"BODY"
    header = decode_request_header(frame, flexible=True)
    assert header.correlation_id == -7
    assert header.client_id == "rdkafka"
    assert header.header_version == 2
    assert frame[header.body_offset :] == b"BODY"


def test_null_and_empty_and_unicode_client_id() -> None:
    assert decode_request_header(_header(0, 9, 1, None), flexible=False).client_id is None
    assert decode_request_header(_header(0, 9, 1, b""), flexible=False).client_id == ""
    name = "клиент-✓"
    header = decode_request_header(_header(0, 9, 1, name.encode()), flexible=False)
    assert header.client_id == name


def test_v2_tagged_fields_are_kept_and_skipped() -> None:
    # two tags: tag 0 with 3 bytes, tag 200 (varint 0xc8 0x01) with 1 byte
    tags = b"\x02" + b"\x00\x03abc" + b"\xc8\x01\x01z"
    frame = _header(3, 12, 9, b"c", tags) + b"\x42"
    header = decode_request_header(frame, flexible=True)
    assert header.tagged_fields == ((0, b"abc"), (200, b"z"))
    assert frame[header.body_offset :] == b"\x42"


def test_every_truncation_raises_protocol_error() -> None:
    frame = _header(3, 12, 9, b"client", b"\x01\x05\x02hi")
    full = decode_request_header(frame, flexible=True)
    assert full.body_offset == len(frame)
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError) as raised:
            decode_request_header(frame[:cut], flexible=True)
        assert raised.value.error_code is ErrorCode.invalid_request


def test_bad_client_id_length_and_utf8() -> None:
    with pytest.raises(ProtocolError):
        decode_request_header(struct.pack(">hhih", 3, 1, 1, -2), flexible=False)
    with pytest.raises(ProtocolError):
        decode_request_header(_header(3, 1, 1, b"\xff\xfe"), flexible=False)


def test_too_many_tagged_fields() -> None:
    tags = b"\xe8\x07" + b"\x00\x00" * 1000
    with pytest.raises(ProtocolError):
        decode_request_header(_header(3, 12, 1, b"c", tags), flexible=True)


def test_tagged_field_longer_than_frame() -> None:
    with pytest.raises(ProtocolError):
        decode_request_header(_header(3, 12, 1, b"c", b"\x01\x00\x7f"), flexible=True)


def test_response_headers() -> None:
    assert encode_response_header(0x01020304, 0) == b"\x01\x02\x03\x04"
    assert encode_response_header(-1, 1) == b"\xff\xff\xff\xff\x00"


@pytest.mark.parametrize("flexible", [False, True])
def test_api_versions_response_header_is_always_v0(flexible: bool) -> None:
    assert response_header_version(18, flexible) == 0
    assert response_header_version(3, flexible) == (1 if flexible else 0)
