"""Invalid topic names get INVALID_TOPIC_EXCEPTION from CreateTopics and Metadata.

Names with illegal characters, `.` and `..`, an empty name and one of 250
characters are refused by CreateTopics (raw and through confluent's AdminClient)
and answered INVALID_TOPIC_EXCEPTION (17) by Metadata — even with auto-creation
on — and none of them is created. Names the wire allows but a version cannot answer
get an error, not a dropped connection: a null name in Metadata v10-v11 (by id, which
only v12+ answers) is INVALID_REQUEST, and DeleteTopics v1-v5 naming "" answers "".
(Both once failed in encoding the response: handler_failed, connection closed.)
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, kio_module, metadata

pytestmark = pytest.mark.timeout(60)

INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUEST = 42
BAD_NAMES = ["bad name", "slash/topic", "ünïcode", ".", "..", "x" * 250]


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("names")) as broker:
        yield broker


def test_create_topics_refuses_bad_names(shared_broker: BrokerProcess) -> None:
    module = kio_module(19, 7)
    body = module.CreateTopicsRequest(
        topics=tuple(
            module.CreatableTopic(
                name=name, num_partitions=1, replication_factor=1, assignments=(), configs=()
            )
            for name in [*BAD_NAMES, ""]
        ),
        timeout=datetime.timedelta(seconds=10),
        validate_only=False,
    )
    with Wire(shared_broker.bootstrap) as wire:
        response = wire.request(19, 7, body)
        assert [(t.name, t.error_code) for t in response.topics] == [
            (name, INVALID_TOPIC_EXCEPTION) for name in [*BAD_NAMES, ""]
        ]
        assert metadata(wire, None).topics == ()


def test_admin_client_gets_invalid_topic(shared_broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": shared_broker.bootstrap})
    future = admin.create_topics([NewTopic("bad name", 1, 1)])["bad name"]
    with pytest.raises(KafkaException) as raised:
        future.result(15)
    assert raised.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


@pytest.mark.parametrize("name", BAD_NAMES)
def test_metadata_refuses_bad_names(shared_broker: BrokerProcess, name: str) -> None:
    with Wire(shared_broker.bootstrap) as wire:
        response = metadata(wire, [name, "good-name"], allow_auto=True)
        assert [(t.name, t.error_code) for t in response.topics] == [
            (name, INVALID_TOPIC_EXCEPTION),
            ("good-name", 0),
        ]
        names = [t.name for t in metadata(wire, None).topics]
        assert name not in names


def test_metadata_null_name_before_v12_is_an_invalid_request(shared_broker: BrokerProcess) -> None:
    module = kio_module(3, 11)
    body = module.MetadataRequest(
        topics=(module.MetadataRequestTopic(topic_id=None, name=None),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    with Wire(shared_broker.bootstrap) as wire:
        response = wire.request(3, 11, body)
        assert [(t.name, t.error_code) for t in response.topics] == [("", INVALID_REQUEST)]
        assert "" not in [t.name for t in metadata(wire, None).topics]  # still serving


@pytest.mark.parametrize("version", [1, 5])
def test_delete_topics_of_an_empty_name_answers_it(
    shared_broker: BrokerProcess, version: int
) -> None:
    module = kio_module(20, version)
    body = module.DeleteTopicsRequest(topic_names=("",), timeout=datetime.timedelta(seconds=10))
    with Wire(shared_broker.bootstrap) as wire:
        response = wire.request(20, version, body)
        assert [r.name for r in response.responses] == [""]
        assert response.responses[0].error_code != 0
        assert "" not in [t.name for t in metadata(wire, None).topics]  # still serving
