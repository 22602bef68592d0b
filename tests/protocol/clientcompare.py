"""Helpers comparing kio entities with the protocol objects of real Kafka clients.

kio entities are frozen dataclasses whose fields follow Kafka's JSON specs in wire
order; kafka-python's objects carry the same field names (sometimes with an `_ms`
suffix where kio holds a `timedelta`); aiokafka's structs are positional tuples
whose field order is the wire order. `same_by_name` and `same_by_position` walk
both sides and return the path of the first difference (None when equal).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Any

ZERO_UUID = uuid.UUID(int=0)
# kafka-python turns these bitfields into sets of ACL operations (dropping unknown
# bits), so they are not comparable field by field.
_NOT_COMPARED_BY_NAME = frozenset({"cluster_authorized_operations", "topic_authorized_operations"})


def _field_value(entity: Any, field: dataclasses.Field[Any]) -> Any:
    value = getattr(entity, field.name)
    if value is None and field.metadata.get("kafka_type") == "datetime_i64":
        return -1  # the wire's null timestamp
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if value == ZERO_UUID:
        return None
    return value


def _is_entity(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def same_by_name(kio_value: Any, other: Any, path: str = "") -> str | None:
    """Compare a kio value with a kafka-python value field by field (kio's fields)."""
    if _is_entity(kio_value):
        for field in dataclasses.fields(kio_value):
            if field.name in _NOT_COMPARED_BY_NAME:
                continue
            for name in (field.name, f"{field.name}_ms"):
                try:
                    other_value = getattr(other, name)
                    break
                except AttributeError:
                    continue
            else:
                return f"{path}.{field.name}: missing on the client side"
            difference = same_by_name(
                _field_value(kio_value, field), other_value, path + "." + field.name
            )
            if difference is not None:
                return difference
        return None
    if isinstance(kio_value, tuple):
        if other is None or len(other) != len(kio_value):
            return f"{path}: {len(kio_value)} items vs {other!r}"
        for index, (left, right) in enumerate(zip(kio_value, other, strict=True)):
            difference = same_by_name(left, right, f"{path}[{index}]")
            if difference is not None:
                return difference
        return None
    if _scalar(kio_value) != _scalar(other):
        return f"{path}: {kio_value!r} != {other!r}"
    return None


def same_by_position(kio_value: Any, other: Any, path: str = "") -> str | None:
    """Compare a kio value with an aiokafka value (tuples in wire order).

    Tagged fields (absent from aiokafka's schemas) are skipped; a one-field kio
    entity compares with a bare value (aiokafka writes `Array(String)` where kio has
    an entity holding one string).
    """
    if _is_entity(kio_value):
        fields = [f for f in dataclasses.fields(kio_value) if "tag" not in f.metadata]
        if not isinstance(other, tuple | list):
            if len(fields) != 1:
                return f"{path}: entity with {len(fields)} fields vs scalar {other!r}"
            other = (other,)
        if len(fields) != len(other):
            return f"{path}: {[f.name for f in fields]} vs {other!r}"
        for field, other_value in zip(fields, other, strict=True):
            difference = same_by_position(
                _field_value(kio_value, field), other_value, path + "." + field.name
            )
            if difference is not None:
                return difference
        return None
    if isinstance(kio_value, tuple):
        if other is None or len(other) != len(kio_value):
            return f"{path}: {len(kio_value)} items vs {other!r}"
        for index, (left, right) in enumerate(zip(kio_value, other, strict=True)):
            difference = same_by_position(left, right, f"{path}[{index}]")
            if difference is not None:
                return difference
        return None
    if _scalar(kio_value) != _scalar(other):
        return f"{path}: {kio_value!r} != {other!r}"
    return None
