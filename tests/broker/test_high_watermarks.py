"""The high-watermark checkpoint: written, read back, and where a reopened replica starts.

Proves: `entries` lists only partitions that took a role, keyed by topic id; `save` and
`load` round-trip; a damaged file reads as empty (and a partition then starts as if it
had none); a reopened partition whose checkpoint says N starts its high watermark at N,
as a follower (not at its log end offset: its tail may be uncommitted) and as a leader
with followers (not at its log start), clamped to the log; a re-created topic with the
same name but a new id does not take the old topic's value.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from ottla.broker import high_watermarks
from ottla.broker.partitions import Partition, ReplicaManager
from ottla.protocol import Record, build_batch
from ottla.storage import HIGH_WATERMARK_FILE, LogConfig

TOPIC_ID = uuid.UUID("0e2e7f8c-37a9-4e6a-9d5b-1f3c2a4b5c6d")
OTHER_ID = uuid.UUID(int=42)


def _open(replicas: ReplicaManager, index: int = 0, topic_id: uuid.UUID = TOPIC_ID) -> Partition:
    return replicas.open_partition("orders", index, topic_id, LogConfig(), {}, 0, now_ms=0)


def _append(partition: Partition, count: int) -> None:
    records = [Record(key=None, value=b"v%d" % i) for i in range(count)]
    partition.log.append(bytes(build_batch(records, base_timestamp=1)), now_ms=1)


async def test_only_partitions_with_a_role_are_checkpointed(tmp_path: Path) -> None:
    replicas = ReplicaManager(tmp_path)
    leader, follower, opened = (_open(replicas, i) for i in range(3))
    for partition in (leader, follower, opened):
        _append(partition, 10)
    leader.become_leader(1, 0, (1,), (1,), 0, now_ms=0)  # alone in its ISR: HW = LEO
    leader.role = (1, 0)
    follower.become_follower(2, 0, (1, 2))
    follower.role = (2, 0)
    follower.append_as_follower(b"", 7, now_ms=0)  # the leader says 7
    assert high_watermarks.entries(replicas) == [(TOPIC_ID.int, 0, 10), (TOPIC_ID.int, 1, 7)]
    high_watermarks.save(tmp_path, high_watermarks.entries(replicas))
    assert high_watermarks.load(tmp_path) == {(TOPIC_ID, 0): 10, (TOPIC_ID, 1): 7}
    replicas.close()


def test_a_damaged_checkpoint_is_ignored(tmp_path: Path) -> None:
    high_watermarks.save(tmp_path, [(TOPIC_ID.int, 0, 5)])
    path = tmp_path / HIGH_WATERMARK_FILE
    path.write_bytes(path.read_bytes().replace(b" 5\n", b" 6\n"))  # the checksum no longer fits
    assert high_watermarks.load(tmp_path) == {}
    assert high_watermarks.load(tmp_path / "nowhere") == {}


async def test_a_reopened_replica_starts_at_its_checkpoint(tmp_path: Path) -> None:
    replicas = ReplicaManager(tmp_path)
    for index in range(4):
        _append(_open(replicas, index), 10)
    replicas.close()

    reopened = ReplicaManager(tmp_path)
    reopened.restored_high_watermarks = {
        (TOPIC_ID, 0): 6,
        (TOPIC_ID, 1): 6,
        (TOPIC_ID, 2): 99,  # more than the log holds (a truncated tail): the log end
        (OTHER_ID, 3): 6,  # another topic's, under the same name: not taken
    }
    follower, leader, clamped, recreated = (_open(reopened, i) for i in range(4))
    follower.become_follower(2, 1, (1, 2, 3))
    leader.become_leader(1, 1, (1, 2, 3), (1, 2, 3), 1, now_ms=0)
    clamped.become_follower(2, 1, (1, 2, 3))
    recreated.become_follower(2, 1, (1, 2, 3))
    for partition in (follower, clamped, recreated):
        partition.role = (2, 1)
    assert follower.high_watermark == 6  # not its log end, 10
    assert leader.high_watermark == 6  # not its log start, 0: the ISR has not fetched yet
    assert clamped.high_watermark == 10
    assert recreated.high_watermark == 0
    assert reopened.restored_high_watermarks == {(OTHER_ID, 3): 6}  # each taken once
    reopened.close()
