"""Binary layouts of the group coordinator's records in `__consumer_offsets` (PURE).

Written from the facts of Kafka's group-coordinator record schemas; both key and
value start with an int16 version, followed by the fields in schema order (non-
flexible versions: int16-length strings, -1 for null; int32-length bytes; int32
array counts):

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

import struct
from dataclasses import dataclass

__all__ = [
    "GroupMetadataKey",
    "GroupMetadataValue",
    "MemberMetadata",
    "OffsetCommitKey",
    "OffsetCommitValue",
    "RecordDecodeError",
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

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordDecodeError(ValueError):
    """A key or value that does not follow the layout it claims."""


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


# -- writing ---------------------------------------------------------------------------


def _string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += _I16.pack(-1)
        return
    encoded = value.encode()
    out += _I16.pack(len(encoded))
    out += encoded


def _bytes(out: bytearray, value: bytes) -> None:
    out += _I32.pack(len(value))
    out += value


def encode_key(key: OffsetCommitKey | GroupMetadataKey) -> bytes:
    out = bytearray()
    if isinstance(key, OffsetCommitKey):
        out += _I16.pack(OFFSET_COMMIT_KEY_VERSION)
        _string(out, key.group)
        _string(out, key.topic)
        out += _I32.pack(key.partition)
    else:
        out += _I16.pack(GROUP_METADATA_KEY_VERSION)
        _string(out, key.group)
    return bytes(out)


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    out = bytearray(_I16.pack(OFFSET_COMMIT_VALUE_VERSION))
    out += _I64.pack(value.offset)
    out += _I32.pack(value.leader_epoch)
    _string(out, value.metadata)
    out += _I64.pack(value.commit_timestamp_ms)
    return bytes(out)


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    out = bytearray(_I16.pack(GROUP_METADATA_VALUE_VERSION))
    _string(out, value.protocol_type)
    out += _I32.pack(value.generation)
    _string(out, value.protocol)
    _string(out, value.leader)
    out += _I64.pack(value.current_state_timestamp_ms)
    out += _I32.pack(len(value.members))
    for member in value.members:
        _string(out, member.member_id)
        _string(out, member.group_instance_id)
        _string(out, member.client_id)
        _string(out, member.client_host)
        out += _I32.pack(member.rebalance_timeout_ms)
        out += _I32.pack(member.session_timeout_ms)
        _bytes(out, member.subscription)
        _bytes(out, member.assignment)
    return bytes(out)


# -- reading ---------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def _take(self, layout: struct.Struct) -> int:
        try:
            (value,) = layout.unpack_from(self.data, self.position)
        except struct.error:
            raise RecordDecodeError("record truncated") from None
        self.position += layout.size
        return int(value)

    def int16(self) -> int:
        return self._take(_I16)

    def int32(self) -> int:
        return self._take(_I32)

    def int64(self) -> int:
        return self._take(_I64)

    def _raw(self, length: int) -> bytes:
        end = self.position + length
        if length < 0 or end > len(self.data):
            raise RecordDecodeError("record truncated")
        raw = self.data[self.position : end]
        self.position = end
        return raw

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length == -1:
            return None
        try:
            return self._raw(length).decode()
        except UnicodeDecodeError:
            raise RecordDecodeError("string is not UTF-8") from None

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise RecordDecodeError("null string where one is required")
        return value

    def bytes_(self) -> bytes:
        length = self.int32()
        return b"" if length == -1 else self._raw(length)


def decode_key(data: bytes) -> OffsetCommitKey | GroupMetadataKey | None:
    """The key, or None for key versions this coordinator does not own (KIP-848)."""
    reader = _Reader(data)
    version = reader.int16()
    if version in (0, 1):
        return OffsetCommitKey(reader.string(), reader.string(), reader.int32())
    if version == 2:
        return GroupMetadataKey(reader.string())
    return None


def decode_offset_commit_value(data: bytes) -> OffsetCommitValue:
    reader = _Reader(data)
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
    reader = _Reader(data)
    version = reader.int16()
    if not 0 <= version <= 3:
        raise RecordDecodeError(f"GroupMetadataValue v{version} is not supported")
    protocol_type = reader.string()
    generation = reader.int32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    timestamp = reader.int64() if version >= 2 else -1
    count = reader.int32()
    if count < 0 or count > len(data):
        raise RecordDecodeError(f"bad member count {count}")
    members = []
    for _ in range(count):
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
