"""Operator mistakes at startup end with one clear stderr line and a non-zero exit.

A port already in use (names `listeners`), an unwritable data directory (names
`log.dirs`), a bad `--override` value (names the property) and a damaged
`meta.properties` (random bytes, no cluster id, a node id that is not a number: names
the file; it once ended in a UnicodeDecodeError traceback) each make `ottla serve`
exit with code 2, print exactly one line to stderr, and no traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.timeout(60)


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ottla", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _serve("--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}")
    _assert_one_line(result, "listeners", str(port))


def test_unwritable_data_dir(tmp_path: Path) -> None:
    # A regular file where the directory should be: unwritable even for root (the CI
    # user), which file permissions would not stop.
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    data_dir = blocker / "d"
    result = _serve("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}")
    _assert_one_line(result, "log.dirs", str(data_dir))


def test_bad_override(tmp_path: Path) -> None:
    result = _serve(
        "--data-dir",
        str(tmp_path / "d"),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--override",
        "num.partitions=zero",
    )
    _assert_one_line(result, "num.partitions")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (bytes(range(128, 256)) * 3, "not a text file"),
        (b"version=1\nnode.id=1\n", "no cluster.id"),
        (b"version=1\ncluster.id=abc\nnode.id=one\n", "not a number"),
    ],
    ids=["binary", "no-cluster-id", "bad-node-id"],
)
def test_damaged_meta_properties(tmp_path: Path, content: bytes, why: str) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "meta.properties").write_bytes(content)
    result = _serve("--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}")
    _assert_one_line(result, "log.dirs", "meta.properties", why)
    assert (data_dir / "meta.properties").read_bytes() == content  # left for the operator
