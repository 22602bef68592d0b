"""Requests from this node to other nodes: a small pool of Kafka-protocol connections.

`NodeClient` keeps one connection per (node id, lane) to the addresses it was given
(`controller.quorum.voters`), opened on first use and reopened after any failure. A
connection pipelines requests (correlation ids match responses to requests, which Kafka
answers in order) and, an `asyncio.BufferedProtocol`, resolves them as their frames
arrive. Two lanes per node keep long-polling Fetch/FetchSnapshot from delaying Vote and
BeginQuorumEpoch behind them.

Every request has a timeout; on timeout the connection is closed (a late response must
never be matched to a newer request) and the caller gets TimeoutError. Connection
failures are OSError/ConnectionError; malformed responses ProtocolError. No retries here:
the Raft core's timers decide when to ask again.

`on_lost(node_id, lane)`, when given, is called once for each open connection that
closes for any reason other than `close()` of the whole client: the broker heartbeats at
once on a new connection when the one to the active controller breaks, so the
controller's fast fencing of a broker whose connection dropped (fencing.Sessions) never
catches a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import structlog

from ottla.protocol import FrameDecoder, ProtocolError, decode_response, encode_request

__all__ = [
    "CONNECT_TIMEOUT_S",
    "FETCH_RECEIVE_BUFFER_BYTES",
    "FramedConnection",
    "NodeClient",
    "parse_voters",
]

_log = structlog.get_logger("ottla.rpc")

_FETCH_API_KEYS = frozenset({1, 59})  # Fetch, FetchSnapshot
_FRAME_BYTES_MAX = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 2.0
# Receive buffer of fetch-lane sockets (Kafka: replica.socket.receive.buffer.bytes). A
# replica fetch answer is up to megabytes; with the kernel's autotuned buffer (128 KiB
# to start) it crossed in many window-sized steps, each needing both event loops (the
# leader's to write more, the follower's to read) to get a turn on a busy core: measured
# on 2 shared cores, 1 KiB acks=all ran at half the throughput with twice the broker CPU
# in some runs. Linux caps it at net.core.rmem_max (and doubles it for bookkeeping).
FETCH_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


def parse_voters(text: list[str] | str) -> dict[int, tuple[str, int]]:
    """`controller.quorum.voters` (id@host:port, ...) as {id: (host, port)}."""
    items = text.split(",") if isinstance(text, str) else text
    voters: dict[int, tuple[str, int]] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            node, address = item.split("@", 1)
            host, port = address.rsplit(":", 1)
            voters[int(node)] = (host.strip("[]"), int(port))
        except ValueError:
            raise ValueError(f"'{item}' is not id@host:port") from None
    return voters


class FramedConnection(asyncio.BufferedProtocol):
    """A client connection whose responses are received straight into a `FrameDecoder`
    (a large one, a replica fetch of megabytes, into its own buffer of the frame's size:
    no `StreamReader` buffer growing, pausing the socket every 128 KiB and copying the
    frame out) and handed to `_frame` in the transport's callback. Subclasses say what
    a frame means (`_frame`) and how they close (`close`, called once with the reason)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder(_FRAME_BYTES_MAX)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._decoder.buffer_updated(nbytes)
        except ProtocolError as problem:
            self.close(ConnectionError(f"bad response frame: {problem}"))
            return
        while not self.closed:
            frame = self._decoder.next_frame()
            if frame is None:
                return
            self._frame(frame)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exc if exc is not None else ConnectionError("connection closed by peer"))

    def socket(self) -> Any:
        """The connection's socket for options (uvloop gives a socket-like object), or None."""
        if self._transport is None:
            return None
        return self._transport.get_extra_info("socket")

    def _frame(self, frame: bytes | bytearray) -> None:
        raise NotImplementedError

    def close(self, error: BaseException) -> None:
        raise NotImplementedError


class _Connection(FramedConnection):
    """One connection: requests written in order, responses resolved as they arrive
    (no reader task between the response and the caller's future)."""

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._on_close = on_close
        self._pending: dict[int, tuple[Any, asyncio.Future[Any]]] = {}
        self._next_correlation = 1

    # -- requests ------------------------------------------------------------------------

    async def call(self, request: Any, timeout_s: float) -> Any:
        if self.closed or self._transport is None:
            raise ConnectionError("connection closed")
        correlation_id = self._next_correlation
        self._next_correlation = (self._next_correlation + 1) & 0x7FFFFFFF
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[correlation_id] = (request, future)
        self._transport.writelines(encode_request(request, correlation_id, "ottla-raft"))
        # A timer on the future itself, not asyncio.wait_for: that adds a second future
        # and a second event-loop turn between the response and the caller.
        timer = loop.call_later(timeout_s, self._expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._pending.pop(correlation_id, None)

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(TimeoutError("request timed out"))
            self.close(TimeoutError("request timed out"))

    def _frame(self, frame: bytes | bytearray) -> None:
        if len(frame) < 4:
            self.close(ConnectionError(f"bad response frame size {len(frame)}"))
            return
        correlation_id = int.from_bytes(frame[:4], "big", signed=True)
        pending = self._pending.pop(correlation_id, None)
        if pending is None:
            return  # its caller timed out
        request, future = pending
        if future.done():
            return
        try:
            _, body = decode_response(frame, request)
        except ProtocolError as problem:
            future.set_exception(problem)
            return
        future.set_result(body)

    def close(self, error: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(str(error)))
        self._pending.clear()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
        if self._on_close is not None:
            self._on_close()


class NodeClient:
    """Connections to other nodes by node id (see the module docstring)."""

    def __init__(
        self,
        addresses: dict[int, tuple[str, int]],
        on_lost: Callable[[int, str], None] | None = None,
    ) -> None:
        self.addresses = dict(addresses)
        self._on_lost = on_lost
        self._connections: dict[tuple[int, str], _Connection] = {}
        self._connecting: dict[tuple[int, str], asyncio.Future[_Connection]] = {}
        self._closed = False

    async def send(self, node_id: int, request: Any, timeout_s: float = 2.0) -> Any:
        """Send a kio request to `node_id` and return the kio response."""
        lane = "fetch" if int(request.__api_key__) in _FETCH_API_KEYS else "control"
        connection = await self._connection(node_id, lane)
        return await connection.call(request, timeout_s)

    async def _connection(self, node_id: int, lane: str) -> _Connection:
        if self._closed:
            raise ConnectionError("client closed")
        key = (node_id, lane)
        connection = self._connections.get(key)
        if connection is not None and not connection.closed:
            return connection
        connecting = self._connecting.get(key)
        if connecting is None:
            connecting = asyncio.ensure_future(self._open(node_id, lane))
            self._connecting[key] = connecting

            def opened(future: asyncio.Future[_Connection]) -> None:
                self._connecting.pop(key, None)
                if not future.cancelled():
                    # Retrieved here: when every caller gave up waiting (a cancelled
                    # fetch, a Raft request's timeout), a failure to connect would
                    # otherwise be logged as "Task exception was never retrieved".
                    future.exception()

            connecting.add_done_callback(opened)
        connection = await asyncio.shield(connecting)
        self._connections[key] = connection
        return connection

    async def _open(self, node_id: int, lane: str) -> _Connection:
        address = self.addresses.get(node_id)
        if address is None:
            raise ConnectionError(f"no address for node {node_id}")
        host, port = address
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(lambda: self._lost(node_id, lane)), host, port
            )
        if lane == "fetch":
            sock = connection.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FETCH_RECEIVE_BUFFER_BYTES)
        _log.debug("rpc.connected", node_id=node_id, host=host, port=port)
        return connection

    def _lost(self, node_id: int, lane: str) -> None:
        if self._on_lost is not None and not self._closed:
            self._on_lost(node_id, lane)

    async def close(self) -> None:
        self._closed = True
        for connection in self._connections.values():
            connection.close(ConnectionError("client closed"))
        self._connections.clear()
