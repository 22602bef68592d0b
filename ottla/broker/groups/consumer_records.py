"""Binary layouts of the KIP-848 consumer group records in `__consumer_offsets` (PURE).

Written from the facts of Kafka's group-coordinator record schemas. Keys are not
flexible: an int16 version (which names the record type), then int16-length
strings. Values are version 0 and flexible: an int16 version, then the fields with
compact encodings (unsigned varint length + 1, 0 for null), every struct ending in
a tagged-field section (written empty; read and skipped, so Kafka's optional
`ClassicMemberMetadata` tag of a member record does not trouble us).

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

import struct
import uuid
from dataclasses import dataclass

from ottla.broker.groups.records import RecordDecodeError

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

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
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


def _key_string(out: bytearray, value: str) -> None:
    encoded = value.encode()
    out += _I16.pack(len(encoded))
    out += encoded


def encode_consumer_key(key: ConsumerGroupKey) -> bytes:
    out = bytearray(_I16.pack(_KEY_VERSIONS[type(key)]))
    _key_string(out, key.group)
    if isinstance(key, _MEMBER_KEYS):
        _key_string(out, key.member_id)
    return bytes(out)


def decode_consumer_key(data: bytes) -> ConsumerGroupKey | None:
    """The key, or None when its version is not a consumer group record's."""
    reader = _Reader(data)
    if len(data) < 2:
        raise RecordDecodeError("record truncated")
    (version,) = _I16.unpack_from(data, 0)
    cls = _KEY_TYPES.get(version)
    if cls is None:
        return None
    reader.position = 2
    group = reader.key_string()
    if cls in _MEMBER_KEYS:
        return cls(group, reader.key_string())
    return cls(group)  # type: ignore[call-arg]


# -- values (flexible) -------------------------------------------------------------------


def _uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _compact_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out.append(0)
        return
    encoded = value.encode()
    _uvarint(out, len(encoded) + 1)
    out += encoded


def _topic_partitions(out: bytearray, value: TopicPartitions) -> None:
    _uvarint(out, len(value) + 1)
    for topic_id, partitions in value:
        out += topic_id.bytes
        _uvarint(out, len(partitions) + 1)
        for partition in partitions:
            out += _I32.pack(partition)
        out.append(0)  # tagged fields


def encode_consumer_value(value: ConsumerGroupValue) -> bytes:
    out = bytearray(_I16.pack(_VALUE_VERSION))
    if isinstance(value, ConsumerGroupMetadataValue):
        out += _I32.pack(value.epoch)
    elif isinstance(value, ConsumerGroupTargetAssignmentMetadataValue):
        out += _I32.pack(value.assignment_epoch)
    elif isinstance(value, ConsumerGroupPartitionMetadataValue):
        _uvarint(out, len(value.topics) + 1)
        for topic_id, name, count in value.topics:
            out += topic_id.bytes
            _compact_string(out, name)
            out += _I32.pack(count)
            out.append(1)  # partition metadata: an empty array
            out.append(0)
    elif isinstance(value, ConsumerGroupMemberMetadataValue):
        _compact_string(out, value.instance_id)
        _compact_string(out, value.rack_id)
        _compact_string(out, value.client_id)
        _compact_string(out, value.client_host)
        _uvarint(out, len(value.subscribed_topic_names) + 1)
        for name in value.subscribed_topic_names:
            _compact_string(out, name)
        _compact_string(out, value.subscribed_topic_regex)
        out += _I32.pack(value.rebalance_timeout_ms)
        _compact_string(out, value.server_assignor)
    elif isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
        _topic_partitions(out, value.topic_partitions)
    else:
        out += _I32.pack(value.member_epoch)
        out += _I32.pack(value.previous_member_epoch)
        out += _I8.pack(value.state)
        _topic_partitions(out, value.assigned_partitions)
        _topic_partitions(out, value.partitions_pending_revocation)
    out.append(0)  # tagged fields
    return bytes(out)


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def _raw(self, length: int) -> bytes:
        end = self.position + length
        if length < 0 or end > len(self.data):
            raise RecordDecodeError("record truncated")
        raw = self.data[self.position : end]
        self.position = end
        return raw

    def _fixed(self, layout: struct.Struct) -> int:
        (value,) = layout.unpack(self._raw(layout.size))
        return int(value)

    def int8(self) -> int:
        return self._fixed(_I8)

    def int32(self) -> int:
        return self._fixed(_I32)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._raw(16))

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self._raw(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise RecordDecodeError("varint too long")

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise RecordDecodeError("string is not UTF-8") from None

    def key_string(self) -> str:
        length = self._fixed(_I16)
        return self._decode(self._raw(length))

    def nullable_string(self) -> str | None:
        length = self.uvarint()
        return None if length == 0 else self._decode(self._raw(length - 1))

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise RecordDecodeError("null string where one is required")
        return value

    def count(self) -> int:
        count = self.uvarint() - 1
        if count < 0 or count > len(self.data):
            raise RecordDecodeError(f"bad array length {count}")
        return count

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._raw(self.uvarint())

    def topic_partitions(self) -> TopicPartitions:
        topics = []
        for _ in range(self.count()):
            topic_id = self.uuid()
            partitions = tuple(self.int32() for _ in range(self.count()))
            self.tagged_fields()
            topics.append((topic_id, partitions))
        return tuple(topics)


def decode_consumer_value(key: ConsumerGroupKey, data: bytes) -> ConsumerGroupValue:
    """The value of a record whose key is `key`."""
    reader = _Reader(data)
    version = reader._fixed(_I16)
    if version != _VALUE_VERSION:
        raise RecordDecodeError(f"{type(key).__name__} value v{version} is not supported")
    value: ConsumerGroupValue
    if isinstance(key, ConsumerGroupMetadataKey):
        value = ConsumerGroupMetadataValue(reader.int32())
    elif isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
        value = ConsumerGroupTargetAssignmentMetadataValue(reader.int32())
    elif isinstance(key, ConsumerGroupPartitionMetadataKey):
        topics = []
        for _ in range(reader.count()):
            topic_id, name, count = reader.uuid(), reader.string(), reader.int32()
            for _ in range(reader.count()):  # partition metadata (racks): skipped
                reader.int32()
                for _ in range(reader.count()):
                    reader.string()
                reader.tagged_fields()
            reader.tagged_fields()
            topics.append((topic_id, name, count))
        value = ConsumerGroupPartitionMetadataValue(tuple(topics))
    elif isinstance(key, ConsumerGroupMemberMetadataKey):
        instance_id, rack_id = reader.nullable_string(), reader.nullable_string()
        client_id, client_host = reader.string(), reader.string()
        names = tuple(reader.string() for _ in range(reader.count()))
        value = ConsumerGroupMemberMetadataValue(
            instance_id=instance_id,
            rack_id=rack_id,
            client_id=client_id,
            client_host=client_host,
            subscribed_topic_names=names,
            subscribed_topic_regex=reader.nullable_string(),
            rebalance_timeout_ms=reader.int32(),
            server_assignor=reader.nullable_string(),
        )
    elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
        value = ConsumerGroupTargetAssignmentMemberValue(reader.topic_partitions())
    else:
        value = ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=reader.int32(),
            previous_member_epoch=reader.int32(),
            state=reader.int8(),
            assigned_partitions=reader.topic_partitions(),
            partitions_pending_revocation=reader.topic_partitions(),
        )
    reader.tagged_fields()
    return value
