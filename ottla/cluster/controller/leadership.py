"""Leader elections asked for by an operator or by the rebalancer (PURE).

Like Kafka's ReplicationControlManager.electLeaders and its preferred-leader
balancing, in two inputs:

- `elect_leaders(image, election_type, partitions, ineligible)`: an ElectLeaders
  request. `partitions` None means every partition; then only the partitions that got
  a new leader or failed for another reason than ELECTION_NOT_NEEDED are answered
  (Kafka's "elect all"). Per partition:

    PREFERRED (0): the preferred replica (the first of `replicas`) becomes leader if it
      is live and in the ISR; already leader: ELECTION_NOT_NEEDED; otherwise
      PREFERRED_LEADER_NOT_AVAILABLE.
    UNCLEAN (1): only a partition without a live leader changes: the first live ISR
      member, else the first live replica (the ISR becomes that replica alone: records
      not in its log are lost, which is what the operator asked for); a live leader:
      ELECTION_NOT_NEEDED; nobody: ELIGIBLE_LEADERS_NOT_AVAILABLE.

  An unknown topic or partition answers UNKNOWN_TOPIC_OR_PARTITION; another election
  type INVALID_REQUEST.
- `preferred_imbalance(image, ineligible)`: the records of the automatic rebalance
  (`auto.leader.rebalance.enable`): every partition whose preferred replica is live, in
  the ISR and not leader gets it back as leader. Kafka's
  `leader.imbalance.per.broker.percentage` threshold is not applied (KRaft ignores it
  too): any imbalance is corrected at the next check.

"Live" is registered, unfenced and not in controlled shutdown (`ineligible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from ottla.cluster.metadata.image import MetadataImage, PartitionImage
from ottla.cluster.metadata.records import MetadataRecord, PartitionChangeRecord
from ottla.protocol import ErrorCode

__all__ = [
    "ELECTION_PREFERRED",
    "ELECTION_UNCLEAN",
    "ElectionResult",
    "elect_leaders",
    "preferred_imbalance",
]

ELECTION_PREFERRED = 0
ELECTION_UNCLEAN = 1


@dataclass(frozen=True)
class ElectionResult:
    topic: str
    partition_id: int
    error_code: ErrorCode
    error_message: str | None = None


def _elect(
    partition: PartitionImage, election_type: int, live: AbstractSet[int]
) -> tuple[int, tuple[int, ...] | None, ErrorCode, str | None]:
    """(new leader, new ISR or None, error, message) of one partition."""
    if election_type == ELECTION_PREFERRED:
        preferred = partition.replicas[0]
        if partition.leader == preferred:
            return -1, None, ErrorCode.election_not_needed, "Leader is already the preferred"
        if preferred in live and preferred in partition.isr:
            return preferred, None, ErrorCode.none, None
        return (
            -1,
            None,
            ErrorCode.preferred_leader_not_available,
            f"Failed to elect leader: preferred replica {preferred} is not live and in the ISR",
        )
    if partition.leader >= 0 and partition.leader in live:
        return -1, None, ErrorCode.election_not_needed, "Partition has a live leader"
    in_sync = [r for r in partition.isr if r in live]
    if in_sync:
        return in_sync[0], None, ErrorCode.none, None
    replicas = [r for r in partition.replicas if r in live]
    if replicas:
        return replicas[0], (replicas[0],), ErrorCode.none, None
    return (
        -1,
        None,
        ErrorCode.eligible_leaders_not_available,
        "Failed to elect leader: no live replica",
    )


def elect_leaders(
    image: MetadataImage,
    election_type: int,
    partitions: Sequence[tuple[str, int]] | None,
    ineligible: AbstractSet[int] = frozenset(),
) -> tuple[list[MetadataRecord], list[ElectionResult]]:
    """Records electing leaders, and one result per partition (module docstring)."""
    live = set(image.live_broker_ids()) - set(ineligible)
    records: list[MetadataRecord] = []
    results: list[ElectionResult] = []
    elect_all = partitions is None
    if partitions is None:
        wanted = [
            (topic.name, index)
            for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name)
            for index in sorted(topic.partitions)
        ]
    else:
        wanted = list(dict.fromkeys(partitions))
    for name, index in wanted:
        topic = image.topics_by_name.get(name)
        partition = topic.partitions.get(index) if topic is not None else None
        if topic is None or partition is None:
            results.append(
                ElectionResult(
                    name,
                    index,
                    ErrorCode.unknown_topic_or_partition,
                    "The partition does not exist.",
                )
            )
            continue
        if election_type not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
            results.append(
                ElectionResult(
                    name, index, ErrorCode.invalid_request, f"Unknown election type {election_type}"
                )
            )
            continue
        leader, isr, error, message = _elect(partition, election_type, live)
        if error is ErrorCode.none:
            records.append(PartitionChangeRecord(topic.topic_id, index, leader=leader, isr=isr))
        if not elect_all or error is not ErrorCode.election_not_needed:
            results.append(ElectionResult(name, index, error, message))
    return records, results


def preferred_imbalance(
    image: MetadataImage, ineligible: AbstractSet[int] = frozenset()
) -> list[MetadataRecord]:
    """Records moving leadership back to live in-sync preferred replicas (docstring)."""
    live = set(image.live_broker_ids()) - set(ineligible)
    records: list[MetadataRecord] = []
    for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name):
        for index in sorted(topic.partitions):
            partition = topic.partitions[index]
            preferred = partition.replicas[0]
            if partition.leader != preferred and preferred in live and preferred in partition.isr:
                records.append(PartitionChangeRecord(topic.topic_id, index, leader=preferred))
    return records
