"""Request header decoding and response header encoding.

Request headers (Kafka's RequestHeader.json):

- v1: api_key int16, api_version int16, correlation_id int32, client_id nullable
  string with an int16 length (always this legacy form, even in v2);
- v2: v1 followed by a tagged-field section; used by every flexible request
  version.

The header version of a request follows from (api_key, api_version): flexible
versions use v2. For a version ottla cannot decode, the header is still read as far
as the fixed part goes, so the broker can answer with the right correlation id.

Response headers: v0 is the correlation id alone, v1 adds an (empty) tagged-field
section. ApiVersions responses always use v0, whatever the version (KIP-511: a
client that does not yet know the broker's versions must be able to read it, and
librdkafka misreads one extra byte there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from kio.serial.errors import SerialError
from kio.serial.readers import read_nullable_legacy_string, read_unsigned_varint

from ottla.protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "API_VERSIONS_KEY",
    "RequestHeader",
    "decode_request_header",
    "encode_request_header",
    "encode_response_header",
    "response_header_version",
]

API_VERSIONS_KEY = 18
_FIXED = struct.Struct(">hhi")
_CORRELATION = struct.Struct(">i")
_CLIENT_ID_LENGTH = struct.Struct(">h")
# Upper bound on tagged fields in one header: a header has no defined tags, so a
# client sending thousands is broken or hostile.
_TAGGED_FIELDS_MAX = 64


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """A decoded request header; `body_offset` is where the request body starts."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    header_version: int
    body_offset: int
    # Unknown tagged fields, tag -> raw bytes (none are defined for headers yet).
    tagged_fields: tuple[tuple[int, bytes], ...] = ()


def peek_fixed(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a frame, or ProtocolError if too short."""
    if len(frame) < _FIXED.size:
        raise ProtocolError(
            ErrorCode.invalid_request, f"request of {len(frame)} bytes is shorter than a header"
        )
    api_key, api_version, correlation_id = _FIXED.unpack_from(frame, 0)
    return int(api_key), int(api_version), int(correlation_id)


def readonly(frame: bytes | bytearray | memoryview) -> bytes | memoryview:
    """`frame` as kio's native readers take it: they refuse writable buffers.

    A large frame arrives as the `bytearray` FrameDecoder filled in place; a
    read-only view of it avoids copying it.
    """
    if isinstance(frame, bytes):
        return frame
    return memoryview(frame).cast("B").toreadonly()


def decode_request_header(frame: bytes | bytearray | memoryview, flexible: bool) -> RequestHeader:
    """Decode a request header: v2 when `flexible`, else v1.

    Raises ProtocolError(INVALID_REQUEST) on truncation, a negative string length
    below -1, invalid UTF-8 or a malformed tagged-field section.
    """
    frame = readonly(frame)
    api_key, api_version, correlation_id = peek_fixed(frame)
    offset = _FIXED.size
    try:
        client_id, size = read_nullable_legacy_string(frame, offset)
        offset += size
        tagged: tuple[tuple[int, bytes], ...] = ()
        if flexible:
            tagged, offset = _read_tagged_fields(frame, offset)
    except (SerialError, ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(
            ErrorCode.invalid_request, f"malformed request header: {error}"
        ) from None
    return RequestHeader(
        api_key=api_key,
        api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
        header_version=2 if flexible else 1,
        body_offset=offset,
        tagged_fields=tagged,
    )


def _read_tagged_fields(
    frame: bytes | memoryview, offset: int
) -> tuple[tuple[tuple[int, bytes], ...], int]:
    count, size = read_unsigned_varint(frame, offset)
    offset += size
    if count > _TAGGED_FIELDS_MAX:
        raise ValueError(f"{count} tagged fields in a header")
    fields = []
    for _ in range(count):
        tag, size = read_unsigned_varint(frame, offset)
        offset += size
        length, size = read_unsigned_varint(frame, offset)
        offset += size
        if offset + length > len(frame):
            raise ValueError("tagged field runs past the end of the frame")
        fields.append((int(tag), bytes(frame[offset : offset + length])))
        offset += length
    return tuple(fields), offset


def encode_request_header(body: Any, correlation_id: int, client_id: str | None) -> bytes:
    """Request header bytes for kio request `body`: v2 (with empty tags) if flexible."""
    header = _FIXED.pack(int(body.__api_key__), int(body.__version__), correlation_id)
    if client_id is None:
        header += _CLIENT_ID_LENGTH.pack(-1)
    else:
        encoded = client_id.encode()
        header += _CLIENT_ID_LENGTH.pack(len(encoded)) + encoded
    return header + b"\x00" if body.__flexible__ else header


def response_header_version(api_key: int, flexible: bool) -> int:
    """Response header version: v1 for flexible versions, v0 otherwise and for ApiVersions."""
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if flexible else 0


def encode_response_header(correlation_id: int, header_version: int) -> bytes:
    """The response header bytes: correlation id, plus an empty tag section in v1."""
    if header_version == 0:
        return _CORRELATION.pack(correlation_id)
    return _CORRELATION.pack(correlation_id) + b"\x00"
