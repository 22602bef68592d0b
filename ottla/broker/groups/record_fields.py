"""The field encodings every `__consumer_offsets` record is built from (PURE).

Kafka's group-coordinator records are messages like the protocol's: a key or value
is an int16 version, then its fields in schema order. Non-flexible versions (every
key, the classic group's values) write int16-length strings (-1 for null),
int32-length bytes and int32 array counts; flexible versions (the KIP-848 consumer
group values) write compact strings and arrays (unsigned varint length + 1, 0 for
null) and end every struct with a tagged-field section.

`RecordWriter` appends fields after the version, `RecordReader` reads them back;
`records` (classic groups) and `consumer_records` (KIP-848 groups) say which fields
each record has.
"""

from __future__ import annotations

import struct
import uuid

__all__ = ["RecordDecodeError", "RecordReader", "RecordWriter"]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_VARINT_SHIFT_MAX = 35  # an int32's five 7-bit groups


class RecordDecodeError(ValueError):
    """A key or value that does not follow the layout it claims."""


def _required(value: str | None) -> str:
    if value is None:
        raise RecordDecodeError("null string where one is required")
    return value


class RecordWriter:
    """A record's bytes, built field by field after its int16 version."""

    __slots__ = ("_out",)

    def __init__(self, version: int) -> None:
        self._out = bytearray(_I16.pack(version))

    def to_bytes(self) -> bytes:
        return bytes(self._out)

    def int8(self, value: int) -> None:
        self._out += _I8.pack(value)

    def int32(self, value: int) -> None:
        self._out += _I32.pack(value)

    def int64(self, value: int) -> None:
        self._out += _I64.pack(value)

    def uuid(self, value: uuid.UUID) -> None:
        self._out += value.bytes

    def string(self, value: str | None) -> None:
        """int16 length (-1 for null), then UTF-8."""
        if value is None:
            self._out += _I16.pack(-1)
            return
        encoded = value.encode()
        self._out += _I16.pack(len(encoded))
        self._out += encoded

    def bytes_(self, value: bytes) -> None:
        """int32 length, then the bytes."""
        self._out += _I32.pack(len(value))
        self._out += value

    def array_length(self, length: int) -> None:
        """The int32 count before a non-flexible array's items."""
        self._out += _I32.pack(length)

    def uvarint(self, value: int) -> None:
        while value >= 0x80:
            self._out.append((value & 0x7F) | 0x80)
            value >>= 7
        self._out.append(value)

    def compact_string(self, value: str | None) -> None:
        """unsigned varint length + 1 (0 for null), then UTF-8."""
        if value is None:
            self._out.append(0)
            return
        encoded = value.encode()
        self.uvarint(len(encoded) + 1)
        self._out += encoded

    def compact_array_length(self, length: int) -> None:
        """The unsigned varint length + 1 before a flexible array's items."""
        self.uvarint(length + 1)

    def tagged_fields(self) -> None:
        """An empty tagged-field section: ottla writes no tagged fields."""
        self._out.append(0)


class RecordReader:
    """Reads a record's fields in order; anything off its layout is a RecordDecodeError."""

    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def _raw(self, length: int) -> bytes:
        end = self.position + length
        if length < 0 or end > len(self.data):
            raise RecordDecodeError("record truncated")
        raw = self.data[self.position : end]
        self.position = end
        return raw

    def _fixed(self, layout: struct.Struct) -> int:
        try:
            (value,) = layout.unpack_from(self.data, self.position)
        except struct.error:
            raise RecordDecodeError("record truncated") from None
        self.position += layout.size
        return int(value)

    def _text(self, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise RecordDecodeError("string is not UTF-8") from None

    def _checked_length(self, length: int) -> int:
        if length < 0 or length > len(self.data):
            raise RecordDecodeError(f"bad array length {length}")
        return length

    def int8(self) -> int:
        return self._fixed(_I8)

    def int16(self) -> int:
        return self._fixed(_I16)

    def int32(self) -> int:
        return self._fixed(_I32)

    def int64(self) -> int:
        return self._fixed(_I64)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._raw(16))

    def nullable_string(self) -> str | None:
        length = self.int16()
        return None if length == -1 else self._text(self._raw(length))

    def string(self) -> str:
        return _required(self.nullable_string())

    def bytes_(self) -> bytes:
        length = self.int32()
        return b"" if length == -1 else self._raw(length)

    def array_length(self) -> int:
        """A non-flexible array's item count (int32), checked against the data's size."""
        return self._checked_length(self.int32())

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self._raw(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > _VARINT_SHIFT_MAX:
                raise RecordDecodeError("varint too long")

    def compact_nullable_string(self) -> str | None:
        length = self.uvarint()
        return None if length == 0 else self._text(self._raw(length - 1))

    def compact_string(self) -> str:
        return _required(self.compact_nullable_string())

    def compact_array_length(self) -> int:
        """A flexible array's item count, checked against the data's size."""
        return self._checked_length(self.uvarint() - 1)

    def tagged_fields(self) -> None:
        """Skips a tagged-field section: ottla reads no tagged fields."""
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._raw(self.uvarint())
