"""Requests from frames and responses to frames, through kio.

`decode_request(frame)` reads the header, finds the API in the registry and decodes
the body with kio's native reader; `encode_response(...)` writes the response body
with ottla's generated writers (`writer.py`, kio's bytes at a fraction of the cost)
and frames it. Both are sans-IO. Fetch v12+, the API on every replicated write's
path, is read and written by hand in both directions (`fetch_wire.py`), and Produce v3+
requests are read by hand (`produce_wire.py`, records as views of the frame): their
bodies are plain objects with kio's field names (`kio_body` gives kio's entity); a
handler may answer with an `EncodedBody`, and a `FetchRequestBody` sent by a replica
fetcher gets its response read by hand too.

Zero copy on the way out: the writer puts small fields into one `bytearray` but
keeps large buffers (record data, typically memoryviews of log segments) as
references, so a Fetch response is a list of chunks for `transport.writelines` and
record data is never copied in Python.

Every malformed input raises `ProtocolError`: kio's decode errors, bad varints,
invalid UTF-8 and trailing garbage alike.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.schema.index import api_key_map
from kio.serial import entity_reader
from kio.serial.errors import SerialError

from ottla.protocol.apis import SUPPORTED_APIS, ApiRegistry, ApiSpec, make_spec
from ottla.protocol.errors import ErrorCode, ProtocolError
from ottla.protocol.fetch_wire import (
    FETCH_API_KEY,
    FETCH_FLEXIBLE_MIN,
    EncodedBody,
    FetchRequestBody,
    read_fetch_request,
    read_fetch_response,
    write_fetch_request,
)
from ottla.protocol.header import (
    API_VERSIONS_KEY,
    RequestHeader,
    decode_request_header,
    encode_request_header,
    encode_response_header,
    peek_fixed,
    readonly,
    response_header_version,
)
from ottla.protocol.lengths import check_lengths
from ottla.protocol.produce_wire import (
    PRODUCE_API_KEY,
    PRODUCE_BY_HAND_MIN,
    ProduceRequestBody,
    read_produce_request,
)
from ottla.protocol.writer import Refs, chunks, compiled_writer

__all__ = [
    "DecodedRequest",
    "UnsupportedRequest",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "kio_body",
]

_SIZE = struct.Struct(">i")
# kio raises KeyError for a tagged field its schema does not know. Kafka would skip
# it (KIP-482); ottla answers INVALID_REQUEST until kio can skip unknown tags.
_DECODE_ERRORS = (
    SerialError,
    ValueError,
    OverflowError,
    UnicodeError,
    IndexError,
    TypeError,
    KeyError,
)


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """A request ready for its handler: header, kio body, and the API's spec."""

    header: RequestHeader
    body: Any
    spec: ApiSpec

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def flexible(self) -> bool:
        return bool(self.body.__flexible__)


def kio_body(request: DecodedRequest) -> Any:
    """The request's body as kio's entity, also where it was read by hand (Fetch v12+,
    fetch_wire.py): for code that takes kio's types (the Raft driver) and tests."""
    body = request.body
    if isinstance(body, FetchRequestBody | ProduceRequestBody):
        version = request.api_version
        return body.to_kio(request.spec.request_module(version), request.spec.request_type(version))
    return body


class UnsupportedRequest(ProtocolError):
    """A well-framed request for an API or version ottla does not serve.

    `header` is decoded as far as possible so the broker can answer it (ApiVersions
    with a v0 body listing the supported ranges; other APIs with an error).
    """

    def __init__(self, header: RequestHeader, message: str) -> None:
        super().__init__(ErrorCode.unsupported_version, message)
        self.header = header


def decode_request(
    frame: bytes | bytearray | memoryview, registry: ApiRegistry = SUPPORTED_APIS
) -> DecodedRequest:
    """Decode one request frame (without its size prefix).

    Raises `UnsupportedRequest` for an unknown api key or version, `ProtocolError`
    for anything malformed.
    """
    frame = readonly(frame)
    api_key, api_version, _ = peek_fixed(frame)
    spec = registry.get(api_key)
    if spec is None or not spec.serves(api_version):
        flexible = spec.flexible(api_version) if spec is not None else False
        # The ApiVersions request of a newer client: its header is v2 from v3 on.
        if api_key == API_VERSIONS_KEY and api_version >= 3:
            flexible = True
        try:
            header = decode_request_header(frame, flexible)
        except ProtocolError:
            header = decode_request_header(bytes(frame[:8]) + b"\xff\xff", flexible=False)
        try:
            registry.spec_for(api_key, api_version)
        except ProtocolError as error:
            raise UnsupportedRequest(header, str(error)) from None
    assert spec is not None
    header = decode_request_header(frame, spec.flexible(api_version))
    # Fetch v12+ and Produce v3+, the hot APIs, are read by hand (fetch_wire.py,
    # produce_wire.py), bounds-checked as they go.
    hand_reader = _BY_HAND.get(api_key)
    by_hand = hand_reader is not None and api_version >= hand_reader[0]
    if not by_hand:
        # kio's reader trusts array counts when it allocates; an absurd one aborts the
        # process.
        check_lengths(_request_type(spec, api_version), frame, header.body_offset)
    try:
        if hand_reader is not None and by_hand:
            body = hand_reader[1](frame, header.body_offset, api_version)
        else:
            body, _ = spec.request_reader(api_version)(frame, header.body_offset)
    except _DECODE_ERRORS as error:
        raise ProtocolError(
            ErrorCode.invalid_request,
            f"malformed {spec.name} v{api_version} request: {type(error).__name__}: {error}",
        ) from None
    # Bytes after the body are ignored, as Kafka's parser ignores them: librdkafka
    # 2.x sends a Metadata v13 "all topics" request with a 4-byte array placeholder
    # where the compact count is one byte, leaving 3 trailing bytes.
    return DecodedRequest(header=header, body=body, spec=spec)


# api key -> (first version read by hand, its reader)
_BY_HAND: dict[int, tuple[int, Callable[[Any, int, int], Any]]] = {
    FETCH_API_KEY: (FETCH_FLEXIBLE_MIN, read_fetch_request),
    PRODUCE_API_KEY: (PRODUCE_BY_HAND_MIN, read_produce_request),
}

_REQUEST_TYPES: dict[tuple[int, int], type[Any]] = {}


def _request_type(spec: ApiSpec, version: int) -> type[Any]:
    request_type = _REQUEST_TYPES.get((spec.api_key, version))
    if request_type is None:
        request_type = _REQUEST_TYPES[spec.api_key, version] = spec.request_type(version)
    return request_type


def encode_response(header: RequestHeader, body: Any) -> list[bytes | bytearray | memoryview]:
    """Frame a kio response body for `header`'s request: size, header, body chunks.

    The response header version follows the body's flexibility, except ApiVersions,
    whose response header is always v0.
    """
    response_type = type(body)
    if response_type is EncodedBody:
        return _framed_encoded(header, body)
    header_version = response_header_version(header.api_key, bool(response_type.__flexible__))
    buf = bytearray(4)  # the size prefix, filled in below
    buf += encode_response_header(header.correlation_id, header_version)
    return _framed(buf, response_type, body)


def _framed_encoded(
    header: RequestHeader, body: EncodedBody
) -> list[bytes | bytearray | memoryview]:
    return frame_encoded(
        header.correlation_id, response_header_version(header.api_key, body.flexible), body
    )


def frame_encoded(
    correlation_id: int, header_version: int, body: EncodedBody
) -> list[bytes | bytearray | memoryview]:
    """Size, response header and a body already in bytes (fetch_wire.py), as chunks."""
    buf = bytearray(4)
    buf += encode_response_header(correlation_id, header_version)
    start = len(buf)
    buf += body.buf
    refs: Refs = [(position + start, value) for position, value in body.refs]
    size = len(buf) - 4
    for _, value in refs:
        size += len(value)
    _SIZE.pack_into(buf, 0, size)
    return chunks(buf, refs)


def _framed(buf: bytearray, cls: type[Any], body: Any) -> list[bytes | bytearray | memoryview]:
    """`buf` (4 bytes for the size, then a header) followed by `body`, as chunks."""
    refs: Refs = []
    compiled_writer(cls)(buf, refs, body)
    size = len(buf) - 4
    for _, value in refs:
        size += len(value)
    _SIZE.pack_into(buf, 0, size)
    return chunks(buf, refs)


# -- the client side: requests out, responses in ------------------------------------------


def encode_request(
    body: Any, correlation_id: int, client_id: str | None = "ottla"
) -> list[bytes | bytearray | memoryview]:
    """Frame a kio request body: size, request header (v2 if flexible, else v1), body.

    The client side of the protocol: ottla's own tools and, between brokers, the
    replica fetcher and the Raft driver send requests with it.
    """
    buf = bytearray(4)  # the size prefix, filled in by _framed
    buf += encode_request_header(body, correlation_id, client_id)
    if type(body) is FetchRequestBody:  # a replica fetcher's, written by hand
        buf += write_fetch_request(body)
        _SIZE.pack_into(buf, 0, len(buf) - 4)
        return [buf]
    return _framed(buf, type(body), body)


def decode_response(frame: bytes | bytearray | memoryview, request_body: Any) -> tuple[int, Any]:
    """(correlation id, kio response body) of a response frame to `request_body`'s request.

    Raises ProtocolError on anything malformed, like `decode_request`.
    """
    api_key = int(request_body.__api_key__)
    version = int(request_body.__version__)
    if type(request_body) is FetchRequestBody:
        return _decode_fetch_response(frame, version)
    spec = SUPPORTED_APIS.get(api_key)
    response_type = (
        spec.response_type(version)
        if spec is not None
        else _response_type_outside_registry(api_key, version)
    )
    header_version = response_header_version(api_key, bool(response_type.__flexible__))
    if len(frame) < 4:
        raise ProtocolError(ErrorCode.invalid_request, "response shorter than its header")
    correlation_id = int.from_bytes(bytes(frame[:4]), "big", signed=True)
    offset = 4 if header_version == 0 else 5
    try:
        # A read-only view, not a copy: a replica fetch response is megabytes.
        body, size = entity_reader(response_type)(readonly(frame), offset)
    except _DECODE_ERRORS as error:
        raise ProtocolError(
            ErrorCode.invalid_request, f"malformed response v{version} to api {api_key}: {error}"
        ) from None
    if offset + size != len(frame):
        raise ProtocolError(ErrorCode.invalid_request, "trailing bytes after the response")
    return correlation_id, body


def _decode_fetch_response(frame: bytes | bytearray | memoryview, version: int) -> tuple[int, Any]:
    """decode_response for a request written by fetch_wire.py: read by hand too."""
    if len(frame) < 5:
        raise ProtocolError(ErrorCode.invalid_request, "response shorter than its header")
    view = readonly(frame)
    correlation_id = int.from_bytes(bytes(view[:4]), "big", signed=True)
    try:
        body, end = read_fetch_response(view, 5, version)  # header v1: id, empty tags
    except _DECODE_ERRORS as error:
        raise ProtocolError(
            ErrorCode.invalid_request, f"malformed Fetch v{version} response: {error}"
        ) from None
    if end != len(view):
        raise ProtocolError(ErrorCode.invalid_request, "trailing bytes after the response")
    return correlation_id, body


def _response_type_outside_registry(api_key: int, version: int) -> Any:
    """kio's response class for an API ottla does not serve (it may still call it)."""
    return make_spec(api_key_map[api_key]).response_type(version)
