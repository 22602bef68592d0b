"""Leadership rules, by interaction scripts: a controlled shutdown moves every
partition a broker leads to another live ISR member and takes it out of every ISR, then
(nothing left to move) fences it and answers should_shut_down; an RF=1 partition it
leads is not movable and goes offline only with the fence; no ISR expansion or election
picks a broker in controlled shutdown; a new registration ends the shutdown state.
ElectLeaders PREFERRED moves leadership back to a live in-sync preferred replica
(ELECTION_NOT_NEEDED / PREFERRED_LEADER_NOT_AVAILABLE otherwise, and "all partitions"
answers only changes); UNCLEAN elects only leaderless partitions, from a live replica
outside the ISR if needed; the automatic rebalance elects the preferred replicas."""

from __future__ import annotations

from ottla.cluster.controller.fencing import Sessions, alter_partition
from ottla.cluster.controller.leadership import (
    ELECTION_PREFERRED,
    ELECTION_UNCLEAN,
    elect_leaders,
    preferred_imbalance,
)
from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import PartitionChangeRecord
from ottla.protocol import ErrorCode
from tests.cluster.test_fencing import TOPIC, _apply, _cluster


def _heartbeat(
    sessions: Sessions, image: MetadataImage, broker: int, shut_down: bool, now_ms: int = 0
) -> tuple[MetadataImage, bool]:
    epoch = image.brokers[broker].broker_epoch
    result = sessions.heartbeat(image, broker, epoch, now_ms, shut_down)
    assert result.error_code is ErrorCode.none
    return _apply(image, result.records), result.should_shut_down


def test_controlled_shutdown_moves_leadership_then_fences() -> None:
    image = _cluster({0: (1, 2, 3), 1: (2, 1, 3), 2: (1,), 3: (3, 2)})
    sessions = Sessions(9000)
    image, done = _heartbeat(sessions, image, 1, True)
    assert not done
    p = image.topics_by_name["t"].partitions
    assert (p[0].leader, p[0].isr, p[0].leader_epoch) == (2, (2, 3), 1)
    assert (p[1].leader, p[1].isr, p[1].leader_epoch) == (2, (2, 3), 0)
    assert (p[2].leader, p[2].isr) == (1, (1,))  # RF=1: not movable
    assert (p[3].leader, p[3].isr) == (3, (3, 2))  # not a replica: untouched
    assert not image.brokers[1].fenced
    image, done = _heartbeat(sessions, image, 1, True)
    assert done
    assert image.brokers[1].fenced
    assert image.topics_by_name["t"].partitions[2].leader == -1
    # An ordinary heartbeat does not unfence a broker that shut down.
    image, done = _heartbeat(sessions, image, 1, False)
    assert image.brokers[1].fenced


def test_shutting_down_broker_is_not_added_back_or_elected() -> None:
    image = _cluster({0: (1, 2, 3)})
    sessions = Sessions(9000)
    image, _ = _heartbeat(sessions, image, 1, True)
    part = image.topics_by_name["t"].partitions[0]
    records, result = alter_partition(
        image, 2, TOPIC, 0, part.leader_epoch, part.partition_epoch, (2, 3, 1), {1}
    )
    assert records == [] and result.error_code is ErrorCode.ineligible_replica
    records, results = elect_leaders(image, ELECTION_PREFERRED, [("t", 0)], {1})
    assert records == [] and results[0].error_code is ErrorCode.preferred_leader_not_available
    assert preferred_imbalance(image, sessions.shutting_down) == []
    # Broker 2 (the new leader) is fenced while 1 shuts down: 3 leads, never 1, and an
    # unclean election does not pick 1 either.
    sessions.last_heartbeat_ms = {1: 10_000, 2: 0, 3: 10_000}
    image = _apply(image, sessions.expire(image, 10_000))
    assert image.brokers[2].fenced
    assert image.topics_by_name["t"].partitions[0].leader == 3
    # A new registration (a restarted process) ends the shutdown state.
    sessions.registered(1, 11_000)
    assert 1 not in sessions.shutting_down


def test_preferred_election_and_rebalance() -> None:
    image = _cluster({0: (1, 2, 3), 1: (2, 3, 1)})
    image = _apply(image, [PartitionChangeRecord(TOPIC, 0, leader=2)])
    records, results = elect_leaders(image, ELECTION_PREFERRED, None)
    assert [(r.partition_id, r.error_code) for r in results] == [(0, ErrorCode.none)]
    assert records == [PartitionChangeRecord(TOPIC, 0, leader=1)]
    _, results = elect_leaders(image, ELECTION_PREFERRED, [("t", 1), ("t", 9), ("x", 0)])
    assert [r.error_code for r in results] == [
        ErrorCode.election_not_needed,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.unknown_topic_or_partition,
    ]
    assert preferred_imbalance(image) == records
    # Preferred replica out of the ISR: not available, and no rebalance.
    image = _apply(image, [PartitionChangeRecord(TOPIC, 0, isr=(2, 3))])
    _, results = elect_leaders(image, ELECTION_PREFERRED, [("t", 0)])
    assert results[0].error_code is ErrorCode.preferred_leader_not_available
    assert preferred_imbalance(image) == []


def test_unclean_election() -> None:
    image = _cluster({0: (1, 2, 3), 1: (2, 3, 1)})
    image = _apply(image, [PartitionChangeRecord(TOPIC, 0, leader=-1, isr=(1,))])
    fenced = Sessions(1)
    fenced.last_heartbeat_ms = {1: 0, 2: 100, 3: 100}
    image = _apply(image, fenced.expire(image, 50))  # broker 1 fenced
    records, results = elect_leaders(image, ELECTION_UNCLEAN, [("t", 0), ("t", 1)])
    assert [r.error_code for r in results] == [ErrorCode.none, ErrorCode.election_not_needed]
    assert records == [PartitionChangeRecord(TOPIC, 0, leader=2, isr=(2,))]
    _, results = elect_leaders(image, 5, [("t", 0)])
    assert results[0].error_code is ErrorCode.invalid_request
