"""Partition reassignments (KIP-455) on the active controller (PURE).

Like Kafka's ReplicationControlManager (alterPartitionReassignments,
listPartitionReassignments) and PartitionReassignmentReplicas, in three inputs:

- `alter_reassignments(image, requests, ineligible)`: an AlterPartitionReassignments.
  Per partition (topic, index, target or None):

    target: validated (not empty, no duplicates, only registered unfenced brokers,
      else INVALID_REPLICA_ASSIGNMENT), then computed from the partition's original
      replicas (its replicas without those being added by an earlier reassignment,
      which the new target replaces): `adding` = target minus original, `removing` =
      original minus target, `replicas` = target followed by `removing`, ISR filtered
      to `replicas`. Added replicas are followers from then on and fetch from the
      leader. If every target replica is already in the ISR the reassignment
      completes at once (below); a target equal to the current replicas without a
      reassignment in progress changes nothing.
    None: cancels the reassignment in progress (NO_REASSIGNMENT_IN_PROGRESS if there
      is none): back to the original replicas, ISR filtered to them, added replicas
      dropped, a leader among the added ones replaced.

  An unknown topic or partition answers UNKNOWN_TOPIC_OR_PARTITION.
- `complete_reassignment(image, topic_id, partition_id, ineligible)`: once every target
  replica (replicas minus removing) is in the ISR — checked by the controller after
  each ISR change (AlterPartition) — the switch: replicas = target (in target order),
  ISR filtered to the target, adding and removing cleared, and a leader being removed
  replaced by the first target replica that is in the ISR and live (-1 if none).
  Removed replicas then stop following and delete their local log (the broker's
  `_apply_image`).
- `list_reassignments(image, partitions)`: the reassignments in progress, of every
  partition (None) or of those asked (unknown ones are left out, as Kafka does).

"Live" is registered, unfenced and not in controlled shutdown (`ineligible`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from ottla.cluster.metadata.image import MetadataImage, PartitionImage
from ottla.cluster.metadata.records import MetadataRecord, PartitionChangeRecord
from ottla.protocol import ErrorCode

__all__ = [
    "OngoingReassignment",
    "ReassignmentResult",
    "alter_reassignments",
    "complete_reassignment",
    "list_reassignments",
]


@dataclass(frozen=True)
class ReassignmentResult:
    topic: str
    partition_id: int
    error_code: ErrorCode = ErrorCode.none
    error_message: str | None = None


@dataclass(frozen=True)
class OngoingReassignment:
    topic: str
    partition_id: int
    replicas: tuple[int, ...]
    adding_replicas: tuple[int, ...]
    removing_replicas: tuple[int, ...]


def _target(partition: PartitionImage) -> tuple[int, ...]:
    return tuple(r for r in partition.replicas if r not in partition.removing_replicas)


def _original(partition: PartitionImage) -> tuple[int, ...]:
    return tuple(r for r in partition.replicas if r not in partition.adding_replicas)


def _leader(
    partition: PartitionImage, replicas: Sequence[int], isr: Sequence[int], live: AbstractSet[int]
) -> int:
    """The current leader if it stays, else the first in-sync live one of `replicas`."""
    if partition.leader in replicas:
        return partition.leader
    candidates = [r for r in replicas if r in isr and r in live]
    return candidates[0] if candidates else -1


def _invalid_target(target: Sequence[int], image: MetadataImage) -> str | None:
    if not target:
        return "The manual partition assignment includes an empty replica list."
    if len(set(target)) != len(target):
        return f"The manual partition assignment includes duplicate replicas: {list(target)}"
    unknown = [b for b in target if b not in image.brokers]
    if unknown:
        return f"The manual partition assignment includes unknown brokers {unknown}"
    fenced = [b for b in target if image.brokers[b].fenced]
    if fenced:
        return f"The manual partition assignment includes fenced brokers {fenced}"
    return None


def _switch(
    topic_id: uuid.UUID,
    partition: PartitionImage,
    live: AbstractSet[int],
) -> PartitionChangeRecord | None:
    """The completing record of `partition`'s reassignment, if its target is in sync."""
    if not partition.reassigning:
        return None
    target = _target(partition)
    if any(r not in partition.isr for r in target):
        return None
    isr = tuple(r for r in partition.isr if r in target)
    leader = _leader(partition, target, isr, live)
    return PartitionChangeRecord(
        topic_id,
        partition.partition_id,
        leader=leader if leader != partition.leader else None,
        isr=isr if isr != partition.isr else None,
        replicas=target,
        removing_replicas=(),
        adding_replicas=(),
    )


def complete_reassignment(
    image: MetadataImage,
    topic_id: uuid.UUID,
    partition_id: int,
    ineligible: AbstractSet[int] = frozenset(),
) -> list[MetadataRecord]:
    """The record completing the partition's reassignment, once its target is in sync."""
    topic = image.topics_by_id.get(topic_id)
    partition = topic.partitions.get(partition_id) if topic is not None else None
    if partition is None:
        return []
    live = set(image.live_broker_ids()) - set(ineligible)
    record = _switch(topic_id, partition, live)
    return [record] if record is not None else []


def _change(
    topic_id: uuid.UUID,
    partition: PartitionImage,
    target: tuple[int, ...] | None,
    live: AbstractSet[int],
) -> PartitionChangeRecord | None:
    """The record starting (target) or cancelling (None) a reassignment."""
    if target is not None and not partition.reassigning and target == partition.replicas:
        return None
    original = _original(partition)
    if target is None:
        replicas = original
        adding: tuple[int, ...] = ()
        removing: tuple[int, ...] = ()
    else:
        adding = tuple(r for r in target if r not in original)
        removing = tuple(r for r in original if r not in target)
        replicas = (*target, *removing)
    isr = tuple(r for r in partition.isr if r in replicas)
    if not isr:  # only dropped replicas were in sync: the first original one restarts it
        isr = replicas[:1]
    if target is not None and all(r in isr for r in target):  # in sync already: complete
        replicas, adding, removing = target, (), ()
        isr = tuple(r for r in isr if r in target)
    leader = _leader(partition, replicas, isr, live)
    return PartitionChangeRecord(
        topic_id,
        partition.partition_id,
        leader=leader if leader != partition.leader else None,
        isr=isr if isr != partition.isr else None,
        replicas=replicas if replicas != partition.replicas else None,
        removing_replicas=removing,
        adding_replicas=adding,
    )


def alter_reassignments(
    image: MetadataImage,
    requests: Sequence[tuple[str, int, Sequence[int] | None]],
    ineligible: AbstractSet[int] = frozenset(),
) -> tuple[list[MetadataRecord], list[ReassignmentResult]]:
    """Records starting, replacing or cancelling reassignments; one result per partition
    (see the module docstring)."""
    live = set(image.live_broker_ids()) - set(ineligible)
    records: list[MetadataRecord] = []
    results: list[ReassignmentResult] = []
    for name, index, wanted in requests:
        topic = image.topics_by_name.get(name)
        partition = topic.partitions.get(index) if topic is not None else None
        if topic is None or partition is None:
            results.append(
                ReassignmentResult(
                    name,
                    index,
                    ErrorCode.unknown_topic_or_partition,
                    "The partition does not exist.",
                )
            )
            continue
        target = tuple(wanted) if wanted is not None else None
        if target is None and not partition.reassigning:
            results.append(
                ReassignmentResult(
                    name,
                    index,
                    ErrorCode.no_reassignment_in_progress,
                    f"No ongoing reassignment for partition {name}-{index}.",
                )
            )
            continue
        problem = _invalid_target(target, image) if target is not None else None
        if problem is not None:
            results.append(
                ReassignmentResult(name, index, ErrorCode.invalid_replica_assignment, problem)
            )
            continue
        record = _change(topic.topic_id, partition, target, live)
        if record is not None:
            records.append(record)
        results.append(ReassignmentResult(name, index))
    return records, results


def list_reassignments(
    image: MetadataImage, partitions: Sequence[tuple[str, int]] | None
) -> list[OngoingReassignment]:
    """The reassignments in progress, of every partition or of those asked."""
    if partitions is None:
        wanted = [
            (topic.name, index)
            for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name)
            for index in sorted(topic.partitions)
        ]
    else:
        wanted = list(dict.fromkeys(partitions))
    ongoing: list[OngoingReassignment] = []
    for name, index in wanted:
        topic = image.topics_by_name.get(name)
        partition = topic.partitions.get(index) if topic is not None else None
        if partition is None or not partition.reassigning:
            continue
        ongoing.append(
            OngoingReassignment(
                name,
                index,
                partition.replicas,
                partition.adding_replicas,
                partition.removing_replicas,
            )
        )
    return ongoing
