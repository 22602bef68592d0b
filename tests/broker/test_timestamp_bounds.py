"""message.timestamp.before.max.ms / after.max.ms at the partition (Kafka's LogValidator).

Proves: with both at Kafka's default (Long.MAX, as a topic's effective configs list
them) no batch is decoded for the check, so the produce path keeps its cost (it was
decoding every batch, 4x the broker CPU for 100 B records); a bound that is set refuses
a batch with a record outside [now - before, now + after] with INVALID_TIMESTAMP,
listing every such record by index (KIP-467), and accepts one inside; a changed config
takes effect.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from ottla.broker import partitions
from ottla.broker.partitions import ReplicaManager
from ottla.protocol import ErrorCode, Record, build_batch
from ottla.storage import LogConfig

LONG_MAX = str(2**63 - 1)
DEFAULTS = {
    "message.timestamp.before.max.ms": LONG_MAX,
    "message.timestamp.after.max.ms": LONG_MAX,
}
NOW_MS = 1_700_000_000_000


def _batch(timestamp: int) -> bytes:
    return bytes(build_batch([Record(key=b"k", value=b"v")], base_timestamp=timestamp))


async def test_default_bounds_never_decode_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(batch: Any) -> Any:
        raise AssertionError("records decoded for an unbounded topic")

    monkeypatch.setattr(partitions, "decode_records", no_decoding)
    replicas = ReplicaManager(tmp_path)
    partition = replicas.open_partition("t", 0, uuid.uuid4(), LogConfig(), dict(DEFAULTS), 0, 0)
    outcome = partition.append_records(_batch(1), NOW_MS)  # 1970: no bound to break
    assert outcome.error_code is ErrorCode.none
    replicas.close()


async def test_a_set_bound_refuses_records_outside_it(tmp_path: Path) -> None:
    replicas = ReplicaManager(tmp_path)
    configs = {**DEFAULTS, "message.timestamp.before.max.ms": "3600000"}
    partition = replicas.open_partition("t", 0, uuid.uuid4(), LogConfig(), configs, 0, 0)
    refused = partition.append_records(_batch(NOW_MS - 3_600_001), NOW_MS)
    assert refused.error_code is ErrorCode.invalid_timestamp
    assert partition.append_records(_batch(NOW_MS - 3_600_000), NOW_MS).error_code is (
        ErrorCode.none
    )
    # The bound lifted (new effective configs): the old record is accepted.
    replicas.open_partition("t", 0, partition.topic_id, LogConfig(), dict(DEFAULTS), 0, 0)
    assert partition.append_records(_batch(1), NOW_MS).error_code is ErrorCode.none
    replicas.close()


async def test_every_record_out_of_bounds_is_listed(tmp_path: Path) -> None:
    # Kafka's LogValidator checks every record and lists each failure (KIP-467): index
    # in the batch and why; the batch is refused whole and nothing is appended.
    replicas = ReplicaManager(tmp_path)
    configs = {**DEFAULTS, "message.timestamp.after.max.ms": "1000"}
    partition = replicas.open_partition("t", 0, uuid.uuid4(), LogConfig(), configs, 0, 0)
    batch = bytes(
        build_batch(
            [
                Record(key=b"k", value=b"ok", timestamp_delta=0),
                Record(key=b"k", value=b"late", timestamp_delta=5000),
                Record(key=b"k", value=b"ok", timestamp_delta=1000),
                Record(key=b"k", value=b"later", timestamp_delta=9000),
            ],
            base_timestamp=NOW_MS,
        )
    )
    refused = partition.append_records(batch, NOW_MS)
    assert refused.error_code is ErrorCode.invalid_timestamp
    assert (
        refused.error_message == "One or more records have been rejected due to invalid timestamp"
    )
    window = f"[{NOW_MS - 2**63 + 1}, {NOW_MS + 1000}]"
    assert refused.record_errors == (
        (
            1,
            f"Timestamp {NOW_MS + 5000} of message with offset 1 is out of range. "
            f"The timestamp should be within {window}",
        ),
        (
            3,
            f"Timestamp {NOW_MS + 9000} of message with offset 3 is out of range. "
            f"The timestamp should be within {window}",
        ),
    )
    assert partition.log_end_offset == 0
    replicas.close()
