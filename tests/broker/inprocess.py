"""Helpers for tests that run real brokers inside the test's own event loop: a wall
clock the test can step, a broker's configuration on a given port, and polling a
broker's in-memory state until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ottla.broker import Broker
from ottla.config import BrokerConfig, load_config

__all__ = ["SteppedWallClock", "broker_config", "running_broker", "until"]


class SteppedWallClock:
    """The wall clock in milliseconds, plus `step_ms` (set it to step the clock)."""

    def __init__(self) -> None:
        self.step_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.step_ms


def broker_config(data_dir: Path, port: int, *overrides: str) -> BrokerConfig:
    return load_config(
        overrides=[f"listeners=PLAINTEXT://127.0.0.1:{port}", *overrides],
        data_dir=str(data_dir),
        environ={},
    )


@contextlib.asynccontextmanager
async def running_broker(data_dir: Path, *overrides: str) -> AsyncIterator[Broker]:
    """One started broker on a free loopback port, stopped on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    broker = Broker(broker_config(data_dir, port, *overrides))
    await broker.start()
    try:
        yield broker
    finally:
        async with asyncio.timeout(30):
            await broker.stop()


async def until(condition: Callable[[], bool], bound_s: float, what: str) -> None:
    """Return once `condition()` holds; fail the test if it does not within `bound_s`."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound_s} s: {what}")
        await asyncio.sleep(0.05)  # polling in-memory state, not synchronising
