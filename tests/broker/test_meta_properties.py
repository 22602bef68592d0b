"""meta.properties reads back what a node wrote, reads Kafka's own files, and calls a
damaged one damaged (broker/meta_properties.py).

Proves: a written file is Kafka's v1 format and reads back; Kafka's comments and
spacing are accepted, and a version 0 file names the node `broker.id`; a missing
file reads as None; random bytes, a missing or empty cluster.id, an unknown version
and a non-numeric node id each raise MetaPropertiesError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ottla.broker import meta_properties
from ottla.broker.meta_properties import MetaProperties, MetaPropertiesError


def test_written_file_is_kafkas_format_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "meta.properties"
    meta_properties.write(path, "Di5_jDepTmqdWx88KktcbQ", 3)
    assert path.read_text() == "version=1\ncluster.id=Di5_jDepTmqdWx88KktcbQ\nnode.id=3\n"
    assert meta_properties.read(path) == MetaProperties("Di5_jDepTmqdWx88KktcbQ", 3)
    assert not (tmp_path / "meta.properties.tmp").exists()


def test_kafkas_files_read(tmp_path: Path) -> None:
    path = tmp_path / "meta.properties"
    path.write_text("#\n#Mon Dec 07 12:00:00 UTC 2026\nnode.id = 2\nversion=1\ncluster.id=x1\n")
    assert meta_properties.read(path) == MetaProperties("x1", 2)
    path.write_text("version=0\nbroker.id=5\ncluster.id=x1\n")
    assert meta_properties.read(path) == MetaProperties("x1", 5)
    path.write_text("version=1\ncluster.id=x1\n")
    assert meta_properties.read(path) == MetaProperties("x1", None)


def test_missing_file_reads_as_none(tmp_path: Path) -> None:
    assert meta_properties.read(tmp_path / "meta.properties") is None


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(128, 256)),
        b"",
        b"version=1\nnode.id=1\n",
        b"version=1\ncluster.id=\nnode.id=1\n",
        b"version=7\ncluster.id=x1\nnode.id=1\n",
        b"version=1\ncluster.id=x1\nnode.id=1x\n",
    ],
    ids=["binary", "empty", "no-cluster-id", "empty-cluster-id", "version-7", "bad-node-id"],
)
def test_damaged_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "meta.properties"
    path.write_bytes(content)
    with pytest.raises(MetaPropertiesError, match=r"meta\.properties is damaged"):
        meta_properties.read(path)
