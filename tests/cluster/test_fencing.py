"""Controller fencing rules, by interaction scripts: registration is idempotent per
incarnation; a broker silent past the session timeout is fenced and its partitions get a
leader from the ISR without it, or leader -1 with replication factor 1; its next
heartbeat unfences it and it leads its offline partitions again (leader epochs bump);
stale epochs and unknown brokers are refused; a new controller gives full sessions."""

from __future__ import annotations

import uuid

from ottla.cluster.controller.fencing import Sessions, allocate_producer_ids, register
from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    BrokerRegistrationChangeRecord,
    Endpoint,
    MetadataRecord,
    PartitionRecord,
    TopicRecord,
)
from ottla.protocol import ErrorCode

TOPIC = uuid.UUID(int=7)
INCARNATIONS = {b: uuid.UUID(int=100 + b) for b in (1, 2, 3)}


def _apply(image: MetadataImage, records: list[MetadataRecord]) -> MetadataImage:
    return image.apply(records, image.offset + max(len(records), 1))


def _cluster(replicas: dict[int, tuple[int, ...]]) -> MetadataImage:
    image = MetadataImage()
    for broker in (1, 2, 3):
        records, _ = register(
            image,
            broker,
            INCARNATIONS[broker],
            (Endpoint("PLAINTEXT", "127.0.0.1", 9090 + broker),),
            None,
            image.offset + 1,
        )
        image = _apply(image, records)
    records = [TopicRecord("t", TOPIC)]
    records += [PartitionRecord(TOPIC, index, r, r, r[0]) for index, r in sorted(replicas.items())]
    return _apply(image, records)


def test_registration_with_the_same_incarnation_is_idempotent() -> None:
    image = _cluster({0: (1,)})
    epoch = image.brokers[2].broker_epoch
    records, again = register(
        image, 2, INCARNATIONS[2], (Endpoint("PLAINTEXT", "h", 1),), None, image.offset + 1
    )
    assert records == [] and again == epoch
    records, new_epoch = register(
        image, 2, uuid.UUID(int=999), (Endpoint("PLAINTEXT", "h", 1),), None, image.offset + 1
    )
    assert len(records) == 1 and new_epoch == image.offset + 1 != epoch


def test_silent_broker_is_fenced_rf1_offline_then_back_on_heartbeat() -> None:
    image = _cluster({0: (1,), 1: (2,), 2: (3,)})
    sessions = Sessions(session_timeout_ms=9000)
    sessions.reset(image, now_ms=0)
    for now in range(2000, 10001, 2000):  # 1 and 2 heartbeat, 3 is silent
        for broker in (1, 2):
            result = sessions.heartbeat(image, broker, image.brokers[broker].broker_epoch, now)
            assert result.error_code is ErrorCode.none and not result.records
        assert sessions.expire(image, now) == [] or now > 9000
    records = sessions.expire(image, 9001)
    assert records[0] == BrokerRegistrationChangeRecord(3, image.brokers[3].broker_epoch, True)
    image = _apply(image, records)
    assert image.brokers[3].fenced and image.live_broker_ids() == [1, 2]
    offline = image.topics_by_id[TOPIC].partitions[2]
    assert offline.leader == -1 and offline.isr == (3,) and offline.leader_epoch == 1
    assert image.topics_by_id[TOPIC].partitions[0].leader == 1
    assert sessions.expire(image, 20000) != []  # 1 and 2 stopped too: fenced in turn

    image2 = image
    result = sessions.heartbeat(image2, 3, image2.brokers[3].broker_epoch, 12000)
    assert result.error_code is ErrorCode.none and not result.fenced
    image2 = _apply(image2, result.records)
    back = image2.topics_by_id[TOPIC].partitions[2]
    assert not image2.brokers[3].fenced
    assert back.leader == 3 and back.leader_epoch == 2


def test_fencing_a_leader_elects_from_the_isr_and_shrinks_it() -> None:
    image = _cluster({0: (1, 2, 3), 1: (2, 1, 3)})
    sessions = Sessions(session_timeout_ms=100)
    sessions.reset(image, now_ms=0)
    for broker in (2, 3):
        sessions.heartbeat(image, broker, image.brokers[broker].broker_epoch, 90)
    image = _apply(image, sessions.expire(image, 150))
    p0, p1 = image.topics_by_id[TOPIC].partitions[0], image.topics_by_id[TOPIC].partitions[1]
    assert (p0.leader, p0.isr, p0.leader_epoch) == (2, (2, 3), 1)
    assert (p1.leader, p1.isr, p1.leader_epoch) == (2, (2, 3), 0)


def test_unknown_broker_and_stale_epoch_are_refused() -> None:
    image = _cluster({0: (1,)})
    sessions = Sessions(session_timeout_ms=100)
    assert sessions.heartbeat(image, 9, 0, 1).error_code is ErrorCode.broker_id_not_registered
    stale = image.brokers[1].broker_epoch - 1
    assert sessions.heartbeat(image, 1, stale, 1).error_code is ErrorCode.stale_broker_epoch


def test_new_controller_gives_every_broker_a_full_session() -> None:
    image = _cluster({0: (1,)})
    sessions = Sessions(session_timeout_ms=100)
    sessions.reset(image, now_ms=1_000_000)
    assert sessions.expire(image, 1_000_100) == []
    assert sessions.next_deadline_ms(image) == 1_000_101
    assert len(sessions.expire(image, 1_000_101)) >= 3


def test_producer_id_blocks_never_overlap() -> None:
    image = MetadataImage()
    records, first = allocate_producer_ids(image, 1, 0, 1000)
    image = _apply(image, records)
    records, second = allocate_producer_ids(image, 2, 0, 1000)
    assert (first, second) == (0, 1000)


def _fenced(image: MetadataImage) -> set[int]:
    return {b for b, broker in image.brokers.items() if broker.fenced}


def test_a_lost_heartbeat_connection_fences_after_the_grace_not_the_session() -> None:
    image = _cluster({0: (1, 2, 3)})
    sessions = Sessions(session_timeout_ms=9000, grace_ms=500)
    sessions.reset(image, now_ms=0)
    sessions.connection_lost(1, now_ms=100)
    assert sessions.next_deadline_ms(image) == 600
    assert sessions.expire(image, 599) == []
    image = _apply(image, sessions.expire(image, 600))
    partition = image.topics_by_id[TOPIC].partitions[0]
    assert _fenced(image) == {1}
    assert (partition.leader, partition.isr) == (2, (2, 3))
    # Fenced once; the suspicion is spent, and a heartbeat brings it back.
    assert sessions.expire(image, 700) == []
    result = sessions.heartbeat(image, 1, image.brokers[1].broker_epoch, 800)
    assert not result.fenced and _fenced(_apply(image, result.records)) == set()


def test_a_heartbeat_within_the_grace_clears_the_suspicion() -> None:
    image = _cluster({0: (1, 2, 3)})
    sessions = Sessions(session_timeout_ms=9000, grace_ms=500)
    sessions.reset(image, now_ms=0)
    sessions.connection_lost(2, now_ms=100)
    sessions.heartbeat(image, 2, image.brokers[2].broker_epoch, 300)
    assert sessions.expire(image, 601) == []
    assert sessions.expire(image, 9000) == []  # the full session still counts from 300
    assert _fenced(_apply(image, sessions.expire(image, 9301))) == {1, 2, 3}


def test_a_new_controller_suspects_only_the_previous_quorum_leader() -> None:
    image = _cluster({0: (3, 1, 2)})
    sessions = Sessions(session_timeout_ms=9000, grace_ms=500)
    sessions.reset(image, now_ms=1000, suspects={3, 42})  # 42 is not registered
    assert sessions.suspect_deadline_ms == {3: 1500}
    image = _apply(image, sessions.expire(image, 1500))
    assert _fenced(image) == {3}
    assert image.topics_by_id[TOPIC].partitions[0].leader == 1
    # A second reset (another controller change) starts over without suspects.
    sessions.reset(image, now_ms=2000)
    assert sessions.suspect_deadline_ms == {}


def test_the_grace_never_exceeds_the_session() -> None:
    image = _cluster({0: (1,)})
    sessions = Sessions(session_timeout_ms=100, grace_ms=500)
    assert sessions.grace_ms == 100
    sessions.reset(image, now_ms=0)
    sessions.connection_lost(1, now_ms=50)
    sessions.connection_lost(1, now_ms=90)  # a later loss never extends the deadline
    assert sessions.suspect_deadline_ms[1] == 150
    assert Sessions(session_timeout_ms=100).grace_ms == 100
