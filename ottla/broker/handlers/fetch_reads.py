"""Reading a fetch's partitions and writing its Fetch v12+ answer: shared by the
generic handler (fetch.py) and a follower session's lane (fetch_lane.py).

Reads are zero-copy: each partition's records are a memoryview of its segment,
held under a read lease released once the response is handed to the transport
(`release_reads`). Following Kafka (KIP-74): each partition reads up to min(its
partition_max_bytes, what is left of the request's max_bytes); the first partition
with data returns at least one whole batch even if that exceeds both limits.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ottla.broker.fetch_sessions import FetchSession, SessionPartition
from ottla.protocol import EncodedBody, ErrorCode, write_fetch_response

if TYPE_CHECKING:
    from ottla.broker.broker import Broker

__all__ = ["Read", "answer_now", "encode_flexible", "read_all", "release_reads", "reported"]

_ZERO_UUID = uuid.UUID(int=0)
_UNKNOWN_EPOCH = (-1, -1)


@dataclass
class Read:
    topic: str
    topic_id: uuid.UUID
    index: int
    error_code: ErrorCode
    high_watermark: int = -1
    log_start_offset: int = -1
    records: Any = None
    lease: Any = None
    size: int = 0
    diverging: tuple[int, int] | None = None


def read_all(
    broker: Broker,
    fetch_set: dict[tuple[str, int], SessionPartition],
    max_bytes: int,
    incremental: bool,
    replica: int | None = None,
    again: bool = False,
    session: FetchSession | None = None,
) -> list[Read]:
    """Read every partition of the fetch. In an incremental session a partition with
    nothing new (no records, no error, the high watermark and log start the session
    last sent) is left out here already: a follower's session holds every partition
    it follows from this leader, and this runs for each of its fetches.

    A follower's fetch offset is its log end offset: it is recorded (and may move the
    high watermark or the ISR) when the request arrives, not `again` when a parked
    fetch reads once more (Kafka's DelayedFetch does not either)."""
    reads = []
    budget = max_bytes
    first = True
    now_ms = broker.monotonic_clock() if replica is not None and not again else 0
    topic_ids: dict[str, uuid.UUID] = {}

    def read_of(topic: str, index: int, code: ErrorCode, high: int = -1, start: int = -1) -> Read:
        topic_id = topic_ids.get(topic)
        if topic_id is None:
            image = broker.image.topic(topic)
            topic_id = topic_ids[topic] = image.topic_id if image else _ZERO_UUID
        read = Read(topic, topic_id, index, code, high, start)
        reads.append(read)
        return read

    for (topic, index), state in fetch_set.items():
        partition = broker.partition(topic, index)
        if partition is None:
            read_of(topic, index, broker.unhosted_error(topic, index))
            continue
        high_watermark = partition.high_watermark
        log_start = partition.log_start_offset
        leader_epoch = state.current_leader_epoch
        if leader_epoch >= 0 and leader_epoch != partition.leader_epoch:
            code = (
                ErrorCode.fenced_leader_epoch
                if leader_epoch < partition.leader_epoch
                else ErrorCode.unknown_leader_epoch
            )
            read_of(topic, index, code, high_watermark, log_start)
            continue
        offset = state.fetch_offset
        end = high_watermark
        if replica is not None:
            diverging = _diverging(partition, offset, state.last_fetched_epoch)
            if diverging == _UNKNOWN_EPOCH:
                # This log has no epoch to compare with (an empty leader-epoch cache):
                # Kafka answers OFFSET_OUT_OF_RANGE, and the follower resets its log
                # against this leader's offsets (ReplicaFetchers._out_of_range).
                read_of(topic, index, ErrorCode.offset_out_of_range, high_watermark, log_start)
                continue
            if diverging is not None:
                read_of(
                    topic, index, ErrorCode.none, high_watermark, log_start
                ).diverging = diverging
                continue
            log_end = partition.log_end_offset
            if not again and log_start <= offset <= log_end:
                partition.follower_fetched(replica, offset, now_ms)
                broker.isr.maybe_expand(partition, replica)
                high_watermark = partition.high_watermark
            end = log_end
        if offset < log_start or offset > partition.log_end_offset:
            read_of(topic, index, ErrorCode.offset_out_of_range, high_watermark, log_start)
            continue
        if offset >= end or (budget <= 0 and not first):
            if (
                incremental
                and state.high_watermark == high_watermark
                and state.log_start_offset == log_start
            ):
                if replica is not None and session is not None and offset >= end:
                    partition.mark_idle(session, replica)
                continue  # nothing new: not in this incremental response
            read_of(topic, index, ErrorCode.none, high_watermark, log_start)
            continue
        read = read_of(topic, index, ErrorCode.none, high_watermark, log_start)
        # Every partition, the first too, reads up to what is left of max_bytes; only
        # a first batch larger than that comes whole (min_one_batch, KIP-74).
        limit = min(state.max_bytes, budget)
        lease = partition.read(
            offset, max(limit, 0), min_one_batch=first, max_offset=None if replica is None else end
        )
        if lease is not None:
            read.lease = lease
            read.records = lease.records
            read.size = lease.records.nbytes
            budget -= read.size
            first = False
    return reads


def _diverging(
    partition: Any, fetch_offset: int, last_fetched_epoch: int
) -> tuple[int, int] | None:
    """(epoch, end offset) when a follower's log diverges from this leader's (KIP-320);
    `_UNKNOWN_EPOCH` when this log cannot tell (no leader epoch at all)."""
    if last_fetched_epoch < 0:
        return None
    epoch, end_offset = partition.log.epoch_cache.end_offset_for(
        last_fetched_epoch, partition.log_end_offset
    )
    if epoch < 0 or end_offset < 0:
        return _UNKNOWN_EPOCH
    if epoch < last_fetched_epoch or end_offset < fetch_offset:
        return int(epoch), int(end_offset)
    return None


def answer_now(reads: list[Read], min_bytes: int) -> bool:
    """The reads are worth answering without waiting any longer: min_bytes of records,
    or an error or a diverging epoch (Kafka completes a delayed fetch on either; a
    follower told to truncate should not wait out its max_wait first)."""
    return sum(r.size for r in reads) >= min_bytes or any(
        r.error_code is not ErrorCode.none or r.diverging is not None for r in reads
    )


def release_reads(reads: list[Read]) -> None:
    for read in reads:
        if read.lease is not None:
            read.records = None
            with contextlib.suppress(Exception):
                read.lease.release()
            read.lease = None


def reported(session: FetchSession | None, reads: list[Read], incremental: bool) -> list[Read]:
    """The reads the response lists, the session's view of each brought up to date: in
    an incremental session only those with news (records, an error, a diverging epoch,
    a high watermark or log start the client has not seen)."""
    if session is None:
        return reads
    partitions = session.partitions
    reported = []
    for read in reads:
        state = partitions.get((read.topic, read.index))
        if state is None:
            reported.append(read)
            continue
        changed = (
            read.size > 0
            or read.diverging is not None
            or read.error_code is not ErrorCode.none
            or state.high_watermark != read.high_watermark
            or state.log_start_offset != read.log_start_offset
        )
        state.high_watermark = read.high_watermark
        state.log_start_offset = read.log_start_offset
        if changed or not incremental:
            reported.append(read)
    return reported


def encode_flexible(
    version: int,
    session: FetchSession | None,
    reads: list[Read],
    unknown: list[tuple[Any, int, ErrorCode]],
    incremental: bool,
) -> EncodedBody:
    """The Fetch v12+ response body of `reads` (fetch_wire.py writes it)."""
    by_id = version >= 13
    topics: dict[Any, list[Any]] = {}
    for read in reported(session, reads, incremental):
        topics.setdefault(read.topic_id if by_id else read.topic, []).append(
            (
                read.index,
                read.error_code,
                read.high_watermark,
                read.high_watermark,
                read.log_start_offset,
                None if read.error_code is ErrorCode.none else (),
                read.records if read.records is not None else b"",
                read.diverging,
            )
        )
    for topic_id, index, code in unknown:
        topics.setdefault(topic_id, []).append((index, code, -1, -1, -1, None, b"", None))
    session_id = session.session_id if session is not None else 0
    return write_fetch_response(
        version,
        ErrorCode.none,
        session_id,
        [(None, key, parts) if by_id else (key, None, parts) for key, parts in topics.items()],
    )
