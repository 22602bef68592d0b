"""Followers copy their leaders: one fetcher per source broker (Kafka's
ReplicaFetcherThread, as asyncio callbacks and a task).

`ReplicaFetchers.update(follow)` is called whenever the metadata image changes, with
every hosted partition this node follows and its (leader id, leader epoch). A fetcher
per leader fetches all of that leader's partitions in one Fetch (v15: `replica_state`
with this node's id and broker epoch, `current_leader_epoch`, `last_fetched_epoch`,
`fetch_offset` = this replica's log end offset), long-polling
`replica.fetch.wait.max.ms`; the request is written and its response read by hand
(protocol/fetch_wire.py). A fetcher whose partition set empties ends; a new leader gets
a new one. Each has its own connection (fetch_pipe.py; not the Raft lanes: a Kafka
connection answers in order, so a long-polling replica fetch must never sit in front
of a Raft request). When a fetcher gains partitions (or a new leader epoch) while its
fetch is parked at the leader, that connection is dropped and the next fetch goes at
once on a new one: otherwise a new topic's replication, and every acks=all write to
it, would wait for the parked fetch (up to `replica.fetch.wait.max.ms`).

The steady state runs in the connection's callback: an answer is appended and the next
fetch written there and then (`_answered`), with no task, future or timer per fetch
(one timer per source checks the deadline of the fetch in flight, re-armed lazily).
The fetcher's task (`_run`) opens the connection, sends the first fetch, and takes
over whenever the callbacks cannot go on: a back-off, nothing to fetch until one ends,
a failed or dropped connection (then after the back-off, or at once if dropped on
purpose), a session reset (at once).

Each fetcher keeps an incremental fetch session with its leader (KIP-227, the client side
in `fetch_sessions.FetchSessionHandler`, as Kafka's follower does): the first fetch is
full and opens the session; later ones list only the partitions whose fetch state
(offset, epochs, log start) changed and forget the ones no longer fetched, and the
leader answers only partitions with news. Idle partitions thus cost no bytes on the
wire. A session error (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH, e.g.
after the leader restarted) or a failed request makes the next fetch full again, at
once (no back-off).

Per partition in a response:
- records: appended as they are (`assign_offsets=False`: the leader's offsets and
  epochs are kept), producer state replayed; the high watermark follows the leader's.
- `diverging_epoch` (KIP-320, Fetch v12+): the leader's log ends epoch E at offset X,
  and this replica's tail after it diverges: truncate to min(X, this replica's own end
  of epoch E), then fetch again (repeats until the last fetched epoch agrees).
- OFFSET_OUT_OF_RANGE: below the leader's log start -> restart the log there; above the
  leader's end -> truncate to the leader's high watermark.
- FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER / unknown topic:
  one side's metadata is behind; the partition backs off and the next image decides.
  The back-off starts at 10 ms and doubles with each error in a row up to
  `replica.fetch.backoff.ms` (Kafka waits the whole of it every time): the usual case
  is a new topic whose followers fetch before the leader applied it (UNKNOWN_TOPIC_ID
  for a few ms), and a full second there held every acks=all write to it for a second.
A response for a partition whose leader or epoch changed while the fetch was in flight
is dropped. Connection failures back off and retry until `update` moves the partition.

Each partition's fetch state (`PartitionFetch`) is kept between requests and built again
only for the partitions the last answer touched (their log end offset or epoch moved)
or whose back-off ended; every partition's at each `update` and once a second (a
retention-moved log start). With 1,000 idle partitions, building all of them for every
request cost a follower more CPU than anything else it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.fetch_pipe import FetchPipe, open_pipe
from ottla.broker.fetch_sessions import FetchRequestPlan, FetchSessionHandler, PartitionFetch
from ottla.protocol import REPLICA_FETCH_VERSION, ErrorCode, ReplicaPartition, write_replica_fetch

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.partitions import Partition

__all__ = ["ReplicaFetchers", "retry_delay_s"]

log = structlog.get_logger("ottla.replica_fetcher")

FETCH_VERSION = REPLICA_FETCH_VERSION
_CLIENT_ID = b"ottla-replica"

Key = tuple[str, int]
_SESSION_ERRORS = frozenset(
    {ErrorCode.fetch_session_id_not_found, ErrorCode.invalid_fetch_session_epoch}
)


FIRST_RETRY_S = 0.01
FULL_REFRESH_S = 1.0


def retry_delay_s(errors_in_a_row: int, backoff_s: float) -> float:
    """Back-off of a partition after its n-th error in a row: 10 ms, doubling, at most
    `backoff_s` (replica.fetch.backoff.ms)."""
    return min(backoff_s, FIRST_RETRY_S * float(2 ** min(max(errors_in_a_row - 1, 0), 30)))


@dataclass
class _Source:
    leader_id: int
    partitions: dict[Key, int] = field(default_factory=dict)  # key -> leader epoch
    delayed_until: dict[Key, float] = field(default_factory=dict)
    errors_in_a_row: dict[Key, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    session: FetchSessionHandler = field(default_factory=FetchSessionHandler)
    # Its own connection, so a fetch parked at the leader can be dropped (see _interrupt).
    pipe: FetchPipe | None = None
    # The partitions (and epochs) wanted when the fetch in flight was sent.
    wanted: dict[Key, int] = field(default_factory=dict)
    # Set while the fetches run on their own: the delay (s) the task is to wait out
    # before it takes over again (module docstring).
    stopped: asyncio.Future[float] | None = None
    timer: asyncio.TimerHandle | None = None
    # The fetch state of each wanted partition, kept between requests (module docstring).
    fetches: dict[Key, PartitionFetch] = field(default_factory=dict)
    stale: set[Key] = field(default_factory=set)
    refresh_due: float = 0.0


class _Interrupted(ConnectionError):
    """A fetch connection dropped on purpose (`_interrupt`): fetch again at once."""


class ReplicaFetchers:
    """Fetch tasks of this node, one per source broker (see the module docstring)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.wait_max_ms = int(config.get("replica.fetch.wait.max.ms"))
        self.min_bytes = int(config.get("replica.fetch.min.bytes"))
        self.partition_max_bytes = int(config.get("replica.fetch.max.bytes"))
        self.response_max_bytes = int(config.get("replica.fetch.response.max.bytes"))
        self.backoff_s = int(config.get("replica.fetch.backoff.ms")) / 1000
        self.sources: dict[int, _Source] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def update(self, follow: dict[Key, tuple[int, int]]) -> None:
        """Fetch exactly `follow` ({(topic, partition): (leader id, leader epoch)})."""
        by_leader: dict[int, dict[Key, int]] = {}
        for key, (leader_id, epoch) in follow.items():
            by_leader.setdefault(leader_id, {})[key] = epoch
        for leader_id in [s for s in self.sources if s not in by_leader]:
            stopped = self.sources.pop(leader_id)
            if stopped.task is not None:
                stopped.task.cancel()
            self._close(stopped)
            log.info("replica_fetcher_stopped", leader_id=leader_id)
        for leader_id, partitions in by_leader.items():
            source = self.sources.get(leader_id)
            if source is None:
                source = _Source(leader_id)
                self.sources[leader_id] = source
                source.task = asyncio.get_running_loop().create_task(self._run(source))
                log.info("replica_fetcher_started", leader_id=leader_id, partitions=len(partitions))
            changed = False
            for key, epoch in partitions.items():
                if source.partitions.get(key) != epoch:
                    changed = True
                    source.delayed_until.pop(key, None)
                    source.errors_in_a_row.pop(key, None)
            source.partitions = partitions
            source.refresh_due = 0.0  # every partition's fetch state built again
            if changed:
                self._interrupt(source)

    def _interrupt(self, source: _Source) -> None:
        """New partitions or epochs while a fetch may sit parked at the leader for up to
        replica.fetch.wait.max.ms (a connection answers in order, so the next fetch would
        queue behind it): drop that connection, the leader cancels the parked fetch, and
        the next fetch, listing the new partitions, goes at once on a new one."""
        pipe = source.pipe
        if pipe is not None and pipe.in_flight:
            pipe.close(_Interrupted("partitions changed"))

    def _close(self, source: _Source) -> None:
        if source.timer is not None:
            source.timer.cancel()
            source.timer = None
        pipe, source.pipe = source.pipe, None
        if pipe is not None:
            pipe.close(ConnectionError("fetcher stopped"))

    async def stop(self) -> None:
        sources, self.sources = list(self.sources.values()), {}
        for source in sources:
            if source.task is not None:
                source.task.cancel()
        for source in sources:
            if source.task is not None:
                with contextlib.suppress(BaseException):
                    await source.task
            self._close(source)

    # -- one source broker ---------------------------------------------------------------

    async def _run(self, source: _Source) -> None:
        """Open the connection, send the first fetch, and wait while the fetches run on
        their own (`_answered` sends each next one); take over again for a back-off, an
        idle spell, a failed connection or a dropped one."""
        loop = asyncio.get_running_loop()
        while self.sources.get(source.leader_id) is source:
            if source.pipe is None or source.pipe.closed:
                source.pipe = None
                address = self._address(source.leader_id)
                try:
                    if address is None:
                        raise ConnectionError(f"no endpoint for broker {source.leader_id}")
                    source.pipe = await open_pipe(
                        address,
                        lambda pipe, body: self._answered(source, pipe, body),
                        lambda pipe, error: self._lost(source, pipe, error),
                    )
                except (OSError, ConnectionError, TimeoutError) as error:
                    log.debug("replica_fetch_failed", leader_id=source.leader_id, error=repr(error))
                    await asyncio.sleep(self.backoff_s)
                    continue
            source.stopped = loop.create_future()
            delay = self._fetch_next(source)
            if delay is None:
                delay = await source.stopped
            source.stopped = None
            if delay > 0:
                await asyncio.sleep(delay)

    def _stop(self, source: _Source, delay: float) -> None:
        """The fetches cannot go on by themselves: the task takes over after `delay`."""
        stopped = source.stopped
        if stopped is not None and not stopped.done():
            stopped.set_result(delay)

    def _fetch_next(self, source: _Source) -> float | None:
        """Send the next fetch (None), or the time to wait first: nothing to fetch until
        a partition's back-off ends (or a while, if none is due)."""
        pipe = source.pipe
        if pipe is None or pipe.closed:
            return 0.0
        loop = asyncio.get_running_loop()
        now = loop.time()
        wanted = source.partitions  # update() replaces it, never changes it
        fetches = self._current_fetches(source, now)
        if not fetches:
            due = [source.delayed_until.get(key, now) for key in source.partitions]
            return min(
                min([d - now for d in due if d > now], default=self.backoff_s), self.backoff_s
            )
        plan = source.session.build(fetches)
        source.wanted = wanted
        deadline = now + self.wait_max_ms / 1000 + 10.0
        try:
            pipe.send(self._request(plan), FETCH_VERSION, deadline)
        except ConnectionError:
            source.session.handle_error()
            return 0.0
        if source.timer is None:
            source.timer = loop.call_at(deadline, self._deadline_passed, source)
        return None

    def _deadline_passed(self, source: _Source) -> None:
        """The source's timer: a fetch unanswered past its deadline drops its connection
        (re-armed for a later fetch's deadline)."""
        source.timer = None
        pipe = source.pipe
        if pipe is None or pipe.closed or not pipe.in_flight:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < pipe.deadline:
            source.timer = loop.call_at(pipe.deadline, self._deadline_passed, source)
            return
        pipe.close(TimeoutError("fetch timed out"))

    def _lost(self, source: _Source, pipe: FetchPipe, error: BaseException) -> None:
        """The connection closed (or was dropped): the next fetch is full, on a new one;
        at once if dropped on purpose by _interrupt, else after the back-off."""
        if pipe is not source.pipe:
            return
        source.session.handle_error()
        if isinstance(error, _Interrupted):
            self._stop(source, 0.0)
            return
        log.debug("replica_fetch_failed", leader_id=source.leader_id, error=repr(error))
        self._stop(source, self.backoff_s)

    def _answered(self, source: _Source, pipe: FetchPipe, response: Any) -> None:
        """The leader's answer to the fetch in flight: append, then send the next fetch
        from here (module docstring)."""
        if pipe is not source.pipe or self.sources.get(source.leader_id) is not source:
            return
        code = ErrorCode(int(response.error_code))
        if not source.session.handle_response(code, int(response.session_id)):
            if code not in _SESSION_ERRORS:
                self._stop(source, self.backoff_s)
            else:
                log.info("replica_fetch_session_reset", leader_id=source.leader_id, error=code.name)
                self._stop(source, 0.0)
            return
        loop = asyncio.get_running_loop()
        try:
            self._handle(source, source.wanted, response, loop.time())
        except Exception as error:  # a callback boundary: log, back off, fetch again
            log.error(
                "replica_fetch_handling_failed", leader_id=source.leader_id, error=repr(error)
            )
            self._stop(source, self.backoff_s)
            return
        try:
            delay = self._fetch_next(source)
        except Exception as error:
            log.error("replica_fetch_failed", leader_id=source.leader_id, error=repr(error))
            source.session.handle_error()
            delay = self.backoff_s
        if delay is not None:
            self._stop(source, delay)

    def _address(self, node_id: int) -> tuple[str, int] | None:
        registered = self.broker.image.brokers.get(node_id)
        if registered is not None and registered.endpoints:
            _, host, port = registered.endpoints[0]
            return host or "127.0.0.1", port
        return self.broker.node_client.addresses.get(node_id) if self.broker.node_client else None

    def _current_fetches(self, source: _Source, now: float) -> dict[Key, PartitionFetch]:
        """The fetch state of every partition to fetch now (not backing off), built
        again only where it may have changed (module docstring)."""
        delayed = source.delayed_until
        if now >= source.refresh_due:
            source.fetches = {}
            for key, epoch in source.partitions.items():
                fetch = self._fetch_of(key, epoch) if delayed.get(key, 0.0) <= now else None
                if fetch is not None:
                    source.fetches[key] = fetch
            source.stale.clear()
            source.refresh_due = now + FULL_REFRESH_S
            return source.fetches
        for key in [k for k, until in delayed.items() if until <= now]:
            del delayed[key]  # its back-off ended: fetch it again
            source.stale.add(key)
        fetches = source.fetches
        for key in source.stale:
            wanted_epoch = source.partitions.get(key)
            fetch = (
                None
                if wanted_epoch is None or key in delayed
                else self._fetch_of(key, wanted_epoch)
            )
            if fetch is None:
                fetches.pop(key, None)
            else:
                fetches[key] = fetch
        source.stale.clear()
        return fetches

    def _fetch_of(self, key: Key, epoch: int) -> PartitionFetch | None:
        """The fetch state of one partition, if this node hosts it."""
        partition = self.broker.replicas.get(*key)
        if partition is None:
            return None
        return PartitionFetch(
            partition.topic_id,
            partition.log_end_offset,
            epoch,
            partition.log.epoch_cache.latest_epoch,
            partition.log_start_offset,
            self.partition_max_bytes,
        )

    def _request(self, plan: FetchRequestPlan) -> bytearray:
        """The Fetch v15 request frame of `plan` (written by hand, fetch_wire.py)."""
        topics: dict[uuid.UUID, list[ReplicaPartition]] = {}
        for (_, index), fetch in plan.partitions.items():
            topics.setdefault(fetch.topic_id, []).append(
                (
                    index,
                    fetch.current_leader_epoch,
                    fetch.fetch_offset,
                    fetch.last_fetched_epoch,
                    fetch.log_start_offset,
                    fetch.max_bytes,
                )
            )
        forgotten: dict[uuid.UUID, list[int]] = {}
        for (_, index), topic_id in plan.forgotten.items():
            forgotten.setdefault(topic_id, []).append(index)
        return write_replica_fetch(
            _CLIENT_ID,
            (self.broker.node_id, self.broker.controller.broker_epoch),
            (self.wait_max_ms, self.min_bytes, self.response_max_bytes),
            (plan.session_id, plan.session_epoch),
            list(topics.items()),
            list(forgotten.items()),
        )

    def _handle(self, source: _Source, wanted: dict[Key, int], response: Any, now: float) -> None:
        image = self.broker.image
        now_ms = self.broker.clock()
        for topic_response in response.responses:
            topic = image.topics_by_id.get(topic_response.topic_id)
            if topic is None:
                continue
            for data in topic_response.partitions:
                key = (topic.name, int(data.partition_index))
                source.stale.add(key)  # its log or back-off may change below
                epoch = wanted.get(key)
                if epoch is None or source.partitions.get(key) != epoch:
                    continue  # leadership moved while the fetch was in flight
                partition = self.broker.replicas.get(*key)
                if partition is None or partition.follower_of != source.leader_id:
                    continue
                code = ErrorCode(int(data.error_code))
                if code is ErrorCode.none:
                    source.errors_in_a_row.pop(key, None)
                    self._apply(partition, data, now_ms)
                elif code is ErrorCode.offset_out_of_range:
                    self._out_of_range(partition, data)
                else:
                    log.debug(
                        "replica_fetch_partition_error", partition=partition.name, error=code.name
                    )
                    errors = source.errors_in_a_row.get(key, 0) + 1
                    source.errors_in_a_row[key] = errors
                    source.delayed_until[key] = now + retry_delay_s(errors, self.backoff_s)
                    source.session.partition_failed(key)

    def _apply(self, partition: Partition, data: Any, now_ms: int) -> None:
        diverging = data.diverging_epoch
        if diverging is not None and (int(diverging.epoch) >= 0 or int(diverging.end_offset) >= 0):
            self._truncate_diverging(partition, int(diverging.epoch), int(diverging.end_offset))
            return
        records = data.records
        partition.append_as_follower(
            records if records is not None else b"", int(data.high_watermark), now_ms
        )

    def _truncate_diverging(self, partition: Partition, epoch: int, end_offset: int) -> None:
        cache = partition.log.epoch_cache
        own_epoch, own_end = cache.end_offset_for(epoch, partition.log_end_offset)
        target = min(end_offset, partition.log_end_offset if own_epoch < 0 else own_end)
        target = max(target, 0)
        log.info(
            "replica_truncating",
            partition=partition.name,
            leader_epoch=epoch,
            leader_end_offset=end_offset,
            log_end_offset=partition.log_end_offset,
            truncate_to=target,
        )
        partition.truncate_to(target)

    def _out_of_range(self, partition: Partition, data: Any) -> None:
        leader_start = int(data.log_start_offset)
        if 0 <= partition.log_end_offset < leader_start:
            log.info("replica_restarting_log", partition=partition.name, offset=leader_start)
            partition.log._truncate_fully(leader_start)
            partition.truncate_to(leader_start)
        elif int(data.high_watermark) >= 0:
            partition.truncate_to(int(data.high_watermark))
