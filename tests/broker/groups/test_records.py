"""The `__consumer_offsets` codec and the coordinator partition of a group.

Proves: keys and values round-trip; the bytes follow Kafka's layouts (version
prefix, int16 strings, int32 bytes) checked field by field against hand-built
bytes; older value versions decode; KIP-848 keys are skipped; truncation is an
error; `java_string_hashcode` equals Java's String.hashCode (known values).
"""

from __future__ import annotations

import struct

import pytest

from ottla.broker.groups.coordinator import java_string_hashcode
from ottla.broker.groups.record_fields import RecordDecodeError
from ottla.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_value,
    encode_key,
    encode_offset_commit_value,
)


def _s(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def test_offset_commit_key_and_value_layout() -> None:
    key = OffsetCommitKey("grp", "topic", 7)
    assert encode_key(key) == b"\x00\x01" + _s("grp") + _s("topic") + struct.pack(">i", 7)
    assert decode_key(encode_key(key)) == key
    value = OffsetCommitValue(offset=42, leader_epoch=3, metadata="m", commit_timestamp_ms=99)
    encoded = encode_offset_commit_value(value)
    assert encoded == struct.pack(">hqi", 3, 42, 3) + _s("m") + struct.pack(">q", 99)
    assert decode_offset_commit_value(encoded) == value


def test_older_offset_value_versions_decode() -> None:
    v1 = struct.pack(">hq", 1, 5) + _s("x") + struct.pack(">qq", 10, 20)
    assert decode_offset_commit_value(v1) == OffsetCommitValue(5, -1, "x", 10)
    v0 = struct.pack(">hq", 0, 5) + _s("") + struct.pack(">q", 10)
    assert decode_offset_commit_value(v0) == OffsetCommitValue(5, -1, "", 10)


def test_group_metadata_round_trip_and_layout() -> None:
    member = MemberMetadata("m-1", "inst", "client", "/127.0.0.1", 30000, 10000, b"sub", b"asg")
    value = GroupMetadataValue("consumer", 4, "range", "m-1", 1234, (member,))
    encoded = encode_group_metadata_value(value)
    assert encoded.startswith(b"\x00\x03" + _s("consumer") + struct.pack(">i", 4) + _s("range"))
    assert decode_group_metadata_value(encoded) == value
    empty = GroupMetadataValue("consumer", 5, None, None, 1, ())
    assert decode_group_metadata_value(encode_group_metadata_value(empty)) == empty
    assert encode_key(GroupMetadataKey("g")) == b"\x00\x02" + _s("g")
    assert decode_key(encode_key(GroupMetadataKey("g"))) == GroupMetadataKey("g")


def test_unknown_keys_are_skipped_and_truncation_is_an_error() -> None:
    assert decode_key(b"\x00\x03" + _s("g")) is None
    with pytest.raises(RecordDecodeError):
        decode_key(b"\x00\x01\x00\x05ab")
    with pytest.raises(RecordDecodeError):
        decode_offset_commit_value(b"\x00\x03\x00")
    with pytest.raises(RecordDecodeError):
        decode_group_metadata_value(b"\x00\x09")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),
        ("console-consumer-1", 35782224),
        ("é€", 15587),
        ("😀", 1772899),
    ],
)
def test_java_string_hashcode(text: str, expected: int) -> None:
    assert java_string_hashcode(text) == expected
