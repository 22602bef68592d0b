"""Building kio entities for whichever API version is in play.

kio has one dataclass per API version, each with that version's fields. Code that
serves (or calls) many versions computes its values once and builds the entity
with `make(cls, **values)`, which passes only the fields `cls` has — the rest keep
their defaults or do not exist in that version — so one handler or one client call
covers every version without per-version branches.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

__all__ = ["has_field", "make"]

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
    """True when kio class `cls` (one API version) has field `name`."""
    return name in _field_names(cls)
