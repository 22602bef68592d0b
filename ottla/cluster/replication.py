"""The leader side of one partition's replication (PURE): followers, ISR, high watermark.

Kafka's `Partition`/`Replica` bookkeeping on the leader, as a state machine fed by
four inputs (time arrives as `now_ms`, from a monotonic clock: a lag is a duration,
and a wall clock stepped back would keep a dead follower in the ISR until it caught
up again):

- `follower_fetched(replica_id, fetch_offset, leader_log_end_offset, now_ms)`: a Fetch
  from a follower at `fetch_offset` proves the follower holds everything below it, so
  its log end offset becomes `fetch_offset`. A follower is caught up at a fetch whose
  offset reaches the leader's log end offset *then*; a fetch reaching the log end
  offset the leader had at the follower's *previous* fetch makes it caught up as of
  that previous fetch (Kafka's `lastCaughtUpTimeMs` rule).
- `leader_appended(leader_log_end_offset)`: the leader's own log grew.
- `update_isr(replicas, isr, partition_epoch, ...)`: the committed ISR from the
  metadata image (after an AlterPartition or a controller decision).
- `follower_idle(replica_id, clock)` / `follower_active(replica_id)`: an in-sync,
  caught-up follower whose fetch session stops listing this partition while nothing
  changes (broker/handlers/fetch.py) is caught up as of each of that session's fetches:
  `clock` (a `FetchClock`, one per session) records them, so an idle partition costs a
  follower's fetch nothing; a change of the partition folds the clock back in.
- queries: `high_watermark`, `out_of_sync_replicas(...)` (shrink candidates),
  `can_join_isr(replica_id)` (expand check), `acks_all_result(last_offset, ...)`.

Rules:
- The high watermark is the minimum log end offset over the ISR (the leader's own
  included); a follower whose log end offset is unknown (no fetch since this leader
  took over) holds it back. It never decreases.
- A follower leaves the ISR when it has not been caught up for longer than
  `replica.lag.time.max.ms`; the leader never leaves its own ISR.
- A follower outside the ISR joins it once its log end offset reaches the high
  watermark and the start of the leader's current epoch (so it holds every record the
  leader wrote as leader, KIP-101/Kafka's `isFollowerInSync`).
- acks=all completes when the high watermark passes the batch's last offset; it
  succeeds if the ISR then has at least `min.insync.replicas` members, and answers
  NOT_ENOUGH_REPLICAS_AFTER_APPEND otherwise (Kafka's `checkEnoughReplicasReachOffset`).

Transition table of one follower, as the leader sees it:

    out of ISR --fetch reaching HW and epoch start--> (AlterPartition expand) --> in ISR
    in ISR --not caught up for > lag max--> (AlterPartition shrink) --> out of ISR
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ottla.protocol import ErrorCode

__all__ = ["FetchClock", "FollowerState", "LeaderState"]

UNKNOWN_OFFSET = -1


class FetchClock:
    """When one follower fetch session last fetched: shared by every partition idle in
    that session, so one write per fetch keeps them all caught up."""

    __slots__ = ("last_fetch_ms",)

    def __init__(self, now_ms: int = 0) -> None:
        self.last_fetch_ms = now_ms


@dataclass
class FollowerState:
    """What the leader knows of one follower."""

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    leader_end_at_last_fetch: int = UNKNOWN_OFFSET
    # Set while the follower's session leaves this partition out (idle, caught up).
    idle_clock: FetchClock | None = None

    def caught_up_ms(self) -> int:
        clock = self.idle_clock
        if clock is None:
            return self.last_caught_up_ms
        return max(self.last_caught_up_ms, clock.last_fetch_ms)


class LeaderState:
    """The leader's replication state of one partition (see the module docstring)."""

    def __init__(
        self,
        leader_id: int,
        replicas: Iterable[int],
        isr: Iterable[int],
        partition_epoch: int,
        high_watermark: int,
        leader_epoch_start_offset: int,
        now_ms: int,
    ) -> None:
        self.leader_id = leader_id
        self.replicas: tuple[int, ...] = tuple(replicas)
        self.isr: tuple[int, ...] = tuple(isr)
        self.partition_epoch = partition_epoch
        self.high_watermark = max(high_watermark, 0)
        self.leader_epoch_start_offset = leader_epoch_start_offset
        self.leader_log_end_offset = self.high_watermark
        # A new leader gives every follower a full lag allowance (Kafka resets them).
        self.followers: dict[int, FollowerState] = {
            r: FollowerState(last_caught_up_ms=now_ms, last_fetch_ms=now_ms)
            for r in self.replicas
            if r != leader_id
        }

    # -- inputs ------------------------------------------------------------------------

    def update_isr(
        self,
        replicas: Iterable[int],
        isr: Iterable[int],
        partition_epoch: int,
        leader_log_end_offset: int,
        now_ms: int,
    ) -> bool:
        """The committed ISR changed; True if the high watermark moved."""
        self.replicas = tuple(replicas)
        self.isr = tuple(isr)
        self.partition_epoch = partition_epoch
        for replica in self.replicas:
            if replica != self.leader_id and replica not in self.followers:
                self.followers[replica] = FollowerState(
                    last_caught_up_ms=now_ms, last_fetch_ms=now_ms
                )
        for replica in [r for r in self.followers if r not in self.replicas]:
            del self.followers[replica]
        return self.leader_appended(leader_log_end_offset)

    def leader_appended(self, leader_log_end_offset: int) -> bool:
        """The leader's log end offset is now this; True if the high watermark moved."""
        self.leader_log_end_offset = leader_log_end_offset
        return self._advance()

    def follower_fetched(
        self, replica_id: int, fetch_offset: int, leader_log_end_offset: int, now_ms: int
    ) -> bool:
        """A follower fetched at `fetch_offset`; True if the high watermark moved."""
        follower = self.followers.get(replica_id)
        if follower is None:
            return False  # not a replica of this partition (a stale fetcher)
        if follower.idle_clock is not None:
            self.follower_active(replica_id)
        self.leader_log_end_offset = leader_log_end_offset
        follower.log_end_offset = fetch_offset
        if fetch_offset >= leader_log_end_offset:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, now_ms)
        elif fetch_offset >= follower.leader_end_at_last_fetch >= 0:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, follower.last_fetch_ms)
        follower.leader_end_at_last_fetch = leader_log_end_offset
        follower.last_fetch_ms = now_ms
        return self._advance()

    def follower_idle(self, replica_id: int, clock: FetchClock) -> bool:
        """The follower's session will leave this partition out until it changes: while
        it does, each fetch of that session (`clock`) counts as a fetch of this
        partition at its (unchanged) offset. Only for an ISR member holding the leader's
        whole log; False (nothing changed) otherwise."""
        follower = self.followers.get(replica_id)
        if (
            follower is None
            or replica_id not in self.isr
            or follower.log_end_offset < self.leader_log_end_offset
        ):
            return False
        if follower.idle_clock is not None and follower.idle_clock is not clock:
            self.follower_active(replica_id)
        follower.idle_clock = clock
        return True

    def follower_active(self, replica_id: int) -> None:
        """The partition changed (or the follower listed it again): fold the idle
        session's fetches in, as `follower_fetched` would have recorded them (each
        reached the leader's log end offset, which an idle partition keeps)."""
        follower = self.followers.get(replica_id)
        if follower is None or follower.idle_clock is None:
            return
        last = follower.idle_clock.last_fetch_ms
        follower.idle_clock = None
        if last > follower.last_fetch_ms:
            follower.last_caught_up_ms = max(follower.last_caught_up_ms, last)
            follower.last_fetch_ms = last
            follower.leader_end_at_last_fetch = follower.log_end_offset

    def _advance(self) -> bool:
        candidate = self.leader_log_end_offset
        for replica in self.isr:
            if replica == self.leader_id:
                continue
            follower = self.followers.get(replica)
            if follower is None or follower.log_end_offset < 0:
                return False  # an ISR member not heard from holds the watermark
            candidate = min(candidate, follower.log_end_offset)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False

    # -- queries -----------------------------------------------------------------------

    def out_of_sync_replicas(self, now_ms: int, lag_time_max_ms: int) -> tuple[int, ...]:
        """ISR members (never the leader) not caught up for longer than the lag allowance."""
        return tuple(
            r
            for r in self.isr
            if r != self.leader_id
            and (
                r not in self.followers
                or now_ms - self.followers[r].caught_up_ms() > lag_time_max_ms
            )
        )

    def can_join_isr(self, replica_id: int) -> bool:
        """A replica outside the ISR holds everything up to the high watermark and the
        leader's current epoch: it may join (AlterPartition expand)."""
        if replica_id in self.isr:
            return False
        follower = self.followers.get(replica_id)
        if follower is None:
            return False
        return (
            follower.log_end_offset >= self.high_watermark
            and follower.log_end_offset >= self.leader_epoch_start_offset
        )

    def enough_replicas(self, min_insync_replicas: int) -> bool:
        """acks=all may be accepted: the ISR has at least `min.insync.replicas` members."""
        return len(self.isr) >= min_insync_replicas

    def acks_all_result(self, last_offset: int, min_insync_replicas: int) -> ErrorCode | None:
        """None while the high watermark has not passed `last_offset`; then the answer."""
        if self.high_watermark <= last_offset:
            return None
        if len(self.isr) < min_insync_replicas:
            return ErrorCode.not_enough_replicas_after_append
        return ErrorCode.none
