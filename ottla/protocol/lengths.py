"""A bounds pre-check of a request body before kio's native reader sees it.

kio's native reader sizes an array's storage from the array's declared count
before reading any element, and a failed allocation aborts the whole process (Rust
aborts on out-of-memory): a 100-byte request declaring 2**31 partitions would kill
the broker. `check_lengths` walks the body along kio's schema for that version,
reading only lengths and skipping values, and raises ProtocolError(INVALID_REQUEST)
when an array count, string or bytes length claims more than the bytes left in the
frame. It allocates nothing per element and does the same field walk kio then does,
once more, in Python (see bench/protocol.py for its cost).

The walk of each entity class is generated once, as Python source (see _Generator):
about three times faster than interpreting a plan of steps, and this runs on every
request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import types
import typing
from typing import Any, Final

from kio.serial.errors import SerialError
from kio.serial.readers import read_unsigned_varint

from ottla.protocol.errors import ErrorCode, ProtocolError

__all__ = ["check_lengths"]

_FIXED_WIDTHS: Final = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}
_INT16: Final = struct.Struct(">h")
_INT32: Final = struct.Struct(">i")

_INT16_AT: Final = _INT16.unpack_from
_INT32_AT: Final = _INT32.unpack_from


def _too_long(what: str, claimed: int, left: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.invalid_request, f"{what} claims {claimed} bytes or items, {left} bytes left"
    )


Walk = typing.Callable[[Any, int, int], int]
_WALKERS: dict[type[Any], Walk] = {}


def _walker(entity_type: type[Any]) -> Walk:
    """The generated walk function of `entity_type` (made on first use, then cached)."""
    walk = _WALKERS.get(entity_type)
    if walk is None:
        walk = _WALKERS[entity_type] = _Generator(entity_type).build()
    return walk


class _Generator:
    """Source of one entity class's walk: `walk(frame, offset, end) -> offset after it`.

    Generated once per class (as `writer.py` does for writing): fixed-width runs are
    one addition, each length or count is read inline (one-byte varints without a
    call) and compared with the bytes left, nested entities call their own walks.
    """

    def __init__(self, entity_type: type[Any]) -> None:
        self.cls = entity_type
        self.flexible = bool(entity_type.__flexible__)
        self.namespace: dict[str, Any] = {
            "_uv": read_unsigned_varint,
            "_i16": _INT16_AT,
            "_i32": _INT32_AT,
            "_too_long": _too_long,
        }
        self.lines: list[str] = []
        self.skip = 0  # fixed bytes not yet added to o
        self.names = 0

    def build(self) -> Walk:
        hints = typing.get_type_hints(self.cls)
        tagged: dict[int, Walk] = {}
        for field in dataclasses.fields(self.cls):
            kafka_type = field.metadata.get("kafka_type")
            tag = field.metadata.get("tag")
            if tag is not None:
                tagged[int(tag)] = self._tagged_walk(hints[field.name], kafka_type)
                continue
            self.step(hints[field.name], kafka_type, "    ", _optional(hints[field.name]))
        self.flush("    ")
        if self.flexible:
            self.namespace["_tagged"] = tagged
            self.lines += [
                "    n, size = _uv(frame, o)",
                "    o += size",
                "    if n > end - o:",
                "        raise _too_long('tagged fields', n, end - o)",
                "    for _ in range(n):",
                "        tag, size = _uv(frame, o)",
                "        o += size",
                "        length, size = _uv(frame, o)",
                "        o += size",
                "        if length > end - o:",
                "            raise _too_long('tagged field', length, end - o)",
                "        walk = _tagged.get(tag)",
                "        if walk is not None:",
                "            walk(frame, o, o + length)",
                "        o += length",
            ]
        return self.compile(f"walk {self.cls.__module__}.{self.cls.__name__}")

    def compile(self, label: str) -> Walk:
        source = "def walk(frame, o, end):\n" + "\n".join([*self.lines, "    return o"]) + "\n"
        exec(compile(source, f"<{label}>", "exec"), self.namespace)
        walk: Walk = self.namespace.pop("walk")
        return walk

    def _tagged_walk(self, annotation: Any, kafka_type: str | None) -> Walk:
        generator = _Generator(self.cls)
        generator.step(annotation, kafka_type, "    ", optional=False)
        generator.flush("    ")
        return generator.compile(f"walk tagged field of {self.cls.__name__}")

    def name(self, value: Any) -> str:
        self.names += 1
        self.namespace[f"_n{self.names}"] = value
        return f"_n{self.names}"

    def flush(self, indent: str) -> None:
        if self.skip:
            self.lines.append(f"{indent}o += {self.skip}")
            self.skip = 0

    def length(self, indent: str, legacy_width: int) -> None:
        """`n` = the length or count at o (-1 for null), o moved past it."""
        if self.flexible:
            self.lines += [
                f"{indent}n = frame[o]",
                f"{indent}if n < 0x80:",
                f"{indent}    o += 1",
                f"{indent}else:",
                f"{indent}    n, size = _uv(frame, o)",
                f"{indent}    o += size",
                f"{indent}n -= 1",
            ]
        elif legacy_width == 2:
            self.lines += [f"{indent}n = _i16(frame, o)[0]", f"{indent}o += 2"]
        else:
            self.lines += [f"{indent}n = _i32(frame, o)[0]", f"{indent}o += 4"]

    def step(self, annotation: Any, kafka_type: str | None, indent: str, optional: bool) -> None:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
            self.step(inner, kafka_type, indent, optional)
            return
        if origin is tuple:
            self.array(typing.get_args(annotation)[0], kafka_type, indent)
            return
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            self.flush(indent)
            walk = self.name(_walker(annotation))
            if optional:  # KIP-893: an int8 marker, -1 for null
                self.lines += [
                    f"{indent}o += 1",
                    f"{indent}if frame[o - 1] != 0xFF:",
                    f"{indent}    o = {walk}(frame, o, end)",
                ]
            else:
                self.lines.append(f"{indent}o = {walk}(frame, o, end)")
            return
        if kafka_type in _FIXED_WIDTHS:
            self.skip += _FIXED_WIDTHS[kafka_type]
            return
        if kafka_type not in ("string", "bytes", "records"):
            raise LookupError(f"no length rule for kafka_type {kafka_type!r}")
        self.flush(indent)
        self.length(indent, 2 if kafka_type == "string" else 4)
        self.lines += [
            f"{indent}if n > 0:",
            f"{indent}    if n > end - o:",
            f"{indent}        raise _too_long('string or bytes', n, end - o)",
            f"{indent}    o += n",
        ]

    def array(self, element: Any, kafka_type: str | None, indent: str) -> None:
        self.flush(indent)
        self.length(indent, 4)
        self.lines += [
            f"{indent}if n > 0:",
            f"{indent}    if n > end - o:",
            f"{indent}        raise _too_long('array', n, end - o)",
        ]
        inner = indent + "    "
        if (
            not (isinstance(element, type) and dataclasses.is_dataclass(element))
            and kafka_type in _FIXED_WIDTHS
        ):
            self.lines.append(f"{inner}o += n * {_FIXED_WIDTHS[kafka_type]}")
            return
        self.lines.append(f"{inner}for _ in range(n):")
        body = inner + "    "
        self.step(element, kafka_type, body, optional=False)
        self.flush(body)
        self.lines += [f"{body}if o > end:", f"{body}    return o"]


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)


def check_lengths(entity_type: type[Any], frame: Any, offset: int) -> None:
    """Raise ProtocolError if a count or length in the body at `offset` overruns `frame`.

    Truncation and other malformations it does not catch are left to kio's reader.
    """
    # A truncated varint or field is left for kio's reader to report.
    with contextlib.suppress(SerialError, ValueError, IndexError, struct.error):
        _walker(entity_type)(frame, offset, len(frame))
