"""IncrementalAlterConfigs and AlterConfigs change topic configs, visibly and in effect.

confluent's incremental_alter_configs SETs `max.message.bytes` and `retention.ms`
on a topic; DescribeConfigs shows them as DYNAMIC_TOPIC_CONFIG, and the partition
applies the new limit at once (a batch over it gets MESSAGE_TOO_LARGE). A DELETE
restores the default. confluent's alter_configs (the legacy AlterConfigs) replaces
the topic's whole set of overrides; kafka-python's alter_configs (incremental on
brokers that offer it) adds one and keeps the rest. An unknown topic config name is
INVALID_CONFIG. A broker resource's configs are recorded, known or not, as Kafka
records them (librdkafka's own test 0081 sets `sasl.kerberos.min.time.before.relogin`
on a broker; ottla answered INVALID_CONFIG): a known one then reads back as
DYNAMIC_BROKER_CONFIG.
"""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType

from ottla.protocol import Record, build_batch
from tests.integration.clients import Confluent
from tests.integration.conftest import BrokerProcess
from tests.integration.wire import Wire, produce_partition

pytestmark = pytest.mark.timeout(60)

MESSAGE_TOO_LARGE = 10


def _describe(admin: AdminClient, topic: str) -> dict[str, tuple[str, ConfigSource]]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(15)
    return {name: (e.value, ConfigSource(e.source)) for name, e in entries.items()}


def _incremental(admin: AdminClient, topic: str, *entries: ConfigEntry) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=list(entries))
    admin.incremental_alter_configs([resource])[resource].result(15)


def test_incremental_alter_configs(broker: BrokerProcess) -> None:
    Confluent(broker.bootstrap).create_topic("altered", 1, {})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    _incremental(
        admin,
        "altered",
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    )
    described = _describe(admin, "altered")
    assert described["max.message.bytes"] == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert described["retention.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG)

    big = bytes(build_batch([Record(key=b"k", value=os.urandom(6000))], base_timestamp=1))
    with Wire(broker.bootstrap) as wire:
        assert produce_partition(wire, "altered", 0, big).error_code == MESSAGE_TOO_LARGE
        _incremental(
            admin,
            "altered",
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        )
        assert produce_partition(wire, "altered", 0, big).error_code == 0
    described = _describe(admin, "altered")
    assert described["max.message.bytes"] == ("1048588", ConfigSource.DEFAULT_CONFIG)
    assert described["retention.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG)

    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "altered",
        incremental_configs=[
            ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException, match=r"INVALID_CONFIG|no\.such\.config"):
        admin.incremental_alter_configs([resource])[resource].result(15)


def test_legacy_alter_configs_replaces_overrides(broker: BrokerProcess) -> None:
    Confluent(broker.bootstrap).create_topic(
        "replaced", 1, {"retention.ms": "1000000", "cleanup.policy": "compact"}
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC, "replaced", set_config={"segment.ms": "7200000"}
    )
    admin.alter_configs([resource])[resource].result(15)
    described = _describe(admin, "replaced")
    assert described["segment.ms"] == ("7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert described["retention.ms"] == ("604800000", ConfigSource.DEFAULT_CONFIG)
    assert described["cleanup.policy"] == ("delete", ConfigSource.DEFAULT_CONFIG)


def test_kafka_python_alter_configs(broker: BrokerProcess) -> None:
    Confluent(broker.bootstrap).create_topic("kp-altered", 1, {"retention.ms": "1000000"})
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = kp.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, "kp-altered", {"segment.ms": "7200000"})]
        )
    finally:
        kp.close()
    assert result == {"topic": {"kp-altered": "OK"}}
    described = _describe(AdminClient({"bootstrap.servers": broker.bootstrap}), "kp-altered")
    assert described["segment.ms"] == ("7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert described["retention.ms"] == ("1000000", ConfigSource.DYNAMIC_TOPIC_CONFIG)


def test_broker_configs_are_recorded_known_or_not(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        "1",
        incremental_configs=[
            ConfigEntry(
                "sasl.kerberos.min.time.before.relogin",
                "58000",
                incremental_operation=AlterConfigOpType.SET,
            ),
            ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(15)
    described = ConfigResource(ConfigResource.Type.BROKER, "1")
    entries = admin.describe_configs([described])[described].result(15)
    retention = entries["log.retention.ms"]
    assert (retention.value, ConfigSource(retention.source)) == (
        "3600000",
        ConfigSource.DYNAMIC_BROKER_CONFIG,
    )
    legacy = ConfigResource(
        ConfigResource.Type.BROKER, "1", set_config={"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256"}
    )
    admin.alter_configs([legacy])[legacy].result(15)


def test_kafka_3_topic_configs_without_effect_here_are_accepted(broker: BrokerProcess) -> None:
    """librdkafka's test 0092 sets `message.format.version`, which Kafka 3.x keeps (and
    ignores from 3.0 on); ottla answered INVALID_CONFIG. It, the down-conversion switch,
    the old timestamp difference, the replication throttles and local retention are now
    kept and described; bad values of them, and tiered storage switched on, are not."""
    Confluent(broker.bootstrap).create_topic("old-format", 1, {"message.format.version": "0.10.0"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "old-format",
        set_config={
            "message.format.version": "0.10.0.0",
            "message.downconversion.enable": "false",
            "message.timestamp.difference.max.ms": "60000",
            "leader.replication.throttled.replicas": "*",
            "follower.replication.throttled.replicas": "0:1",
            "local.retention.ms": "-2",
        },
    )
    admin.alter_configs([resource])[resource].result(15)
    described = _describe(admin, "old-format")
    assert described["message.format.version"] == ("0.10.0.0", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert described["follower.replication.throttled.replicas"] == (
        "0:1",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    assert described["remote.storage.enable"] == ("false", ConfigSource.DEFAULT_CONFIG)
    assert described["local.retention.bytes"] == ("-2", ConfigSource.DEFAULT_CONFIG)
    with Wire(broker.bootstrap) as wire:  # the topic still takes records
        batch = bytes(build_batch([Record(key=b"k", value=b"v")], base_timestamp=1))
        assert produce_partition(wire, "old-format", 0, batch).error_code == 0
    for name, value in (
        ("message.format.version", "banana"),
        ("remote.storage.enable", "true"),
        ("leader.replication.throttled.replicas", "all of them"),
    ):
        bad = ConfigResource(
            ConfigResource.Type.TOPIC,
            "old-format",
            incremental_configs=[
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
            ],
        )
        with pytest.raises(KafkaException, match="INVALID_CONFIG"):
            admin.incremental_alter_configs([bad])[bad].result(15)
