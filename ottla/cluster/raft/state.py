"""KRaft quorum state: the roles, the persisted election state, and the legal transitions.

PURE: no I/O. `RaftCore` (core.py) owns one `ElectionState` and moves it only through the
transitions listed here; every move is checked against `TRANSITIONS` so an illegal move is a
loud assertion, not a silent bug.

Rules (KIP-595 and KIP-996, as Kafka's `QuorumState` implements them):

1. The epoch (`leader_epoch`) never decreases. Seeing a higher epoch in any request or
   response moves the node to that epoch: Follower if the message names the leader,
   otherwise Unattached.
2. At most one vote per epoch: `voted_id` is set once per epoch and is persisted (fsync)
   before the vote is sent. At most one leader per epoch follows from it.
3. Pre-vote (KIP-996) never changes the persisted state: a Prospective node asks "would you
   vote for me at epoch + 1?" without bumping its epoch, so a partitioned node cannot inflate
   epochs and disturb a healthy leader when it comes back.
4. A leader never restarts as leader: a node whose persisted state names itself as leader
   comes back Resigned.

Transition table (from -> to, and the trigger):

    Unattached  -> Prospective   election timeout (voter)
    Unattached  -> Unattached    higher epoch without a leader; vote granted (same epoch)
    Unattached  -> Follower      BeginQuorumEpoch / Fetch response / Vote response naming a leader
    Prospective -> Candidate     a majority granted the pre-vote (epoch + 1, votes for itself)
    Prospective -> Prospective   election timeout: a new pre-vote round
    Prospective -> Unattached    higher epoch without a leader; vote granted to another node
    Prospective -> Follower      a leader is named at this or a higher epoch
    Candidate   -> Leader        a majority granted the vote
    Candidate   -> Prospective   election timeout (KIP-996: a losing candidate pre-votes again)
    Candidate   -> Unattached    higher epoch without a leader
    Candidate   -> Follower      a leader is named at this or a higher epoch
    Leader      -> Resigned      graceful resignation (EndQuorumEpoch) or check-quorum failure
    Leader      -> Unattached    higher epoch without a leader
    Leader      -> Follower      higher epoch naming a leader
    Follower    -> Prospective   fetch timeout (no successful Fetch from the leader), or
                                 EndQuorumEpoch from the leader
    Follower    -> Unattached    higher epoch without a leader
    Follower    -> Follower      higher epoch naming a leader
    Resigned    -> Prospective   election timeout
    Resigned    -> Unattached    higher epoch without a leader
    Resigned    -> Follower      higher epoch naming a leader
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

__all__ = [
    "NO_ID",
    "TRANSITIONS",
    "ElectionState",
    "QuorumStateData",
    "Role",
    "check_transition",
]

NO_ID = -1


class Role(enum.Enum):
    """A replica's role in the quorum (KRaft's state names)."""

    UNATTACHED = "Unattached"
    PROSPECTIVE = "Prospective"
    CANDIDATE = "Candidate"
    LEADER = "Leader"
    FOLLOWER = "Follower"
    RESIGNED = "Resigned"


_U, _P, _C, _L, _F, _R = (
    Role.UNATTACHED,
    Role.PROSPECTIVE,
    Role.CANDIDATE,
    Role.LEADER,
    Role.FOLLOWER,
    Role.RESIGNED,
)

TRANSITIONS: frozenset[tuple[Role, Role]] = frozenset(
    {
        (_U, _P), (_U, _U), (_U, _F),
        (_P, _C), (_P, _P), (_P, _U), (_P, _F),
        (_C, _L), (_C, _P), (_C, _U), (_C, _F),
        (_L, _R), (_L, _U), (_L, _F),
        (_F, _P), (_F, _U), (_F, _F),
        (_R, _P), (_R, _U), (_R, _F),
    }
)  # fmt: skip


def check_transition(source: Role, target: Role) -> None:
    """Assert that `source -> target` is in the transition table."""
    assert (source, target) in TRANSITIONS, f"illegal raft transition {source} -> {target}"


@dataclass(frozen=True, slots=True)
class QuorumStateData:
    """The election state persisted in the data dir's `quorum-state` file before any
    message that depends on it is sent (Kafka's QuorumStateData v1: LeaderId, LeaderEpoch,
    VotedId; the directory ids are not used by ottla yet)."""

    leader_epoch: int = 0
    leader_id: int = NO_ID
    voted_id: int = NO_ID

    def to_json(self) -> str:
        """The file body, in Kafka's JSON form (data_version 1)."""
        return json.dumps(
            {
                "leaderId": self.leader_id,
                "leaderEpoch": self.leader_epoch,
                "votedId": self.voted_id,
                "data_version": 1,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> QuorumStateData:
        """Parse a `quorum-state` file body (raises ValueError if it is not one)."""
        try:
            data = json.loads(text)
            return cls(
                leader_epoch=int(data["leaderEpoch"]),
                leader_id=int(data["leaderId"]),
                voted_id=int(data.get("votedId", NO_ID)),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a quorum-state file: {error}") from error


@dataclass(frozen=True, slots=True)
class ElectionState:
    """The in-memory quorum state: the role plus what is persisted.

    `leader_id` is the leader known for `leader_epoch` (NO_ID if none); `voted_id` the
    vote cast in `leader_epoch` (NO_ID if none).
    """

    role: Role
    leader_epoch: int
    leader_id: int = NO_ID
    voted_id: int = NO_ID

    def persisted(self) -> QuorumStateData:
        """What must be on disk for this state (the role itself is not persisted)."""
        return QuorumStateData(self.leader_epoch, self.leader_id, self.voted_id)

    @classmethod
    def on_restart(cls, data: QuorumStateData, local_id: int) -> ElectionState:
        """The state a node resumes in from its persisted election state (rule 4: a former
        leader is Resigned; a node that knows a leader follows it; otherwise Unattached,
        keeping its vote)."""
        if data.leader_id == local_id:
            return cls(Role.RESIGNED, data.leader_epoch, data.leader_id, data.voted_id)
        if data.leader_id != NO_ID:
            return cls(Role.FOLLOWER, data.leader_epoch, data.leader_id, data.voted_id)
        return cls(Role.UNATTACHED, data.leader_epoch, NO_ID, data.voted_id)
