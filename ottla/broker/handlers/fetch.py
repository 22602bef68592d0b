"""Fetch v4-v18: reads, long polls and incremental fetch sessions.

Version notes: v7+ fetch sessions (KIP-227, see fetch_sessions.py); v9+
current_leader_epoch fencing; v11+ rack_id (ignored: no follower fetching from
replicas here); v12+ flexible, diverging epochs; v13+ topics by id; v15+
replica_state replaces replica_id. Consumers (replica id -1) read up to the high
watermark. A follower's fetch (replica id >= 0, issue 7) is served up to the log end
offset; its fetch offset is the follower's log end offset for the leader's
replication state (which may move the high watermark, waking acks=all produces and
consumers, and may propose the follower joins the ISR); with a last_fetched_epoch
(v12+) whose end on the leader is below the fetch offset (or an epoch the leader does
not have, older ones ending where the leader's first epoch starts) it gets
`diverging_epoch` (KIP-320) and no records, and truncates; a leader with no epoch at
all answers OFFSET_OUT_OF_RANGE, as Kafka does.
Isolation level read_committed is served as read_uncommitted until
the transactions issue (no aborted transactions exist yet).

v12+ requests arrive read by fetch_wire.py (plain objects with kio's field names)
and are answered with bytes written there, not with kio entities: this handler runs
for every replicated record, twice (see fetch_wire.py for what that saved). A
follower's session, once opened here, is served by its connection's lane
(fetch_lane.py) for the incremental fetches of the usual shape; the partitions are
read and the v12+ answer written by fetch_reads.py for both.

Long poll: when fewer than min_bytes are ready, the request waits on the
partitions' "data arrived" callbacks or max_wait, whichever first, then reads again;
a waiting fetch is answered as soon as data arrives (no polling, no task: see
`_DelayedFetch`). As in Kafka, a fetch is answered without waiting when it has
nothing to wait on (no partition) or a partition's read is an error or a diverging
epoch. At most `DELAYED_FETCHES_MAX` fetches wait at once; beyond that they are
answered at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ottla.broker.fetch_sessions import FetchSession, SessionPartition, next_epoch
from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.broker.handlers.fetch_lane import FetchLane
from ottla.broker.handlers.fetch_reads import (
    Read,
    answer_now,
    encode_flexible,
    read_all,
    release_reads,
    reported,
)
from ottla.broker.server import AfterSend, Deferred
from ottla.protocol import (
    FETCH_FLEXIBLE_MIN,
    DecodedRequest,
    ErrorCode,
    FetchRequestBody,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_fetch"]

DELAYED_FETCHES_MAX = 10_000
_delayed = 0


def handle_fetch(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    body = request.body
    response_cls = response_type(request)
    by_id = request.api_version >= 13
    session_id = int(getattr(body, "session_id", 0))
    epoch = int(getattr(body, "session_epoch", -1))
    session: FetchSession | None = None
    incremental = False
    if session_id == 0 and epoch not in (-1, 0):
        return _error(response_cls, ErrorCode.invalid_fetch_session_epoch)
    if session_id != 0 and epoch in (-1, 0):
        # A full fetch closes the session it names (epoch 0 then opens a new one).
        broker.fetch_sessions.remove(session_id)
        session_id = 0
    fetch_set: dict[tuple[str, int], SessionPartition] = {}
    unknown: list[tuple[Any, int, ErrorCode]] = []
    replica_id = _replica_id(body)
    for topic in body.topics:
        name = _topic_name(broker, topic, by_id)
        for partition in topic.partitions:
            state = SessionPartition(
                int(partition.fetch_offset),
                int(partition.partition_max_bytes),
                int(getattr(partition, "current_leader_epoch", -1)),
                int(getattr(partition, "last_fetched_epoch", -1)),
            )
            if name is None:
                unknown.append(
                    (topic.topic_id, int(partition.partition), ErrorCode.unknown_topic_id)
                )
                continue
            fetch_set[(name, int(partition.partition))] = state
    if session_id != 0:
        session, error = broker.fetch_sessions.lookup(session_id, epoch)
        if session is None:
            return _error(response_cls, error)
        incremental = True
        for key, state in fetch_set.items():
            previous = session.partitions.get(key)
            if previous is not None:
                state.high_watermark = previous.high_watermark
                state.log_start_offset = previous.log_start_offset
            session.put(key, state)
        for forgotten in getattr(body, "forgotten_topics_data", ()):
            name = _topic_name(broker, forgotten, by_id)
            for index in forgotten.partitions:
                if name is not None:
                    session.forget((name, int(index)))
                    hosted = broker.replicas.get(name, int(index))
                    if hosted is not None:
                        # No longer fetched here: its fetches stop counting for it.
                        hosted.session_forgot(session)
        session.epoch = next_epoch(session.epoch)
        fetch_set = session.partitions
    elif epoch == 0 and request.api_version >= 7:
        session = broker.fetch_sessions.new_session(connection)
        if session is not None:
            session.set_partitions(fetch_set)
            if replica_id >= 0 and request.api_version >= FETCH_FLEXIBLE_MIN:
                # The session's next fetches take the lane (fetch_lane.py). A lane
                # it replaces answers a fetch it may still have parked, then is gone.
                connection.lane = FetchLane(
                    broker, connection, session, replica_id, request.api_version
                )
    max_wait_ms = max(0, _max_wait_ms(body))
    min_bytes = int(body.min_bytes)
    max_bytes = int(getattr(body, "max_bytes", 2**31 - 1))
    replica = replica_id if replica_id >= 0 else None
    if replica is not None and session is not None:
        # A follower's session: its idle partitions are neither read nor parked on
        # (fetch_sessions.py); this fetch counts as a fetch of each of them.
        session.clock.last_fetch_ms = broker.monotonic_clock()
        fetch_set = session.visit()
    reads = read_all(broker, fetch_set, max_bytes, incremental, replica, session=session)
    # Nothing to wait on (no partition left in the fetch, e.g. all forgotten): answer
    # now, as Kafka does for an empty fetch.
    empty = not (session.partitions if session is not None else fetch_set)
    if (
        answer_now(reads, min_bytes)
        or max_wait_ms == 0
        or empty
        or unknown
        or _delayed >= DELAYED_FETCHES_MAX
    ):
        return _respond(request, session, reads, unknown, incremental)
    release_reads(reads)
    return _DelayedFetch(
        broker, request, session, fetch_set, unknown, incremental, max_bytes, min_bytes, replica
    ).wait(max_wait_ms)


def _max_wait_ms(body: Any) -> int:
    """max_wait in ms: a field of fetch_wire's body (v12+), a timedelta in kio's."""
    if isinstance(body, FetchRequestBody):
        return body.max_wait_ms
    return int(body.max_wait.total_seconds() * 1000)


def _replica_id(body: Any) -> int:
    state = getattr(body, "replica_state", None)
    if state is not None:
        return int(state.replica_id)
    return int(getattr(body, "replica_id", -1))


class _DelayedFetch:
    """A fetch waiting for `min_bytes` (Kafka's DelayedFetch), driven by callbacks: a
    fetched partition's append or high-watermark move calls `_wake`, which reads
    again and answers when enough is ready (or at max_wait, or when the broker
    stops). No task and no future: the answer leaves from inside the append that
    brought the data, so a follower gets an acks=all produce's batch in the same
    event-loop turn as the produce."""

    __slots__ = (
        "active",
        "broker",
        "deferred",
        "expired",
        "fetch_set",
        "incremental",
        "max_bytes",
        "min_bytes",
        "parked",
        "replica",
        "request",
        "session",
        "timer",
        "unknown",
    )

    def __init__(
        self,
        broker: Broker,
        request: DecodedRequest,
        session: FetchSession | None,
        fetch_set: dict[tuple[str, int], SessionPartition],
        unknown: list[tuple[Any, int, ErrorCode]],
        incremental: bool,
        max_bytes: int,
        min_bytes: int,
        replica: int | None,
    ) -> None:
        self.broker = broker
        self.request = request
        self.session = session
        self.fetch_set = fetch_set
        self.unknown = unknown
        self.incremental = incremental
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self.replica = replica
        self.deferred = Deferred()
        self.parked: list[Any] = []
        self.active = False
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None

    def wait(self, max_wait_ms: int) -> Deferred:
        """Park on the fetched partitions until min_bytes are ready or max_wait passes."""
        global _delayed  # noqa: PLW0603 - one counter for the whole process
        _delayed += 1
        self.active = True
        self.deferred.on_cancel(self._cancelled)
        self.timer = asyncio.get_running_loop().call_later(max_wait_ms / 1000, self._expire)
        self._park()
        return self.deferred

    def _park(self) -> None:
        broker = self.broker
        self.parked = [
            p for p in (broker.partition(t, i) for t, i in self.fetch_set) if p is not None
        ]
        for partition in self.parked:
            partition.add_waiter(self._wake, self.replica is not None)
        if self.replica is not None and self.session is not None:
            self.session.waker = self._wake  # an idle partition's change wakes it too

    def _unpark(self) -> None:
        for partition in self.parked:
            partition.remove_waiter(self._wake)  # bound methods compare equal
        self.parked = []
        session = self.session
        if session is not None and session.waker == self._wake:
            session.waker = None

    def _expire(self) -> None:
        """max_wait passed: answer with what there is. (A timer may fire a little
        early by the loop's clock; it is the deadline all the same.)"""
        self.timer = None
        self.expired = True
        self._wake()

    def _wake(self) -> None:
        """Data arrived on a fetched partition (or max_wait passed): read again."""
        if self.deferred.done:
            return
        try:
            self._read_again()
        except Exception as error:  # answered as a handler failure, never left hanging
            self._unpark()
            self._stop_waiting()
            self.deferred.fail(error)

    def _read_again(self) -> None:
        self._unpark()
        broker = self.broker
        session = self.session
        if self.replica is not None and session is not None:
            self.fetch_set = session.visit()  # idle partitions that changed are back
        reads = read_all(
            broker,
            self.fetch_set,
            self.max_bytes,
            self.incremental,
            self.replica,
            again=True,
            session=session,
        )
        if not (answer_now(reads, self.min_bytes) or self.expired or broker.stopping):
            release_reads(reads)
            self._park()
            return
        self._stop_waiting()
        try:
            body = _respond(self.request, self.session, reads, self.unknown, self.incremental)
        except Exception:
            release_reads(reads)
            raise
        self.deferred.complete(body)

    def _stop_waiting(self) -> None:
        global _delayed  # noqa: PLW0603
        if not self.active:
            return
        self.active = False
        _delayed -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _cancelled(self) -> None:
        """The connection closed while the fetch waited."""
        self._unpark()
        self._stop_waiting()


def _topic_name(broker: Broker, topic: Any, by_id: bool) -> str | None:
    if by_id:
        image = broker.image.topics_by_id.get(topic.topic_id)
        return image.name if image else None
    return str(topic.topic)


def _respond(
    request: DecodedRequest,
    session: FetchSession | None,
    reads: list[Read],
    unknown: list[tuple[Any, int, ErrorCode]],
    incremental: bool,
) -> Any:
    version = request.api_version
    if version >= FETCH_FLEXIBLE_MIN:
        body: Any = encode_flexible(version, session, reads, unknown, incremental)
        if any(r.lease is not None for r in reads):
            return AfterSend(body, lambda: release_reads(reads))
        return body
    by_id = version >= 13
    module: Any = response_module(request)
    topics: dict[Any, list[Any]] = {}
    for read in reported(session, reads, incremental):
        topics.setdefault(read.topic_id if by_id else read.topic, []).append(
            make(
                module.PartitionData,
                partition_index=read.index,
                error_code=read.error_code,
                high_watermark=read.high_watermark,
                last_stable_offset=read.high_watermark,
                log_start_offset=read.log_start_offset,
                aborted_transactions=None if read.error_code is ErrorCode.none else (),
                preferred_read_replica=-1,
                records=read.records if read.records is not None else b"",
                **_diverging_field(module, read),
            )
        )
    for topic_id, index, code in unknown:
        topics.setdefault(topic_id, []).append(
            make(
                module.PartitionData,
                partition_index=index,
                error_code=code,
                high_watermark=-1,
                last_stable_offset=-1,
                log_start_offset=-1,
                aborted_transactions=None,
                preferred_read_replica=-1,
                records=b"",
            )
        )
    responses = tuple(
        make(
            module.FetchableTopicResponse,
            topic=key if not by_id else None,
            topic_id=key if by_id else None,
            partitions=tuple(partitions),
        )
        for key, partitions in topics.items()
    )
    body = make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        session_id=session.session_id if session is not None else 0,
        responses=responses,
    )
    if any(r.lease is not None for r in reads):
        return AfterSend(body, lambda: release_reads(reads))
    return body


def _diverging_field(module: Any, read: Read) -> dict[str, Any]:
    if read.diverging is None or not hasattr(module, "EpochEndOffset"):
        return {}
    epoch, end_offset = read.diverging
    return {"diverging_epoch": make(module.EpochEndOffset, epoch=epoch, end_offset=end_offset)}


def _error(response_cls: Any, code: ErrorCode) -> Any:
    return make(
        response_cls, throttle_time=NO_THROTTLE, error_code=code, session_id=0, responses=()
    )
