"""A raw-socket Kafka client for protocol-level integration tests.

Requests are kio entities written with `ottla.protocol`'s registry (request header
v1, or v2 for flexible versions); responses are read back into kio entities. Tests
also send arbitrary bytes and watch whether the broker closed the connection.
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
import sys
import time
import uuid
from typing import Any

from kio.serial import entity_reader, entity_writer

from ottla.protocol import SUPPORTED_APIS

TIMEOUT_S = 15.0
API_VERSIONS = 18
_ZERO_UUID = uuid.UUID(int=0)


def kio_module(api_key: int, version: int, kind: str = "request") -> Any:
    """kio's request or response module (nested entity classes) of an API version."""
    spec = SUPPORTED_APIS[api_key]
    if kind == "request":
        return sys.modules[spec.request_type(version).__module__]
    return spec.response_module(version)


def request_frame(api_key: int, version: int, correlation_id: int, body: Any) -> bytes:
    """A size-prefixed request frame for a kio request entity."""
    flexible = SUPPORTED_APIS[api_key].flexible(version)
    out = io.BytesIO()
    out.write(struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test")
    if flexible:
        out.write(b"\x00")
    entity_writer(type(body))(out, body)
    payload = out.getvalue()
    return struct.pack(">i", len(payload)) + payload


class Wire:
    """One TCP connection to a broker."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> bytes:
        """The next response frame without its size prefix."""
        size = struct.unpack(">i", self._recv_exactly(4))[0]
        return self._recv_exactly(size)

    def _recv_exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks += chunk
        return bytes(chunks)

    def send(self, api_key: int, version: int, body: Any) -> int:
        self.correlation_id += 1
        self.send_raw(request_frame(api_key, version, self.correlation_id, body))
        return self.correlation_id

    def request(self, api_key: int, version: int, body: Any) -> Any:
        """Send a request and decode its response entity."""
        return self.receive(api_key, version, self.send(api_key, version, body))

    def receive(self, api_key: int, version: int, correlation_id: int) -> Any:
        """Decode the next response, which must answer `correlation_id` (from `send`)."""
        frame = self.recv_frame()
        assert struct.unpack_from(">i", frame)[0] == correlation_id
        offset = 4
        if SUPPORTED_APIS[api_key].flexible(version) and api_key != API_VERSIONS:
            assert frame[4] == 0  # no tagged fields in the response header
            offset = 5
        response_type = SUPPORTED_APIS[api_key].response_type(version)
        entity, size = entity_reader(response_type)(frame, offset)
        assert offset + size == len(frame)
        return entity

    def closed_by_peer(self, timeout_s: float = TIMEOUT_S) -> bool:
        """True once the broker closes this connection (polls until the deadline)."""
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
            if not data:
                return True
        return False


def produce_partition(
    wire: Wire, topic: str, partition: int, records: bytes, acks: int = -1
) -> Any:
    """Produce v9 of raw record bytes to one partition; its PartitionProduceResponse."""
    module = kio_module(0, 9)
    body = module.ProduceRequest(
        transactional_id=None,
        acks=acks,
        timeout=datetime.timedelta(seconds=10),
        topic_data=(
            module.TopicProduceData(
                name=topic,
                partition_data=(module.PartitionProduceData(index=partition, records=records),),
            ),
        ),
    )
    response = wire.request(0, 9, body)
    return response.responses[0].partition_responses[0]


def fetch_request(
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int = 1 << 20,
    max_wait_ms: int = 0,
    min_bytes: int = 0,
    partition_max_bytes: int | None = None,
) -> Any:
    """A Fetch v12 body for one partition from `offset`, no session; the partition's
    limit is `max_bytes` unless given."""
    module = kio_module(1, 12)
    return module.FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            module.FetchTopic(
                topic=topic,
                partitions=(
                    module.FetchPartition(
                        partition=partition,
                        current_leader_epoch=-1,
                        fetch_offset=offset,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=(
                            max_bytes if partition_max_bytes is None else partition_max_bytes
                        ),
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def fetch_partition(
    wire: Wire, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20
) -> Any:
    """Fetch v12 of one partition from `offset` (no session, no wait); its PartitionData."""
    response = wire.request(1, 12, fetch_request(topic, partition, offset, max_bytes))
    return response.responses[0].partitions[0]


def metadata(wire: Wire, topics: list[str] | None, allow_auto: bool = True) -> Any:
    """Metadata v12 for `topics` (None: all)."""
    module = kio_module(3, 12)
    body = module.MetadataRequest(
        topics=None
        if topics is None
        else tuple(module.MetadataRequestTopic(topic_id=_ZERO_UUID, name=t) for t in topics),
        allow_auto_topic_creation=allow_auto,
        include_topic_authorized_operations=False,
    )
    return wire.request(3, 12, body)
