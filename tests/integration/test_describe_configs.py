"""DescribeConfigs returns every topic config with its value, default and source.

The broker runs with `log.retention.hours=48` and `log.segment.bytes=2097152` set
explicitly. confluent's AdminClient describes a topic created with a
`cleanup.policy` and `max.message.bytes` override, and sees: every topic config
ottla knows (and the core ones Kafka clients rely on); the overrides as
DYNAMIC_TOPIC_CONFIG; `retention.ms` (from `log.retention.hours`) and
`segment.bytes` as STATIC_BROKER_CONFIG with the broker's values; untouched
defaults such as `min.insync.replicas` as DEFAULT_CONFIG marked default.
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ConfigSource,
)

from ottla.config import TOPIC_CONFIGS
from tests.integration.clients import Confluent
from tests.integration.conftest import BrokerProcess

pytestmark = pytest.mark.timeout(60)

CORE = {
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
}


def test_describe_topic_configs(broker_factory: object) -> None:
    broker: BrokerProcess = broker_factory(  # type: ignore[operator]
        "log.retention.hours=48", "log.segment.bytes=2097152"
    )
    Confluent(broker.bootstrap).create_topic(
        "described", 1, {"cleanup.policy": "compact", "max.message.bytes": "12345"}
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "described")
    entries = admin.describe_configs([resource])[resource].result(15)

    assert set(entries) == set(TOPIC_CONFIGS)
    assert set(entries) >= CORE
    source = {name: ConfigSource(entry.source) for name, entry in entries.items()}
    value = {name: entry.value for name, entry in entries.items()}

    assert (value["cleanup.policy"], source["cleanup.policy"]) == (
        "compact",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    assert (value["max.message.bytes"], source["max.message.bytes"]) == (
        "12345",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    assert (value["retention.ms"], source["retention.ms"]) == (
        str(48 * 3_600_000),
        ConfigSource.STATIC_BROKER_CONFIG,
    )
    assert (value["segment.bytes"], source["segment.bytes"]) == (
        "2097152",
        ConfigSource.STATIC_BROKER_CONFIG,
    )
    assert (value["min.insync.replicas"], source["min.insync.replicas"]) == (
        "1",
        ConfigSource.DEFAULT_CONFIG,
    )
    assert entries["min.insync.replicas"].is_default
    assert not entries["cleanup.policy"].is_default


def test_describe_default_retention(broker: BrokerProcess) -> None:
    Confluent(broker.bootstrap).create_topic("plain", 1, {})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "plain")
    entries = admin.describe_configs([resource])[resource].result(15)
    retention = entries["retention.ms"]
    assert (retention.value, ConfigSource(retention.source)) == (
        "604800000",
        ConfigSource.DEFAULT_CONFIG,
    )
    assert retention.is_default
