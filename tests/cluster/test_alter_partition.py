"""Proves the controller's AlterPartition rule and unclean election (fencing.py): only the
partition's leader at the current leader and partition epochs may change the ISR, to
live replicas including itself; a committed change bumps the partition epoch. Fencing a
leader whose ISR has no live member leaves the partition offline unless the topic sets
`unclean.leader.election.enable`, which elects a live out-of-sync replica."""

from __future__ import annotations

from ottla.cluster.controller.fencing import alter_partition, fence
from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    TOPIC_RESOURCE,
    ConfigRecord,
    MetadataRecord,
    PartitionChangeRecord,
)
from ottla.protocol import ErrorCode
from tests.cluster.test_fencing import TOPIC, _apply, _cluster


def test_leader_shrinks_and_expands_the_isr() -> None:
    image = _cluster({0: (1, 2, 3)})
    partition = image.topics_by_id[TOPIC].partitions[0]
    records, result = alter_partition(image, 1, TOPIC, 0, 0, partition.partition_epoch, (1, 2))
    assert result.error_code is ErrorCode.none and result.isr == (1, 2)
    assert records == [PartitionChangeRecord(TOPIC, 0, isr=(1, 2))]
    image = _apply(image, records)
    changed = image.topics_by_id[TOPIC].partitions[0]
    assert changed.isr == (1, 2) and changed.partition_epoch == result.partition_epoch
    assert changed.leader_epoch == partition.leader_epoch
    records, result = alter_partition(image, 1, TOPIC, 0, 0, changed.partition_epoch, (1, 2, 3))
    assert result.error_code is ErrorCode.none and records


def test_refusals() -> None:
    image = _cluster({0: (1, 2, 3)})
    epoch = image.topics_by_id[TOPIC].partitions[0].partition_epoch
    cases = [
        ((2, TOPIC, 0, 0, epoch, (2, 3)), ErrorCode.not_leader_or_follower),
        ((1, TOPIC, 0, 0, epoch + 1, (1, 2)), ErrorCode.invalid_update_version),
        ((1, TOPIC, 0, 0, epoch, (2, 3)), ErrorCode.ineligible_replica),
        ((1, TOPIC, 0, 0, epoch, (1, 4)), ErrorCode.ineligible_replica),
        ((1, TOPIC, 5, 0, epoch, (1,)), ErrorCode.unknown_topic_or_partition),
    ]
    for args, code in cases:
        records, result = alter_partition(image, *args)
        assert records == [] and result.error_code is code, (args, result)


def test_fenced_member_may_not_join() -> None:
    image = _cluster({0: (1, 2, 3)})
    epoch = image.topics_by_id[TOPIC].partitions[0].partition_epoch
    image = _apply(image, [PartitionChangeRecord(TOPIC, 0, isr=(1, 2))])
    image = _apply(image, fence(image, 3))
    partition = image.topics_by_id[TOPIC].partitions[0]
    assert partition.partition_epoch > epoch
    _, result = alter_partition(image, 1, TOPIC, 0, 0, partition.partition_epoch, (1, 2, 3))
    assert result.error_code is ErrorCode.ineligible_replica


def _leader_alone_in_isr() -> tuple[MetadataImage, list[MetadataRecord]]:
    image = _cluster({0: (1, 2, 3)})
    records: list[MetadataRecord] = [PartitionChangeRecord(TOPIC, 0, isr=(1,))]
    return image, records


def test_no_unclean_election_by_default() -> None:
    image, records = _leader_alone_in_isr()
    image = _apply(image, records)
    image = _apply(image, fence(image, 1))
    partition = image.topics_by_id[TOPIC].partitions[0]
    assert partition.leader == -1 and partition.isr == (1,)


def test_unclean_election_where_the_topic_enables_it() -> None:
    image, records = _leader_alone_in_isr()
    records.append(ConfigRecord(TOPIC_RESOURCE, "t", "unclean.leader.election.enable", "true"))
    image = _apply(image, records)
    image = _apply(image, fence(image, 1))
    partition = image.topics_by_id[TOPIC].partitions[0]
    assert partition.leader == 2 and partition.isr == (2,)
