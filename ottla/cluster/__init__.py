"""ottla.cluster: metadata records, the metadata image and log, the controller rules."""

from ottla.cluster.controller.placement import assign_replicas
from ottla.cluster.controller.rules import (
    INTERNAL_TOPICS,
    NewTopic,
    RuleResult,
    TopicDefaults,
    create_partitions,
    create_topics,
    delete_topics,
    validate_topic_name,
)
from ottla.cluster.metadata.image import BrokerImage, MetadataImage, PartitionImage, TopicImage
from ottla.cluster.metadata.log import METADATA_TOPIC, MetadataLog
from ottla.cluster.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    Endpoint,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)

__all__ = [
    "BROKER_RESOURCE",
    "INTERNAL_TOPICS",
    "METADATA_TOPIC",
    "TOPIC_RESOURCE",
    "BrokerImage",
    "ConfigRecord",
    "Endpoint",
    "MetadataImage",
    "MetadataLog",
    "MetadataRecord",
    "NewTopic",
    "PartitionChangeRecord",
    "PartitionImage",
    "PartitionRecord",
    "ProducerIdsRecord",
    "RegisterBrokerRecord",
    "RemoveTopicRecord",
    "RuleResult",
    "TopicDefaults",
    "TopicImage",
    "TopicRecord",
    "assign_replicas",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "validate_topic_name",
]
