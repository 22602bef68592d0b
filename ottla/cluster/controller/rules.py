"""Controller rules (PURE): admin requests in, metadata records and results out.

Each function takes the current `MetadataImage` and a request's content and
returns the records to append to the metadata log plus a per-item result (a Kafka
error code and message). Nothing is applied here: the shell appends the records
and, once they are committed, the image follows. Validation mirrors Kafka's
ControllerApis/ReplicationControlManager:

- topic names: 1-249 characters of [a-zA-Z0-9._-], not "." or "..", and not
  colliding with an existing name once '.' and '_' are identified;
- partitions >= 1 (-1: the default), replication factor between 1 and the number
  of live brokers (-1: the default); manual assignments must be consistent;
- topic configs must be known topic properties with valid values;
- one request may write at most MAX_RECORDS_PER_USER_OP records (Kafka's controller
  bound): a CreateTopics or CreatePartitions asking for more partitions than that
  fails whole, every topic POLICY_VIOLATION, before any assignment is computed (one
  request for two billion partitions once built their assignment in memory).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ottla.cluster.controller.placement import assign_replicas
from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    TOPIC_RESOURCE,
    ConfigRecord,
    MetadataRecord,
    PartitionRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from ottla.protocol import ErrorCode

__all__ = [
    "EXCESSIVE_BATCH_MESSAGE",
    "MAX_RECORDS_PER_USER_OP",
    "NewTopic",
    "RuleResult",
    "TopicDefaults",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "grow_topics",
    "validate_topic_name",
]

_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
TOPIC_NAME_LENGTH_MAX = 249
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})

# Records one admin request may write, and the error of one that would write more: Kafka's
# QuorumController bound (a PolicyViolationException for the whole request).
MAX_RECORDS_PER_USER_OP = 10_000
EXCESSIVE_BATCH_MESSAGE = "Unable to perform excessively large batch operation."

# (name, value) -> problem text or None
ConfigValidator = Callable[[str, str | None], str | None]


@dataclass(frozen=True)
class TopicDefaults:
    num_partitions: int
    replication_factor: int


@dataclass(frozen=True)
class NewTopic:
    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    assignments: dict[int, tuple[int, ...]] = field(default_factory=dict)
    configs: dict[str, str | None] = field(default_factory=dict)


@dataclass
class RuleResult:
    """Outcome for one item: error code (none on success), message, and what was made."""

    name: str
    error_code: ErrorCode = ErrorCode.none
    error_message: str | None = None
    topic_id: uuid.UUID | None = None
    num_partitions: int = -1
    replication_factor: int = -1
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_code is ErrorCode.none


def validate_topic_name(name: str) -> str | None:
    """Why `name` is not a legal topic name, or None."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > TOPIC_NAME_LENGTH_MAX:
        return (
            f"Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, "
            f"topic name: {name}"
        )
    if not _LEGAL.fullmatch(name):
        return (
            f'Topic name "{name}" is illegal, it contains a character other than ASCII '
            "alphanumerics, '.', '_' and '-'"
        )
    return None


def _collision_key(name: str) -> str:
    return name.replace(".", "_")


def create_topics(
    image: MetadataImage,
    topics: Sequence[NewTopic],
    defaults: TopicDefaults,
    live_brokers: Sequence[int],
    validate_config: ConfigValidator,
    new_topic_id: Callable[[], uuid.UUID],
    placement_start: int = 0,
) -> tuple[list[MetadataRecord], list[RuleResult]]:
    """Records creating `topics`, and one result per requested topic."""
    records: list[MetadataRecord] = []
    results: list[RuleResult] = []
    seen = [t.name for t in topics]
    existing = {_collision_key(name): name for name in image.topics_by_name}
    for topic in topics:
        result = RuleResult(topic.name)
        results.append(result)
        if seen.count(topic.name) > 1:
            _fail(result, ErrorCode.invalid_request, f"Duplicate topic name {topic.name}")
            continue
        problem = validate_topic_name(topic.name)
        if problem:
            _fail(result, ErrorCode.invalid_topic_exception, problem)
            continue
        if topic.name in image.topics_by_name:
            _fail(result, ErrorCode.topic_already_exists, f"Topic '{topic.name}' already exists.")
            continue
        clash = existing.get(_collision_key(topic.name))
        if clash is not None:
            _fail(
                result,
                ErrorCode.invalid_topic_exception,
                f"Topic '{topic.name}' collides with existing topic: {clash}",
            )
            continue
        config_problem = _check_configs(topic.configs, validate_config)
        if config_problem:
            _fail(result, ErrorCode.invalid_config, config_problem)
            continue
        if len(records) + 1 + _partition_count(topic, defaults) > MAX_RECORDS_PER_USER_OP:
            return [], _too_large([t.name for t in topics])
        assignment = _assignment(topic, defaults, live_brokers, placement_start, result)
        if assignment is None:
            continue
        topic_id = new_topic_id()
        existing[_collision_key(topic.name)] = topic.name
        result.topic_id = topic_id
        result.num_partitions = len(assignment)
        result.replication_factor = len(assignment[0])
        result.configs = {k: v for k, v in topic.configs.items() if v is not None}
        records.append(TopicRecord(name=topic.name, topic_id=topic_id))
        for name, value in sorted(result.configs.items()):
            records.append(ConfigRecord(TOPIC_RESOURCE, topic.name, name, value))
        for partition_id, replicas in enumerate(assignment):
            records.append(
                PartitionRecord(
                    topic_id=topic_id,
                    partition_id=partition_id,
                    replicas=replicas,
                    isr=replicas,
                    leader=replicas[0],
                    leader_epoch=0,
                    partition_epoch=0,
                )
            )
    return records, results


def _partition_count(topic: NewTopic, defaults: TopicDefaults) -> int:
    if topic.assignments:
        return len(topic.assignments)
    return defaults.num_partitions if topic.num_partitions == -1 else topic.num_partitions


def _too_large(names: Sequence[str]) -> list[RuleResult]:
    """The results of a request over MAX_RECORDS_PER_USER_OP, one per topic it names:
    all POLICY_VIOLATION, as nothing of it is written."""
    failed = [RuleResult(name) for name in names]
    for result in failed:
        _fail(result, ErrorCode.policy_violation, EXCESSIVE_BATCH_MESSAGE)
    return failed


def _fail(result: RuleResult, code: ErrorCode, message: str) -> None:
    result.error_code = code
    result.error_message = message


def _check_configs(configs: dict[str, str | None], validate: ConfigValidator) -> str | None:
    for name, value in configs.items():
        problem = validate(name, value)
        if problem:
            return problem
    return None


def _assignment(
    topic: NewTopic,
    defaults: TopicDefaults,
    live_brokers: Sequence[int],
    placement_start: int,
    result: RuleResult,
) -> list[tuple[int, ...]] | None:
    if topic.assignments:
        if topic.num_partitions != -1 or topic.replication_factor != -1:
            _fail(
                result,
                ErrorCode.invalid_request,
                "Both numPartitions or replicationFactor and replicasAssignments were set. "
                "Both cannot be used at the same time.",
            )
            return None
        ids = sorted(topic.assignments)
        if ids != list(range(len(ids))):
            _fail(
                result,
                ErrorCode.invalid_replica_assignment,
                "Partitions should be consecutive and start at 0",
            )
            return None
        lists = [topic.assignments[i] for i in ids]
        width = len(lists[0])
        for replicas in lists:
            if not replicas or len(replicas) != width or len(set(replicas)) != len(replicas):
                _fail(
                    result,
                    ErrorCode.invalid_replica_assignment,
                    "All partitions should have the same number of distinct replicas",
                )
                return None
            unknown = [b for b in replicas if b not in live_brokers]
            if unknown:
                _fail(
                    result,
                    ErrorCode.invalid_replica_assignment,
                    f"The manual partition assignment includes unknown brokers {unknown}",
                )
                return None
        return lists
    partitions = defaults.num_partitions if topic.num_partitions == -1 else topic.num_partitions
    factor = (
        defaults.replication_factor if topic.replication_factor == -1 else topic.replication_factor
    )
    if partitions <= 0:
        _fail(result, ErrorCode.invalid_partitions, "Number of partitions must be larger than 0.")
        return None
    if factor <= 0:
        _fail(
            result,
            ErrorCode.invalid_replication_factor,
            "Replication factor must be larger than 0.",
        )
        return None
    if factor > len(live_brokers):
        _fail(
            result,
            ErrorCode.invalid_replication_factor,
            f"Unable to replicate the partition {factor} time(s): The target replication "
            f"factor of {factor} cannot be reached because only {len(live_brokers)} "
            "broker(s) are registered.",
        )
        return None
    return assign_replicas(live_brokers, partitions, factor, start=placement_start)


def delete_topics(
    image: MetadataImage, names: Sequence[str | None], ids: Sequence[uuid.UUID | None]
) -> tuple[list[MetadataRecord], list[RuleResult]]:
    """Records deleting topics named or identified; one result per item."""
    records: list[MetadataRecord] = []
    results: list[RuleResult] = []
    removed: set[uuid.UUID] = set()
    for name, topic_id in zip(names, ids, strict=True):
        topic = None
        if topic_id is not None and topic_id.int != 0:
            topic = image.topics_by_id.get(topic_id)
        elif name is not None:
            topic = image.topics_by_name.get(name)
        result = RuleResult(name or "")
        results.append(result)
        if topic is None:
            if topic_id is not None and topic_id.int != 0:
                _fail(
                    result, ErrorCode.unknown_topic_id, "This server does not host this topic ID."
                )
            else:
                _fail(
                    result,
                    ErrorCode.unknown_topic_or_partition,
                    "This server does not host this topic-partition.",
                )
            continue
        result.name = topic.name
        result.topic_id = topic.topic_id
        if topic.topic_id not in removed:
            removed.add(topic.topic_id)
            records.append(RemoveTopicRecord(topic_id=topic.topic_id))
    return records, results


def grow_topics(
    image: MetadataImage,
    requested: Sequence[tuple[str, int, Sequence[Sequence[int]] | None]],
    live_brokers: Sequence[int],
) -> tuple[list[MetadataRecord], list[RuleResult]]:
    """CreatePartitions: `create_partitions` for each (name, count, assignments), one
    result each; a request over MAX_RECORDS_PER_USER_OP records fails whole."""
    records: list[MetadataRecord] = []
    results: list[RuleResult] = []
    for name, count, assignments in requested:
        grown, result = create_partitions(image, name, count, assignments, live_brokers)
        records.extend(grown)
        results.append(result)
        if len(records) > MAX_RECORDS_PER_USER_OP:
            return [], _too_large([name for name, _, _ in requested])
    return records, results


def create_partitions(
    image: MetadataImage,
    name: str,
    count: int,
    assignments: Sequence[Sequence[int]] | None,
    live_brokers: Sequence[int],
) -> tuple[list[MetadataRecord], RuleResult]:
    """Records growing topic `name` to `count` partitions."""
    result = RuleResult(name)
    topic = image.topics_by_name.get(name)
    if topic is None:
        _fail(result, ErrorCode.unknown_topic_or_partition, f"The topic '{name}' does not exist.")
        return [], result
    current = len(topic.partitions)
    if count < current:
        _fail(
            result,
            ErrorCode.invalid_partitions,
            f"The topic {name} currently has {current} partition(s); {count} would not be an "
            "increase.",
        )
        return [], result
    if count == current:
        _fail(result, ErrorCode.invalid_partitions, f"Topic already has {current} partition(s).")
        return [], result
    factor = len(topic.partitions[0].replicas)
    added = count - current
    if added > MAX_RECORDS_PER_USER_OP:
        _fail(result, ErrorCode.policy_violation, EXCESSIVE_BATCH_MESSAGE)
        return [], result
    if assignments is not None:
        if len(assignments) != added:
            _fail(
                result,
                ErrorCode.invalid_replica_assignment,
                f"Attempted to add {added} additional partition(s), but only "
                f"{len(assignments)} assignment(s) were specified.",
            )
            return [], result
        lists = [tuple(a) for a in assignments]
        if any(len(a) != factor or any(b not in live_brokers for b in a) for a in lists):
            _fail(result, ErrorCode.invalid_replica_assignment, "Invalid replica assignment")
            return [], result
    else:
        if factor > len(live_brokers):
            _fail(
                result,
                ErrorCode.invalid_replication_factor,
                f"Unable to replicate the partition {factor} time(s)",
            )
            return [], result
        lists = assign_replicas(live_brokers, added, factor, first_partition=current)
    records: list[MetadataRecord] = [
        PartitionRecord(
            topic_id=topic.topic_id,
            partition_id=current + index,
            replicas=replicas,
            isr=replicas,
            leader=replicas[0],
        )
        for index, replicas in enumerate(lists)
    ]
    result.num_partitions = count
    return records, result
