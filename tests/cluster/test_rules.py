"""Controller rules and the metadata image: admin requests become records, records an image.

Proves: CreateTopics validation mirrors Kafka (names, collisions, duplicates,
partitions, replication factor, manual assignments, configs) and produces
TopicRecord/ConfigRecord/PartitionRecord; applying them yields the topic;
DeleteTopics and CreatePartitions likewise; placement spreads leaders; records
survive an encode/decode round trip; a request that would write more than
MAX_RECORDS_PER_USER_OP records fails whole with POLICY_VIOLATION and Kafka's message,
before computing any assignment (two billion partitions answer at once).
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from ottla.cluster import (
    MAX_RECORDS_PER_USER_OP,
    MetadataImage,
    NewTopic,
    PartitionChangeRecord,
    RegisterBrokerRecord,
    TopicDefaults,
    assign_replicas,
    create_partitions,
    create_topics,
    delete_topics,
    grow_topics,
    validate_topic_name,
)
from ottla.cluster.metadata.records import (
    Endpoint,
    decode_metadata_record,
    encode_metadata_record,
)
from ottla.protocol import ErrorCode

DEFAULTS = TopicDefaults(num_partitions=2, replication_factor=1)
_ids = itertools.count(1)


def _new_id() -> uuid.UUID:
    return uuid.UUID(int=next(_ids))


def _no_config_problem(name: str, value: str | None) -> str | None:
    return None if name == "retention.ms" else f"Unknown topic config name: {name}"


def _create(image: MetadataImage, *topics: NewTopic, brokers: tuple[int, ...] = (1,)) -> tuple:  # type: ignore[type-arg]
    records, results = create_topics(
        image, list(topics), DEFAULTS, list(brokers), _no_config_problem, _new_id
    )
    return image.apply(records, image.offset + len(records)), records, results


def test_create_topic_with_defaults_and_configs() -> None:
    image, records, results = _create(
        MetadataImage(), NewTopic("orders", configs={"retention.ms": "1000"})
    )
    assert results[0].ok
    topic = image.topic("orders")
    assert topic is not None
    assert sorted(topic.partitions) == [0, 1]
    assert topic.partitions[0].leader == 1
    assert dict(topic.configs) == {"retention.ms": "1000"}
    assert [type(r).__name__ for r in records] == [
        "TopicRecord",
        "ConfigRecord",
        "PartitionRecord",
        "PartitionRecord",
    ]


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        (NewTopic(""), ErrorCode.invalid_topic_exception),
        (NewTopic(".."), ErrorCode.invalid_topic_exception),
        (NewTopic("a" * 250), ErrorCode.invalid_topic_exception),
        (NewTopic("bad name"), ErrorCode.invalid_topic_exception),
        (NewTopic("t", num_partitions=0), ErrorCode.invalid_partitions),
        (NewTopic("t", replication_factor=3), ErrorCode.invalid_replication_factor),
        (NewTopic("t", configs={"nope": "1"}), ErrorCode.invalid_config),
        (NewTopic("t", assignments={0: (1,), 2: (1,)}), ErrorCode.invalid_replica_assignment),
        (NewTopic("t", assignments={0: (9,)}), ErrorCode.invalid_replica_assignment),
        (NewTopic("t", num_partitions=1, assignments={0: (1,)}), ErrorCode.invalid_request),
    ],
)
def test_create_topic_rejections(topic: NewTopic, code: ErrorCode) -> None:
    image, records, results = _create(MetadataImage(), topic)
    assert results[0].error_code is code
    assert results[0].error_message
    assert records == []
    assert image.topics_by_name == {}


def test_existing_colliding_and_duplicate_names() -> None:
    image, _, _ = _create(MetadataImage(), NewTopic("a.b"))
    _, _, results = _create(image, NewTopic("a.b"), NewTopic("a_b"), NewTopic("x"), NewTopic("x"))
    assert [r.error_code for r in results] == [
        ErrorCode.topic_already_exists,
        ErrorCode.invalid_topic_exception,
        ErrorCode.invalid_request,
        ErrorCode.invalid_request,
    ]


def test_delete_and_grow() -> None:
    image, _, _ = _create(MetadataImage(), NewTopic("t"))
    records, result = create_partitions(image, "t", 5, None, [1])
    assert result.ok
    image = image.apply(records, 10)
    assert sorted(image.topics_by_name["t"].partitions) == [0, 1, 2, 3, 4]
    _, shrink = create_partitions(image, "t", 3, None, [1])
    assert shrink.error_code is ErrorCode.invalid_partitions
    records, results = delete_topics(image, ["t", "missing"], [None, None])
    assert [r.error_code for r in results] == [
        ErrorCode.none,
        ErrorCode.unknown_topic_or_partition,
    ]
    image = image.apply(records, 11)
    assert image.topic("t") is None


def test_requests_over_the_record_bound_fail_whole() -> None:
    half = MAX_RECORDS_PER_USER_OP // 2
    image, records, results = _create(
        MetadataImage(), NewTopic("a", num_partitions=half), NewTopic("b", num_partitions=half)
    )
    assert records == [] and image.topics_by_name == {}
    assert [(r.name, r.error_code, r.error_message) for r in results] == [
        (name, ErrorCode.policy_violation, "Unable to perform excessively large batch operation.")
        for name in ("a", "b")
    ]
    _, records, results = _create(MetadataImage(), NewTopic("huge", num_partitions=2**31 - 1))
    assert records == [] and results[0].error_code is ErrorCode.policy_violation
    image, _, results = _create(MetadataImage(), NewTopic("a", num_partitions=half))
    assert results[0].ok  # at the bound: allowed

    records, result = create_partitions(image, "a", 2**31 - 1, None, [1])
    assert records == [] and result.error_code is ErrorCode.policy_violation
    image, _, _ = _create(image, NewTopic("b", num_partitions=1))
    records, results = grow_topics(image, [("a", half * 2, None), ("b", half + 2, None)], [1])
    assert records == []
    assert [r.error_code for r in results] == [ErrorCode.policy_violation] * 2


def test_placement_spreads_leaders_and_replicas() -> None:
    assignment = assign_replicas([1, 2, 3], 6, 3)
    assert sorted(r[0] for r in assignment) == [1, 1, 2, 2, 3, 3]
    assert all(len(set(r)) == 3 for r in assignment)
    with pytest.raises(ValueError, match="replication factor"):
        assign_replicas([1], 1, 2)


def test_partition_change_bumps_epochs() -> None:
    image, _, _ = _create(MetadataImage(), NewTopic("t", num_partitions=1), brokers=(1, 2))
    topic = image.topics_by_name["t"]
    before = topic.partitions[0]
    other = 2 if before.leader == 1 else 1
    image = image.apply([PartitionChangeRecord(topic.topic_id, 0, leader=other)], 20)
    after = image.topics_by_name["t"].partitions[0]
    assert (after.leader, after.leader_epoch, after.partition_epoch) == (
        other,
        before.leader_epoch + 1,
        before.partition_epoch + 1,
    )


def test_records_round_trip_through_their_encoding() -> None:
    _, records, _ = _create(MetadataImage(), NewTopic("t", configs={"retention.ms": "5"}))
    records.append(
        RegisterBrokerRecord(1, uuid.uuid4(), 3, (Endpoint("PLAINTEXT", "h", 1),), None, False)
    )
    decoded = [decode_metadata_record(*encode_metadata_record(r)) for r in records]
    assert decoded == records
    with pytest.raises(ValueError, match="unknown metadata record"):
        decode_metadata_record(b"Nope", b"{}")


def test_validate_topic_name_accepts_kafka_legal_names() -> None:
    assert validate_topic_name("orders.v1_A-b") is None
