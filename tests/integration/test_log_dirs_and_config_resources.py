"""AlterReplicaLogDirs and ListConfigResources through kafka-python's admin client.

AlterReplicaLogDirs: ottla has one log directory, so the one move it makes is to where a
replica is (NONE, as Kafka answers a move to the current directory); another path is
LOG_DIR_NOT_FOUND, a partition this broker does not host REPLICA_NOT_AVAILABLE.
ListConfigResources v1 (KIP-1142): the resources of the asked types, all supported
types when none is asked; v0 (ListClientMetricsResources) is empty here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import LogDirNotFoundError, NoError, ReplicaNotAvailableError
from kafka.structs import TopicPartitionReplica
from kio.schema.list_config_resources.v0.request import (
    ListConfigResourcesRequest as ListClientMetricsResources,
)
from kio.schema.list_config_resources.v1.request import ListConfigResourcesRequest
from kio.static.primitive import i8

from ottla.protocol import ErrorCode
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.rawclient import request

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("logdirs")) as started:
        yield started


@pytest.fixture(scope="module")
def admin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    client.create_topics([NewTopic("held", 2, 1)], timeout_ms=10_000)
    yield client
    client.close()


def test_a_replica_moves_only_to_its_own_log_dir(admin: KafkaAdminClient) -> None:
    (described,) = admin.describe_log_dirs()
    own_dir = described["log_dirs"][0]["log_dir"]
    broker_id = described["broker"]
    here = TopicPartitionReplica("held", 1, broker_id)
    elsewhere = TopicPartitionReplica("held", 0, broker_id)
    absent = TopicPartitionReplica("held", 7, broker_id)
    assert admin.alter_replica_log_dirs({here: own_dir, absent: own_dir}) == {
        here: NoError,
        absent: ReplicaNotAvailableError,
    }
    other = str(Path(own_dir).parent / "another-disk")
    assert admin.alter_replica_log_dirs({elsewhere: other}) == {elsewhere: LogDirNotFoundError}
    # The same directory written another way (a trailing "/.") is still that directory.
    assert admin.alter_replica_log_dirs({here: own_dir + "/."}) == {here: NoError}


def test_config_resources_of_every_type_or_of_those_asked(admin: KafkaAdminClient) -> None:
    everything = admin.list_config_resources()
    assert everything["broker"] == ["1"]
    assert everything["broker_logger"] == ["1"]
    assert "held" in everything["topic"]
    assert admin.list_config_resources(["TOPIC"]) == {"topic": everything["topic"]}
    assert admin.list_config_resources(["GROUP", "CLIENT_METRICS"]) == {}


def test_client_metrics_resources_and_an_unknown_type(broker: BrokerProcess) -> None:
    v0 = request(broker.port, ListClientMetricsResources())
    assert (v0.error_code, v0.config_resources) == (ErrorCode.none, ())
    unknown = request(broker.port, ListConfigResourcesRequest(resource_types=(i8(2), i8(64))))
    assert (unknown.error_code, unknown.config_resources) == (ErrorCode.unsupported_version, ())
