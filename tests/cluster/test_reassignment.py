"""Reassignment rules (KIP-455), by interaction scripts: a target records the adding
and removing replicas with their union as replicas; the leader's ISR expansions bring
the added replicas in sync and the last one completes the switch (replicas = target in
target order, ISR filtered, adding/removing cleared); a leader being removed moves to
the first in-sync live target replica; a target already in sync completes at once; a
null target cancels (back to the original replicas) and cancelling nothing answers
NO_REASSIGNMENT_IN_PROGRESS; a new target replaces an ongoing one; invalid targets
answer INVALID_REPLICA_ASSIGNMENT and unknown partitions UNKNOWN_TOPIC_OR_PARTITION;
the adding/removing replicas survive the record encoding and a snapshot."""

from __future__ import annotations

from ottla.cluster.controller.fencing import alter_partition, fence
from ottla.cluster.controller.reassignment import (
    OngoingReassignment,
    alter_reassignments,
    complete_reassignment,
    list_reassignments,
)
from ottla.cluster.metadata.image import MetadataImage, PartitionImage
from ottla.cluster.metadata.log import image_records
from ottla.cluster.metadata.records import (
    PartitionChangeRecord,
    PartitionRecord,
    decode_metadata_record,
    encode_metadata_record,
)
from ottla.protocol import ErrorCode
from tests.cluster.test_fencing import TOPIC, _apply, _cluster


def _partition(image: MetadataImage, index: int = 0) -> PartitionImage:
    return image.topics_by_name["t"].partitions[index]


def _reassign(
    image: MetadataImage, target: tuple[int, ...] | None, index: int = 0
) -> tuple[MetadataImage, ErrorCode]:
    records, results = alter_reassignments(image, [("t", index, target)])
    assert len(results) == 1
    return _apply(image, records), results[0].error_code


def _expand(image: MetadataImage, isr: tuple[int, ...], index: int = 0) -> MetadataImage:
    """The leader's AlterPartition, then the completion check (as the controller shell)."""
    part = _partition(image, index)
    records, result = alter_partition(
        image, part.leader, TOPIC, index, part.leader_epoch, part.partition_epoch, isr
    )
    assert result.error_code is ErrorCode.none
    changed = _apply(image, records)
    return _apply(changed, complete_reassignment(changed, TOPIC, index))


def test_reassignment_starts_then_completes_once_added_replicas_catch_up() -> None:
    image = _cluster({0: (1,)})
    image, code = _reassign(image, (2, 3))
    assert code is ErrorCode.none
    p = _partition(image)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ((2, 3, 1), (2, 3), (1,))
    assert (p.leader, p.isr, p.leader_epoch) == (1, (1,), 0)
    assert list_reassignments(image, None) == [OngoingReassignment("t", 0, (2, 3, 1), (2, 3), (1,))]
    assert list_reassignments(image, [("t", 0), ("t", 5), ("u", 0)]) == list_reassignments(
        image, None
    )
    image = _expand(image, (1, 2))  # one added replica in sync: not yet
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((2, 3, 1), (1, 2), 1, True)
    image = _expand(image, (1, 2, 3))  # the last one: the switch
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader) == ((2, 3), (2, 3), 2)
    assert (p.adding_replicas, p.removing_replicas, p.leader_epoch) == ((), (), 1)
    assert list_reassignments(image, None) == []
    assert complete_reassignment(image, TOPIC, 0) == []


def test_leader_being_removed_moves_to_first_in_sync_live_target() -> None:
    image = _cluster({0: (1, 2), 1: (1, 2, 3)})
    image, _ = _reassign(image, (3, 2))
    p = _partition(image)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ((3, 2, 1), (3,), (1,))
    image = _expand(image, (1, 2, 3))
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader) == ((3, 2), (2, 3), 3)
    # A target already in sync completes at once; 3 in controlled shutdown is skipped.
    records, results = alter_reassignments(image, [("t", 1, (3, 2))], {3})
    assert results[0].error_code is ErrorCode.none
    image = _apply(image, records)
    p = _partition(image, 1)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((3, 2), (2, 3), 2, False)
    # A leader that stays keeps leading.
    image = _cluster({0: (1, 2, 3)})
    image, _ = _reassign(image, (2, 1))
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader, p.leader_epoch) == ((2, 1), (1, 2), 1, 0)


def test_cancel_reverts_to_the_original_replicas() -> None:
    image = _cluster({0: (1,)})
    image, _ = _reassign(image, (2, 3))
    image = _expand(image, (1, 2))
    image, code = _reassign(image, None)
    assert code is ErrorCode.none
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((1,), (1,), 1, False)
    image, code = _reassign(image, None)
    assert code is ErrorCode.no_reassignment_in_progress


def test_new_target_replaces_an_ongoing_reassignment() -> None:
    image = _cluster({0: (1,)})
    image, _ = _reassign(image, (2, 3))
    image = _expand(image, (1, 2))
    image, _ = _reassign(image, (3,))
    p = _partition(image)
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ((3, 1), (3,), (1,))
    assert (p.isr, p.leader) == ((1,), 1)
    image = _expand(image, (1, 3))
    p = _partition(image)
    assert (p.replicas, p.isr, p.leader, p.reassigning) == ((3,), (3,), 3, False)


def test_invalid_requests() -> None:
    image = _cluster({0: (1, 2)})
    image = _apply(image, fence(image, 3))
    records, results = alter_reassignments(
        image,
        [
            ("nope", 0, (1,)),
            ("t", 7, (1,)),
            ("t", 0, ()),
            ("t", 0, (1, 1)),
            ("t", 0, (1, 9)),
            ("t", 0, (1, 3)),
            ("t", 0, (1, 2)),  # the current replicas: nothing to do
        ],
    )
    assert records == []
    assert [r.error_code for r in results] == [
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.none,
    ]
    assert all(r.error_message for r in results[:6])


def test_adding_and_removing_replicas_survive_encoding_and_snapshot() -> None:
    image = _cluster({0: (1,)})
    image, _ = _reassign(image, (2, 3))
    for record in image_records(image):
        assert decode_metadata_record(*encode_metadata_record(record)) == record
    restored = MetadataImage().apply(image_records(image), image.offset)
    assert _partition(restored) == _partition(image)
    change = PartitionChangeRecord(TOPIC, 0, removing_replicas=(1,), adding_replicas=())
    assert decode_metadata_record(*encode_metadata_record(change)) == change
    # A record written before these fields existed reads as no reassignment.
    old = PartitionRecord(TOPIC, 0, (1,), (1,), 1)
    key, value = encode_metadata_record(old)
    value = value.replace(b', "removing_replicas": []', b"").replace(
        b'"adding_replicas": [], ', b""
    )
    assert b"adding" not in value and b"removing" not in value
    assert decode_metadata_record(key, value) == old
