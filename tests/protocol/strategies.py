"""Hypothesis strategies for kio entities, built from their dataclass fields.

kio's generated entities are frozen dataclasses; each field's Python type and its
`kafka_type` metadata (int8..int64, string, bytes, records, uuid, error_code,
timedelta_i32/i64, datetime_i64, bool) say which values the wire can carry, so a
strategy for any entity of any API version follows mechanically. Sizes are kept small
(short strings, arrays of at most 3) so hundreds of API versions fit a quick run.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import types
import typing
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from kio.serial import entity_writer

from ottla.protocol import ErrorCode

_INTEGER_BOUNDS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
ARRAY_SIZE_MAX = 3


def _scalar(kafka_type: str) -> st.SearchStrategy[Any]:
    if kafka_type in _INTEGER_BOUNDS:
        low, high = _INTEGER_BOUNDS[kafka_type]
        return st.integers(low, high)
    if kafka_type == "bool":
        return st.booleans()
    if kafka_type == "string":
        return st.text(max_size=12)
    if kafka_type in ("bytes", "records"):
        return st.binary(max_size=24)
    if kafka_type == "uuid":
        # The zero UUID is the wire's null: kio reads it back as None.
        return st.uuids().filter(lambda value: value.int != 0)
    if kafka_type == "error_code":
        return st.sampled_from(list(ErrorCode))
    if kafka_type == "float64":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kafka_type == "timedelta_i32":
        return st.integers(-(2**31), 2**31 - 1).map(lambda ms: datetime.timedelta(milliseconds=ms))
    if kafka_type == "timedelta_i64":
        # timedelta's range is narrower than int64 milliseconds.
        return st.integers(-(2**45), 2**45).map(lambda ms: datetime.timedelta(milliseconds=ms))
    if kafka_type == "datetime_i64":
        # Up to year 2109: beyond, kio's float seconds lose the millisecond.
        return st.integers(0, 2**42).map(lambda ms: _EPOCH + datetime.timedelta(milliseconds=ms))
    raise NotImplementedError(f"no strategy for kafka_type {kafka_type!r}")


def _for_type(annotation: Any, kafka_type: str | None) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in arguments if a is not type(None)]
        assert len(inner) == 1, annotation
        return st.none() | _for_type(inner[0], kafka_type)
    if origin is tuple:
        return st.lists(_for_type(arguments[0], kafka_type), max_size=ARRAY_SIZE_MAX).map(tuple)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return entities(annotation)
    assert kafka_type is not None, annotation
    return _scalar(kafka_type)


_CACHE: dict[type[Any], st.SearchStrategy[Any]] = {}


def entities(entity_type: type[Any]) -> st.SearchStrategy[Any]:
    """A strategy for instances of the kio entity class `entity_type` (cached)."""
    strategy = _CACHE.get(entity_type)
    if strategy is None:
        hints = typing.get_type_hints(entity_type)
        fields = {
            field.name: _for_type(hints[field.name], field.metadata.get("kafka_type"))
            for field in dataclasses.fields(entity_type)
        }
        strategy = _CACHE[entity_type] = st.builds(entity_type, **fields)
    return strategy


def kio_bytes(entity: Any) -> bytes:
    """`entity` as kio's own writer writes it."""
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


# Settings of the tests that compare a hand-written reader or writer with kio.
WIRE_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
