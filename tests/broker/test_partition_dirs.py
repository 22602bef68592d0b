"""Partition directories know their topic id; stale and stray ones are set aside.

Proves: partition.metadata is Kafka's text format (the topic id in base64url without
padding, as Kafka's Uuid prints it) and reads back; an unreadable one reads as absent;
`ReplicaManager.open_partition` of a topic whose name an older topic used (its
directory's partition.metadata names another id) sets the old directory aside and
starts an empty log, where before it served the old records; a directory without the
file is adopted (and gets one); `sweep_strays` sets aside exactly the partition
directories not hosted, never the metadata log, files, or directories set aside before;
a new partition's partition.metadata is readable as soon as it opens and is fsynced in
a worker thread, not on the event loop's (and at close if still pending); syncing a
directory deleted meanwhile is no error.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from ottla.broker import partition_dirs
from ottla.broker.partitions import ReplicaManager
from ottla.protocol import Record, build_batch
from ottla.storage import LogConfig

OLD = uuid.UUID("0e2e7f8c-37a9-4e6a-9d5b-1f3c2a4b5c6d")
NEW = uuid.UUID(int=42)


def test_partition_metadata_is_kafkas_format(tmp_path: Path) -> None:
    partition_dirs.write_topic_id(tmp_path, OLD)
    text = (tmp_path / "partition.metadata").read_text()
    assert text == "version: 0\ntopic_id: Di5_jDepTmqdWx88KktcbQ\n"
    assert partition_dirs.read_topic_id(tmp_path) == OLD
    (tmp_path / "partition.metadata").write_text("version: 0\ntopic_id: not base64!\n")
    assert partition_dirs.read_topic_id(tmp_path) is None
    (tmp_path / "partition.metadata").write_text("version: 7\ntopic_id: Di5_jDepTmqdWx88KktcbQ\n")
    assert partition_dirs.read_topic_id(tmp_path) is None


def _append(replicas: ReplicaManager, topic_id: uuid.UUID, value: bytes) -> int:
    partition = replicas.open_partition("orders", 0, topic_id, LogConfig(), {}, 0, now_ms=0)
    partition.log.append(
        bytes(build_batch([Record(key=None, value=value)], base_timestamp=1)), now_ms=1
    )
    return int(partition.log.log_end_offset)


async def test_a_recreated_topic_never_opens_the_old_topics_directory(tmp_path: Path) -> None:
    replicas = ReplicaManager(tmp_path)
    assert _append(replicas, OLD, b"old record") == 1
    replicas.close()

    reopened = ReplicaManager(tmp_path)
    partition = reopened.open_partition("orders", 0, NEW, LogConfig(), {}, 0, now_ms=0)
    assert int(partition.log.log_end_offset) == 0  # empty: not the old topic's records
    assert partition_dirs.read_topic_id(tmp_path / "orders-0") == NEW
    strays = [p for p in tmp_path.iterdir() if p.name.endswith("-stray")]
    assert len(strays) == 1 and strays[0].name.startswith("orders-0.")
    assert partition_dirs.read_topic_id(strays[0]) == OLD  # set aside, not deleted
    reopened.close()


async def test_the_same_topic_reopens_its_records(tmp_path: Path) -> None:
    replicas = ReplicaManager(tmp_path)
    _append(replicas, OLD, b"kept")
    replicas.close()
    (tmp_path / "orders-0" / "partition.metadata").unlink()  # as an older ottla left it

    reopened = ReplicaManager(tmp_path)
    partition = reopened.open_partition("orders", 0, OLD, LogConfig(), {}, 0, now_ms=0)
    assert int(partition.log.log_end_offset) == 1
    assert partition_dirs.read_topic_id(tmp_path / "orders-0") == OLD
    reopened.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith("-stray")]


def test_sweep_sets_aside_only_partition_directories_not_hosted(tmp_path: Path) -> None:
    for name in ("kept-0", "gone-3", "__cluster_metadata-0", "gone-1.abc-stray", "notapartition"):
        (tmp_path / name).mkdir()
    (tmp_path / "meta.properties").write_text("node.id=1\n")
    (tmp_path / "file-0").write_text("a file named like a partition\n")
    moved = partition_dirs.sweep_strays(tmp_path, {"kept-0"})
    assert [p.name.split(".")[0] for p in moved] == ["gone-3"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "gone-3" not in names
    for kept in ("kept-0", "__cluster_metadata-0", "gone-1.abc-stray", "notapartition", "file-0"):
        assert kept in names


async def test_partition_metadata_is_fsynced_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    both_synced: asyncio.Future[None] = loop.create_future()
    synced: list[tuple[int, Path]] = []

    def sync_topic_id(directory: Path) -> None:
        synced.append((threading.get_ident(), directory))
        if len(synced) == 2:
            loop.call_soon_threadsafe(both_synced.set_result, None)

    monkeypatch.setattr(partition_dirs, "sync_topic_id", sync_topic_id)
    replicas = ReplicaManager(tmp_path)
    for index in (0, 1):
        replicas.open_partition("orders", index, NEW, LogConfig(), {}, 0, now_ms=0)
        assert partition_dirs.read_topic_id(tmp_path / f"orders-{index}") == NEW
    assert synced == []  # nothing fsynced while the event loop's thread opened them
    await asyncio.wait_for(both_synced, 10)
    assert sorted(directory.name for _, directory in synced) == ["orders-0", "orders-1"]
    assert all(thread != threading.get_ident() for thread, _ in synced)
    replicas.close()


async def test_close_fsyncs_partition_metadata_still_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(partition_dirs, "sync_topic_id", synced.append)
    replicas = ReplicaManager(tmp_path)
    replicas.open_partition("orders", 0, NEW, LogConfig(), {}, 0, now_ms=0)
    replicas.close()  # before the event loop ran the worker thread's batch
    assert synced == [tmp_path / "orders-0"]


def test_syncing_a_deleted_partition_directory_is_no_error(tmp_path: Path) -> None:
    directory = tmp_path / "orders-0"
    directory.mkdir()
    partition_dirs.write_topic_id(directory, NEW, durable=False)
    partition_dirs.sync_topic_id(directory)
    assert partition_dirs.read_topic_id(directory) == NEW
    (directory / "partition.metadata").unlink()
    directory.rmdir()
    partition_dirs.sync_topic_id(directory)  # its topic was deleted meanwhile
