"""Helpers for tests that run real brokers inside the test's own event loop: a wall
clock the test can step, a broker's configuration on a given port, and polling a
broker's in-memory state until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ottla.broker import Broker
from ottla.broker.clocks import wall_ms
from ottla.config import BrokerConfig, load_config
from tests.integration.conftest import free_port

__all__ = ["SteppedWallClock", "broker_config", "running_broker", "running_cluster", "until"]


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
    broker = Broker(broker_config(data_dir, free_port(), *overrides))
    await broker.start()
    try:
        yield broker
    finally:
        async with asyncio.timeout(30):
            await broker.stop()


@contextlib.asynccontextmanager
async def running_cluster(
    data_dir: Path,
    cluster_id: str,
    *overrides: str,
    clock: Callable[[], int] = wall_ms,
    start_bound_s: float = 60,
) -> AsyncIterator[dict[int, Broker]]:
    """Three started brokers, nodes 1-3 (all voters) on free loopback ports, each with
    its data under `data_dir`/node<n>; stopped on exit."""
    ports = {n: free_port() for n in (1, 2, 3)}
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in ports.items())
    brokers = {
        n: Broker(
            broker_config(
                data_dir / f"node{n}",
                ports[n],
                f"node.id={n}",
                f"controller.quorum.voters={voters}",
                f"cluster.id={cluster_id}",
                *overrides,
            ),
            clock=clock,
        )
        for n in (1, 2, 3)
    }
    try:
        async with asyncio.timeout(start_bound_s):
            await asyncio.gather(*(broker.start() for broker in brokers.values()))
        yield brokers
    finally:
        for broker in brokers.values():
            async with asyncio.timeout(30):
                await broker.stop()


async def until(condition: Callable[[], bool], bound_s: float, what: str) -> None:
    """Return once `condition()` holds; fail the test if it does not within `bound_s`."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound_s} s: {what}")
        await asyncio.sleep(0.05)  # polling in-memory state, not synchronising
