"""Building kio response entities for whichever version a client asked for.

kio has one dataclass per API version, each with that version's fields. A handler
computes its answer once and builds it with `make(cls, **values)`, which passes only
the fields `cls` has (the rest keep their defaults or are absent in that version),
so one handler serves every version without per-version branches.
"""

from __future__ import annotations

import datetime
from dataclasses import fields
from types import ModuleType
from typing import Any

from ottla.protocol import DecodedRequest

__all__ = ["NO_THROTTLE", "make", "response_module"]

NO_THROTTLE = datetime.timedelta(0)


_FIELD_NAMES: dict[type[Any], frozenset[str]] = {}


def _field_names(cls: type[Any]) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names


def make(cls: type[Any], **values: Any) -> Any:
    """An instance of kio class `cls` from the `values` it has fields for."""
    names = _field_names(cls)
    return cls(**{k: v for k, v in values.items() if k in names})


def has_field(cls: type[Any], name: str) -> bool:
    return name in _field_names(cls)


def response_module(request: DecodedRequest) -> ModuleType:
    """kio's response module (nested classes) for the request's API version."""
    return request.spec.response_module(request.api_version)


def response_type(request: DecodedRequest) -> type[Any]:
    return request.spec.response_type(request.api_version)
