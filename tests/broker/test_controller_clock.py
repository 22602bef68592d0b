"""The controller's timing: a wall-clock step fences no broker; a stop is never lost.

- Kafka's controller times broker sessions with a monotonic clock
  (BrokerHeartbeatManager). ottla's used the broker's wall clock, so a wall clock
  stepped forward by more than `broker.session.timeout.ms` (an NTP correction, a VM
  resumed) made every heartbeat look stale at the next fencing tick: every broker
  fenced at once, every partition without a leader until the next heartbeats. Here one
  real broker runs in-process with a wall clock the test steps an hour forward, and the
  controller's own fencing decision (the one its fencing loop commits each tick) runs.
- A node stopped right after it started never finished stopping: its heartbeat and
  fencing loops waited with `asyncio.wait_for`, which on Python 3.11 swallows a
  cancellation that arrives as the awaited event is set (python/cpython#86296), so the
  loops went on and `stop()` awaited them forever (a SIGTERM just after start, as a
  container runtime may send, hung the process).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ottla.broker import Broker
from ottla.config import load_config

HOUR_MS = 3_600_000
STOP_BOUND_S = 30


def _config(tmp_path: Path) -> object:
    return load_config(
        overrides=["listeners=PLAINTEXT://127.0.0.1:0"], data_dir=str(tmp_path), environ={}
    )


async def test_a_wall_clock_stepped_forward_fences_no_broker(tmp_path: Path) -> None:
    step_ms = 0

    def wall_clock_ms() -> int:
        return time.time_ns() // 1_000_000 + step_ms

    broker = Broker(_config(tmp_path), clock=wall_clock_ms)  # type: ignore[arg-type]
    await broker.start()
    try:
        assert not broker.image.brokers[broker.node_id].fenced
        step_ms = HOUR_MS
        assert broker.clock() - time.time_ns() // 1_000_000 >= HOUR_MS - 1_000
        fenced = await broker.controller.write(broker.controller._expire)
        assert fenced == []
        assert not broker.image.brokers[broker.node_id].fenced
    finally:
        async with asyncio.timeout(STOP_BOUND_S):
            await broker.stop()


async def test_a_broker_stopped_right_after_it_started_stops(tmp_path: Path) -> None:
    broker = Broker(_config(tmp_path))  # type: ignore[arg-type]
    await broker.start()
    async with asyncio.timeout(STOP_BOUND_S):
        await broker.stop()
    assert all(task.done() for task in broker.controller._tasks) or not broker.controller._tasks
