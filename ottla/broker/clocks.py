"""The two clocks a broker reads, in milliseconds.

`wall_ms` is the time of day: record timestamps, retention, segment ages, commit
timestamps, anything written down or compared with another machine's time.
`monotonic_ms` only ever moves forward at a steady rate: every timeout, session and
lag measured on this node (Raft elections, broker sessions, a follower's time since
it was caught up; the Raft driver keeps its own copy, as the cluster package may not
import the broker's), so that a wall clock stepped forward or back (NTP, an operator,
a VM resumed) neither expires them all at once nor keeps a dead peer alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["monotonic_ms", "steady_wall_clock", "wall_ms"]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def steady_wall_clock(
    wall: Callable[[], int] = wall_ms, monotonic: Callable[[], int] = monotonic_ms
) -> Callable[[], int]:
    """A clock that reads the wall time once, now, and from then on advances with the
    monotonic clock: it never steps, and stays within the size of any step taken
    since of the wall time. For state that both times out (group members' sessions)
    and stamps what it writes down (commit and group state timestamps that expire
    offsets days later): a step of the wall clock neither expires every session at
    once nor keeps a dead member for as long as the clock went back."""
    origin_wall, origin_monotonic = wall(), monotonic()
    return lambda: origin_wall + monotonic() - origin_monotonic
