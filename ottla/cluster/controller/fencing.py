"""Broker registration, heartbeats and fencing on the active controller (PURE).

Like Kafka's BrokerHeartbeatManager + ReplicationControlManager, in three inputs:

- `register(image, ...)`: a BrokerRegistration. A known broker id with the same
  incarnation id is a retry: no records, the registered epoch again. A new incarnation
  (a restarted process) gets a RegisterBrokerRecord, unfenced, whose `broker_epoch` is
  the offset its record will take (`next_offset`), plus the elections of `unfence`.
- `Sessions.heartbeat(image, broker_id, broker_epoch, now_ms)`: a BrokerHeartbeat.
  An unknown broker answers BROKER_ID_NOT_REGISTERED and a stale epoch
  STALE_BROKER_EPOCH (the broker registers again); otherwise the arrival is recorded
  and a fenced broker is unfenced (BrokerRegistrationChangeRecord fenced=False) and
  takes back the leadership of offline partitions whose ISR names it.
- `Sessions.expire(image, now_ms)`: a tick. An unfenced broker whose last heartbeat is
  older than `session_timeout_ms` is fenced (BrokerRegistrationChangeRecord
  fenced=True); every partition it leads gets a new leader from its ISR without it, or
  leader -1 (offline) when no live ISR member remains (replication factor 1); it leaves
  the ISR of partitions it follows, never emptying an ISR. Unclean election: only a
  topic with `unclean.leader.election.enable=true` then takes a live replica outside
  the ISR as leader (its ISR becomes that replica alone).
- `alter_partition(image, ...)`: a leader's AlterPartition (ISR shrink or expand),
  validated as Kafka's ReplicationControlManager does: the sender must be the
  partition's leader at the request's leader epoch (else FENCED_LEADER_EPOCH /
  NOT_LEADER_OR_FOLLOWER), at the current partition epoch (else
  INVALID_UPDATE_VERSION); the new ISR names only replicas, includes the leader, and
  every member it adds is a live (unfenced) broker not in controlled shutdown (else
  INELIGIBLE_REPLICA).
- `controlled_shutdown(image, broker_id, ineligible)`: a BrokerHeartbeat with
  `want_shut_down` (Kafka's controlled shutdown, KIP-631). Every partition the broker
  leads moves to the first live ISR member other than it (not itself shutting down),
  and the broker leaves every ISR it is in (never emptying one); a partition with no
  other live ISR member stays with it (not movable). Once a heartbeat finds nothing
  left to move, the broker is fenced (its unmovable partitions go offline, as on a
  stop) and the answer is `should_shut_down`. The brokers in controlled shutdown are
  the controller's memory (`Sessions.shutting_down`, cleared by a new registration):
  no election or ISR expansion picks them.

Transition table of one broker, as the controller sees it:

    unregistered --register--> live --silent > session timeout--> fenced
    fenced --heartbeat (same epoch)--> live
    live --heartbeat want_shut_down--> shutting down (leadership and ISRs move away)
    shutting down --heartbeat, nothing left to move--> fenced (should_shut_down)
    any --register (new incarnation)--> live (new epoch)

Sessions are the controller's memory, not the log's (as in Kafka): a new active
controller starts every registered broker's session at its first tick (`reset`), so
a controller failover never fences a broker that keeps heartbeating.

Fast fencing (ottla's addition; Kafka waits the whole session timeout): a broker whose
death is already evident gets a short deadline, `grace_ms`, instead of the rest of its
session, and is fenced unless it heartbeats within it:
- `connection_lost`: the connection carrying its heartbeats closed (a killed process's
  sockets are closed by its kernel at once). A live broker heartbeats again on a new
  connection as soon as one breaks, well within the grace.
- `reset(..., suspects=...)`: a new active controller suspects the previous quorum
  leader, whose loss a majority just agreed on by electing another. A live one learns
  of the new leader (BeginQuorumEpoch) and heartbeats to it at once.
A heartbeat or registration clears the short deadline. A silent broker whose
connections stay open (a hang, a partition) still waits `session_timeout_ms`.

Leader changes are PartitionChangeRecords; the image bumps the leader epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    BrokerRegistrationChangeRecord,
    Endpoint,
    MetadataRecord,
    PartitionChangeRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
)
from ottla.protocol import ErrorCode

__all__ = [
    "AlterPartitionResult",
    "HeartbeatResult",
    "Sessions",
    "allocate_producer_ids",
    "alter_partition",
    "controlled_shutdown",
    "fence",
    "register",
    "unfence",
]


@dataclass(frozen=True)
class HeartbeatResult:
    error_code: ErrorCode
    records: list[MetadataRecord]
    fenced: bool
    should_shut_down: bool = False


def register(
    image: MetadataImage,
    broker_id: int,
    incarnation_id: uuid.UUID,
    endpoints: Sequence[Endpoint],
    rack: str | None,
    next_offset: int,
) -> tuple[list[MetadataRecord], int]:
    """Records registering a broker, and its broker epoch (see the module docstring)."""
    current = image.brokers.get(broker_id)
    if current is not None and current.incarnation_id == incarnation_id:
        return [], current.broker_epoch
    epoch = next_offset
    record = RegisterBrokerRecord(
        broker_id=broker_id,
        incarnation_id=incarnation_id,
        broker_epoch=epoch,
        endpoints=tuple(endpoints),
        rack=rack,
        fenced=False,
    )
    registered = image.apply([record], image.offset)
    return [record, *_elect_returning(registered, broker_id)], epoch


def fence(
    image: MetadataImage, broker_id: int, ineligible: AbstractSet[int] = frozenset()
) -> list[MetadataRecord]:
    """Records fencing `broker_id` and moving leadership off it (module docstring);
    brokers in `ineligible` (in controlled shutdown) are not elected."""
    current = image.brokers.get(broker_id)
    if current is None or current.fenced:
        return []
    records: list[MetadataRecord] = [
        BrokerRegistrationChangeRecord(broker_id, current.broker_epoch, fenced=True)
    ]
    fenced = image.apply(records, image.offset)
    live = set(fenced.live_broker_ids()) - set(ineligible)
    for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name):
        for index in sorted(topic.partitions):
            partition = topic.partitions[index]
            if broker_id not in partition.replicas:
                continue
            isr = tuple(r for r in partition.isr if r != broker_id) or partition.isr
            if partition.leader == broker_id:
                candidates = [r for r in isr if r in live]
                leader = candidates[0] if candidates else -1
                if leader < 0 and topic.configs.get("unclean.leader.election.enable") == "true":
                    unclean = [r for r in partition.replicas if r in live]
                    if unclean:
                        leader, isr = unclean[0], (unclean[0],)
                records.append(
                    PartitionChangeRecord(
                        topic.topic_id,
                        index,
                        leader=leader,
                        isr=isr if isr != partition.isr else None,
                    )
                )
            elif isr != partition.isr:
                records.append(PartitionChangeRecord(topic.topic_id, index, isr=isr))
    return records


def controlled_shutdown(
    image: MetadataImage, broker_id: int, ineligible: AbstractSet[int]
) -> tuple[list[MetadataRecord], bool]:
    """Records moving leadership and ISR membership off `broker_id`, and whether nothing
    movable is left (then the records fence it; see the module docstring)."""
    current = image.brokers.get(broker_id)
    if current is None or current.fenced:
        return [], True
    live = set(image.live_broker_ids()) - set(ineligible) - {broker_id}
    records: list[MetadataRecord] = []
    for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name):
        for index in sorted(topic.partitions):
            partition = topic.partitions[index]
            if broker_id not in partition.isr:
                continue
            isr = tuple(r for r in partition.isr if r != broker_id)
            if partition.leader == broker_id:
                candidates = [r for r in isr if r in live]
                if candidates:
                    records.append(
                        PartitionChangeRecord(topic.topic_id, index, leader=candidates[0], isr=isr)
                    )
            elif isr and partition.leader >= 0:
                records.append(PartitionChangeRecord(topic.topic_id, index, isr=isr))
    if records:
        return records, False
    return fence(image, broker_id, ineligible), True


def unfence(image: MetadataImage, broker_id: int) -> list[MetadataRecord]:
    """Records unfencing `broker_id`; it leads again the offline partitions it can."""
    current = image.brokers.get(broker_id)
    if current is None or not current.fenced:
        return []
    change = BrokerRegistrationChangeRecord(broker_id, current.broker_epoch, fenced=False)
    return [change, *_elect_returning(image.apply([change], image.offset), broker_id)]


def _elect_returning(image: MetadataImage, broker_id: int) -> list[MetadataRecord]:
    """Offline partitions (leader -1) whose ISR names the (now live) `broker_id`."""
    records: list[MetadataRecord] = []
    for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name):
        for index in sorted(topic.partitions):
            partition = topic.partitions[index]
            if partition.leader < 0 and broker_id in partition.isr:
                records.append(PartitionChangeRecord(topic.topic_id, index, leader=broker_id))
    return records


@dataclass(frozen=True)
class AlterPartitionResult:
    error_code: ErrorCode
    leader_id: int = -1
    leader_epoch: int = -1
    isr: tuple[int, ...] = ()
    partition_epoch: int = -1


def alter_partition(
    image: MetadataImage,
    broker_id: int,
    topic_id: uuid.UUID,
    partition_id: int,
    leader_epoch: int,
    partition_epoch: int,
    new_isr: Sequence[int],
    ineligible: AbstractSet[int] = frozenset(),
) -> tuple[list[MetadataRecord], AlterPartitionResult]:
    """Records committing a leader's ISR change, and the answer (module docstring);
    members of `ineligible` (in controlled shutdown) may not be added."""
    topic = image.topics_by_id.get(topic_id)
    partition = topic.partitions.get(partition_id) if topic is not None else None
    if topic is None:
        return [], AlterPartitionResult(ErrorCode.unknown_topic_id)
    if partition is None:
        return [], AlterPartitionResult(ErrorCode.unknown_topic_or_partition)
    current = AlterPartitionResult(
        ErrorCode.none,
        partition.leader,
        partition.leader_epoch,
        partition.isr,
        partition.partition_epoch,
    )
    if leader_epoch < partition.leader_epoch:
        return [], replace(current, error_code=ErrorCode.fenced_leader_epoch)
    if partition.leader != broker_id or leader_epoch != partition.leader_epoch:
        return [], replace(current, error_code=ErrorCode.not_leader_or_follower)
    if partition_epoch != partition.partition_epoch:
        return [], replace(current, error_code=ErrorCode.invalid_update_version)
    isr = tuple(dict.fromkeys(new_isr))
    live = set(image.live_broker_ids()) - set(ineligible)
    if (
        broker_id not in isr
        or any(r not in partition.replicas for r in isr)
        or any(r not in live and r not in partition.isr for r in isr)
    ):
        return [], replace(current, error_code=ErrorCode.ineligible_replica)
    if isr == partition.isr:
        return [], current
    record = PartitionChangeRecord(topic_id, partition_id, isr=isr)
    return [record], replace(current, isr=isr, partition_epoch=partition.partition_epoch + 1)


def allocate_producer_ids(
    image: MetadataImage, broker_id: int, broker_epoch: int, block_size: int
) -> tuple[list[MetadataRecord], int]:
    """Records handing `broker_id` the next block of producer ids, and its first id."""
    start = image.next_producer_id
    return [ProducerIdsRecord(broker_id, broker_epoch, start + block_size)], start


class Sessions:
    """The controller's last heartbeat arrival per broker (see the module docstring)."""

    def __init__(self, session_timeout_ms: int, grace_ms: int | None = None) -> None:
        self.session_timeout_ms = session_timeout_ms
        self.grace_ms = (
            session_timeout_ms if grace_ms is None else min(grace_ms, session_timeout_ms)
        )
        self.last_heartbeat_ms: dict[int, int] = {}
        # Brokers presumed dead (module docstring, fast fencing): fenced at this time
        # unless they heartbeat first.
        self.suspect_deadline_ms: dict[int, int] = {}
        self.shutting_down: set[int] = set()

    def reset(
        self, image: MetadataImage, now_ms: int, suspects: AbstractSet[int] = frozenset()
    ) -> None:
        """A new active controller: every registered broker gets a full session, but
        `suspects` (the previous quorum leader) only the grace."""
        self.last_heartbeat_ms = dict.fromkeys(image.brokers, now_ms)
        self.suspect_deadline_ms = {
            b: now_ms + self.grace_ms for b in suspects if b in image.brokers
        }
        self.shutting_down.clear()

    def connection_lost(self, broker_id: int, now_ms: int) -> None:
        """The connection carrying `broker_id`'s heartbeats closed: fence it after the
        grace unless it heartbeats again."""
        deadline = now_ms + self.grace_ms
        self.suspect_deadline_ms[broker_id] = min(
            self.suspect_deadline_ms.get(broker_id, deadline), deadline
        )

    def registered(self, broker_id: int, now_ms: int) -> None:
        self.last_heartbeat_ms[broker_id] = now_ms
        self.suspect_deadline_ms.pop(broker_id, None)
        self.shutting_down.discard(broker_id)

    def heartbeat(
        self,
        image: MetadataImage,
        broker_id: int,
        broker_epoch: int,
        now_ms: int,
        want_shut_down: bool = False,
    ) -> HeartbeatResult:
        current = image.brokers.get(broker_id)
        if current is None:
            return HeartbeatResult(ErrorCode.broker_id_not_registered, [], True)
        if broker_epoch != current.broker_epoch:
            return HeartbeatResult(ErrorCode.stale_broker_epoch, [], current.fenced)
        self.last_heartbeat_ms[broker_id] = now_ms
        self.suspect_deadline_ms.pop(broker_id, None)
        if want_shut_down:
            self.shutting_down.add(broker_id)
            records, done = controlled_shutdown(image, broker_id, self.shutting_down)
            return HeartbeatResult(ErrorCode.none, records, current.fenced or done, done)
        if broker_id in self.shutting_down:
            return HeartbeatResult(ErrorCode.none, [], current.fenced)
        return HeartbeatResult(ErrorCode.none, unfence(image, broker_id), False)

    def expire(self, image: MetadataImage, now_ms: int) -> list[MetadataRecord]:
        """Records fencing every unfenced broker silent for longer than the timeout, or
        past its short deadline as a suspect."""
        records: list[MetadataRecord] = []
        for broker_id in sorted(image.brokers):
            broker = image.brokers[broker_id]
            last = self.last_heartbeat_ms.setdefault(broker_id, now_ms)
            suspect = self.suspect_deadline_ms.get(broker_id)
            expired = now_ms - last > self.session_timeout_ms
            if suspect is not None and now_ms >= suspect:
                expired = True
            if broker.fenced or not expired:
                continue
            self.suspect_deadline_ms.pop(broker_id, None)
            records.extend(fence(image.apply(records, image.offset), broker_id, self.shutting_down))
        return records

    def next_deadline_ms(self, image: MetadataImage) -> int | None:
        """When the next unfenced broker's session (or suspect deadline) runs out, if any."""
        deadlines = [
            self.last_heartbeat_ms[b] + self.session_timeout_ms + 1
            for b, broker in image.brokers.items()
            if not broker.fenced and b in self.last_heartbeat_ms
        ]
        deadlines += [
            deadline
            for b, deadline in self.suspect_deadline_ms.items()
            if b in image.brokers and not image.brokers[b].fenced
        ]
        return min(deadlines) if deadlines else None
