"""Helpers handlers share to build kio responses for the request's version.

`make(cls, **values)` (from ottla.protocol) passes only the fields a version has,
so one handler serves every version; `response_module`/`response_type` give the
kio classes of the request's version.
"""

from __future__ import annotations

import datetime
from types import ModuleType
from typing import Any

from ottla.protocol import DecodedRequest, has_field, make

__all__ = ["NO_THROTTLE", "has_field", "make", "response_module", "response_type"]

NO_THROTTLE = datetime.timedelta(0)


def response_module(request: DecodedRequest) -> ModuleType:
    """kio's response module (nested classes) for the request's API version."""
    return request.spec.response_module(request.api_version)


def response_type(request: DecodedRequest) -> type[Any]:
    """kio's response class for the request's API version."""
    return request.spec.response_type(request.api_version)
