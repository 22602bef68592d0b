"""Interaction scripts for the Raft core (tests/cluster/raft/testdata/*.txt).

Proves, step by step with every message and every Ready written out: a pre-vote then vote
election; a live leader's followers refuse pre-votes; a follower truncates to the leader's
diverging epoch; a follower below the leader's log start fetches the snapshot in chunks;
the high watermark needs a majority and an entry of the leader's epoch; a resigning
leader's EndQuorumEpoch starts a prompt election; a restarted leader is Resigned and
votes are persisted. Rewrite expectations with OTTLA_REWRITE=1 and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.raft.harness import run_script

SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    expected, actual = run_script(path)
    assert actual == expected


def test_scripts_exist() -> None:
    assert len(SCRIPTS) >= 5
