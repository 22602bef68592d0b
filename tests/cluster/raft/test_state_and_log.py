"""Quorum state and the core's log view.

Proves: the quorum-state file round-trips in Kafka's JSON form and rejects garbage; a
node restarts Resigned if it led, Follower if it knew a leader, else Unattached keeping
its vote; illegal transitions are refused; the epoch cache answers Kafka's
endOffsetForEpoch and validateOffsetAndEpoch (valid, diverging, snapshot); a quorum of
one elects itself at once and commits on its own sync.
"""

from __future__ import annotations

import random

import pytest

from ottla.cluster.raft.core import RaftConfig, RaftCore
from ottla.cluster.raft.memlog import RaftLog, Snapshot
from ottla.cluster.raft.messages import Entry, OffsetAndEpoch
from ottla.cluster.raft.state import ElectionState, QuorumStateData, Role, check_transition


def test_quorum_state_round_trips_as_kafka_json() -> None:
    data = QuorumStateData(leader_epoch=7, leader_id=2, voted_id=3)
    text = data.to_json()
    assert '"leaderEpoch":7' in text and '"votedId":3' in text and '"data_version":1' in text
    assert QuorumStateData.from_json(text) == data
    with pytest.raises(ValueError):
        QuorumStateData.from_json("{}")


def test_restart_roles() -> None:
    assert ElectionState.on_restart(QuorumStateData(3, 1, 1), 1).role is Role.RESIGNED
    assert ElectionState.on_restart(QuorumStateData(3, 2, 1), 1).role is Role.FOLLOWER
    unattached = ElectionState.on_restart(QuorumStateData(3, -1, 2), 1)
    assert unattached.role is Role.UNATTACHED and unattached.voted_id == 2


def test_illegal_transition_is_refused() -> None:
    check_transition(Role.PROSPECTIVE, Role.CANDIDATE)
    with pytest.raises(AssertionError):
        check_transition(Role.UNATTACHED, Role.LEADER)
    with pytest.raises(AssertionError):
        check_transition(Role.FOLLOWER, Role.CANDIDATE)  # pre-vote comes first


def _log(epochs: list[int], snapshot: Snapshot | None = None) -> RaftLog:
    start = snapshot.snapshot_id.end_offset if snapshot else 0
    return RaftLog(snapshot, [Entry(start + i, e, b"") for i, e in enumerate(epochs)])


def test_end_offset_for_epoch() -> None:
    log = _log([1, 1, 3, 3, 3, 5])
    assert log.end_offset_for_epoch(1) == OffsetAndEpoch(2, 1)
    assert log.end_offset_for_epoch(2) == OffsetAndEpoch(2, 1)
    assert log.end_offset_for_epoch(4) == OffsetAndEpoch(5, 3)
    assert log.end_offset_for_epoch(9) == OffsetAndEpoch(6, 5)
    assert log.end_offset_for_epoch(0) == OffsetAndEpoch(0, -1)
    log.truncate_to(3)
    assert log.end_offset_for_epoch(9) == OffsetAndEpoch(3, 3)


def test_validate_offset_and_epoch() -> None:
    log = _log([1, 1, 3, 3])
    assert log.validate_offset_and_epoch(0, -1).kind == "valid"
    assert log.validate_offset_and_epoch(2, 1).kind == "valid"
    diverging = log.validate_offset_and_epoch(4, 1)
    assert diverging.kind == "diverging" and diverging.offset_and_epoch == OffsetAndEpoch(2, 1)
    assert log.validate_offset_and_epoch(9, 3).kind == "diverging"
    snapshot = Snapshot(OffsetAndEpoch(4, 3), b"s")
    log.take_snapshot(snapshot)
    assert log.log_start_offset == 4 and log.last_fetched_epoch == 3
    assert log.validate_offset_and_epoch(2, 1).kind == "snapshot"
    assert log.validate_offset_and_epoch(4, 2).kind == "snapshot"
    assert log.validate_offset_and_epoch(4, 3).kind == "valid"


def test_single_voter_elects_itself_and_commits_on_sync() -> None:
    core = RaftCore(1, RaftConfig(voters=frozenset({1})), random.Random(0), now_ms=0)
    assert core.role is Role.LEADER and core.leader_epoch == 1
    assert core.propose([b"a"], 0) == 1
    committed: list[Entry] = []
    while core.has_ready():
        ready = core.ready()
        assert not ready.messages
        committed.extend(ready.committed)
        core.advance(ready)
    assert [e.offset for e in committed] == [0, 1] and core.high_watermark == 2
