"""A small blocking Kafka client for ottla's own command-line tools.

It speaks the protocol through `ottla.protocol` (no third-party Kafka client is a
runtime dependency): connect to a bootstrap server, learn the broker's version
ranges with ApiVersions, and send any request at the highest version both sides
support, built with `make` so one call site covers every version.

    with Client("127.0.0.1:9092") as client:
        response = client.call("metadata", lambda m, v: make(m.MetadataRequest, topics=None))
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kio.schema.index import api_key_map

from ottla.protocol import (
    SUPPORTED_APIS,
    ApiSpec,
    ErrorCode,
    decode_response,
    encode_request,
    make,
    make_spec,
)

__all__ = ["Client", "ClientError"]

_API_KEYS = {name: key for key, name in api_key_map.items()}
_SIZE = struct.Struct(">i")
_RESPONSE_BYTES_MAX = 256 * 1024 * 1024


class ClientError(Exception):
    """The broker could not be reached or answered with something unusable."""


class Client:
    """One connection to one broker; `call` sends a request and returns the response."""

    def __init__(
        self, bootstrap: str, timeout_s: float = 10.0, client_id: str = "ottla-cli"
    ) -> None:
        host, _, port = bootstrap.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ClientError(f"--bootstrap-server: expected HOST:PORT, got {bootstrap!r}")
        self.client_id = client_id
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        except OSError as error:
            raise ClientError(f"cannot connect to {bootstrap}: {error.strerror or error}") from None
        self._correlation_id = 0
        self._ranges: dict[int, tuple[int, int]] = {}
        self._negotiate()

    def _negotiate(self) -> None:
        spec = SUPPORTED_APIS[18]
        body = make(
            spec.request_type(3), client_software_name="ottla-cli", client_software_version="1"
        )
        response = self._send(body)
        if response.error_code is not ErrorCode.none:
            raise ClientError(f"ApiVersions failed: {response.error_code.name}")
        self._ranges = {
            int(a.api_key): (int(a.min_version), int(a.max_version)) for a in response.api_keys
        }

    def version_for(self, api: str) -> tuple[ApiSpec, int]:
        """The spec of `api` and the highest version both ottla's kio and the broker know."""
        key = _API_KEYS[api]
        spec = SUPPORTED_APIS.get(key) or make_spec(api)
        low, high = self._ranges.get(key, (-1, -1))
        version = min(high, spec.max_version)
        if version < max(low, spec.decodable_min):
            raise ClientError(f"the broker does not support {api}")
        return spec, version

    def call(self, api: str, build: Callable[[ModuleType, int], Any]) -> Any:
        """Send `build(request_module, version)` for `api`; return the kio response."""
        spec, version = self.version_for(api)
        body = build(spec.request_module(version), version)
        return self._send(body)

    def _send(self, body: Any) -> Any:
        self._correlation_id += 1
        try:
            self._sock.sendall(b"".join(encode_request(body, self._correlation_id, self.client_id)))
            size = _SIZE.unpack(self._read(4))[0]
            if not 0 <= size <= _RESPONSE_BYTES_MAX:
                raise ClientError(f"the broker sent a frame of {size} bytes")
            frame = self._read(size)
        except OSError as error:
            raise ClientError(f"connection failed: {error}") from None
        correlation_id, response = decode_response(frame, body)
        if correlation_id != self._correlation_id:
            raise ClientError("the broker answered out of order")
        return response

    def _read(self, count: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < count:
            chunk = self._sock.recv(count - len(chunks))
            if not chunk:
                raise ClientError("the broker closed the connection")
            chunks += chunk
        return bytes(chunks)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
