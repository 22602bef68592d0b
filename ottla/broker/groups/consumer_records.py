"""Binary layouts of the KIP-848 consumer group records in `__consumer_offsets` (PURE).

Written from the facts of Kafka's group-coordinator record schemas (the field
encodings are `record_fields`'). Keys are not flexible: an int16 version (which
names the record type), then int16-length strings. Values are version 0 and
flexible: an int16 version, then the fields with compact encodings (unsigned varint
length + 1, 0 for null), every struct ending in a tagged-field section (written
empty; read and skipped, so Kafka's optional `ClassicMemberMetadata` tag of a member
record does not trouble us).

| key version | record                                  | key fields        |
| ----------- | --------------------------------------- | ----------------- |
| 3           | ConsumerGroupMetadata                   | group             |
| 4           | ConsumerGroupPartitionMetadata          | group             |
| 5           | ConsumerGroupMemberMetadata             | group, member id  |
| 6           | ConsumerGroupTargetAssignmentMetadata   | group             |
| 7           | ConsumerGroupTargetAssignmentMember     | group, member id  |
| 8           | ConsumerGroupCurrentMemberAssignment    | group, member id  |

Values:

- ConsumerGroupMetadata: epoch (int32), the group epoch.
- ConsumerGroupPartitionMetadata: topics [topic id (uuid), name, partition count
  (int32), partition metadata (written empty: racks are not used)].
- ConsumerGroupMemberMetadata: instance id?, rack id?, client id, client host,
  subscribed topic names [string], subscribed regex?, rebalance timeout (int32),
  server assignor?.
- ConsumerGroupTargetAssignmentMetadata: assignment epoch (int32).
- ConsumerGroupTargetAssignmentMember: topic partitions [topic id, [int32]].
- ConsumerGroupCurrentMemberAssignment: member epoch, previous member epoch (int32),
  state (int8: 0 unrevoked, 1 unreleased, 2 stable, 127 unknown), assigned
  partitions and partitions pending revocation ([topic id, [int32]] each).

A null value is a tombstone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ottla.broker.groups.record_fields import RecordDecodeError, RecordReader, RecordWriter

__all__ = [
    "ConsumerGroupCurrentMemberAssignmentKey",
    "ConsumerGroupCurrentMemberAssignmentValue",
    "ConsumerGroupKey",
    "ConsumerGroupMemberMetadataKey",
    "ConsumerGroupMemberMetadataValue",
    "ConsumerGroupMetadataKey",
    "ConsumerGroupMetadataValue",
    "ConsumerGroupPartitionMetadataKey",
    "ConsumerGroupPartitionMetadataValue",
    "ConsumerGroupTargetAssignmentMemberKey",
    "ConsumerGroupTargetAssignmentMemberValue",
    "ConsumerGroupTargetAssignmentMetadataKey",
    "ConsumerGroupTargetAssignmentMetadataValue",
    "ConsumerGroupValue",
    "TopicPartitions",
    "decode_consumer_key",
    "decode_consumer_value",
    "encode_consumer_key",
    "encode_consumer_value",
]

# (topic id, sorted partitions) per topic, sorted by topic id.
TopicPartitions = tuple[tuple[uuid.UUID, tuple[int, ...]], ...]

_VALUE_VERSION = 0


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataValue:
    # (topic id, topic name, partition count)
    topics: tuple[tuple[uuid.UUID, str, int], ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberValue:
    topic_partitions: TopicPartitions


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned_partitions: TopicPartitions
    partitions_pending_revocation: TopicPartitions


ConsumerGroupKey = (
    ConsumerGroupMetadataKey
    | ConsumerGroupPartitionMetadataKey
    | ConsumerGroupMemberMetadataKey
    | ConsumerGroupTargetAssignmentMetadataKey
    | ConsumerGroupTargetAssignmentMemberKey
    | ConsumerGroupCurrentMemberAssignmentKey
)
ConsumerGroupValue = (
    ConsumerGroupMetadataValue
    | ConsumerGroupPartitionMetadataValue
    | ConsumerGroupMemberMetadataValue
    | ConsumerGroupTargetAssignmentMetadataValue
    | ConsumerGroupTargetAssignmentMemberValue
    | ConsumerGroupCurrentMemberAssignmentValue
)

_KEY_VERSIONS: dict[type[ConsumerGroupKey], int] = {
    ConsumerGroupMetadataKey: 3,
    ConsumerGroupPartitionMetadataKey: 4,
    ConsumerGroupMemberMetadataKey: 5,
    ConsumerGroupTargetAssignmentMetadataKey: 6,
    ConsumerGroupTargetAssignmentMemberKey: 7,
    ConsumerGroupCurrentMemberAssignmentKey: 8,
}
_KEY_TYPES = {version: cls for cls, version in _KEY_VERSIONS.items()}
_MEMBER_KEYS = (
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupCurrentMemberAssignmentKey,
)


# -- keys (not flexible) -----------------------------------------------------------------


def encode_consumer_key(key: ConsumerGroupKey) -> bytes:
    out = RecordWriter(_KEY_VERSIONS[type(key)])
    out.string(key.group)
    if isinstance(key, _MEMBER_KEYS):
        out.string(key.member_id)
    return out.to_bytes()


def decode_consumer_key(data: bytes) -> ConsumerGroupKey | None:
    """The key, or None when its version is not a consumer group record's."""
    reader = RecordReader(data)
    cls = _KEY_TYPES.get(reader.int16())
    if cls is None:
        return None
    group = reader.string()
    if cls in _MEMBER_KEYS:
        return cls(group, reader.string())
    return cls(group)  # type: ignore[call-arg]


# -- values (flexible) -------------------------------------------------------------------


def _write_topic_partitions(out: RecordWriter, value: TopicPartitions) -> None:
    out.compact_array_length(len(value))
    for topic_id, partitions in value:
        out.uuid(topic_id)
        out.compact_array_length(len(partitions))
        for partition in partitions:
            out.int32(partition)
        out.tagged_fields()


def _read_topic_partitions(reader: RecordReader) -> TopicPartitions:
    topics = []
    for _ in range(reader.compact_array_length()):
        topic_id = reader.uuid()
        partitions = tuple(reader.int32() for _ in range(reader.compact_array_length()))
        reader.tagged_fields()
        topics.append((topic_id, partitions))
    return tuple(topics)


def encode_consumer_value(value: ConsumerGroupValue) -> bytes:
    out = RecordWriter(_VALUE_VERSION)
    if isinstance(value, ConsumerGroupMetadataValue):
        out.int32(value.epoch)
    elif isinstance(value, ConsumerGroupTargetAssignmentMetadataValue):
        out.int32(value.assignment_epoch)
    elif isinstance(value, ConsumerGroupPartitionMetadataValue):
        out.compact_array_length(len(value.topics))
        for topic_id, name, count in value.topics:
            out.uuid(topic_id)
            out.compact_string(name)
            out.int32(count)
            out.compact_array_length(0)  # partition metadata (racks): not used
            out.tagged_fields()
    elif isinstance(value, ConsumerGroupMemberMetadataValue):
        out.compact_string(value.instance_id)
        out.compact_string(value.rack_id)
        out.compact_string(value.client_id)
        out.compact_string(value.client_host)
        out.compact_array_length(len(value.subscribed_topic_names))
        for name in value.subscribed_topic_names:
            out.compact_string(name)
        out.compact_string(value.subscribed_topic_regex)
        out.int32(value.rebalance_timeout_ms)
        out.compact_string(value.server_assignor)
    elif isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
        _write_topic_partitions(out, value.topic_partitions)
    else:
        out.int32(value.member_epoch)
        out.int32(value.previous_member_epoch)
        out.int8(value.state)
        _write_topic_partitions(out, value.assigned_partitions)
        _write_topic_partitions(out, value.partitions_pending_revocation)
    out.tagged_fields()
    return out.to_bytes()


def decode_consumer_value(key: ConsumerGroupKey, data: bytes) -> ConsumerGroupValue:
    """The value of a record whose key is `key`."""
    reader = RecordReader(data)
    version = reader.int16()
    if version != _VALUE_VERSION:
        raise RecordDecodeError(f"{type(key).__name__} value v{version} is not supported")
    value: ConsumerGroupValue
    if isinstance(key, ConsumerGroupMetadataKey):
        value = ConsumerGroupMetadataValue(reader.int32())
    elif isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
        value = ConsumerGroupTargetAssignmentMetadataValue(reader.int32())
    elif isinstance(key, ConsumerGroupPartitionMetadataKey):
        topics = []
        for _ in range(reader.compact_array_length()):
            topic_id, name, count = reader.uuid(), reader.compact_string(), reader.int32()
            for _ in range(reader.compact_array_length()):  # partition metadata: skipped
                reader.int32()
                for _ in range(reader.compact_array_length()):
                    reader.compact_string()
                reader.tagged_fields()
            reader.tagged_fields()
            topics.append((topic_id, name, count))
        value = ConsumerGroupPartitionMetadataValue(tuple(topics))
    elif isinstance(key, ConsumerGroupMemberMetadataKey):
        instance_id = reader.compact_nullable_string()
        rack_id = reader.compact_nullable_string()
        client_id, client_host = reader.compact_string(), reader.compact_string()
        names = tuple(reader.compact_string() for _ in range(reader.compact_array_length()))
        value = ConsumerGroupMemberMetadataValue(
            instance_id=instance_id,
            rack_id=rack_id,
            client_id=client_id,
            client_host=client_host,
            subscribed_topic_names=names,
            subscribed_topic_regex=reader.compact_nullable_string(),
            rebalance_timeout_ms=reader.int32(),
            server_assignor=reader.compact_nullable_string(),
        )
    elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
        value = ConsumerGroupTargetAssignmentMemberValue(_read_topic_partitions(reader))
    else:
        value = ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=reader.int32(),
            previous_member_epoch=reader.int32(),
            state=reader.int8(),
            assigned_partitions=_read_topic_partitions(reader),
            partitions_pending_revocation=_read_topic_partitions(reader),
        )
    reader.tagged_fields()
    return value
