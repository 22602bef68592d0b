"""Which topic a partition directory belongs to, and stray directories (KIP-516, KIP-858).

A partition directory is named `<topic>-<partition>`, and a name outlives its topic: a
topic deleted while this node was down, then created again under the same name, must
not inherit the old one's records. As Kafka does, each directory holds
`partition.metadata`, Kafka's own format:

    version: 0
    topic_id: <the topic id, base64url without padding>

written atomically (temp file, rename) when the partition is first opened. The broker
makes it durable (file fsync, directory fsync: `sync_topic_id`) in a worker thread,
not on the event loop: two fsyncs per partition were over half the time a node took to
open a new topic's partitions (1,000 of them: about 1.4 s of a 2.6 s stall of every
connection). A crash before that sync can leave the file missing or empty, which
`claim` treats as an older ottla's directory (adopted, the file written again).

- `claim(directory, topic_id)`, before the log is opened: a directory whose
  `partition.metadata` names another topic id is stray; it is renamed aside, so the
  partition starts empty and catches up from its leader. A directory without the file
  (written by an older ottla) or with an unreadable one is adopted and the file is
  (re)written: there is nothing to compare.
- `sweep_strays(data_dir, hosted)`, once the node has caught up with the metadata log at
  startup: every `<topic>-<partition>` directory the image does not place on this node
  (its topic was deleted, or the partition reassigned away, while the node was down) is
  renamed aside.

A stray directory is renamed to `<name>.<random hex>-stray`, never deleted, as Kafka
3.7+ does: an operator removes it once sure; the broker never opens it again.

- `mark_for_deletion(directory)`: a deleted partition's directory is renamed to
  `<name>.<random hex>-delete` at once (its name is free for a topic created again)
  and removed later, off the event loop (`remove_marked`): removing 1,000 partitions'
  files held the loop for half a second, seconds on a busy disk. Kafka renames and
  deletes asynchronously the same way. A crash in between leaves a `-delete`
  directory, which `remove_marked` deletes at the next start.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import uuid
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Final

import structlog

from ottla.storage import fsync_directory, sync_file, write_file_atomically

__all__ = [
    "PARTITION_METADATA_FILE",
    "claim",
    "mark_for_deletion",
    "read_topic_id",
    "record",
    "remove_marked",
    "remove_trees",
    "sweep_strays",
    "sync_topic_id",
    "write_topic_id",
]

PARTITION_METADATA_FILE: Final = "partition.metadata"
_STRAY_SUFFIX: Final = "-stray"
_DELETE_SUFFIX: Final = "-delete"
_PARTITION_DIR = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)-(?P<partition>\d+)$")
_NOT_PARTITIONS: Final = frozenset({"__cluster_metadata-0"})

log = structlog.get_logger("ottla.partition_dirs")


def _encode(topic_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def read_topic_id(directory: Path) -> uuid.UUID | None:
    """The topic id in `directory`'s partition.metadata; None if absent or unreadable."""
    try:
        text = (directory / PARTITION_METADATA_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    fields = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if key.strip()
    }
    if fields.get("version") != "0":
        return None
    encoded = fields.get("topic_id", "")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return uuid.UUID(bytes=raw)
    except ValueError:
        return None


def write_topic_id(directory: Path, topic_id: uuid.UUID, *, durable: bool = True) -> None:
    """Write `directory`/partition.metadata atomically; durably too unless `durable` is
    False (then `sync_topic_id` makes it so later)."""
    data = f"version: 0\ntopic_id: {_encode(topic_id)}\n".encode()
    write_file_atomically(directory / PARTITION_METADATA_FILE, data, durable=durable)


def sync_topic_id(directory: Path) -> None:
    """fsync `directory`/partition.metadata and the directory (any thread). A directory
    deleted meanwhile (its topic deleted) needs nothing."""
    sync_file(directory / PARTITION_METADATA_FILE)
    with contextlib.suppress(FileNotFoundError):
        fsync_directory(directory)


def _set_aside(directory: Path, reason: str) -> Path:
    stray = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{_STRAY_SUFFIX}")
    directory.rename(stray)
    fsync_directory(directory.parent)
    log.warning("partition_dir_stray", directory=str(directory), moved_to=stray.name, reason=reason)
    return stray


def claim(directory: Path, topic_id: uuid.UUID) -> None:
    """Before opening `directory` for the topic `topic_id` (module docstring)."""
    if not directory.is_dir():
        return
    found = read_topic_id(directory)
    if found is not None and found != topic_id:
        _set_aside(directory, f"holds topic id {found}, not {topic_id}")


def record(directory: Path, topic_id: uuid.UUID, *, durable: bool = True) -> bool:
    """After the log is open: make sure partition.metadata names `topic_id`; True when
    it was written (not yet durable if `durable` is False)."""
    if read_topic_id(directory) == topic_id:
        return False
    with contextlib.suppress(FileNotFoundError):
        (directory / (PARTITION_METADATA_FILE + ".tmp")).unlink()
    write_topic_id(directory, topic_id, durable=durable)
    return True


def sweep_strays(data_dir: Path, hosted: AbstractSet[str]) -> list[Path]:
    """Set aside every partition directory of `data_dir` whose name is not in `hosted`;
    the new paths."""
    moved: list[Path] = []
    for directory in sorted(data_dir.iterdir()):
        name = directory.name
        if (
            name in hosted
            or name in _NOT_PARTITIONS
            or not _PARTITION_DIR.match(name)
            or not directory.is_dir()
        ):
            continue
        moved.append(_set_aside(directory, "not a replica of this node in the metadata"))
    return moved


def mark_for_deletion(directory: Path) -> Path | None:
    """Rename a deleted partition's directory for `remove_trees`; None if it is gone."""
    doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{_DELETE_SUFFIX}")
    try:
        directory.rename(doomed)
    except FileNotFoundError:
        return None
    return doomed


def remove_trees(directories: list[Path]) -> None:
    """Delete directories `mark_for_deletion` renamed (a worker thread's job)."""
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def remove_marked(data_dir: Path) -> list[Path]:
    """At startup: delete the renamed directories a crash left behind; their paths."""
    marked = sorted(d for d in data_dir.iterdir() if d.name.endswith(_DELETE_SUFFIX) and d.is_dir())
    remove_trees(marked)
    return marked
