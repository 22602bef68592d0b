"""The metadata image: the cluster's state as of some offset of the metadata log.

PURE and immutable. `MetadataImage.apply(records, offset)` returns a new image;
untouched topics are shared between the old and the new image, so brokers can hand
an image to concurrent requests without copying or locking.

Rules, as Kafka's MetadataImage/TopicsDelta apply them:
- TopicRecord creates a topic (name unique, id unique); PartitionRecord adds or
  replaces one partition of a known topic id.
- PartitionChangeRecord changes leader / ISR / replicas / removing and adding replicas
  (a reassignment in progress); a leader change bumps the leader epoch; every change
  bumps the partition epoch.
- RemoveTopicRecord removes the topic, its partitions and its configs.
- ConfigRecord sets (value) or deletes (None) one config of a topic or broker.
- RegisterBrokerRecord adds or replaces a broker; BrokerRegistrationChangeRecord fences
  or unfences a registered broker of the same epoch (a stale epoch is ignored);
  ProducerIdsRecord moves the
  cluster-wide next producer id forward (never back).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ottla.cluster.metadata.records import (
    TOPIC_RESOURCE,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)

__all__ = ["BrokerImage", "MetadataImage", "PartitionImage", "TopicImage"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class PartitionImage:
    partition_id: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    removing_replicas: tuple[int, ...] = ()
    adding_replicas: tuple[int, ...] = ()

    @property
    def reassigning(self) -> bool:
        """Whether a reassignment (KIP-455) is in progress."""
        return bool(self.removing_replicas or self.adding_replicas)


@dataclass(frozen=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: Mapping[int, PartitionImage]
    configs: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def is_internal(self) -> bool:
        return self.name.startswith("__")


@dataclass(frozen=True)
class BrokerImage:
    broker_id: int
    incarnation_id: uuid.UUID
    broker_epoch: int
    endpoints: tuple[tuple[str, str, int], ...]  # (listener name, host, port)
    rack: str | None
    fenced: bool


@dataclass(frozen=True)
class MetadataImage:
    """Immutable cluster state; `offset` is the last metadata log offset applied."""

    offset: int = -1
    topics_by_name: Mapping[str, TopicImage] = field(default_factory=dict)
    topics_by_id: Mapping[uuid.UUID, TopicImage] = field(default_factory=dict)
    brokers: Mapping[int, BrokerImage] = field(default_factory=dict)
    broker_configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    next_producer_id: int = 0

    def topic(self, name: str) -> TopicImage | None:
        return self.topics_by_name.get(name)

    def live_broker_ids(self) -> list[int]:
        """Registered, unfenced brokers, by id (where new replicas may be placed)."""
        return sorted(b.broker_id for b in self.brokers.values() if not b.fenced)

    def apply(self, records: Iterable[MetadataRecord], offset: int) -> MetadataImage:
        """A new image with `records` applied; `offset` is the last one's log offset."""
        by_name = dict(self.topics_by_name)
        by_id = dict(self.topics_by_id)
        brokers = dict(self.brokers)
        broker_configs = dict(self.broker_configs)
        next_producer_id = self.next_producer_id
        for record in records:
            if isinstance(record, TopicRecord):
                topic = TopicImage(record.name, record.topic_id, MappingProxyType({}))
                by_name[record.name] = topic
                by_id[record.topic_id] = topic
            elif isinstance(record, PartitionRecord):
                _put_partition(
                    by_name,
                    by_id,
                    record.topic_id,
                    PartitionImage(
                        record.partition_id,
                        tuple(record.replicas),
                        tuple(record.isr),
                        record.leader,
                        record.leader_epoch,
                        record.partition_epoch,
                        tuple(record.removing_replicas),
                        tuple(record.adding_replicas),
                    ),
                )
            elif isinstance(record, PartitionChangeRecord):
                owner = by_id.get(record.topic_id)
                if owner is None or record.partition_id not in owner.partitions:
                    continue
                old = owner.partitions[record.partition_id]
                leader = old.leader if record.leader is None else record.leader
                changed = replace(
                    old,
                    leader=leader,
                    isr=old.isr if record.isr is None else tuple(record.isr),
                    replicas=old.replicas if record.replicas is None else tuple(record.replicas),
                    removing_replicas=old.removing_replicas
                    if record.removing_replicas is None
                    else tuple(record.removing_replicas),
                    adding_replicas=old.adding_replicas
                    if record.adding_replicas is None
                    else tuple(record.adding_replicas),
                    leader_epoch=old.leader_epoch + (1 if leader != old.leader else 0),
                    partition_epoch=old.partition_epoch + 1,
                )
                _put_partition(by_name, by_id, record.topic_id, changed)
            elif isinstance(record, RemoveTopicRecord):
                removed = by_id.pop(record.topic_id, None)
                if removed is not None:
                    by_name.pop(removed.name, None)
            elif isinstance(record, ConfigRecord):
                if record.resource_type == TOPIC_RESOURCE:
                    configured = by_name.get(record.resource_name)
                    if configured is None:
                        continue
                    configs = _set_config(configured.configs, record.name, record.value)
                    updated = replace(configured, configs=configs)
                    by_name[configured.name] = updated
                    by_id[configured.topic_id] = updated
                else:
                    current = broker_configs.get(record.resource_name, _EMPTY)
                    broker_configs[record.resource_name] = _set_config(
                        current, record.name, record.value
                    )
            elif isinstance(record, RegisterBrokerRecord):
                brokers[record.broker_id] = BrokerImage(
                    record.broker_id,
                    record.incarnation_id,
                    record.broker_epoch,
                    tuple((e.name, e.host, e.port) for e in record.endpoints),
                    record.rack,
                    record.fenced,
                )
            elif isinstance(record, BrokerRegistrationChangeRecord):
                registered = brokers.get(record.broker_id)
                if (
                    registered is not None
                    and registered.broker_epoch == record.broker_epoch
                    and record.fenced is not None
                ):
                    brokers[record.broker_id] = replace(registered, fenced=record.fenced)
            elif isinstance(record, ProducerIdsRecord):
                next_producer_id = max(next_producer_id, record.next_producer_id)
        return MetadataImage(
            offset=offset,
            topics_by_name=MappingProxyType(by_name),
            topics_by_id=MappingProxyType(by_id),
            brokers=MappingProxyType(brokers),
            broker_configs=MappingProxyType(broker_configs),
            next_producer_id=next_producer_id,
        )


def _put_partition(
    by_name: dict[str, TopicImage],
    by_id: dict[uuid.UUID, TopicImage],
    topic_id: uuid.UUID,
    partition: PartitionImage,
) -> None:
    topic = by_id.get(topic_id)
    if topic is None:
        return
    partitions = dict(topic.partitions)
    partitions[partition.partition_id] = partition
    updated = replace(topic, partitions=MappingProxyType(partitions))
    by_name[topic.name] = updated
    by_id[topic_id] = updated


def _set_config(configs: Mapping[str, str], name: str, value: str | None) -> Mapping[str, str]:
    updated = dict(configs)
    if value is None:
        updated.pop(name, None)
    else:
        updated[name] = value
    return MappingProxyType(updated)
