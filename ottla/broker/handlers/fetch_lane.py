"""The leader's lane for one follower's fetch session: the steady state of replication
served without the generic request path.

Every acks=all record costs its leader two follower Fetch requests read and two
Fetch responses written, and both sit on the record's latency (the produce is
answered inside the second follower's fetch). Through the generic path each request
is decoded into a header and a body object, handled, parked on a `Deferred` with a
timer of its own, and its response framed through `encode_response`: about 130
Python calls a request, the largest share of a leader's CPU per replicated record.

A follower opens its session with a full fetch (the generic path, fetch.py), which
sets a `FetchLane` on the connection. From then on the connection offers each
frame to the lane first (server.py, only while no earlier response is pending, so
the order of answers holds). The lane takes the frame only if it is the next
incremental fetch of that session in the shape the replica fetcher sends (the
session's version, id and epoch, this follower's replica id, no forgotten
partitions, no tagged fields but the replica state and cluster id, every topic id
known); anything else goes to the generic path, untouched. It reads the frame in
place with `struct`, merges the listed partitions into the session, and reads and
answers through fetch_reads.py's `read_all` and `encode_flexible`, so the follower's fetch
offset moves the high watermark (and answers the waiting produce) exactly as there.
A fetch with nothing to send parks on the lane itself: the same waiter callback
each time, and one timer re-armed lazily (a fetch answered early leaves the timer
to fire once and find a later deadline), not a `Deferred` and a timer per request.

What the lane answers is byte for byte what the generic path answers (the tests
compare them); what it declines, the generic path serves as before.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.fetch_sessions import FetchSession, SessionPartition, next_epoch
from ottla.broker.handlers.fetch_reads import (
    answer_now,
    encode_flexible,
    read_all,
    release_reads,
)
from ottla.protocol import frame_encoded

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.partitions import Partition
    from ottla.broker.server import Connection

__all__ = ["FetchLane"]

log = structlog.get_logger("ottla.fetch_lane")

_FETCH_KEY = 1
_HEADER = struct.Struct(">hhih")  # api key, version, correlation id, client id length
_BODY_FIXED = struct.Struct(">iiibii")  # max wait, min/max bytes, isolation, session
_PARTITION = struct.Struct(">iiqiqi")
_REPLICA_STATE = struct.Struct(">iq")
_UUID_SIZE = 16
_RESPONSE_HEADER_VERSION = 1  # Fetch v12+ responses are flexible
_NOT_READ = (IndexError, ValueError, struct.error)

# (topic name, partition index, current leader epoch, fetch offset, last fetched
#  epoch, partition max bytes)
_Listed = tuple[str, int, int, int, int, int]


class FetchLane:
    """One follower's fetch session on one connection, served lean (module docstring)."""

    __slots__ = (
        "_correlation_id",
        "_deadline",
        "_expired",
        "_max_bytes",
        "_min_bytes",
        "_parked_on",
        "_slot",
        "_timer",
        "_timer_deadline",
        "_topic_ids",
        "_wake_callback",
        "broker",
        "connection",
        "replica_id",
        "session",
        "version",
    )

    def __init__(
        self,
        broker: Broker,
        connection: Connection,
        session: FetchSession,
        replica_id: int,
        version: int,
    ) -> None:
        self.broker = broker
        self.connection = connection
        self.session = session
        self.replica_id = replica_id
        self.version = version
        self._topic_ids: dict[bytes, uuid.UUID] = {}
        self._wake_callback = self._wake  # one bound method: waiter lists compare it
        self._slot: Any = None  # the parked fetch's place in the connection's order
        self._correlation_id = 0
        self._max_bytes = 0
        self._min_bytes = 0
        self._deadline = 0.0
        self._expired = False
        self._parked_on: list[Partition] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0

    # -- a request in ----------------------------------------------------------------------

    def offer(self, frame: bytes | bytearray) -> bool:
        """Serve `frame` if it is this session's next fetch in the usual shape (True);
        False, with nothing changed, leaves it to the generic path."""
        if self.session.closed or self._slot is not None:
            return False
        try:
            parsed = self._parse(frame)
        except _NOT_READ:
            return False  # malformed: the generic path says how
        if parsed is None:
            return False
        correlation_id, max_wait_ms, min_bytes, max_bytes, listed = parsed
        connection = self.connection
        slot = connection.new_slot(len(frame), _FETCH_KEY)
        try:
            self._serve(slot, correlation_id, max_wait_ms, min_bytes, max_bytes, listed)
        except Exception as error:  # a handler bug: drop the connection, as server.py does
            log.error("fetch_lane_failed", peer=connection.peer, error=repr(error), exc_info=error)
            self.close()
            connection.abort("handler_failed", error)
        return True

    def _parse(self, frame: bytes | bytearray) -> tuple[int, int, int, int, list[_Listed]] | None:
        api_key, version, correlation_id, client_id_size = _HEADER.unpack_from(frame, 0)
        if api_key != _FETCH_KEY or version != self.version:
            return None
        o = _HEADER.size + max(client_id_size, 0)
        if frame[o] != 0:  # header tagged fields
            return None
        o += 1
        max_wait_ms, min_bytes, max_bytes, _, session_id, epoch = _BODY_FIXED.unpack_from(frame, o)
        session = self.session
        if session_id != session.session_id or epoch != session.epoch:
            return None
        o += _BODY_FIXED.size
        topics = frame[o] - 1
        o += 1
        if not 0 <= topics < 0x7F:
            return None
        by_id = self.broker.image.topics_by_id
        listed: list[_Listed] = []
        for _ in range(topics):
            key = bytes(frame[o : o + _UUID_SIZE])
            o += _UUID_SIZE
            topic_id = self._topic_ids.get(key)
            if topic_id is None:
                topic_id = self._topic_ids[key] = uuid.UUID(bytes=key)
            topic = by_id.get(topic_id)
            if topic is None:
                return None  # answered UNKNOWN_TOPIC_ID there
            partitions = frame[o] - 1
            o += 1
            if not 0 <= partitions < 0x7F:
                return None
            for _ in range(partitions):
                index, leader_epoch, offset, fetched_epoch, _, partition_max = (
                    _PARTITION.unpack_from(frame, o)
                )
                o += _PARTITION.size
                if frame[o] != 0:  # a partition's tagged fields (v17+)
                    return None
                o += 1
                listed.append(
                    (topic.name, index, leader_epoch, offset, fetched_epoch, partition_max)
                )
            if frame[o] != 0:
                return None
            o += 1
        if frame[o] != 1:  # forgotten partitions: the generic path handles them
            return None
        rack_id = frame[o + 1]
        if rack_id >= 0x80:
            return None
        o += 2 + max(rack_id - 1, 0)
        tags = frame[o]
        o += 1
        replica_id = -1
        for _ in range(tags):
            tag, size = frame[o], frame[o + 1]
            if tag > 1 or size >= 0x80:
                return None
            o += 2
            if tag == 1:
                replica_id, _ = _REPLICA_STATE.unpack_from(frame, o)
            o += size
        if replica_id != self.replica_id or o > len(frame):
            return None
        return correlation_id, max_wait_ms, min_bytes, max_bytes, listed

    def _serve(
        self,
        slot: Any,
        correlation_id: int,
        max_wait_ms: int,
        min_bytes: int,
        max_bytes: int,
        listed: list[_Listed],
    ) -> None:
        """handle_fetch's incremental follower fetch (fetch.py), from the merge on."""
        session = self.session
        partitions = session.partitions
        for name, index, leader_epoch, offset, fetched_epoch, partition_max in listed:
            key = (name, index)
            state = SessionPartition(offset, partition_max, leader_epoch, fetched_epoch)
            previous = partitions.get(key)
            if previous is not None:
                state.high_watermark = previous.high_watermark
                state.log_start_offset = previous.log_start_offset
            session.put(key, state)
        session.epoch = next_epoch(session.epoch)
        session.clock.last_fetch_ms = self.broker.monotonic_clock()
        self._correlation_id = correlation_id
        self._max_bytes = max_bytes
        self._min_bytes = min_bytes
        reads = read_all(
            self.broker, session.visit(), max_bytes, True, self.replica_id, session=session
        )
        if answer_now(reads, min_bytes) or max_wait_ms <= 0 or not session.partitions:
            self._answer(slot, reads)
            return
        release_reads(reads)
        self._slot = slot
        self._expired = False
        self._park(max_wait_ms)

    # -- parked ------------------------------------------------------------------------------

    def _park(self, max_wait_ms: int | None = None) -> None:
        broker = self.broker
        parked = []
        for topic, index in self.session.active:
            partition = broker.partition(topic, index)
            if partition is not None:
                partition.add_waiter(self._wake_callback, True)
                parked.append(partition)
        self._parked_on = parked
        self.session.waker = self._wake_callback  # an idle partition's change wakes it too
        if max_wait_ms is None:
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + max_wait_ms / 1000
        if self._timer is not None and self._deadline < self._timer_deadline:
            self._timer.cancel()  # a shorter max_wait than the timer's fetch had
            self._timer = None
        if self._timer is None:
            self._timer_deadline = self._deadline
            self._timer = loop.call_at(self._deadline, self._timer_fired)

    def _unpark(self) -> None:
        callback = self._wake_callback
        for partition in self._parked_on:
            partition.remove_waiter(callback)
        self._parked_on = []
        if self.session.waker == callback:
            self.session.waker = None

    def _timer_fired(self) -> None:
        self._timer = None
        if self._slot is None:
            return
        if self._deadline > self._timer_deadline:  # armed for an earlier fetch
            self._timer_deadline = self._deadline
            self._timer = asyncio.get_running_loop().call_at(self._deadline, self._timer_fired)
            return
        self._expired = True
        self._wake()

    def _wake(self) -> None:
        """Data arrived on a fetched partition (or max_wait passed): read again."""
        slot = self._slot
        if slot is None:
            return
        try:
            self._unpark()
            broker = self.broker
            session = self.session
            reads = read_all(
                broker,
                session.visit(),
                self._max_bytes,
                True,
                self.replica_id,
                again=True,
                session=session,
            )
            if not (answer_now(reads, self._min_bytes) or self._expired or broker.stopping):
                release_reads(reads)
                self._park()
                return
            self._slot = None
            self._answer(slot, reads)
        except Exception as error:  # answered as a handler failure, never left hanging
            log.error(
                "fetch_lane_failed", peer=self.connection.peer, error=repr(error), exc_info=error
            )
            self.close()
            self.connection.abort("handler_failed", error)

    # -- the response out ------------------------------------------------------------------------

    def _answer(self, slot: Any, reads: list[Any]) -> None:
        try:
            body = encode_flexible(self.version, self.session, reads, [], True)
            chunks = frame_encoded(self._correlation_id, _RESPONSE_HEADER_VERSION, body)
        except Exception:
            release_reads(reads)
            raise
        if any(r.lease is not None for r in reads):
            slot.after_send = lambda: release_reads(reads)
        self.connection.complete(slot, chunks)

    def close(self) -> None:
        """The connection closed (or failed): stop waiting; its slots are dropped there."""
        self._slot = None
        self._unpark()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
