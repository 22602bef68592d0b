"""A minimal blocking Kafka client over a raw socket, for tests that need exact bytes.

It encodes any kio request entity with the right request header, sends it, and
decodes the response with kio, so tests can check fields no client library exposes
(error codes of malformed requests, watermarks straight from one broker).
"""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.schema.list_offsets.v7 import request as list_offsets
from kio.schema.types import BrokerId, TopicName
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i8, i32, i64

from ottla.protocol import SUPPORTED_APIS

_correlation = 0


def encode_request(body: Any, correlation_id: int, client_id: str = "raw") -> bytes:
    """A framed request: size, header v1/v2 (by flexibility), body."""
    buffer = io.BytesIO()
    entity_writer(type(body))(buffer, body)
    encoded_id = client_id.encode()
    header = struct.pack(
        ">hhih", int(body.__api_key__), int(body.__version__), correlation_id, len(encoded_id)
    )
    header += encoded_id
    if body.__flexible__:
        header += b"\x00"
    payload = header + buffer.getvalue()
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


def request(port: int, body: Any, timeout_s: float = 10.0) -> Any:
    """Send one request to 127.0.0.1:`port` and return the decoded kio response."""
    global _correlation  # noqa: PLW0603 - a test helper's counter
    _correlation += 1
    spec = SUPPORTED_APIS[int(body.__api_key__)]
    response_type = spec.response_type(int(body.__version__))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(encode_request(body, _correlation))
        frame = read_frame(sock)
    (correlation_id,) = struct.unpack_from(">i", frame, 0)
    assert correlation_id == _correlation
    offset = 4
    if response_type.__flexible__ and int(body.__api_key__) != 18:
        offset += 1  # empty tagged fields of response header v1
    value, _ = entity_reader(response_type)(frame, offset)
    return value


def log_end_offsets(port: int, topic: str, partitions: int) -> list[int]:
    """The latest offset (high watermark) of each partition, asked of one broker."""
    body = list_offsets.ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(0),
        topics=(
            list_offsets.ListOffsetsTopic(
                name=TopicName(topic),
                partitions=tuple(
                    list_offsets.ListOffsetsPartition(partition_index=i32(p), timestamp=i64(-1))
                    for p in range(partitions)
                ),
            ),
        ),
    )
    response = request(port, body)
    return [int(p.offset) for p in response.topics[0].partitions]
