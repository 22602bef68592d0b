"""The KIP-848 consumer group records of `__consumer_offsets`, byte by byte.

Proves: every key and value is written exactly as Kafka's record schemas lay it out
(checked against hand-built bytes: int16 key version and int16-length strings;
value version 0 with compact strings and arrays and empty tagged-field sections)
and decodes back; tagged fields Kafka may add (a member record's
`ClassicMemberMetadata`) are skipped; classic key versions are not consumer keys;
truncated or malformed bytes are a `RecordDecodeError`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable

import pytest

from ottla.broker.groups.consumer_records import (
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupKey,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataKey,
    ConsumerGroupPartitionMetadataValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
    ConsumerGroupValue,
    decode_consumer_key,
    decode_consumer_value,
    encode_consumer_key,
    encode_consumer_value,
)
from ottla.broker.groups.record_fields import RecordDecodeError

T = uuid.UUID(int=0x0102030405060708090A0B0C0D0E0F10)
U = uuid.UUID(int=0xFF)
VERSION_0 = b"\x00\x00"
NO_TAGS = b"\x00"


def _key_string(text: str) -> bytes:
    return struct.pack(">h", len(text.encode())) + text.encode()


def _compact(text: str | None) -> bytes:
    if text is None:
        return b"\x00"
    return bytes([len(text.encode()) + 1]) + text.encode()


def _i32(*values: int) -> bytes:
    return b"".join(struct.pack(">i", v) for v in values)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ConsumerGroupMetadataKey("grp"), b"\x00\x03" + _key_string("grp")),
        (ConsumerGroupPartitionMetadataKey("grp"), b"\x00\x04" + _key_string("grp")),
        (
            ConsumerGroupMemberMetadataKey("grp", "m-1"),
            b"\x00\x05" + _key_string("grp") + _key_string("m-1"),
        ),
        (ConsumerGroupTargetAssignmentMetadataKey("grp"), b"\x00\x06" + _key_string("grp")),
        (
            ConsumerGroupTargetAssignmentMemberKey("grp", "m-1"),
            b"\x00\x07" + _key_string("grp") + _key_string("m-1"),
        ),
        (
            ConsumerGroupCurrentMemberAssignmentKey("grp", "é"),
            b"\x00\x08" + _key_string("grp") + _key_string("é"),
        ),
    ],
)
def test_key_layouts(key: ConsumerGroupKey, expected: bytes) -> None:
    assert encode_consumer_key(key) == expected
    assert decode_consumer_key(expected) == key


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            ConsumerGroupMetadataKey("g"),
            ConsumerGroupMetadataValue(7),
            VERSION_0 + _i32(7) + NO_TAGS,
        ),
        (
            ConsumerGroupTargetAssignmentMetadataKey("g"),
            ConsumerGroupTargetAssignmentMetadataValue(-1),
            VERSION_0 + _i32(-1) + NO_TAGS,
        ),
        (
            ConsumerGroupPartitionMetadataKey("g"),
            ConsumerGroupPartitionMetadataValue(((T, "orders", 3), (U, "", 1))),
            VERSION_0
            + b"\x03"
            + (T.bytes + _compact("orders") + _i32(3) + b"\x01" + NO_TAGS)
            + (U.bytes + _compact("") + _i32(1) + b"\x01" + NO_TAGS)
            + NO_TAGS,
        ),
        (
            ConsumerGroupMemberMetadataKey("g", "m"),
            ConsumerGroupMemberMetadataValue(
                instance_id=None,
                rack_id="r",
                client_id="c",
                client_host="/127.0.0.1",
                subscribed_topic_names=("a", "bb"),
                subscribed_topic_regex=None,
                rebalance_timeout_ms=45000,
                server_assignor="uniform",
            ),
            VERSION_0
            + _compact(None)
            + _compact("r")
            + _compact("c")
            + _compact("/127.0.0.1")
            + b"\x03"
            + _compact("a")
            + _compact("bb")
            + _compact(None)
            + _i32(45000)
            + _compact("uniform")
            + NO_TAGS,
        ),
        (
            ConsumerGroupTargetAssignmentMemberKey("g", "m"),
            ConsumerGroupTargetAssignmentMemberValue(((T, (0, 2)), (U, ()))),
            VERSION_0
            + b"\x03"
            + (T.bytes + b"\x03" + _i32(0, 2) + NO_TAGS)
            + (U.bytes + b"\x01" + NO_TAGS)
            + NO_TAGS,
        ),
        (
            ConsumerGroupCurrentMemberAssignmentKey("g", "m"),
            ConsumerGroupCurrentMemberAssignmentValue(
                member_epoch=5,
                previous_member_epoch=4,
                state=1,
                assigned_partitions=((T, (1,)),),
                partitions_pending_revocation=(),
            ),
            VERSION_0
            + _i32(5, 4)
            + b"\x01"
            + (b"\x02" + T.bytes + b"\x02" + _i32(1) + NO_TAGS)
            + b"\x01"
            + NO_TAGS,
        ),
    ],
)
def test_value_layouts(key: ConsumerGroupKey, value: ConsumerGroupValue, expected: bytes) -> None:
    assert encode_consumer_value(value) == expected
    assert decode_consumer_value(key, expected) == value


def test_long_arrays_use_multi_byte_varints() -> None:
    topics = tuple((uuid.UUID(int=i), f"t{i}", i) for i in range(200))
    encoded = encode_consumer_value(ConsumerGroupPartitionMetadataValue(topics))
    assert encoded[2:4] == b"\xc9\x01"  # 201 as an unsigned varint
    key = ConsumerGroupPartitionMetadataKey("g")
    assert decode_consumer_value(key, encoded) == ConsumerGroupPartitionMetadataValue(topics)


def test_unknown_tagged_fields_and_partition_racks_are_skipped() -> None:
    key = ConsumerGroupMemberMetadataKey("g", "m")
    tagged = b"\x01" + b"\x00" + b"\x03abc"  # one tag (0) of three bytes
    raw = (
        VERSION_0
        + _compact(None) * 2
        + _compact("c") * 2
        + b"\x01"
        + _compact(None)
        + _i32(1)
        + _compact(None)
        + tagged
    )
    value = decode_consumer_value(key, raw)
    assert isinstance(value, ConsumerGroupMemberMetadataValue)
    assert value.client_id == "c" and value.subscribed_topic_names == ()
    racks = b"\x02" + _i32(0) + b"\x02" + _compact("rack-a") + NO_TAGS
    raw = VERSION_0 + b"\x02" + T.bytes + _compact("t") + _i32(1) + racks + NO_TAGS + NO_TAGS
    assert decode_consumer_value(
        ConsumerGroupPartitionMetadataKey("g"), raw
    ) == ConsumerGroupPartitionMetadataValue(((T, "t", 1),))


def test_other_key_versions_are_not_consumer_keys() -> None:
    for version in (0, 1, 2, 9):
        assert decode_consumer_key(struct.pack(">h", version) + _key_string("g")) is None


@pytest.mark.parametrize(
    "decode",
    [
        lambda: decode_consumer_key(b"\x00"),
        lambda: decode_consumer_key(b"\x00\x05" + _key_string("g") + b"\x00\x04m"),
        lambda: decode_consumer_key(b"\x00\x03\x00\x01\xff"),
        lambda: decode_consumer_value(ConsumerGroupMetadataKey("g"), VERSION_0 + b"\x00\x00"),
        lambda: decode_consumer_value(ConsumerGroupMetadataKey("g"), b"\x00\x01" + _i32(1)),
        lambda: decode_consumer_value(
            ConsumerGroupTargetAssignmentMemberKey("g", "m"), VERSION_0 + b"\xff" * 5 + b"\x01"
        ),
        lambda: decode_consumer_value(
            ConsumerGroupMemberMetadataKey("g", "m"), VERSION_0 + b"\x00\x00\x00"
        ),
    ],
    ids=[
        "short-version",
        "short-member-id",
        "bad-utf8",
        "short-int32",
        "value-version",
        "long-varint",
        "null-client-id",
    ],
)
def test_malformed_bytes_are_decode_errors(decode: Callable[[], object]) -> None:
    with pytest.raises(RecordDecodeError):
        decode()
