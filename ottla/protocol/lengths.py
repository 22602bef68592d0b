"""A bounds pre-check of a request body before kio's native reader sees it.

kio's native reader sizes an array's storage from the array's declared count
before reading any element, and a failed allocation aborts the whole process (Rust
aborts on out-of-memory): a 100-byte request declaring 2**31 partitions would kill
the broker. `check_lengths` walks the body along kio's schema for that version,
reading only lengths and skipping values, and raises ProtocolError(INVALID_REQUEST)
when an array count, string or bytes length claims more than the bytes left in the
frame. It allocates nothing per element and does the same field walk kio then does,
once more, in Python (see bench/protocol.py for its cost).

Plans are compiled once per entity class: a tuple of steps, each a fixed width to
skip or a variable-length item to check.
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

# Step kinds.
_SKIP: Final = 0  # argument: width in bytes
_STRING: Final = 1  # argument: None
_BYTES: Final = 2  # argument: None
_ARRAY: Final = 3  # argument: the element's step
_ENTITY: Final = 4  # argument: the entity's plan

Step = tuple[int, Any]


class _Plan:
    __slots__ = ("flexible", "steps", "tagged")

    def __init__(self, flexible: bool) -> None:
        self.flexible = flexible
        self.steps: tuple[Step, ...] = ()
        self.tagged: dict[int, Step] = {}


_PLANS: dict[type[Any], _Plan] = {}


def _plan(entity_type: type[Any]) -> _Plan:
    plan = _PLANS.get(entity_type)
    if plan is not None:
        return plan
    plan = _Plan(bool(entity_type.__flexible__))
    hints = typing.get_type_hints(entity_type)
    steps = []
    for field in dataclasses.fields(entity_type):
        step = _step(hints[field.name], field.metadata.get("kafka_type"))
        tag = field.metadata.get("tag")
        if tag is None:
            steps.append(step)
        else:
            plan.tagged[int(tag)] = step
    plan.steps = tuple(steps)
    _PLANS[entity_type] = plan
    return plan


def _step(annotation: Any, kafka_type: str | None) -> Step:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _step(inner, kafka_type)
    if origin is tuple:
        return (_ARRAY, _step(typing.get_args(annotation)[0], kafka_type))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return (_ENTITY, _plan(annotation))
    if kafka_type == "string":
        return (_STRING, None)
    if kafka_type in ("bytes", "records"):
        return (_BYTES, None)
    if kafka_type in _FIXED_WIDTHS:
        return (_SKIP, _FIXED_WIDTHS[kafka_type])
    raise LookupError(f"no length rule for kafka_type {kafka_type!r}")


def _too_long(what: str, claimed: int, left: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.invalid_request, f"{what} claims {claimed} bytes or items, {left} bytes left"
    )


def _walk_step(frame: Any, offset: int, end: int, step: Step, flexible: bool) -> int:
    kind, argument = step
    if kind == _SKIP:
        return int(offset + argument)
    if kind == _ENTITY:
        return _walk_entity(frame, offset, end, argument)
    if flexible:
        raw, size = read_unsigned_varint(frame, offset)
        offset += size
        length = raw - 1  # compact encodings store length + 1; 0 is null
    elif kind == _STRING:
        if end - offset < 2:
            raise _too_long("string length", 2, end - offset)
        (length,) = _INT16.unpack_from(frame, offset)
        offset += 2
    else:
        if end - offset < 4:
            raise _too_long("length", 4, end - offset)
        (length,) = _INT32.unpack_from(frame, offset)
        offset += 4
    if length <= 0:
        return offset  # null or empty
    if length > end - offset:
        raise _too_long("array" if kind == _ARRAY else "string or bytes", length, end - offset)
    if kind != _ARRAY:
        return offset + length
    element = argument
    if element[0] == _SKIP:
        return offset + length * int(element[1])
    for _ in range(length):
        offset = _walk_step(frame, offset, end, element, flexible)
        if offset > end:
            break
    return offset


def _walk_entity(frame: Any, offset: int, end: int, plan: _Plan) -> int:
    flexible = plan.flexible
    for step in plan.steps:
        offset = _walk_step(frame, offset, end, step, flexible)
        if offset > end:
            return offset
    if flexible:
        count, size = read_unsigned_varint(frame, offset)
        offset += size
        if count > end - offset:
            raise _too_long("tagged fields", count, end - offset)
        for _ in range(count):
            tag, size = read_unsigned_varint(frame, offset)
            offset += size
            length, size = read_unsigned_varint(frame, offset)
            offset += size
            if length > end - offset:
                raise _too_long("tagged field", length, end - offset)
            tagged_step = plan.tagged.get(tag)
            if tagged_step is not None:
                _walk_step(frame, offset, offset + length, tagged_step, flexible)
            offset += length
    return offset


def check_lengths(entity_type: type[Any], frame: Any, offset: int) -> None:
    """Raise ProtocolError if a count or length in the body at `offset` overruns `frame`.

    Truncation and other malformations it does not catch are left to kio's reader.
    """
    # A truncated varint or field is left for kio's reader to report.
    with contextlib.suppress(SerialError, ValueError, IndexError, struct.error):
        _walk_entity(frame, offset, len(frame), _plan(entity_type))
