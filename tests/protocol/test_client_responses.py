"""Responses framed by ottla's encode_response decode with real clients' own classes.

Proves: Produce, Fetch, Metadata and ApiVersions response bodies (hypothesis-drawn
kio entities, every version both ottla and the client know) framed by
`encode_response` are read by kafka-python's `kafka.protocol` response classes
(which parse the size prefix and the response header themselves) and by aiokafka's
`aiokafka.protocol` response structs to the same field values, with the correlation
id intact; the ApiVersions response built from the registry reads back in both.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from aiokafka.protocol import admin as aio_admin
from aiokafka.protocol import fetch as aio_fetch
from aiokafka.protocol import metadata as aio_metadata
from aiokafka.protocol import produce as aio_produce
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchResponse
from kafka.protocol.metadata import ApiVersionsResponse, MetadataResponse
from kafka.protocol.producer import ProduceResponse

from ottla.protocol import (
    SUPPORTED_APIS,
    ErrorCode,
    RequestHeader,
    build_api_versions_response,
    encode_response,
)

from .clientcompare import same_by_name, same_by_position
from .strategies import entities

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KAFKA_PYTHON: dict[int, Any] = {
    0: ProduceResponse,
    1: FetchResponse,
    3: MetadataResponse,
    18: ApiVersionsResponse,
}
AIOKAFKA: dict[int, tuple[Any, str]] = {
    0: (aio_produce, "ProduceResponse"),
    1: (aio_fetch, "FetchResponse"),
    3: (aio_metadata, "MetadataResponse"),
    18: (aio_admin, "ApiVersionResponse"),
}


def _wire(api_key: int, version: int, correlation_id: int, body: Any) -> bytes:
    flexible = bool(type(body).__flexible__)
    header = RequestHeader(api_key, version, correlation_id, "c", 2 if flexible else 1, 0)
    return b"".join(bytes(chunk) for chunk in encode_response(header, body))


def _draw_body(data: st.DataObject, api_key: int, version: int) -> Any:
    body = data.draw(entities(SUPPORTED_APIS[api_key].response_type(version)), label="body")
    if api_key == 18:
        # A client reads an ApiVersions body with an error as v0 (KIP-511).
        body = dataclasses.replace(body, error_code=ErrorCode.none)
    return body


def _kp_cases() -> list[tuple[int, int]]:
    cases = []
    for api_key, response_class in KAFKA_PYTHON.items():
        spec = SUPPORTED_APIS[api_key]
        low = max(spec.decodable_min, response_class.valid_versions[0])
        high = min(spec.max_version, response_class.valid_versions[1])
        cases += [(api_key, version) for version in range(low, high + 1)]
    return cases


def _aio_cases() -> list[tuple[int, int]]:
    cases = []
    for api_key, (module, prefix) in AIOKAFKA.items():
        spec = SUPPORTED_APIS[api_key]
        for version in range(spec.decodable_min, spec.max_version + 1):
            if hasattr(module, f"{prefix}_v{version}"):
                cases.append((api_key, version))
    return cases


def _aio_decode(api_key: int, version: int, wire: bytes) -> tuple[int, Any]:
    module, prefix = AIOKAFKA[api_key]
    response_class = getattr(module, f"{prefix}_v{version}")
    (correlation_id,) = struct.unpack_from(">i", wire, 4)
    # aiokafka's header rule: v1 (a tag byte) for flexible responses; none are here.
    response = response_class.decode(wire[8:])
    return correlation_id, response


def _aio_values(response: Any) -> list[Any]:
    return [response.__dict__[name] for name in response.SCHEMA.names]


@pytest.mark.parametrize(("api_key", "version"), _kp_cases())
@EXAMPLES
@given(data=st.data())
def test_kafka_python_reads_ottla_responses(
    api_key: int, version: int, data: st.DataObject
) -> None:
    body = _draw_body(data, api_key, version)
    wire = _wire(api_key, version, 4321, body)
    response = KAFKA_PYTHON[api_key].decode(wire, version=version, header=True, framed=True)
    assert response.header.correlation_id == 4321
    difference = same_by_name(body, response)
    assert difference is None, difference


@pytest.mark.parametrize(("api_key", "version"), _aio_cases())
@EXAMPLES
@given(data=st.data())
def test_aiokafka_reads_ottla_responses(api_key: int, version: int, data: st.DataObject) -> None:
    body = _draw_body(data, api_key, version)
    correlation_id, response = _aio_decode(api_key, version, _wire(api_key, version, 99, body))
    assert correlation_id == 99
    difference = same_by_position(body, _aio_values(response))
    assert difference is None, difference


def test_aio_cases_cover_every_api() -> None:
    assert {api_key for api_key, _ in _aio_cases()} == set(AIOKAFKA)


@pytest.mark.parametrize("version", range(5))
def test_kafka_python_reads_the_registry_api_versions(version: int) -> None:
    wire = _wire(18, version, 7, build_api_versions_response(version))
    response = ApiVersionsResponse.decode(wire, version=version, header=True, framed=True)
    assert response.header.correlation_id == 7
    assert response.error_code == 0
    listed = [(k.api_key, k.min_version, k.max_version) for k in response.api_keys]
    assert listed == SUPPORTED_APIS.api_version_entries()


def test_kafka_python_reads_unsupported_version_answer() -> None:
    # Client asked v4 at a version ottla does not serve: the v0 body with the error.
    wire = _wire(18, 4, 8, build_api_versions_response(4, ErrorCode.unsupported_version))
    response = ApiVersionsResponse.decode(wire, version=4, header=True, framed=True)
    assert response.error_code == ErrorCode.unsupported_version.value
    assert len(response.api_keys) == len(SUPPORTED_APIS)
