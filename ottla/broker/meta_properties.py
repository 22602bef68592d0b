"""`meta.properties`: the cluster and node a data directory belongs to (Kafka's file).

Kafka's format, as KRaft nodes write it (version 1):

    version=1
    cluster.id=<the cluster id>
    node.id=<this node's id>

A node writes it once, the first time it starts on an empty data directory, and reads
it at every start: a directory formatted for another cluster or node refuses to start
(broker.py says so, naming the setting). It is written atomically and durably
(`write_file_atomically`), so a crash leaves no file or the whole one.

A file that is not text, has a version other than 0 or 1, or names no cluster id, or a
node id that is not a number, is damaged. As Kafka does, the node then refuses to start
with a message naming the file rather than guess: taking a new cluster id would make it
a stranger to its own metadata and its peers. Version 0 (ZooKeeper-era Kafka) names
the node `broker.id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ottla.storage import write_file_atomically

__all__ = ["MetaProperties", "MetaPropertiesError", "read", "write"]

FILE_NAME = "meta.properties"


class MetaPropertiesError(ValueError):
    """meta.properties is damaged; the message names the file and what is wrong."""


@dataclass(frozen=True)
class MetaProperties:
    cluster_id: str
    node_id: int | None  # None: a file from a writer that did not record it


def read(path: Path) -> MetaProperties | None:
    """The file's identity, None if there is no file; MetaPropertiesError if damaged."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise MetaPropertiesError(f"{path} is damaged: not a text file") from None
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    version = values.get("version", "0")
    if version not in ("0", "1"):
        raise MetaPropertiesError(f"{path} is damaged: unknown version {version!r}")
    cluster_id = values.get("cluster.id", "")
    if not cluster_id:
        raise MetaPropertiesError(f"{path} is damaged: it names no cluster.id")
    node = values.get("node.id" if version == "1" else "broker.id", values.get("node.id"))
    if node is None:
        return MetaProperties(cluster_id, None)
    try:
        return MetaProperties(cluster_id, int(node))
    except ValueError:
        raise MetaPropertiesError(f"{path} is damaged: node.id {node!r} is not a number") from None


def write(path: Path, cluster_id: str, node_id: int) -> None:
    """Write the file for a freshly formatted data directory, atomically and durably."""
    data = f"version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n".encode()
    write_file_atomically(path, data)
