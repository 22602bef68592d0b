"""Idempotent producer state follows Kafka's sequence rules.

Proves: in-sequence batches are accepted; a retried batch among the last five is
a duplicate carrying the original offsets; a gap is OUT_OF_ORDER_SEQUENCE_NUMBER;
an older epoch is INVALID_PRODUCER_EPOCH; a new epoch must restart at sequence 0;
unknown producers are accepted at any sequence (KIP-360); sequences wrap at
2**31-1; snapshots round-trip; idle producers expire.
"""

from __future__ import annotations

from ottla.broker.producer_state import ProducerStateManager
from ottla.protocol import ErrorCode, Record, RecordBatchView, build_batch


def _batch(epoch: int, sequence: int, count: int = 1, producer_id: int = 7) -> RecordBatchView:
    return RecordBatchView(
        build_batch(
            [Record(key=None, value=b"x") for _ in range(count)],
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
            base_timestamp=1000,
        )
    )


def _append(state: ProducerStateManager, batch: RecordBatchView, offset: int) -> None:
    assert state.check(batch).error_code is ErrorCode.none
    state.record(batch, offset)


def test_in_sequence_duplicate_and_gap() -> None:
    state = ProducerStateManager()
    _append(state, _batch(0, 0, 3), 100)
    _append(state, _batch(0, 3, 2), 103)
    duplicate = state.check(_batch(0, 0, 3))
    assert duplicate.duplicate is not None
    assert (duplicate.duplicate.first_offset, duplicate.duplicate.last_offset) == (100, 102)
    gap = state.check(_batch(0, 9))
    assert gap.error_code is ErrorCode.out_of_order_sequence_number


def test_only_the_last_five_batches_are_remembered() -> None:
    state = ProducerStateManager()
    for sequence in range(6):
        _append(state, _batch(0, sequence), sequence)
    assert state.check(_batch(0, 0)).duplicate is None
    assert state.check(_batch(0, 1)).duplicate is not None


def test_epochs() -> None:
    state = ProducerStateManager()
    _append(state, _batch(1, 0), 0)
    assert state.check(_batch(0, 1)).error_code is ErrorCode.invalid_producer_epoch
    assert state.check(_batch(2, 5)).error_code is ErrorCode.out_of_order_sequence_number
    _append(state, _batch(2, 0), 1)


def test_unknown_producer_accepted_at_any_sequence() -> None:
    assert ProducerStateManager().check(_batch(0, 42)).error_code is ErrorCode.none


def test_sequence_wraps() -> None:
    state = ProducerStateManager()
    _append(state, _batch(0, 2**31 - 1), 0)
    assert state.check(_batch(0, 0)).error_code is ErrorCode.none


def test_snapshot_round_trip_and_expiry() -> None:
    state = ProducerStateManager()
    _append(state, _batch(0, 0, 2), 10)
    copy = ProducerStateManager()
    copy.restore(state.snapshot())
    assert copy.check(_batch(0, 0, 2)).duplicate is not None
    assert copy.expire(now_ms=1000 + 10, expiration_ms=100) == 0
    assert copy.expire(now_ms=1000 + 101, expiration_ms=100) == 1
    assert copy.producers == {}


def test_batches_without_producer_id_are_not_tracked() -> None:
    state = ProducerStateManager()
    batch = RecordBatchView(build_batch([Record(key=None, value=b"x")]))
    assert state.check(batch).error_code is ErrorCode.none
    state.record(batch, 0)
    assert state.producers == {}
