"""DeleteTopics removes a topic: gone from Metadata, its data gone, the name reusable.

confluent's AdminClient deletes a topic holding records: Metadata no longer lists
it (and answers UNKNOWN_TOPIC_OR_PARTITION with auto-creation off), its partition
directories are removed, deleting it again is UNKNOWN_TOPIC_OR_PARTITION, and a
topic created again under the same name starts empty with a new topic id.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from tests.integration.clients import Confluent, Rec
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, fetch_partition, metadata

pytestmark = pytest.mark.timeout(60)


def test_delete_topic(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory("auto.create.topics.enable=false")  # type: ignore[operator]
    client = Confluent(broker.bootstrap)
    client.create_topic("doomed", 2, {})
    client.produce("doomed", [Rec(b"k", b"v", partition=p) for p in (0, 1, 1)])
    with Wire(broker.bootstrap) as wire:
        (before,) = metadata(wire, ["doomed"], allow_auto=False).topics
    assert sorted(p.name for p in broker.data_dir.glob("doomed-*")) == ["doomed-0", "doomed-1"]

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert admin.delete_topics(["doomed"])["doomed"].result(15) is None

    with Wire(broker.bootstrap) as wire:
        (gone,) = metadata(wire, ["doomed"], allow_auto=False).topics
        assert gone.error_code == 3
        assert "doomed" not in [t.name for t in metadata(wire, None).topics]
    assert list(broker.data_dir.glob("doomed-[0-9]")) == []  # renamed at once
    deadline = time.monotonic() + 15
    while list(broker.data_dir.glob("doomed-*")):  # then removed off the event loop
        assert time.monotonic() < deadline, list(broker.data_dir.glob("doomed-*"))
        time.sleep(0.05)  # polling the directory for the worker's removal
    with pytest.raises(KafkaException) as again:
        admin.delete_topics(["doomed"])["doomed"].result(15)
    assert again.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    client.create_topic("doomed", 2, {})
    with Wire(broker.bootstrap) as wire:
        (reborn,) = metadata(wire, ["doomed"], allow_auto=False).topics
        assert reborn.topic_id != before.topic_id
        for partition in (0, 1):
            fetched = fetch_partition(wire, "doomed", partition, 0)
            assert (fetched.error_code, fetched.high_watermark) == (0, 0)
