"""A replica fetcher's connection to its leader: one Fetch in flight, its answer handed
to a callback as its frame arrives.

The follower's half of replication runs once per replicated record: read the leader's
answer, append it, send the next fetch. Through `NodeClient` (rpc.py) each fetch was a
coroutine chain, a future, a timer and a wake-up of the fetcher's task between the
answer and the next request. Here the answer is decoded in the transport's callback
and handed to `on_answer`, which appends and writes the next request there and then
(replica_fetcher.py); the fetcher's task only opens connections and waits out
back-offs. Requests leave in order and a Kafka connection answers in order, so an
answer whose correlation id is not the one in flight is a broken connection: it is
closed, as is one whose answer does not arrive within the deadline the fetcher sets
(a late answer must never be taken for a newer request's).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from ottla.broker.rpc import CONNECT_TIMEOUT_S, FETCH_RECEIVE_BUFFER_BYTES, FramedConnection
from ottla.protocol import FetchResponseBody, read_fetch_answer, set_correlation_id

__all__ = ["FetchPipe", "open_pipe"]


OnAnswer = Callable[["FetchPipe", FetchResponseBody], None]
OnLost = Callable[["FetchPipe", BaseException], None]


class FetchPipe(FramedConnection):
    """One fetch connection (see the module docstring)."""

    def __init__(self, on_answer: OnAnswer, on_lost: OnLost) -> None:
        super().__init__()
        self._on_answer = on_answer
        self._on_lost = on_lost
        self._next_correlation = 1
        self._in_flight = 0  # correlation id of the request awaiting its answer; 0: none
        self._version = 0
        self.deadline = 0.0  # loop time by which the request in flight must be answered

    @property
    def in_flight(self) -> bool:
        return self._in_flight != 0

    def send(self, frame: bytearray, version: int, deadline: float) -> None:
        """Write a Fetch request frame (with its size prefix; its correlation id is set
        here); its answer goes to `on_answer`."""
        if self.closed or self._transport is None:
            raise ConnectionError("fetch connection closed")
        if self._in_flight:
            raise RuntimeError("a fetch is already in flight")
        correlation_id = self._next_correlation
        self._next_correlation = correlation_id % 0x7FFFFFFF + 1
        self._in_flight = correlation_id
        self._version = version
        self.deadline = deadline
        set_correlation_id(frame, correlation_id)
        self._transport.write(frame)

    def close(self, error: BaseException) -> None:
        """Close the connection; `on_lost(error)` is called once."""
        if self.closed:
            return
        self.closed = True
        self._in_flight = 0
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
        self._on_lost(self, error)

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A replica fetch answer is up to megabytes: see FETCH_RECEIVE_BUFFER_BYTES.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FETCH_RECEIVE_BUFFER_BYTES)

    def _frame(self, frame: bytes | bytearray) -> None:
        expected, self._in_flight = self._in_flight, 0
        try:
            correlation_id, body = read_fetch_answer(frame, self._version)
            if correlation_id != expected:
                raise ValueError(f"answer {correlation_id} where {expected} was in flight")
        except (ValueError, IndexError) as problem:
            self.close(ConnectionError(f"bad fetch answer: {problem}"))
            return
        self._on_answer(self, body)


async def open_pipe(address: tuple[str, int], on_answer: OnAnswer, on_lost: OnLost) -> FetchPipe:
    """A new fetch connection to `address` (OSError, TimeoutError when it fails)."""
    host, port = address
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        _, pipe = await asyncio.get_running_loop().create_connection(
            lambda: FetchPipe(on_answer, on_lost), host, port
        )
    return pipe
