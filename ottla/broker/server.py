"""The asyncio server: one `asyncio.BufferedProtocol` per connection.

The request pipeline of DESIGN.md section 3:

1. Bytes arrive straight into the connection's `FrameDecoder` buffers
   (`get_buffer`/`buffer_updated`: a large produce frame is received into its own
   bytearray, no intermediate copy).
2. Each complete frame is decoded and handed to its handler at once, in arrival
   order, so the synchronous part of handlers (a produce's append) runs in request
   order. A handler may finish later (a long-poll fetch, acks=all).
3. Responses leave in request order (Kafka clients match them by position as well
   as correlation id): a per-connection queue of response slots is flushed from its
   head as slots complete.

Limits (house rule 6): a frame over `socket.request.max.bytes` closes that
connection; when the bytes of requests buffered or awaiting their response exceed
`queued.max.request.bytes` (default 100 MiB) or the transport's write buffer is
full, reading pauses until they drain. A frame that cannot be parsed at all, or an
API or version the broker does not serve (the dispatcher's `handle_unsupported`
answers only ApiVersions), closes the connection with a log line; every other bad
request gets a Kafka error code.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from ottla.protocol import (
    DecodedRequest,
    FrameDecoder,
    ProtocolError,
    UnsupportedRequest,
    decode_request,
    encode_response,
)

__all__ = ["AfterSend", "Connection", "ConnectionLimits", "Deferred", "Lane", "RequestHandler"]

log = structlog.get_logger("ottla.server")

Chunks = list[bytes | bytearray | memoryview]
# A handler returns the response body (kio entity), a `Deferred` or an awaitable of
# it, or None for requests that get no response (acks=0 produce).
RequestHandler = Callable[["Connection", DecodedRequest], Any]
UnsupportedHandler = Callable[[UnsupportedRequest], Chunks | None]


_FETCH_KEY = 1


class AfterSend:
    """A response body plus what to do once its bytes are handed to the transport.

    Fetch uses it to release the read leases of log segments whose memoryviews the
    response carries (house rule 5: no view outlives its lease).
    """

    __slots__ = ("body", "callback")

    def __init__(self, body: Any, callback: Callable[[], None]) -> None:
        self.body = body
        self.callback = callback


class Deferred:
    """A response finished later by a callback, not by a task: an acks=all produce
    waiting for its high watermark, a fetch waiting for data.

    The handler returns it unfinished; whoever finishes the work calls `complete(body)`
    (or `fail(error)`), and the connection answers there and then, in the caller's
    stack: no task to create, schedule and collect, no event-loop round trip between
    the follower fetch that moves a high watermark and the produce response it
    releases. If the connection closes first, `cancel()` runs the `on_cancel` hooks
    (a timer, waiter registrations) once; `complete` and `fail` are then no-ops.
    """

    __slots__ = ("_callback", "_cancel_hooks", "_outcome", "done")

    def __init__(self) -> None:
        self.done = False
        self._callback: Callable[[Any, BaseException | None], None] | None = None
        self._outcome: tuple[Any, BaseException | None] | None = None
        self._cancel_hooks: list[Callable[[], None]] = []

    def complete(self, body: Any) -> None:
        self._finish(body, None)

    def fail(self, error: BaseException) -> None:
        self._finish(None, error)

    def _finish(self, body: Any, error: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        # Dropped at once, here and in cancel: hooks and callbacks refer back to their
        # owners, and a cycle left for the garbage collector costs a collection pass
        # every few hundred requests.
        self._cancel_hooks = []
        callback, self._callback = self._callback, None
        if callback is None:
            self._outcome = (body, error)  # finished before the connection bound it
        else:
            callback(body, error)

    def bind(self, callback: Callable[[Any, BaseException | None], None]) -> None:
        """The connection's answer; called at once when the work already finished."""
        if self._outcome is not None:
            outcome, self._outcome = self._outcome, None
            callback(*outcome)
        elif not self.done:
            self._callback = callback

    def on_cancel(self, hook: Callable[[], None]) -> None:
        self._cancel_hooks.append(hook)

    def cancel(self) -> None:
        if self.done:
            return
        self.done = True
        self._callback = None
        hooks, self._cancel_hooks = self._cancel_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception as error:  # one hook's bug must not skip the others
                log.error("deferred_cancel_hook_failed", error=repr(error), exc_info=error)


class Lane(Protocol):
    """A fast path a handler may set on a connection (`Connection.lane`): it is offered
    each frame first while no earlier response is pending, serves it itself (True) or
    leaves it to decoding and the handlers (False, nothing changed). The Fetch lane of
    a follower's session (handlers/fetch_lane.py) is the one there is."""

    def offer(self, frame: bytes | bytearray) -> bool: ...

    def close(self) -> None: ...


class ConnectionLimits:
    """The named limits of one connection."""

    __slots__ = ("in_flight_bytes_max", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int, in_flight_bytes_max: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.in_flight_bytes_max = in_flight_bytes_max


class _Slot:
    """One request's place in the response order."""

    __slots__ = ("after_send", "api_key", "chunks", "done", "size")

    def __init__(self, size: int, api_key: int) -> None:
        self.chunks: Chunks | None = None
        self.done = False
        self.size = size
        self.api_key = api_key
        self.after_send: Callable[[], None] | None = None


class Connection(asyncio.BufferedProtocol):
    """One client connection: frames in, handlers called, responses out in order."""

    def __init__(
        self,
        handle: RequestHandler,
        handle_unsupported: UnsupportedHandler,
        limits: ConnectionLimits,
        on_close: Callable[[Connection], None] | None = None,
    ) -> None:
        self._handle = handle
        self._handle_unsupported = handle_unsupported
        self._limits = limits
        self._on_close = on_close
        self._decoder = FrameDecoder(limits.max_frame_bytes)
        self._slots: collections.deque[_Slot] = collections.deque()
        self._slot_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._deferred: set[Deferred] = set()
        self.peer = "?"
        self.client_id: str | None = None
        # Per-connection state handlers may keep (client software name, fetch session).
        self.state: dict[str, Any] = {}
        self.lane: Lane | None = None

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        log.info("connection_opened", peer=self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.lane is not None:
            self.lane.close()
        for task in list(self._tasks):
            task.cancel()
        for deferred in list(self._deferred):
            deferred.cancel()
        self._deferred.clear()
        for slot in self._slots:
            if slot.after_send is not None:
                slot.after_send()
        self._slots.clear()
        log.info("connection_closed", peer=self.peer, error=str(exc) if exc else None)
        if self._on_close is not None:
            self._on_close(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._decoder.buffer_updated(nbytes)
        except ProtocolError as error:
            self.abort("bad_frame", error)
            return
        self._drain_frames()

    def eof_received(self) -> bool:
        # Half-closed by the client: finish pending responses, then close.
        if not self._slots and self._transport is not None:
            self._transport.close()
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # -- request pipeline ----------------------------------------------------------------

    def _drain_frames(self) -> None:
        while not self._closing:
            frame = self._decoder.next_frame()
            if frame is None:
                break
            self._dispatch(frame)
        self._update_reading()

    def _dispatch(self, frame: bytes | bytearray) -> None:
        lane = self.lane
        if lane is not None and not self._slots and lane.offer(frame):
            return
        try:
            request = decode_request(frame)
        except UnsupportedRequest as unsupported:
            log.info(
                "unsupported_request",
                peer=self.peer,
                api_key=unsupported.header.api_key,
                api_version=unsupported.header.api_version,
                reason=str(unsupported),
            )
            chunks = self._handle_unsupported(unsupported)
            if chunks is None:
                self.abort("unsupported_request", unsupported)
                return
            slot = self.new_slot(len(frame), unsupported.header.api_key)
            self.complete(slot, chunks)
            return
        except ProtocolError as error:
            self.abort("malformed_request", error)
            return
        if request.header.client_id is not None:
            self.client_id = request.header.client_id
        slot = self.new_slot(len(frame), request.header.api_key)
        try:
            result = self._handle(self, request)
        except Exception as error:
            self._handler_failed(request, error)
            return
        if isinstance(result, Deferred):
            deferred = result
            self._deferred.add(deferred)
            deferred.bind(
                lambda body, error: self._finish_deferred(slot, request, deferred, body, error)
            )
            return
        if isinstance(result, Awaitable):
            future = asyncio.ensure_future(result)
            self._tasks.add(future)
            future.add_done_callback(lambda f: self._finish_async(slot, request, f))
            return
        self._respond(slot, request, result)

    def new_slot(self, size: int, api_key: int) -> _Slot:
        slot = _Slot(size, api_key)
        self._slots.append(slot)
        self._slot_bytes += size
        return slot

    def _finish_async(self, slot: _Slot, request: DecodedRequest, future: Any) -> None:
        self._tasks.discard(future)
        if self._closing:
            return
        if future.cancelled():
            # Cancelled from outside (a coordinator shutting down): this request can
            # never be answered, and later responses must not overtake it.
            self.abort("request_cancelled", RuntimeError(f"{request.spec.name} was cancelled"))
            return
        error = future.exception()
        if error is not None:
            self._handler_failed(request, error)
            return
        self._respond(slot, request, future.result())

    def _finish_deferred(
        self,
        slot: _Slot,
        request: DecodedRequest,
        deferred: Deferred,
        body: Any,
        error: BaseException | None,
    ) -> None:
        self._deferred.discard(deferred)
        if self._closing:
            return
        if error is not None:
            self._handler_failed(request, error)
            return
        self._respond(slot, request, body)

    def _respond(self, slot: _Slot, request: DecodedRequest, body: Any) -> None:
        if isinstance(body, AfterSend):
            slot.after_send = body.callback
            body = body.body
        if body is None:  # no response (acks=0)
            self.complete(slot, [])
            return
        try:
            chunks = encode_response(request.header, body)
        except Exception as error:
            self._handler_failed(request, error)
            return
        self.complete(slot, chunks)

    def _handler_failed(self, request: DecodedRequest, error: BaseException) -> None:
        # A handler bug must not take the broker down: log it and drop this
        # connection (the client reconnects and retries).
        log.error(
            "handler_failed",
            peer=self.peer,
            api=request.spec.name,
            api_version=request.api_version,
            error=repr(error),
            exc_info=error,
        )
        self.abort("handler_failed", error)

    def complete(self, slot: _Slot, chunks: Chunks) -> None:
        slot.chunks = chunks
        slot.done = True
        transport = self._transport
        while self._slots and self._slots[0].done:
            head = self._slots.popleft()
            self._slot_bytes -= head.size
            if head.chunks and transport is not None and not self._closing:
                transport.writelines(head.chunks)
            head.chunks = None
            if head.after_send is not None:
                head.after_send()
                head.after_send = None
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        busy = (
            self._writing_paused
            or self._slot_bytes + self._decoder.buffered_bytes > self._limits.in_flight_bytes_max
        )
        if busy and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not busy and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def abort(self, event: str, error: BaseException) -> None:
        code = error.error_code.name if isinstance(error, ProtocolError) else None
        log.warning(event, peer=self.peer, error=str(error), error_code=code)
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close after pending responses are written (graceful shutdown)."""
        if self._transport is not None:
            self._transport.close()

    @property
    def pending_responses(self) -> int:
        """Requests read whose response has not been written yet."""
        return len(self._slots)

    @property
    def idle(self) -> bool:
        """Nothing to wait for at shutdown: no request pending other than fetches.

        Consumers' long polls are answered at once when the broker stops; the fetches
        of peers (Raft followers, replica fetchers) park and are re-sent endlessly, so
        waiting for them would always spend the whole shutdown grace.
        """
        return all(slot.api_key == _FETCH_KEY for slot in self._slots)
