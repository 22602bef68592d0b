"""Bounds-checked readers of Kafka's primitive types, for the APIs read by hand
(fetch_wire.py, produce_wire.py).

Each takes the frame and an offset and returns (value, next offset). A read past the
end, a varint over five bytes, invalid UTF-8 or a count larger than the bytes left
raises ValueError (codec.py answers INVALID_REQUEST with its message): a claimed count
is checked before anything is allocated for it.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = [
    "compact_count",
    "compact_string",
    "legacy_count",
    "legacy_string",
    "skip_tags",
    "tagged_fields",
    "topic_key",
    "unpack",
    "uuid_or_none",
    "uvarint",
]

_UUID_SIZE = 16
_ZERO_UUID_BYTES = bytes(_UUID_SIZE)
_UUIDS: dict[bytes, uuid.UUID] = {}  # uuids read so far (immutable objects), by their bytes
_UUIDS_MAX = 4096
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


def uvarint(frame: Any, o: int) -> tuple[int, int]:
    """(value, next offset) of the unsigned varint at `o` (at most 5 bytes)."""
    value = 0
    shift = 0
    while True:
        if o >= len(frame):
            raise ValueError("truncated varint")
        byte = frame[o]
        o += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, o
        shift += 7
        if shift > 28:
            raise ValueError("varint longer than 5 bytes")


def compact_count(frame: Any, o: int, what: str) -> tuple[int, int]:
    """A compact array's element count (non-nullable), checked against what is left."""
    n, o = uvarint(frame, o)
    if n == 0:
        raise ValueError(f"null {what}")
    n -= 1
    if n > len(frame) - o:
        raise ValueError(f"{what} claims {n} elements with {len(frame) - o} bytes left")
    return n, o


def compact_string(frame: Any, o: int, nullable: bool = False) -> tuple[str | None, int]:
    """A compact string (length + 1 as a varint; 0: null, where `nullable`)."""
    n, o = uvarint(frame, o)
    if n == 0:
        if nullable:
            return None, o
        raise ValueError("null string")
    return _utf8(frame, o, o + n - 1)


def uuid_or_none(frame: Any, o: int) -> tuple[uuid.UUID | None, int]:
    """A uuid; all zeros reads as None, as kio reads it. The same few topic ids arrive
    in every fetch, and `uuid.UUID(bytes=...)` is slow Python: known ones are reused."""
    end = o + _UUID_SIZE
    if end > len(frame):
        raise ValueError("truncated uuid")
    raw = bytes(frame[o:end])
    known = _UUIDS.get(raw)
    if known is not None:
        return known, end
    if raw == _ZERO_UUID_BYTES:
        return None, end
    if len(_UUIDS) >= _UUIDS_MAX:
        _UUIDS.clear()  # ids of deleted topics, or a client sending random ones
    made = _UUIDS[raw] = uuid.UUID(bytes=raw)
    return made, end


def topic_key(frame: Any, o: int, by_id: bool) -> tuple[str | None, uuid.UUID | None, int]:
    """(name, id, next offset): a topic is named up to v12, by id from v13."""
    if by_id:
        topic_id, o = uuid_or_none(frame, o)
        return None, topic_id, o
    topic, o = compact_string(frame, o)
    return topic, None, o


def tagged_fields(frame: Any, o: int) -> tuple[Sequence[tuple[int, int, int]], int]:
    """A tagged-field section: ([(tag, start, end) of each value], the offset after it).
    The usual empty section costs one comparison."""
    if o < len(frame) and frame[o] == 0:
        return (), o + 1
    count, o = uvarint(frame, o)
    fields = []
    for _ in range(count):
        tag, o = uvarint(frame, o)
        size, o = uvarint(frame, o)
        end = o + size
        if end > len(frame):
            raise ValueError("tagged field runs past the end of the frame")
        fields.append((tag, o, end))
        o = end
    return fields, o


def skip_tags(frame: Any, o: int) -> int:
    """Skip a tagged-field section whose tags this version does not define."""
    return tagged_fields(frame, o)[1]


def unpack(layout: struct.Struct, frame: Any, o: int) -> tuple[Any, ...]:
    if o + layout.size > len(frame):
        raise ValueError("truncated")
    return layout.unpack_from(frame, o)


def legacy_count(frame: Any, o: int, what: str) -> tuple[int, int]:
    """A non-flexible array's int32 element count (null, -1, reads as 0)."""
    (n,) = unpack(_INT32, frame, o)
    o += 4
    if n < -1:
        raise ValueError(f"{what} has length {n}")
    n = max(n, 0)
    if n > len(frame) - o:
        raise ValueError(f"{what} claims {n} elements with {len(frame) - o} bytes left")
    return n, o


def legacy_string(frame: Any, o: int, nullable: bool = False) -> tuple[str | None, int]:
    """An int16-length string (-1: null, where `nullable`)."""
    (n,) = unpack(_INT16, frame, o)
    o += 2
    if n < 0:
        if n == -1 and nullable:
            return None, o
        raise ValueError(f"string of length {n}")
    return _utf8(frame, o, o + n)


def _utf8(frame: Any, o: int, end: int) -> tuple[str, int]:
    if end > len(frame):
        raise ValueError("string runs past the end of the frame")
    try:
        return bytes(frame[o:end]).decode(), end
    except UnicodeDecodeError:
        raise ValueError("string is not UTF-8") from None
