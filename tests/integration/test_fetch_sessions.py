"""Incremental fetch sessions (KIP-227) as a Java consumer uses them.

Over the raw wire (Fetch v12, two partitions): a full fetch with epoch 0 opens a
session; an incremental fetch carries only partitions whose fetch offset moved and is
answered only with partitions whose data, high watermark or log start changed; a wrong epoch is
INVALID_FETCH_SESSION_EPOCH and an unknown session id FETCH_SESSION_ID_NOT_FOUND;
forgotten partitions leave the session; a full fetch naming a session (epoch 0) closes
it and opens a new one; epoch -1 closes it.
"""

from __future__ import annotations

import datetime
from typing import Any

from ottla.protocol import ErrorCode, Record, build_batch
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, kio_module, metadata, produce_partition


def _fetch(
    wire: Wire,
    session_id: int,
    epoch: int,
    partitions: dict[int, int],
    forgotten: tuple[int, ...] = (),
) -> Any:
    module = kio_module(1, 12)
    topics = (
        (
            module.FetchTopic(
                topic="sessions",
                partitions=tuple(
                    module.FetchPartition(
                        partition=index,
                        current_leader_epoch=-1,
                        fetch_offset=offset,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    )
                    for index, offset in partitions.items()
                ),
            ),
        )
        if partitions
        else ()
    )
    body = module.FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=topics,
        forgotten_topics_data=(
            (module.ForgottenTopic(topic="sessions", partitions=forgotten),) if forgotten else ()
        ),
        rack_id="",
    )
    return wire.request(1, 12, body)


def _answered(response: Any) -> dict[int, int]:
    """partition -> high watermark of the partitions in a fetch response."""
    return {
        p.partition_index: int(p.high_watermark) for t in response.responses for p in t.partitions
    }


def test_incremental_fetch_session(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory("num.partitions=2")  # type: ignore[operator]
    batch = bytes(build_batch([Record(key=b"k", value=b"v")]))
    with Wire(broker.bootstrap) as wire:
        metadata(wire, ["sessions"])
        for index in (0, 1):
            assert produce_partition(wire, "sessions", index, batch).error_code == 0

        full = _fetch(wire, 0, 0, {0: 0, 1: 0})
        assert full.error_code == ErrorCode.none
        session_id = int(full.session_id)
        assert session_id > 0
        assert _answered(full) == {0: 1, 1: 1}

        # The client read offset 0 of both and moves on; nothing else changed: the
        # incremental fetch (carrying only the moved offsets) answers no partition.
        assert _answered(_fetch(wire, session_id, 1, {0: 1, 1: 1})) == {}

        # New data in partition 1 only: only it is answered.
        assert produce_partition(wire, "sessions", 1, batch).error_code == 0
        assert _answered(_fetch(wire, session_id, 2, {})) == {1: 2}

        wrong_epoch = _fetch(wire, session_id, 9, {})
        assert wrong_epoch.error_code == ErrorCode.invalid_fetch_session_epoch
        unknown = _fetch(wire, session_id + 1000, 1, {})
        assert unknown.error_code == ErrorCode.fetch_session_id_not_found

        # Forget partition 0; new data in it is no longer answered.
        assert _answered(_fetch(wire, session_id, 3, {1: 2}, forgotten=(0,))) == {}
        assert produce_partition(wire, "sessions", 0, batch).error_code == 0
        assert _answered(_fetch(wire, session_id, 4, {})) == {}

        # A full fetch naming the session (epoch 0, as a follower after an error)
        # closes it and opens a new one.
        reopened = _fetch(wire, session_id, 0, {0: 0, 1: 0})
        assert reopened.error_code == ErrorCode.none
        assert _answered(reopened) == {0: 2, 1: 2}
        assert int(reopened.session_id) not in (0, session_id)
        assert _fetch(wire, session_id, 5, {}).error_code == ErrorCode.fetch_session_id_not_found
        session_id = int(reopened.session_id)
        assert _answered(_fetch(wire, session_id, 1, {0: 2, 1: 2})) == {}

        # Epoch -1 closes the session: a later incremental fetch finds none.
        closed = _fetch(wire, session_id, -1, {0: 0})
        assert closed.error_code == ErrorCode.none
        assert int(closed.session_id) == 0
        assert _fetch(wire, session_id, 5, {}).error_code == ErrorCode.fetch_session_id_not_found
