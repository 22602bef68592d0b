"""Incremental fetch sessions (KIP-227): both sides, as Kafka keeps them.

Broker side (`FetchSessionCache`, Kafka's FetchSessionCache/FetchManager): a client
opens a session with a full fetch (epoch 0); the broker answers with a new session id.
Later fetches send (session_id, epoch n) and only the partitions that changed (added or
with a new fetch offset) plus `forgotten` ones; the broker merges them into the
session's partition set and answers only the partitions with something new (records, a
changed high watermark or log start offset, or an error). A full fetch naming a session
id (epoch 0) closes that session and opens a new one; epoch -1 closes it and fetches
without one (a "sessionless" full fetch). Session epochs run 1, 2, ... and wrap from
2**31-1 back to 1.

Client side (`FetchSessionHandler`, Kafka's FetchSessionHandler; PURE): the replica
fetcher asks it what to send for the partitions it wants, and tells it how the answer
went. Its rules, per request:

    next request      sent as                     after a good answer
    --------------    -------------------------   -----------------------------------
    (0, 0)            full: every wanted          id from the answer -> (id, 1);
                      partition                   id 0 (no slot) -> (0, 0) again
    (id, 0)           full, closing `id`          as above
    (id, n > 0)       incremental: wanted         id echoed -> (id, n + 1);
                      partitions whose fetch      id 0 (closed by the broker) -> (0, 0)
                      state differs from the
                      session's, and forgotten
                      ones no longer wanted

A partition answered with an error may be missing from the broker's session (an
unknown topic id is never added to it): it is listed in full the next time it is
wanted, and forgotten while it is not (so the broker stops answering its error at
once instead of long-polling). A top-level error answer: FETCH_SESSION_ID_NOT_FOUND
-> (0, 0); any other
(INVALID_FETCH_SESSION_EPOCH, ...) -> (id, 0). A failed request (connection lost,
timeout) -> (id, 0): close the old session if it still exists, open a new one. The
session's partition state only changes on a good answer, so a lost request costs one
full fetch, never a stale offset.

Idle partitions (a follower's session only): a partition the follower holds whole, with
nothing new since the last answer, is set aside in the session (`active` loses it) and
the partition remembers the session (`Partition.mark_idle`); until the partition
changes (an append, a high-watermark or log-start move, a leadership or ISR change),
the session's fetches neither read it nor list it, and the follower counts as caught
up on it at each of them (`FetchClock`, cluster/replication.py). A change puts it back
(`partition_changed`) and wakes the session's parked fetch. Without this, a follower's
fetch cost the leader a pass over every partition it follows: with 1,000 idle ones the
leader of a single busy partition spent most of its CPU there (acks=all p50 15 ms).

Limits: at most `slots` sessions on the broker; when full, a new full fetch is served
without a session (session id 0), as Kafka does when its cache has no room.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ottla.cluster import FetchClock
from ottla.protocol import ErrorCode

__all__ = [
    "FetchRequestPlan",
    "FetchSession",
    "FetchSessionCache",
    "FetchSessionHandler",
    "PartitionFetch",
    "SessionPartition",
    "next_epoch",
]

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
_EPOCH_MAX = 2**31 - 1

Key = tuple[str, int]


def next_epoch(epoch: int) -> int:
    """The session epoch after `epoch` (1 follows 2**31-1, as in Kafka)."""
    return 1 if epoch >= _EPOCH_MAX else epoch + 1


@dataclass
class SessionPartition:
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    # What the client last saw, to decide whether to include it in a reply.
    high_watermark: int = -1
    log_start_offset: int = -1


@dataclass(eq=False)
class FetchSession:
    session_id: int
    epoch: int
    owner: Any
    # (topic name, partition) -> state, in fetch order
    partitions: dict[Key, SessionPartition] = field(default_factory=dict)
    # The partitions a fetch reads: all but the idle ones (module docstring).
    active: dict[Key, None] = field(default_factory=dict)
    # A follower's session: its fetches' times, and its parked fetch's wake-up.
    clock: FetchClock = field(default_factory=FetchClock)
    waker: Callable[[], None] | None = None
    closed: bool = False

    def set_partitions(self, partitions: dict[Key, SessionPartition]) -> None:
        self.partitions = partitions
        self.active = dict.fromkeys(partitions)

    def put(self, key: Key, state: SessionPartition) -> None:
        self.partitions[key] = state
        self.active[key] = None

    def forget(self, key: Key) -> None:
        self.partitions.pop(key, None)
        self.active.pop(key, None)

    def visit(self) -> dict[Key, SessionPartition]:
        """The partitions a fetch in this session reads (in fetch order: not idle)."""
        partitions = self.partitions
        return {key: partitions[key] for key in self.active}

    def partition_idle(self, key: Key) -> None:
        self.active.pop(key, None)

    def partition_changed(self, key: Key, wake: bool = True) -> Callable[[], None] | None:
        """An idle partition changed: read it again, and now if a fetch is parked and
        `wake`. Without `wake` (a high-watermark, ISR or log-start move: nothing a
        parked follower fetch is answered for), the parked fetch's wake-up is returned
        for the partition to call at its next append: the fetch did not park on a
        partition that was idle, and would otherwise wait out its max_wait."""
        if self.closed or key not in self.partitions:
            return None
        self.active[key] = None
        waker = self.waker
        if waker is not None and wake:
            waker()
            return None
        return waker


class FetchSessionCache:
    """session id -> FetchSession, bounded by `slots`."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.sessions: dict[int, FetchSession] = {}
        self._ids = itertools.count(1)

    def new_session(self, owner: Any) -> FetchSession | None:
        if len(self.sessions) >= self.slots:
            return None
        session_id = next(self._ids) & 0x7FFFFFFF
        while session_id == 0 or session_id in self.sessions:
            session_id = next(self._ids) & 0x7FFFFFFF
        session = FetchSession(session_id, 1, owner)
        self.sessions[session_id] = session
        return session

    def lookup(self, session_id: int, epoch: int) -> tuple[FetchSession | None, ErrorCode]:
        """The session for an incremental fetch, or the error Kafka gives."""
        session = self.sessions.get(session_id)
        if session is None:
            return None, ErrorCode.fetch_session_id_not_found
        if session.epoch != epoch:
            return None, ErrorCode.invalid_fetch_session_epoch
        return session, ErrorCode.none

    def remove(self, session_id: int) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.closed = True

    def connection_closed(self, owner: Any) -> None:
        for session_id in [s for s, v in self.sessions.items() if v.owner is owner]:
            self.sessions.pop(session_id).closed = True


# -- client side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionFetch:
    """What a fetch says of one partition; a change of any field is sent again."""

    topic_id: uuid.UUID
    fetch_offset: int
    current_leader_epoch: int
    last_fetched_epoch: int
    log_start_offset: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class FetchRequestPlan:
    """One fetch request: its session fields, the partitions to list and to forget."""

    session_id: int
    session_epoch: int
    partitions: dict[Key, PartitionFetch]
    forgotten: dict[Key, uuid.UUID]  # key -> topic id

    @property
    def full(self) -> bool:
        return self.session_epoch == INITIAL_EPOCH


class FetchSessionHandler:
    """The client side of one fetch session (see the module docstring)."""

    def __init__(self) -> None:
        self.session_id = 0
        self.epoch = INITIAL_EPOCH
        # What the broker's session holds after the last good answer; None: the
        # partition may or may not be there (it was answered with an error).
        self.session: dict[Key, PartitionFetch | None] = {}
        self._pending: dict[Key, PartitionFetch | None] | None = None
        self._topic_ids: dict[Key, uuid.UUID] = {}

    def build(self, wanted: dict[Key, PartitionFetch]) -> FetchRequestPlan:
        """The request for `wanted` (every partition to fetch, with its state)."""
        if self.epoch == INITIAL_EPOCH:
            plan = FetchRequestPlan(self.session_id, INITIAL_EPOCH, dict(wanted), {})
        else:
            known = self.session.get
            changed = {}
            for key, fetch in wanted.items():
                old = known(key)
                # The fetcher keeps each partition's state object while it is unchanged.
                if old is not fetch and old != fetch:
                    changed[key] = fetch
            plan = FetchRequestPlan(
                self.session_id,
                self.epoch,
                changed,
                {k: self._topic_ids[k] for k in self.session if k not in wanted},
            )
        for key, fetch in plan.partitions.items():
            self._topic_ids[key] = fetch.topic_id
        self._pending = dict(wanted)
        return plan

    def handle_response(self, error_code: ErrorCode, session_id: int) -> bool:
        """The answer to the last `build`; False if its partition data must be ignored."""
        pending, self._pending = self._pending, None
        if error_code is not ErrorCode.none:
            if error_code is ErrorCode.fetch_session_id_not_found:
                self._reset()
            else:
                self._close_existing()
            return False
        if session_id == 0:
            self._reset()  # no slot for a session, or the broker closed it
        else:
            self.epoch = 1 if self.epoch == INITIAL_EPOCH else next_epoch(self.epoch)
            self.session_id = session_id
            self.session = pending if pending is not None else {}
            if len(self._topic_ids) > 2 * len(self.session) + 64:  # forgotten ones pile up
                self._topic_ids = {k: self._topic_ids[k] for k in self.session}
        return True

    def partition_failed(self, key: Key) -> None:
        """The last answer gave `key` an error: list it in full when next wanted."""
        if key in self.session:
            self.session[key] = None

    def handle_error(self) -> None:
        """The last request failed (connection lost, timeout): start over with a full fetch."""
        self._pending = None
        self._close_existing()

    def _reset(self) -> None:
        self.session_id = 0
        self._close_existing()

    def _close_existing(self) -> None:
        self.epoch = INITIAL_EPOCH
        self.session = {}
        self._topic_ids = {}
