"""CreatePartitions across brokers: new partitions get the topic's replication factor,
distinct replicas among the live brokers only, with leaders (first replicas) spread over
them; a manual assignment of the wrong width or naming a fenced broker is refused."""

from __future__ import annotations

from collections import Counter

from ottla.cluster.controller.fencing import Sessions
from ottla.cluster.controller.rules import create_partitions
from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import PartitionRecord
from ottla.protocol import ErrorCode
from tests.cluster.test_fencing import _apply, _cluster


def _grow(image: MetadataImage, count: int) -> list[PartitionRecord]:
    records, result = create_partitions(image, "t", count, None, image.live_broker_ids())
    assert result.error_code is ErrorCode.none
    return [r for r in records if isinstance(r, PartitionRecord)]


def test_new_partitions_spread_with_the_topic_replication_factor() -> None:
    image = _cluster({0: (1, 2), 1: (2, 3)})
    added = _grow(image, 8)
    assert [r.partition_id for r in added] == list(range(2, 8))
    assert all(len(r.replicas) == 2 == len(set(r.replicas)) for r in added)
    assert all(r.isr == r.replicas and r.leader == r.replicas[0] for r in added)
    leaders = Counter(r.leader for r in added)
    assert set(leaders) == {1, 2, 3} and max(leaders.values()) - min(leaders.values()) <= 1


def test_fenced_brokers_get_no_new_partitions() -> None:
    image = _cluster({0: (1, 2)})
    sessions = Sessions(1)
    sessions.last_heartbeat_ms = {1: 100, 2: 100, 3: 0}
    image = _apply(image, sessions.expire(image, 50))
    assert image.brokers[3].fenced
    added = _grow(image, 5)
    assert all(3 not in r.replicas for r in added)
    _, result = create_partitions(image, "t", 2, [[1, 3]], image.live_broker_ids())
    assert result.error_code is ErrorCode.invalid_replica_assignment
    _, result = create_partitions(image, "t", 2, [[1]], image.live_broker_ids())
    assert result.error_code is ErrorCode.invalid_replica_assignment
