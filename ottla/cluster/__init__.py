"""ottla.cluster: metadata records, the metadata image and log, the controller rules."""

from ottla.cluster.controller.fencing import (
    AlterPartitionResult,
    HeartbeatResult,
    Sessions,
    allocate_producer_ids,
    alter_partition,
    controlled_shutdown,
    fence,
    register,
    unfence,
)
from ottla.cluster.controller.leadership import (
    ELECTION_PREFERRED,
    ELECTION_UNCLEAN,
    ElectionResult,
    elect_leaders,
    preferred_imbalance,
)
from ottla.cluster.controller.placement import assign_replicas
from ottla.cluster.controller.reassignment import (
    OngoingReassignment,
    ReassignmentResult,
    alter_reassignments,
    complete_reassignment,
    list_reassignments,
)
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
from ottla.cluster.metadata.log import METADATA_TOPIC, MetadataLog, encode_payloads
from ottla.cluster.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    BrokerRegistrationChangeRecord,
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
from ottla.cluster.raft.codec import (
    METADATA_TOPIC_ID,
    error_response,
    request_source,
)
from ottla.cluster.raft.core import NotLeader, QuorumInfo, RaftConfig
from ottla.cluster.raft.driver import NotLeaderError, RaftDriver, Transport
from ottla.cluster.raft.log import RaftStorage, RaftStorageError
from ottla.cluster.raft.state import Role
from ottla.cluster.replication import FetchClock, FollowerState, LeaderState

__all__ = [
    "BROKER_RESOURCE",
    "ELECTION_PREFERRED",
    "ELECTION_UNCLEAN",
    "INTERNAL_TOPICS",
    "METADATA_TOPIC",
    "METADATA_TOPIC_ID",
    "TOPIC_RESOURCE",
    "AlterPartitionResult",
    "BrokerImage",
    "BrokerRegistrationChangeRecord",
    "ConfigRecord",
    "ElectionResult",
    "Endpoint",
    "FetchClock",
    "FollowerState",
    "HeartbeatResult",
    "LeaderState",
    "MetadataImage",
    "MetadataLog",
    "MetadataRecord",
    "NewTopic",
    "NotLeader",
    "NotLeaderError",
    "OngoingReassignment",
    "PartitionChangeRecord",
    "PartitionImage",
    "PartitionRecord",
    "ProducerIdsRecord",
    "QuorumInfo",
    "RaftConfig",
    "RaftDriver",
    "RaftStorage",
    "RaftStorageError",
    "ReassignmentResult",
    "RegisterBrokerRecord",
    "RemoveTopicRecord",
    "Role",
    "RuleResult",
    "Sessions",
    "TopicDefaults",
    "TopicImage",
    "TopicRecord",
    "Transport",
    "allocate_producer_ids",
    "alter_partition",
    "alter_reassignments",
    "assign_replicas",
    "complete_reassignment",
    "controlled_shutdown",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "elect_leaders",
    "encode_payloads",
    "error_response",
    "fence",
    "list_reassignments",
    "preferred_imbalance",
    "register",
    "request_source",
    "unfence",
    "validate_topic_name",
]
