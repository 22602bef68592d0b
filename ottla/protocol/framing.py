"""Cutting size-prefixed Kafka frames out of a byte stream, incrementally.

Every Kafka request and response is an int32 big-endian size followed by that many
bytes. `FrameDecoder` is sans-IO: the connection feeds it what the socket delivered
and takes complete frames out. It serves two feeding styles:

- `feed(data)`: for `asyncio.Protocol.data_received` and for tests;
- `get_buffer()` / `buffer_updated(n)`: for `asyncio.BufferedProtocol`, so a large
  frame (a 1 MiB produce) is received straight into its own `bytearray` with no
  intermediate copy; small frames go through a reusable scratch buffer.

Limits: a size above `max_frame_bytes` (Kafka's `socket.request.max.bytes`) or below
zero raises `ProtocolError` before anything is allocated for it; after that error the
decoder is poisoned (the connection must close: the stream position is lost).
"""

from __future__ import annotations

import struct
from collections import deque

from ottla.protocol.errors import ErrorCode, ProtocolError

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "FrameDecoder", "frame_size_prefix"]

# Kafka's default socket.request.max.bytes (100 MiB).
DEFAULT_MAX_FRAME_BYTES = 104_857_600
_SIZE = struct.Struct(">i")
_SCRATCH_BYTES = 65_536


def frame_size_prefix(size: int) -> bytes:
    """The 4-byte size prefix for a frame of `size` bytes."""
    return _SIZE.pack(size)


class FrameDecoder:
    """Incremental frame cutter: feed bytes in, take whole frames out, in order."""

    __slots__ = (
        "_broken",
        "_filled",
        "_frame",
        "_frames",
        "_pending",
        "_scratch",
        "buffered_bytes",
        "max_frame_bytes",
    )

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        # Bytes of a size prefix or small frames not yet complete.
        self._pending = bytearray()
        # A large frame being filled in place, and how much of it is filled.
        self._frame: bytearray | None = None
        self._filled = 0
        self._frames: deque[bytes | bytearray] = deque()
        self._scratch = bytearray(_SCRATCH_BYTES)
        self._broken: ProtocolError | None = None
        # Bytes held by the decoder (pending + partial frame + complete frames):
        # the connection uses it for back-pressure.
        self.buffered_bytes = 0

    # -- feeding ---------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the stream; raises ProtocolError on a bad size."""
        if self._broken is not None:
            raise self._broken
        view = memoryview(data).cast("B")
        position = 0
        end = len(view)
        while position < end:
            frame = self._frame
            if frame is not None:
                take = min(len(frame) - self._filled, end - position)
                frame[self._filled : self._filled + take] = view[position : position + take]
                self._filled += take
                position += take
                self.buffered_bytes += take
                if self._filled == len(frame):
                    self._frames.append(frame)
                    self._frame = None
                continue
            position = self._consume_small(view, position, end)

    def _consume_small(self, view: memoryview, position: int, end: int) -> int:
        """Cut frames out of `view[position:end]` through `_pending`; returns new position.

        Small frames wholly inside `view` are sliced out directly (one copy); a frame
        too large for the scratch buffer switches to in-place filling.
        """
        pending = self._pending
        if pending:
            # Complete the size prefix from the stream first.
            if len(pending) < 4:
                take = min(4 - len(pending), end - position)
                pending += view[position : position + take]
                position += take
                self.buffered_bytes += take
                if len(pending) < 4:
                    return position
            size = self._check_size(_SIZE.unpack_from(pending, 0)[0])
            have = len(pending) - 4
            if size > _SCRATCH_BYTES:
                self._start_large(size, bytes(pending[4:]))
                pending.clear()
                return position
            take = min(size - have, end - position)
            pending += view[position : position + take]
            position += take
            self.buffered_bytes += take
            if len(pending) - 4 == size:
                self._frames.append(bytes(pending[4:]))
                pending.clear()
            return position
        # Fast path: whole frames inside the view.
        while end - position >= 4:
            size = self._check_size(_SIZE.unpack_from(view, position)[0])
            if size > _SCRATCH_BYTES:
                self.buffered_bytes += 4
                start = position + 4
                take = min(size, end - start)
                self._start_large(size, view[start : start + take])
                return start + take
            if end - position - 4 < size:
                break
            self._frames.append(bytes(view[position + 4 : position + 4 + size]))
            self.buffered_bytes += 4 + size
            position += 4 + size
        if position < end:
            pending += view[position:end]
            self.buffered_bytes += end - position
        return end

    def _start_large(self, size: int, head: bytes | memoryview) -> None:
        frame = bytearray(size)
        frame[: len(head)] = head
        self._filled = len(head)
        self.buffered_bytes += len(head) if not self._pending else 0
        if self._filled == size:
            self._frames.append(frame)
        else:
            self._frame = frame

    def _check_size(self, size: int) -> int:
        if size < 0:
            self._broken = ProtocolError(ErrorCode.invalid_request, f"negative frame size {size}")
            raise self._broken
        if size > self.max_frame_bytes:
            self._broken = ProtocolError(
                ErrorCode.invalid_request,
                f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes} bytes",
            )
            raise self._broken
        return size

    # -- asyncio.BufferedProtocol style ------------------------------------------

    def get_buffer(self) -> memoryview:
        """A writable buffer for the transport to receive into (then `buffer_updated`)."""
        if self._broken is not None:
            raise self._broken
        if self._frame is not None:
            return memoryview(self._frame)[self._filled :]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` were written into the buffer `get_buffer` returned."""
        if self._frame is not None:
            self._filled += nbytes
            self.buffered_bytes += nbytes
            if self._filled == len(self._frame):
                self._frames.append(self._frame)
                self._frame = None
            return
        self.feed(memoryview(self._scratch)[:nbytes])

    # -- taking frames ------------------------------------------------------------

    def next_frame(self) -> bytes | bytearray | None:
        """The next complete frame (without its size prefix), or None."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self.buffered_bytes -= 4 + len(frame)
        return frame

    @property
    def partial(self) -> bool:
        """True when the stream stopped in the middle of a frame."""
        return bool(self._pending) or self._frame is not None
