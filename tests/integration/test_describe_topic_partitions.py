"""DescribeTopicPartitions (KIP-966) through kafka-python's admin client.

kafka-python 3 describes topics with it when the broker lists the API (so do the Java
AdminClient's describeTopics since 3.8). Checked against Kafka's handler: topics in name
order with their partitions; unknown and invalid names answered with their errors;
pages of at most ResponsePartitionLimit partitions with a NextCursor, which the next
request starts from; a cursor whose topic is not requested, or whose partition is
negative, is INVALID_REQUEST.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tests.integration.conftest import BrokerProcess, shared_broker_in

pytestmark = pytest.mark.timeout(60)

NONE, UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC, INVALID_REQUEST = 0, 3, 17, 42
PARTITIONS = {"a": 3, "b": 2, "c": 1}


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaAdminClient]:
    with shared_broker_in(tmp_path_factory.mktemp("dtp")) as broker:
        client = _admin(broker)
        client.create_topics(
            [NewTopic(name, count, 1) for name, count in PARTITIONS.items()], timeout_ms=10_000
        )
        yield client
        client.close()


def _admin(broker: BrokerProcess) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)


def _pages(result: dict[str, Any]) -> list[tuple[str, list[int]]]:
    return [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in result["topics"]]


def test_topics_in_name_order_with_their_partitions(admin: KafkaAdminClient) -> None:
    result = admin.describe_topic_partitions(["b", "missing", "a", "bad/name"])
    topics = {t["name"]: t for t in result["topics"]}
    assert [t["name"] for t in result["topics"]] == ["a", "b", "bad/name", "missing"]
    assert result["next_cursor"] is None
    assert topics["missing"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
    assert topics["bad/name"]["error_code"] == INVALID_TOPIC
    assert topics["missing"]["partitions"] == [] == topics["bad/name"]["partitions"]
    for name in ("a", "b"):
        assert topics[name]["error_code"] == NONE
        assert not topics[name]["is_internal"]
        assert topics[name]["topic_id"].int != 0
        partitions = topics[name]["partitions"]
        assert [p["partition_index"] for p in partitions] == list(range(PARTITIONS[name]))
        for partition in partitions:
            assert partition["error_code"] == NONE
            assert partition["leader_id"] == 1 and partition["leader_epoch"] >= 0
            assert partition["replica_nodes"] == [1] == partition["isr_nodes"]
            assert partition["offline_replicas"] == []


def test_pages_follow_the_cursor(admin: KafkaAdminClient) -> None:
    names = ["c", "a", "b"]
    first = admin.describe_topic_partitions(names, response_partition_limit=2)
    assert _pages(first) == [("a", [0, 1])]
    assert first["next_cursor"] == {"topic_name": "a", "partition_index": 2}
    second = admin.describe_topic_partitions(
        names, response_partition_limit=2, cursor=first["next_cursor"]
    )
    assert _pages(second) == [("a", [2]), ("b", [0])]
    assert second["next_cursor"] == {"topic_name": "b", "partition_index": 1}
    third = admin.describe_topic_partitions(
        names, response_partition_limit=2, cursor=second["next_cursor"]
    )
    assert _pages(third) == [("b", [1]), ("c", [0])]
    assert third["next_cursor"] is None
    # A page that ends exactly at a topic's end points at the next topic's start.
    exact = admin.describe_topic_partitions(names, response_partition_limit=3)
    assert _pages(exact) == [("a", [0, 1, 2])]
    assert exact["next_cursor"] == {"topic_name": "b", "partition_index": 0}


def test_all_topics_when_none_is_named(admin: KafkaAdminClient) -> None:
    result = admin.describe_topic_partitions([], cursor={"topic_name": "b", "partition_index": 1})
    assert _pages(result)[:2] == [("b", [1]), ("c", [0])]


@pytest.mark.parametrize(
    "cursor",
    [{"topic_name": "c", "partition_index": 0}, {"topic_name": "a", "partition_index": -1}],
    ids=["cursor-topic-not-requested", "negative-partition"],
)
def test_a_bad_cursor_is_an_invalid_request(
    admin: KafkaAdminClient, cursor: dict[str, Any]
) -> None:
    result = admin.describe_topic_partitions(["a", "b"], cursor=cursor)
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [
        ("a", INVALID_REQUEST),
        ("b", INVALID_REQUEST),
    ]
    assert all(t["partitions"] == [] for t in result["topics"])
