"""Incremental fetch sessions (KIP-227), as Kafka's FetchSessionCache keeps them.

A client opens a session with a full fetch (session_id 0, epoch 0); the broker
answers with a new session id. Later fetches send (session_id, epoch n) and only the
partitions that changed (added or with a new fetch offset) plus `forgotten` ones;
the broker merges them into the session's partition set and answers only the
partitions with something new (records, a changed high watermark or log start
offset, or an error). Epoch -1 closes a session (a "sessionless" full fetch).

Limits: at most `slots` sessions; when full, a new full fetch is served without a
session (session id 0), as Kafka does when its cache has no room.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ottla.protocol import ErrorCode

__all__ = ["FetchSession", "FetchSessionCache", "SessionPartition"]


@dataclass
class SessionPartition:
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    # What the client last saw, to decide whether to include it in a reply.
    high_watermark: int = -1
    log_start_offset: int = -1


@dataclass
class FetchSession:
    session_id: int
    epoch: int
    owner: Any
    # (topic name, partition) -> state, in fetch order
    partitions: dict[tuple[str, int], SessionPartition] = field(default_factory=dict)


class FetchSessionCache:
    """session id -> FetchSession, bounded by `slots`."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.sessions: dict[int, FetchSession] = {}
        self._ids = itertools.count(1)

    def new_session(self, owner: Any) -> FetchSession | None:
        if len(self.sessions) >= self.slots:
            return None
        session_id = next(self._ids) & 0x7FFFFFFF
        session = FetchSession(session_id, 1, owner)
        self.sessions[session_id] = session
        return session

    def lookup(self, session_id: int, epoch: int) -> tuple[FetchSession | None, ErrorCode]:
        """The session for an incremental fetch, or the error Kafka gives."""
        session = self.sessions.get(session_id)
        if session is None:
            return None, ErrorCode.fetch_session_id_not_found
        if session.epoch != epoch:
            return None, ErrorCode.invalid_fetch_session_epoch
        return session, ErrorCode.none

    def remove(self, session_id: int) -> None:
        self.sessions.pop(session_id, None)

    def connection_closed(self, owner: Any) -> None:
        for session_id in [s for s, v in self.sessions.items() if v.owner is owner]:
            del self.sessions[session_id]
