"""The client side of incremental fetch sessions (KIP-227), as Kafka's FetchSessionHandler.

Proves, by feeding `FetchSessionHandler` plans and answers (no I/O): the first request
is full (session 0, epoch 0) and lists every wanted partition; once the broker answers
with a session id, requests are incremental (that id, epochs 1, 2, ...) and list only
partitions whose fetch state changed, plus forgotten ones no longer wanted;
FETCH_SESSION_ID_NOT_FOUND restarts from (0, 0), INVALID_FETCH_SESSION_EPOCH and a
failed request close the session with a full fetch naming it (id, 0); an answer
without a session id (no slot) keeps every request full; a failed incremental request
does not commit its partition state; a partition answered with an error is forgotten
while not wanted and listed again when it is; epochs wrap from 2**31-1 to 1 (broker
side too).
"""

from __future__ import annotations

import uuid

from ottla.broker.fetch_sessions import (
    FetchSessionCache,
    FetchSessionHandler,
    PartitionFetch,
    next_epoch,
)
from ottla.protocol import ErrorCode

TOPIC_ID = uuid.UUID(int=7)
A = ("t", 0)
B = ("t", 1)


def _fetch(offset: int, leader_epoch: int = 3) -> PartitionFetch:
    return PartitionFetch(TOPIC_ID, offset, leader_epoch, 3, 0, 1 << 20)


def _opened(handler: FetchSessionHandler, wanted: dict[tuple[str, int], PartitionFetch]) -> None:
    plan = handler.build(wanted)
    assert (plan.session_id, plan.session_epoch, plan.full) == (0, 0, True)
    assert handler.handle_response(ErrorCode.none, 42)


def test_full_then_incremental_with_only_changes() -> None:
    handler = FetchSessionHandler()
    plan = handler.build({A: _fetch(0), B: _fetch(5)})
    assert (plan.session_id, plan.session_epoch) == (0, 0)
    assert plan.partitions == {A: _fetch(0), B: _fetch(5)}
    assert plan.forgotten == {}
    assert handler.handle_response(ErrorCode.none, 42)

    # Nothing changed: an incremental fetch listing no partition.
    plan = handler.build({A: _fetch(0), B: _fetch(5)})
    assert (plan.session_id, plan.session_epoch, plan.full) == (42, 1, False)
    assert plan.partitions == {}
    assert handler.handle_response(ErrorCode.none, 42)

    # A's offset moved, B's leader epoch changed: both listed, with epoch 2.
    plan = handler.build({A: _fetch(9), B: _fetch(5, leader_epoch=4)})
    assert (plan.session_id, plan.session_epoch) == (42, 2)
    assert plan.partitions == {A: _fetch(9), B: _fetch(5, leader_epoch=4)}
    assert handler.handle_response(ErrorCode.none, 42)

    # B is no longer wanted: forgotten (with its topic id), A unchanged.
    plan = handler.build({A: _fetch(9)})
    assert (plan.session_epoch, plan.partitions, plan.forgotten) == (3, {}, {B: TOPIC_ID})
    assert handler.handle_response(ErrorCode.none, 42)
    # ... and B coming back is listed again.
    plan = handler.build({A: _fetch(9), B: _fetch(5)})
    assert (plan.session_epoch, plan.partitions, plan.forgotten) == (4, {B: _fetch(5)}, {})


def test_session_id_not_found_restarts_from_scratch() -> None:
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0)})
    handler.build({A: _fetch(1)})
    assert not handler.handle_response(ErrorCode.fetch_session_id_not_found, 0)
    plan = handler.build({A: _fetch(1)})
    assert (plan.session_id, plan.session_epoch, plan.partitions) == (0, 0, {A: _fetch(1)})


def test_invalid_epoch_closes_the_session_with_a_full_fetch() -> None:
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0), B: _fetch(0)})
    handler.build({A: _fetch(1), B: _fetch(0)})
    assert not handler.handle_response(ErrorCode.invalid_fetch_session_epoch, 0)
    plan = handler.build({A: _fetch(1), B: _fetch(0)})
    assert (plan.session_id, plan.session_epoch) == (42, 0)
    assert plan.partitions == {A: _fetch(1), B: _fetch(0)}
    assert handler.handle_response(ErrorCode.none, 43)
    assert handler.build({A: _fetch(1), B: _fetch(0)}).session_id == 43


def test_failed_request_does_not_commit_its_state() -> None:
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0)})
    plan = handler.build({A: _fetch(1)})
    assert plan.partitions == {A: _fetch(1)}
    handler.handle_error()  # connection lost: the broker may never have seen it
    plan = handler.build({A: _fetch(1)})
    assert (plan.session_id, plan.session_epoch, plan.partitions) == (42, 0, {A: _fetch(1)})


def test_no_session_slot_keeps_fetches_full() -> None:
    handler = FetchSessionHandler()
    for _ in range(3):
        plan = handler.build({A: _fetch(0)})
        assert (plan.session_id, plan.session_epoch, plan.partitions) == (0, 0, {A: _fetch(0)})
        assert handler.handle_response(ErrorCode.none, 0)


def test_broker_closing_the_session_makes_the_next_fetch_full() -> None:
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0)})
    handler.build({A: _fetch(0)})
    assert handler.handle_response(ErrorCode.none, 0)
    plan = handler.build({A: _fetch(0)})
    assert (plan.session_id, plan.session_epoch, plan.partitions) == (0, 0, {A: _fetch(0)})


def test_epochs_wrap_to_one() -> None:
    assert next_epoch(1) == 2
    assert next_epoch(2**31 - 1) == 1
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0)})
    handler.epoch = 2**31 - 1
    assert handler.build({A: _fetch(0)}).session_epoch == 2**31 - 1
    assert handler.handle_response(ErrorCode.none, 42)
    assert handler.build({A: _fetch(0)}).session_epoch == 1


def test_cache_never_hands_out_session_id_zero_or_a_live_id() -> None:
    cache = FetchSessionCache(slots=3)
    first = cache.new_session("owner")
    assert first is not None and first.session_id != 0
    cache._ids = iter([first.session_id, 0, 2**31, 5])  # type: ignore[assignment]
    second = cache.new_session("owner")
    assert second is not None and second.session_id == 5


def test_failed_partition_is_forgotten_then_listed_again() -> None:
    """A partition answered with an error (say an unknown topic id, which the broker
    leaves out of its session) is forgotten while the fetcher backs off from it, and
    listed in full when wanted again although its fetch state did not change."""
    handler = FetchSessionHandler()
    _opened(handler, {A: _fetch(0), B: _fetch(0)})
    handler.partition_failed(B)
    plan = handler.build({A: _fetch(0)})  # B backs off
    assert (plan.partitions, plan.forgotten) == ({}, {B: TOPIC_ID})
    assert handler.handle_response(ErrorCode.none, 42)
    plan = handler.build({A: _fetch(0), B: _fetch(0)})
    assert plan.partitions == {B: _fetch(0)}
    assert handler.handle_response(ErrorCode.none, 42)
    # Failed again, and wanted again at once (no request in between): still listed.
    handler.partition_failed(B)
    assert handler.build({A: _fetch(0), B: _fetch(0)}).partitions == {B: _fetch(0)}
