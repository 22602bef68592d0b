"""Record batches cross-check with real clients' batch builders and readers, every codec.

Proves: v2 batches built by aiokafka's and kafka-python's `DefaultRecordBatchBuilder`
with each codec (none, gzip, snappy, lz4, zstd), with headers, null keys and null
values (fixed cases and hypothesis-drawn records), pass `RecordBatchView.validate`
(length, CRC32C) and `decode_records` returns exactly the records appended, with the
header fields (counts, offsets, timestamps, producer state, codec) the builder wrote;
batches built by ottla's `build_batch` with each codec are read back exactly by
aiokafka's `DefaultRecordBatch` and kafka-python's `MemoryRecords`, CRC included;
ottla's control batches are control + transactional batches carrying the right
marker for both clients' readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.record.control_record import ABORT_MARKER, COMMIT_MARKER, ControlRecord
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder
from kafka.record.memory_records import MemoryRecords

from ottla.protocol import (
    Compression,
    ControlRecordType,
    Record,
    RecordBatchView,
    build_batch,
    build_control_batch,
    decode_control_record,
    decode_records,
    iter_batches,
)

BUILDERS: dict[str, Any] = {"aiokafka": AioBuilder, "kafka-python": KpBuilder}
CODECS = list(Compression)
BASE_TIMESTAMP = 1_700_000_000_000


@dataclass(frozen=True)
class Appended:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


FIXED = [
    Appended(b"key-1", b"value-1", ()),
    Appended(None, b"null key", (("h1", b"v1"), ("h2", None))),
    Appended(b"null value", None, ()),
    Appended(None, None, (("ключ-✓", b""),)),
    Appended(b"", b"", ()),
    # 100 KiB of compressible data: several xerial snappy blocks, a long varint length
    Appended(b"big", b"0123456789abcdef" * 6400, (("trace", b"x" * 300),)),
]


def _client_batch(client: str, codec: Compression, records: list[Appended]) -> bytes:
    builder = BUILDERS[client](
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=17,
        batch_size=1 << 24,
    )
    for index, record in enumerate(records):
        metadata = builder.append(
            index, BASE_TIMESTAMP + 3 * index, record.key, record.value, list(record.headers)
        )
        assert metadata is not None
    return bytes(builder.build())


def _check_ottla_reads(
    batch_bytes: bytes, codec: Compression, records: list[Appended], exact_codec: bool = True
) -> None:
    batches = list(iter_batches(batch_bytes))
    assert len(batches) == 1
    batch = batches[0]
    batch.validate()
    assert batch.size == len(batch_bytes)
    if exact_codec:
        assert batch.compression is codec
    else:
        # kafka-python leaves a batch uncompressed when compressing would not shrink it.
        assert batch.compression in (codec, Compression.NONE)
    assert batch.records_count == len(records)
    assert batch.last_offset_delta == len(records) - 1
    assert batch.base_timestamp == BASE_TIMESTAMP
    assert batch.max_timestamp == BASE_TIMESTAMP + 3 * (len(records) - 1)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4242, 3, 17)
    assert not batch.is_control
    assert not batch.is_transactional
    decoded = decode_records(batch)
    assert [(r.key, r.value, r.headers) for r in decoded] == [
        (r.key, r.value, r.headers) for r in records
    ]
    assert [r.offset_delta for r in decoded] == list(range(len(records)))
    assert [r.timestamp_delta for r in decoded] == [3 * i for i in range(len(records))]


@pytest.mark.parametrize("codec", CODECS, ids=[c.name for c in CODECS])
@pytest.mark.parametrize("client", BUILDERS)
def test_client_built_batch_reads_in_ottla(client: str, codec: Compression) -> None:
    batch_bytes = _client_batch(client, codec, FIXED)
    if codec is not Compression.NONE:
        assert len(batch_bytes) < 100 * 1024, "the codec did not compress"
    _check_ottla_reads(batch_bytes, codec, FIXED)


def test_a_flipped_bit_fails_the_crc() -> None:
    batch_bytes = bytearray(_client_batch("aiokafka", Compression.NONE, FIXED[:2]))
    batch_bytes[70] ^= 0x01
    with pytest.raises(Exception) as raised:
        RecordBatchView(batch_bytes).validate()
    assert "CRC" in str(raised.value)


_appended = st.builds(
    Appended,
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=200),
    headers=st.lists(
        st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=16)), max_size=3
    ).map(tuple),
)


@pytest.mark.parametrize("codec", CODECS, ids=[c.name for c in CODECS])
@pytest.mark.parametrize("client", BUILDERS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_appended, min_size=1, max_size=8))
def test_client_built_random_batches(
    client: str, codec: Compression, records: list[Appended]
) -> None:
    _check_ottla_reads(_client_batch(client, codec, records), codec, records, exact_codec=False)


# -- the other way: ottla builds, the clients read -------------------------------------


def _ottla_batch(codec: Compression, records: list[Appended]) -> bytes:
    return bytes(
        build_batch(
            [
                Record(key=r.key, value=r.value, headers=r.headers, timestamp_delta=5 * index)
                for index, r in enumerate(records)
            ],
            base_offset=1000,
            base_timestamp=BASE_TIMESTAMP,
            compression=codec,
            producer_id=77,
            producer_epoch=1,
            base_sequence=0,
        )
    )


@pytest.mark.parametrize("codec", CODECS, ids=[c.name for c in CODECS])
def test_aiokafka_reads_ottla_batches(codec: Compression) -> None:
    batch = AioBatch(_ottla_batch(codec, FIXED))
    assert batch.validate_crc()
    assert batch.base_offset == 1000
    assert batch.compression_type == int(codec)
    assert batch.next_offset == 1000 + len(FIXED)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (77, 1, 0)
    assert not batch.is_control_batch
    read = list(batch)
    assert [(r.key, r.value, tuple(r.headers)) for r in read] == [
        (r.key, r.value, r.headers) for r in FIXED
    ]
    assert [r.offset for r in read] == [1000 + i for i in range(len(FIXED))]
    assert [r.timestamp for r in read] == [BASE_TIMESTAMP + 5 * i for i in range(len(FIXED))]


@pytest.mark.parametrize("codec", CODECS, ids=[c.name for c in CODECS])
def test_kafka_python_reads_ottla_batches(codec: Compression) -> None:
    two = _ottla_batch(codec, FIXED) + _ottla_batch(codec, FIXED[:2])
    memory = MemoryRecords(two)
    batches = []
    while (batch := memory.next_batch()) is not None:
        batches.append(batch)
    assert len(batches) == 2
    first = batches[0]
    assert first.validate_crc()
    assert first.compression_type == int(codec)
    read = list(first)
    assert [(r.key, r.value, tuple(r.headers)) for r in read] == [
        (r.key, r.value, r.headers) for r in FIXED
    ]
    assert [r.offset for r in read] == [1000 + i for i in range(len(FIXED))]
    assert [r.timestamp for r in read] == [BASE_TIMESTAMP + 5 * i for i in range(len(FIXED))]


@pytest.mark.parametrize(
    ("control_type", "marker"),
    [(ControlRecordType.ABORT, ABORT_MARKER), (ControlRecordType.COMMIT, COMMIT_MARKER)],
)
def test_control_batches_read_by_clients(control_type: int, marker: ControlRecord) -> None:
    batch_bytes = bytes(
        build_control_batch(
            control_type,
            producer_id=9,
            producer_epoch=2,
            coordinator_epoch=5,
            timestamp_ms=BASE_TIMESTAMP,
            base_offset=50,
        )
    )
    view = RecordBatchView(batch_bytes)
    view.validate()
    assert view.is_control and view.is_transactional
    assert decode_control_record(decode_records(view)[0]) == (control_type, 5)

    aio = AioBatch(batch_bytes)
    assert aio.validate_crc()
    assert aio.is_control_batch and aio.is_transactional
    (aio_record,) = list(aio)
    assert ControlRecord.parse(aio_record.key) == marker

    kp = MemoryRecords(batch_bytes).next_batch()
    assert kp.validate_crc()
    assert kp.is_control_batch and kp.is_transactional
    (kp_record,) = list(kp)
    assert kp_record.type == control_type
    assert kp_record.commit is (control_type == ControlRecordType.COMMIT)
