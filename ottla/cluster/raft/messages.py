"""The KIP-595 messages the Raft core exchanges, as plain dataclasses.

PURE. Each class mirrors one Kafka request or response for the metadata partition
(`__cluster_metadata-0`), keeping Kafka's field names in snake_case and dropping what the
core does not use (topic/partition nesting, cluster id, directory ids, endpoints): the
asyncio driver's codec adds those when it maps a message to kio's classes. An `Envelope`
carries the source and destination node ids and the request's correlation id, which a
response echoes (on the wire it is the request header's correlation id), so the core can
ignore stale, duplicated and reordered responses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "BeginQuorumEpochRequest",
    "BeginQuorumEpochResponse",
    "EndQuorumEpochRequest",
    "EndQuorumEpochResponse",
    "Entry",
    "Envelope",
    "ErrorCode",
    "FetchRequest",
    "FetchResponse",
    "FetchSnapshotRequest",
    "FetchSnapshotResponse",
    "Message",
    "OffsetAndEpoch",
    "VoteRequest",
    "VoteResponse",
]


class ErrorCode(enum.IntEnum):
    """The Kafka error codes the Raft protocol uses (Kafka's numbers)."""

    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    NOT_LEADER_OR_FOLLOWER = 6
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99


@dataclass(frozen=True, slots=True)
class Entry:
    """One metadata log entry. `control` marks Kafka control records (the leader-change
    entry each new leader appends), which the metadata image must not apply."""

    offset: int
    epoch: int
    payload: bytes
    control: bool = False


@dataclass(frozen=True, slots=True, order=True)
class OffsetAndEpoch:
    """Kafka's OffsetAndEpoch: a snapshot id (`end_offset`, `epoch` of the entry before it)
    and the answer of an epoch lookup (FetchResponse.DivergingEpoch's EndOffset, Epoch)."""

    end_offset: int
    epoch: int


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """VoteRequest (v2 with PreVote, KIP-996). For a pre-vote `candidate_epoch` is the
    prospective's current epoch (the vote it asks about is for epoch + 1); for a real vote
    it is the candidate's bumped epoch."""

    candidate_epoch: int
    candidate_id: int
    last_offset_epoch: int
    last_offset: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    """VoteResponse: the voter's view of the leader, and whether it granted."""

    error_code: ErrorCode
    leader_id: int
    leader_epoch: int
    vote_granted: bool


@dataclass(frozen=True, slots=True)
class BeginQuorumEpochRequest:
    """BeginQuorumEpochRequest: the new leader announces itself to the voters."""

    leader_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class BeginQuorumEpochResponse:
    error_code: ErrorCode
    leader_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class EndQuorumEpochRequest:
    """EndQuorumEpochRequest: a resigning leader asks the voters to elect a successor,
    the `preferred_successors` first (sorted by how far they had fetched)."""

    leader_id: int
    leader_epoch: int
    preferred_successors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EndQuorumEpochResponse:
    error_code: ErrorCode
    leader_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """FetchRequest on the metadata partition: `replica_id` pulls from `fetch_offset`;
    `last_fetched_epoch` is the epoch of its entry at `fetch_offset - 1` so the leader can
    detect divergence; `current_leader_epoch` fences stale leaders and followers."""

    replica_id: int
    current_leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    max_wait_ms: int = 0
    max_entries: int = 100


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """FetchResponse for the metadata partition. At most one of `records`,
    `diverging_epoch` and `snapshot_id` is meaningful: records to append at the fetch
    offset; or the leader's end offset of the follower's last fetched epoch (truncate to
    it); or the snapshot to fetch because the offset is below the leader's log start."""

    error_code: ErrorCode
    leader_id: int  # CurrentLeader.LeaderId
    leader_epoch: int  # CurrentLeader.LeaderEpoch
    high_watermark: int = -1
    log_start_offset: int = -1
    records: tuple[Entry, ...] = ()
    diverging_epoch: OffsetAndEpoch | None = None
    snapshot_id: OffsetAndEpoch | None = None


@dataclass(frozen=True, slots=True)
class FetchSnapshotRequest:
    """FetchSnapshotRequest: bytes of snapshot `snapshot_id` from `position`."""

    replica_id: int
    current_leader_epoch: int
    snapshot_id: OffsetAndEpoch
    position: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class FetchSnapshotResponse:
    """FetchSnapshotResponse: a chunk (`unaligned_records`) of a snapshot of `size` bytes."""

    error_code: ErrorCode
    leader_id: int
    leader_epoch: int
    snapshot_id: OffsetAndEpoch | None = None
    size: int = 0
    position: int = 0
    unaligned_records: bytes = field(default=b"", repr=False)


Message = (
    VoteRequest
    | VoteResponse
    | BeginQuorumEpochRequest
    | BeginQuorumEpochResponse
    | EndQuorumEpochRequest
    | EndQuorumEpochResponse
    | FetchRequest
    | FetchResponse
    | FetchSnapshotRequest
    | FetchSnapshotResponse
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message between two nodes. A response carries its request's `correlation_id`."""

    source: int
    destination: int
    correlation_id: int
    message: Message
