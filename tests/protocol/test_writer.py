"""ottla's generated writers give kio's bytes, for every request and response kio knows.

Proves, with hypothesis-generated entities of every API version in kio's index (the
requests and responses ottla serves, and those it only sends or reads as a client):
`compiled_writer(cls)` writes exactly the bytes of kio's own `entity_writer(cls)`,
tagged fields included, whether they hold their defaults or not; record data of
REFERENCE_BYTES_MIN bytes or more is kept by reference (the very object, never
copied) at its place in the chunks; bad values fail as they do with kio.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import UnknownEntity
from kio.schema.index import api_key_map
from kio.serial import entity_writer
from kio.serial._implicit_defaults import get_tagged_field_default

from ottla.protocol import SUPPORTED_APIS, ErrorCode
from ottla.protocol.apis import make_spec
from ottla.protocol.entities import make
from ottla.protocol.writer import REFERENCE_BYTES_MIN, chunks, compiled_writer, write_uvarint

from .strategies import entities

VERSIONS_MAX = 20
EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _payload_classes() -> list[Any]:
    classes = []
    for name in sorted(set(api_key_map.values())):
        spec = make_spec(name)
        for version in range(VERSIONS_MAX + 1):
            for kind, load in (("request", spec.request_type), ("response", spec.response_type)):
                try:
                    cls = load(version)
                except UnknownEntity:
                    continue
                classes.append(pytest.param(cls, id=f"{name}-v{version}-{kind}"))
    return classes


PAYLOADS = _payload_classes()


def _kio_bytes(entity: Any) -> bytes:
    out = io.BytesIO()
    entity_writer(type(entity))(out, entity)
    return out.getvalue()


def _ottla_bytes(entity: Any) -> bytes:
    buf = bytearray()
    refs: list[tuple[int, Any]] = []
    compiled_writer(type(entity))(buf, refs, entity)
    return b"".join(bytes(chunk) for chunk in chunks(buf, refs))


def test_every_api_is_covered() -> None:
    assert len(PAYLOADS) > 500
    served = {(spec.api_key, spec.max_version) for spec in SUPPORTED_APIS.values()}
    ids = {param.id for param in PAYLOADS}
    for api_key, version in served:
        assert f"{api_key_map[api_key]}-v{version}-response" in ids


@pytest.mark.parametrize("cls", PAYLOADS)
@EXAMPLES
@given(data=st.data())
def test_same_bytes_as_kio(cls: type[Any], data: st.DataObject) -> None:
    entity = data.draw(entities(cls), label="entity")
    assert _ottla_bytes(entity) == _kio_bytes(entity)


def _fetch_partition(version: int, **values: Any) -> Any:
    module = SUPPORTED_APIS[1].response_module(version)
    defaults: dict[str, Any] = {
        "partition_index": 0,
        "error_code": ErrorCode.none,
        "high_watermark": 10,
        "last_stable_offset": 10,
        "log_start_offset": 0,
        "aborted_transactions": None,
        "records": b"",
    }
    return make(module.PartitionData, **{**defaults, **values})


@pytest.mark.parametrize("version", [4, 11, 12, 15, 16])
def test_tagged_fields_at_their_defaults_are_left_out(version: int) -> None:
    partition = _fetch_partition(version)
    written = _ottla_bytes(partition)
    assert written == _kio_bytes(partition)
    if version >= 12:
        assert written.endswith(b"\x00")  # no tagged field: an empty tag section
        module = SUPPORTED_APIS[1].response_module(version)
        moved = dataclasses.replace(
            partition, diverging_epoch=module.EpochEndOffset(epoch=3, end_offset=7)
        )
        assert _ottla_bytes(moved) == _kio_bytes(moved)
        assert len(_ottla_bytes(moved)) > len(written)


def test_large_records_are_kept_by_reference() -> None:
    segment = bytearray(b"\x07" * (3 * REFERENCE_BYTES_MIN))
    large = memoryview(segment)[: 2 * REFERENCE_BYTES_MIN]
    small = memoryview(segment)[: REFERENCE_BYTES_MIN - 1]
    module = SUPPORTED_APIS[1].response_module(16)
    body = SUPPORTED_APIS[1].response_type(16)(
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=1,
        responses=(
            module.FetchableTopicResponse(
                topic_id=uuid.uuid4(),
                partitions=(
                    _fetch_partition(16, partition_index=0, records=large),
                    _fetch_partition(16, partition_index=1, records=small),
                    _fetch_partition(16, partition_index=2, records=large),
                ),
            ),
        ),
    )
    buf = bytearray()
    refs: list[tuple[int, Any]] = []
    compiled_writer(type(body))(buf, refs, body)
    out = chunks(buf, refs)
    assert [value for _, value in refs] == [large, large]
    assert sum(1 for chunk in out if chunk is large) == 2
    assert not any(chunk is small for chunk in out), "small records are copied into the buffer"
    assert b"".join(bytes(chunk) for chunk in out) == _kio_bytes(body)


def test_uvarint() -> None:
    for value, encoded in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")):
        buf = bytearray()
        write_uvarint(buf, value)
        assert bytes(buf) == encoded
    with pytest.raises(ValueError, match="negative"):
        write_uvarint(bytearray(), -1)


def test_bad_values_fail_as_with_kio() -> None:
    module = SUPPORTED_APIS[0].response_module(9)
    response = module.PartitionProduceResponse(
        index=2**31,  # over int32
        error_code=ErrorCode.none,
        base_offset=0,
        log_append_time=datetime.datetime.now(datetime.UTC),
        log_start_offset=0,
        record_errors=(),
        error_message=None,
    )
    with pytest.raises(Exception) as kio_error:
        _kio_bytes(response)
    with pytest.raises(type(kio_error.value)):
        _ottla_bytes(response)
    topic = (
        SUPPORTED_APIS[0]
        .response_module(9)
        .TopicProduceResponse(
            name=None,
            partition_responses=(),
        )
    )
    with pytest.raises(TypeError):
        _ottla_bytes(topic)


def test_tagged_entity_at_its_implicit_default_is_left_out() -> None:
    # UpdateRaftVoter's current_leader has no declared default: kio leaves it out when
    # it equals the struct built from its fields' own defaults.
    cls = make_spec("update_raft_voter").response_type(0)
    field = next(f for f in dataclasses.fields(cls) if f.name == "current_leader")
    assert field.default is dataclasses.MISSING
    implicit = get_tagged_field_default(field)
    response = cls(
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        current_leader=implicit,
    )
    written = _ottla_bytes(response)
    assert written == _kio_bytes(response)
    assert written.endswith(b"\x00")  # the tag section is empty
    moved = dataclasses.replace(
        response, current_leader=dataclasses.replace(implicit, leader_epoch=4)
    )
    assert _ottla_bytes(moved) == _kio_bytes(moved)
    assert len(_ottla_bytes(moved)) > len(written)
