"""Binary layouts of the group coordinator's records in `__consumer_offsets` (PURE).

Written from the facts of Kafka's group-coordinator record schemas; both key and
value start with an int16 version, followed by the fields in schema order (non-
flexible versions, encoded by `record_fields`: int16-length strings, -1 for null;
int32-length bytes; int32 array counts):

- OffsetCommitKey v1: group, topic, partition (int32). Versions 0 and 1 share it.
- OffsetCommitValue v3: offset (int64), leaderEpoch (int32), metadata,
  commitTimestamp (int64). v1 adds expireTimestamp after commitTimestamp (read,
  ignored); v0/v2 have neither leaderEpoch nor expireTimestamp.
- GroupMetadataKey v2: group.
- GroupMetadataValue v3: protocolType, generation (int32), protocol (nullable),
  leader (nullable), currentStateTimestamp (int64, v2+), members: memberId,
  groupInstanceId (nullable, v3+), clientId, clientHost, rebalanceTimeout (int32,
  v1+), sessionTimeout (int32), subscription (bytes), assignment (bytes).

A null value is a tombstone: the offset or group is deleted. Keys of other
versions (the KIP-848 consumer-group records, version 3 and above) are reported as
`None` by `decode_key` so a loader skips them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ottla.broker.groups.record_fields import RecordDecodeError, RecordReader, RecordWriter

__all__ = [
    "GroupMetadataKey",
    "GroupMetadataValue",
    "MemberMetadata",
    "OffsetCommitKey",
    "OffsetCommitValue",
    "decode_group_metadata_value",
    "decode_key",
    "decode_offset_commit_value",
    "encode_group_metadata_value",
    "encode_key",
    "encode_offset_commit_value",
]

OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 3


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp_ms: int
    members: tuple[MemberMetadata, ...]


def encode_key(key: OffsetCommitKey | GroupMetadataKey) -> bytes:
    offset_commit = isinstance(key, OffsetCommitKey)
    out = RecordWriter(OFFSET_COMMIT_KEY_VERSION if offset_commit else GROUP_METADATA_KEY_VERSION)
    out.string(key.group)
    if isinstance(key, OffsetCommitKey):
        out.string(key.topic)
        out.int32(key.partition)
    return out.to_bytes()


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    out = RecordWriter(OFFSET_COMMIT_VALUE_VERSION)
    out.int64(value.offset)
    out.int32(value.leader_epoch)
    out.string(value.metadata)
    out.int64(value.commit_timestamp_ms)
    return out.to_bytes()


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    out = RecordWriter(GROUP_METADATA_VALUE_VERSION)
    out.string(value.protocol_type)
    out.int32(value.generation)
    out.string(value.protocol)
    out.string(value.leader)
    out.int64(value.current_state_timestamp_ms)
    out.array_length(len(value.members))
    for member in value.members:
        out.string(member.member_id)
        out.string(member.group_instance_id)
        out.string(member.client_id)
        out.string(member.client_host)
        out.int32(member.rebalance_timeout_ms)
        out.int32(member.session_timeout_ms)
        out.bytes_(member.subscription)
        out.bytes_(member.assignment)
    return out.to_bytes()


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey | None:
    """The key, or None for key versions this coordinator does not own (KIP-848)."""
    reader = RecordReader(data)
    version = reader.int16()
    if version in (0, 1):
        return OffsetCommitKey(reader.string(), reader.string(), reader.int32())
    if version == 2:
        return GroupMetadataKey(reader.string())
    return None


def decode_offset_commit_value(data: bytes) -> OffsetCommitValue:
    reader = RecordReader(data)
    version = reader.int16()
    if not 0 <= version <= 3:
        raise RecordDecodeError(f"OffsetCommitValue v{version} is not supported")
    offset = reader.int64()
    leader_epoch = reader.int32() if version >= 3 else -1
    metadata = reader.string()
    commit_timestamp_ms = reader.int64()
    if version == 1:
        reader.int64()  # expireTimestamp: ignored, as Kafka does since 2.1
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp_ms)


def decode_group_metadata_value(data: bytes) -> GroupMetadataValue:
    reader = RecordReader(data)
    version = reader.int16()
    if not 0 <= version <= 3:
        raise RecordDecodeError(f"GroupMetadataValue v{version} is not supported")
    protocol_type = reader.string()
    generation = reader.int32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    timestamp = reader.int64() if version >= 2 else -1
    members = []
    for _ in range(reader.array_length()):
        member_id = reader.string()
        instance_id = reader.nullable_string() if version >= 3 else None
        client_id = reader.string()
        client_host = reader.string()
        rebalance_timeout = reader.int32() if version >= 1 else -1
        session_timeout = reader.int32()
        if rebalance_timeout < 0:
            rebalance_timeout = session_timeout
        members.append(
            MemberMetadata(
                member_id=member_id,
                group_instance_id=instance_id,
                client_id=client_id,
                client_host=client_host,
                rebalance_timeout_ms=rebalance_timeout,
                session_timeout_ms=session_timeout,
                subscription=reader.bytes_(),
                assignment=reader.bytes_(),
            )
        )
    return GroupMetadataValue(
        protocol_type, generation, protocol, leader, timestamp, tuple(members)
    )
