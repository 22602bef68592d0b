"""When an append's OSError stops the node (Broker.log_dir_failed), and when it does not.

The node stops, as Kafka halts a broker whose log directory failed, only for a disk
failure (full, quota, I/O error, read-only file system) of a partition it leads with
another replica in the ISR: then an in-sync replica can take over. A partition alone on
this node, a follower's partition, or an OSError that is not the disk's leave it
running. (tests/netns/test_replica_disk_full.py runs the whole story on three nodes.)
"""

from __future__ import annotations

import errno
from pathlib import Path
from types import SimpleNamespace

import pytest

from ottla.broker import Broker
from ottla.config import load_config


def _broker(tmp_path: Path) -> Broker:
    return Broker(load_config(data_dir=str(tmp_path), environ={}))


def _partition(isr: tuple[int, ...], leading: bool = True) -> object:
    return SimpleNamespace(name="t-0", isr=isr, replication=object() if leading else None)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS])
def test_a_leader_with_another_in_sync_replica_stops_on_a_disk_failure(
    tmp_path: Path, code: int
) -> None:
    broker = _broker(tmp_path)
    broker.log_dir_failed(_partition((1, 2, 3)), OSError(code, "disk"))  # type: ignore[arg-type]
    assert broker.failed.is_set()
    assert broker.failure is not None and str(tmp_path) in broker.failure


@pytest.mark.parametrize(
    ("partition", "code"),
    [
        (_partition((1,)), errno.ENOSPC),  # alone: nobody to take over
        (_partition((1, 2), leading=False), errno.ENOSPC),  # a follower
        (_partition((1, 2, 3)), errno.EBADF),  # not the disk
    ],
)
def test_otherwise_the_node_keeps_running(tmp_path: Path, partition: object, code: int) -> None:
    broker = _broker(tmp_path)
    broker.log_dir_failed(partition, OSError(code, "x"))  # type: ignore[arg-type]
    assert not broker.failed.is_set() and broker.failure is None
