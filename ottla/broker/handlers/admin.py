"""Admin APIs: CreateTopics v2-v7, DeleteTopics v1-v6, CreatePartitions v0-v3,
DescribeConfigs v1-v4, AlterConfigs v0-v2, IncrementalAlterConfigs v0-v1,
DescribeLogDirs v1-v5.

Topic and config changes are decided by the active controller (the quorum leader):
received by another node they are forwarded to it whole (handlers/controller.py), and
on the leader the controller rules (ottla.cluster) run on its up-to-date image, one
write after another (broker/controller.py), are committed to the metadata log, and
every broker's partitions follow the new image. validate_only runs the rules without
committing. Placement uses the live (registered, unfenced) brokers of the image.

DescribeConfigs returns every topic config with its value, source
(DYNAMIC_TOPIC_CONFIG for the topic's own, STATIC_BROKER_CONFIG or DEFAULT_CONFIG
for inherited ones), type (v3+) and, on request, synonyms and documentation.
AlterConfigs replaces a resource's whole set of dynamic configs;
IncrementalAlterConfigs applies SET/DELETE/APPEND/SUBTRACT per key. Broker
resources are accepted and recorded (dynamic broker configs), not applied live; as in
Kafka, names of configs this broker does not know are recorded too.
"""

from __future__ import annotations

import datetime
import inspect
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.cluster import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    MetadataImage,
    MetadataRecord,
    NewTopic,
    RuleResult,
    TopicDefaults,
    create_topics,
    delete_topics,
    grow_topics,
)
from ottla.config import BROKER_CONFIGS, TOPIC_CONFIGS
from ottla.protocol import SUPPORTED_APIS, DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = [
    "auto_create_on_demand",
    "auto_create_topics",
    "handle_alter_configs",
    "handle_create_partitions",
    "handle_create_topics",
    "handle_delete_topics",
    "handle_describe_configs",
    "handle_describe_log_dirs",
    "handle_incremental_alter_configs",
]

log = structlog.get_logger("ottla.admin")

# ConfigSource and ConfigType, as Kafka numbers them.
DYNAMIC_TOPIC_CONFIG = 1
DYNAMIC_BROKER_CONFIG = 2
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
_CONFIG_TYPES = {"bool": 1, "string": 2, "int": 3, "short": 4, "long": 5, "double": 6, "list": 7}


def _defaults(broker: Broker) -> TopicDefaults:
    return TopicDefaults(
        num_partitions=int(broker.config.get("num.partitions")),
        replication_factor=int(broker.config.get("default.replication.factor")),
    )


def _validate_config(name: str, value: str | None) -> str | None:
    from ottla.broker.broker import validate_topic_config  # noqa: PLC0415 - cycle

    return validate_topic_config(name, value)


async def auto_create_on_demand(
    handler: Any, broker: Broker, connection: Connection, request: DecodedRequest, names: list[str]
) -> Any:
    """Create `names`, then run `handler` again, told that creation was attempted (for
    Metadata and Produce, which stay synchronous unless they auto-create)."""
    try:
        await auto_create_topics(broker, names)
    except Exception as error:  # a task boundary: the handler answers without the topics
        log.warning("auto_create_failed", topics=",".join(names), error=repr(error))
    result = handler(broker, connection, request, auto_created=True)
    if inspect.isawaitable(result):
        result = await result
    return result


async def auto_create_topics(broker: Broker, names: list[str]) -> None:
    """Create `names` with the controller's defaults (Metadata/Produce auto-creation): a
    CreateTopics request to the active controller, as Kafka's brokers send one."""
    spec = SUPPORTED_APIS[19]
    module = spec.request_module(spec.max_version)
    body = make(
        spec.request_type(spec.max_version),
        topics=tuple(
            make(
                module.CreatableTopic,
                name=name,
                num_partitions=-1,
                replication_factor=-1,
                assignments=(),
                configs=(),
            )
            for name in names
        ),
        timeout=datetime.timedelta(seconds=30),
        validate_only=False,
    )
    await broker.controller.call(body)


async def handle_create_topics(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    topics = [
        NewTopic(
            name=topic.name,
            num_partitions=int(topic.num_partitions),
            replication_factor=int(topic.replication_factor),
            assignments={int(a.partition_index): tuple(a.broker_ids) for a in topic.assignments},
            configs={c.name: c.value for c in topic.configs},
        )
        for topic in body.topics
    ]
    defaults = _defaults(broker)

    def decide(image: MetadataImage) -> tuple[list[MetadataRecord], list[RuleResult]]:
        return create_topics(
            image,
            topics,
            defaults,
            image.live_broker_ids(),
            _validate_config,
            uuid.uuid4,
            placement_start=len(image.topics_by_name),
        )

    if body.validate_only:
        _, results = decide(broker.image)
    else:
        results = await broker.controller.write(decide)
    out = []
    for result in results:
        configs = None
        if result.ok and request.api_version >= 5:
            topic_image = broker.image.topic(result.name)
            own = result.configs if topic_image is None else dict(topic_image.configs)
            configs = tuple(
                make(
                    module.CreatableTopicConfigs,
                    name=name,
                    value=value,
                    read_only=False,
                    config_source=source,
                    is_sensitive=False,
                )
                for name, value, source, _ in _topic_config_entries(broker, own)
            )
        out.append(
            make(
                module.CreatableTopicResult,
                name=result.name,
                topic_id=result.topic_id or uuid.UUID(int=0),
                error_code=result.error_code,
                error_message=result.error_message,
                num_partitions=result.num_partitions,
                replication_factor=result.replication_factor,
                configs=configs,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, topics=tuple(out))


async def handle_delete_topics(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    if request.api_version >= 6:
        names = [t.name for t in body.topics]
        ids = [t.topic_id for t in body.topics]
    else:
        names = list(body.topic_names)
        ids = [None] * len(names)
    results = await broker.controller.write(lambda image: delete_topics(image, names, ids))
    by_id = request.api_version >= 6  # name nullable (a topic named by its id) from v6
    responses = tuple(
        make(
            module.DeletableTopicResult,
            name=(result.name or None) if by_id else (result.name or ""),
            topic_id=result.topic_id or uuid.UUID(int=0),
            error_code=result.error_code,
            error_message=result.error_message,
        )
        for result in results
    )
    return make(response_type(request), throttle_time=NO_THROTTLE, responses=responses)


async def handle_create_partitions(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    requested = [
        (
            topic.name,
            int(topic.count),
            None if topic.assignments is None else [tuple(a.broker_ids) for a in topic.assignments],
        )
        for topic in body.topics
    ]

    def decide(image: MetadataImage) -> tuple[list[MetadataRecord], list[RuleResult]]:
        return grow_topics(image, requested, image.live_broker_ids())

    if body.validate_only:
        _, outcomes = decide(broker.image)
    else:
        outcomes = await broker.controller.write(decide)
    results = [
        make(
            module.CreatePartitionsTopicResult,
            name=result.name,
            error_code=result.error_code,
            error_message=result.error_message,
        )
        for result in outcomes
    ]
    return make(response_type(request), throttle_time=NO_THROTTLE, results=tuple(results))


# Topic configs whose default comes from several broker properties (Kafka's
# synonyms), e.g. retention.ms from log.retention.{ms,minutes,hours}.
_BROKER_SYNONYMS: dict[str, tuple[str | None, ...]] = {
    "retention.ms": ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    "segment.ms": ("log.roll.ms", "log.roll.hours"),
    "flush.ms": ("log.flush.interval.ms",),
}


def _topic_config_entries(
    broker: Broker, own: dict[str, str]
) -> list[tuple[str, str | None, int, str]]:
    """(name, value, source, type) of every topic config, sorted by name."""
    entries = []
    for name, definition in sorted(TOPIC_CONFIGS.items()):
        if name in own:
            source = DYNAMIC_TOPIC_CONFIG
            value: str | None = own[name]
        else:
            value = broker.config.topic_default(name)
            broker_keys = _BROKER_SYNONYMS.get(name, (definition.broker_default,))
            explicit = any(k is not None and broker.config.is_explicit(k) for k in broker_keys)
            source = STATIC_BROKER_CONFIG if explicit else DEFAULT_CONFIG
        entries.append((name, value, source, definition.type))
    return entries


def handle_describe_configs(broker: Broker, connection: Connection, request: DecodedRequest) -> Any:
    body = request.body
    module = response_module(request)
    include_synonyms = bool(getattr(body, "include_synonyms", False))
    include_docs = bool(getattr(body, "include_documentation", False))
    results = []
    for resource in body.resources:
        keys = resource.configuration_keys
        error = ErrorCode.none
        message = None
        entries: list[tuple[str, str | None, int, str, str | None]] = []
        if resource.resource_type == TOPIC_RESOURCE:
            topic = broker.image.topic(resource.resource_name)
            if topic is None:
                error = ErrorCode.unknown_topic_or_partition
                message = f"Topic {resource.resource_name} does not exist"
            else:
                entries = [
                    (n, v, s, t, None)
                    for n, v, s, t in _topic_config_entries(broker, dict(topic.configs))
                ]
        elif resource.resource_type == BROKER_RESOURCE:
            if resource.resource_name not in ("", str(broker.node_id)):
                error = ErrorCode.invalid_request
                message = f"Unexpected broker id {resource.resource_name}"
            else:
                dynamic = broker.image.broker_configs.get(resource.resource_name, {})
                for name, definition in sorted(BROKER_CONFIGS.items()):
                    value: str | None
                    if name in dynamic:
                        value, source = dynamic[name], DYNAMIC_BROKER_CONFIG
                    else:
                        value = broker.config.raw(name)
                        source = (
                            STATIC_BROKER_CONFIG
                            if broker.config.is_explicit(name)
                            else DEFAULT_CONFIG
                        )
                    entries.append((name, value, source, definition.type, definition.doc))
        else:
            error = ErrorCode.invalid_request
            message = f"Unsupported resource type {resource.resource_type}"
        if keys is not None:
            wanted = set(keys)
            entries = [e for e in entries if e[0] in wanted]
        configs = tuple(
            make(
                module.DescribeConfigsResourceResult,
                name=name,
                value=value,
                read_only=resource.resource_type == BROKER_RESOURCE,
                config_source=source,
                is_default=source == DEFAULT_CONFIG,
                is_sensitive=False,
                synonyms=(
                    (make(module.DescribeConfigsSynonym, name=name, value=value, source=source),)
                    if include_synonyms
                    else ()
                ),
                config_type=_CONFIG_TYPES.get(kind, 0),
                documentation=doc if include_docs else None,
            )
            for name, value, source, kind, doc in entries
        )
        results.append(
            make(
                module.DescribeConfigsResult,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=configs,
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, results=tuple(results))


def _config_changes(
    broker: Broker,
    resource_type: int,
    resource_name: str,
    changes: dict[str, str | None],
) -> tuple[ErrorCode, str | None, list[MetadataRecord]]:
    """Validate new config values; the records applying them, or an error."""
    if resource_type == TOPIC_RESOURCE:
        if broker.image.topic(resource_name) is None:
            return (
                ErrorCode.unknown_topic_or_partition,
                f"Topic {resource_name} does not exist",
                [],
            )
        for name, value in changes.items():
            problem = _validate_config(name, value)
            if problem:
                return ErrorCode.invalid_config, problem, []
    elif resource_type != BROKER_RESOURCE:
        return ErrorCode.invalid_request, f"Unsupported resource type {resource_type}", []
    # A broker's configs are recorded, not applied. Kafka stores names it does not know
    # (its DynamicBrokerConfig parses only defined keys), and clients set configs of
    # features ottla lacks, such as SASL's: every name is recorded.
    records: list[MetadataRecord] = [
        ConfigRecord(resource_type, resource_name, name, value)
        for name, value in sorted(changes.items())
    ]
    return ErrorCode.none, None, records


def _current_dynamic(broker: Broker, resource_type: int, resource_name: str) -> dict[str, str]:
    if resource_type == TOPIC_RESOURCE:
        topic = broker.image.topic(resource_name)
        return dict(topic.configs) if topic else {}
    return dict(broker.image.broker_configs.get(resource_name, {}))


async def handle_alter_configs(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    responses = []
    for resource in body.resources:
        current = _current_dynamic(broker, resource.resource_type, resource.resource_name)
        wanted = {c.name: c.value for c in resource.configs}
        changes: dict[str, str | None] = dict(wanted)
        for name in current:
            if name not in wanted:
                changes[name] = None
        responses.append(
            await _alter(
                broker, module, resource, changes, ErrorCode.none, None, body.validate_only
            )
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, responses=tuple(responses))


_SET, _DELETE, _APPEND, _SUBTRACT = 0, 1, 2, 3


async def handle_incremental_alter_configs(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    responses = []
    for resource in body.resources:
        current = _current_dynamic(broker, resource.resource_type, resource.resource_name)
        changes: dict[str, str | None] = {}
        error, message = ErrorCode.none, None
        seen: set[str] = set()
        for item in resource.configs:
            if item.name in seen:
                error, message = ErrorCode.invalid_config, f"Duplicate config {item.name}"
                break
            seen.add(item.name)
            operation = int(item.config_operation)
            if operation == _SET:
                changes[item.name] = item.value
            elif operation == _DELETE:
                changes[item.name] = None
            elif operation in (_APPEND, _SUBTRACT):
                definition = TOPIC_CONFIGS.get(item.name) or BROKER_CONFIGS.get(item.name)
                if definition is None or definition.type != "list":
                    error = ErrorCode.invalid_config
                    message = f"Config {item.name} is not a list; APPEND/SUBTRACT need one"
                    break
                base = current.get(item.name)
                if base is None:
                    base = (
                        broker.config.topic_default(item.name)
                        if resource.resource_type == TOPIC_RESOURCE
                        else broker.config.raw(item.name) or ""
                    )
                values = [v for v in base.split(",") if v]
                added = [v for v in (item.value or "").split(",") if v]
                if operation == _APPEND:
                    values += [v for v in added if v not in values]
                else:
                    values = [v for v in values if v not in added]
                changes[item.name] = ",".join(values)
            else:
                error, message = ErrorCode.invalid_request, f"Unknown operation {operation}"
                break
        responses.append(
            await _alter(broker, module, resource, changes, error, message, body.validate_only)
        )
    return make(response_type(request), throttle_time=NO_THROTTLE, responses=tuple(responses))


async def _alter(
    broker: Broker,
    module: Any,
    resource: Any,
    changes: dict[str, str | None],
    error: ErrorCode,
    message: str | None,
    validate_only: bool,
) -> Any:
    """Validate and (unless validate_only) commit `changes`; the resource's response."""
    if error is ErrorCode.none:
        error, message, records = _config_changes(
            broker, resource.resource_type, resource.resource_name, changes
        )
        if error is ErrorCode.none and records and not validate_only:
            await broker.controller.write(lambda _image: (records, None))
    return make(
        module.AlterConfigsResourceResponse,
        error_code=error,
        error_message=message,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
    )


def handle_describe_log_dirs(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    body = request.body
    module = response_module(request)
    wanted: dict[str, set[int]] | None = None
    if body.topics is not None:
        wanted = {t.topic: {int(p) for p in t.partitions} for t in body.topics}
    topics: dict[str, list[Any]] = {}
    for partition in broker.replicas:
        if wanted is not None and partition.index not in wanted.get(partition.topic, set()):
            continue
        topics.setdefault(partition.topic, []).append(
            make(
                module.DescribeLogDirsPartition,
                partition_index=partition.index,
                partition_size=partition.log.size_bytes,
                offset_lag=0,
                is_future_key=False,
            )
        )
    usage = shutil.disk_usage(broker.data_dir)
    result = make(
        module.DescribeLogDirsResult,
        error_code=ErrorCode.none,
        log_dir=str(broker.data_dir.resolve()),
        topics=tuple(
            make(module.DescribeLogDirsTopic, name=name, partitions=tuple(parts))
            for name, parts in sorted(topics.items())
        ),
        total_bytes=usage.total,
        usable_bytes=usage.free,
    )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        results=(result,),
    )
