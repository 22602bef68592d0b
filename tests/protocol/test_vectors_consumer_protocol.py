"""librdkafka's KIP-848 consumer-protocol requests (tests/vectors/librdkafka, written by
tests/vectors/capture_consumer_protocol.py) carry what ottla's coordinator relies on.

Proves: librdkafka 2.16 joins with ConsumerGroupHeartbeat v1, member epoch 0, a
client-generated member id, its subscribed topic names, an empty regex string (not
null: ottla treats "" as no regex), empty owned partitions and a rebalance timeout;
its OffsetCommit v9 carries that member id and the member epoch it was given; its
OffsetFetch v9 names no member (epoch -1, as an admin client would); and its
ConsumerGroupDescribe (v0) names the group.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ottla.protocol import decode_request

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "librdkafka"


def _body(name: str) -> object:
    return decode_request((VECTORS / name).read_bytes()).body


def test_librdkafka_consumer_protocol_requests() -> None:
    joined = _body("consumer_group_heartbeat_v1.bin")
    assert joined.group_id == "vectors"  # type: ignore[attr-defined]
    assert joined.member_epoch == 0 and joined.member_id  # type: ignore[attr-defined]
    assert joined.subscribed_topic_names == ("orders",)  # type: ignore[attr-defined]
    assert joined.subscribed_topic_regex == ""  # type: ignore[attr-defined]
    assert joined.topic_partitions == ()  # type: ignore[attr-defined]
    assert joined.rebalance_timeout > datetime.timedelta(0)  # type: ignore[attr-defined]
    commit = _body("offset_commit_v9.bin")
    assert commit.member_id == joined.member_id  # type: ignore[attr-defined]
    assert commit.generation_id_or_member_epoch == 1  # type: ignore[attr-defined]
    (group,) = _body("offset_fetch_v9.bin").groups  # type: ignore[attr-defined]
    assert (group.group_id, group.member_id, group.member_epoch) == ("vectors", None, -1)
    assert _body("consumer_group_describe_v0.bin").group_ids == ("vectors",)  # type: ignore[attr-defined]
