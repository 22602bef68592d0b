"""A group member's session runs on a steady clock: a wall clock stepped back does not
keep a dead member in its group.

The coordinator expires a member whose heartbeats stop `session.timeout.ms` after the
last one. Its deadlines were wall-clock times, so after the wall clock was stepped
back an hour a consumer that died kept its member id, and its partitions, for an
hour: nobody else in the group consumed them. Here one real broker runs in-process
with a wall clock the test steps an hour back; a real consumer (librdkafka, in a
process of its own) joins a group and is then killed with SIGKILL, so it never
leaves; the coordinator must still expire it within its session timeout.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker
from ottla.broker.groups.state import GroupState
from tests.broker.inprocess import SteppedWallClock, broker_config, until
from tests.integration.conftest import free_port

HOUR_MS = 3_600_000
SESSION_MS = 1_000
GROUP = "steady"
JOIN_BOUND_S = 60
EXPIRY_BOUND_S = 15  # the session (1 s) and the coordinator's timer, with room

CONSUMER = """
import sys
from confluent_kafka import Consumer
consumer = Consumer({
    "bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
    "session.timeout.ms": int(sys.argv[3]), "heartbeat.interval.ms": 200,
})
consumer.subscribe(["orders"])
while True:
    consumer.poll(0.2)
"""


async def test_a_wall_clock_stepped_back_keeps_no_dead_member_in_its_group(
    tmp_path: Path,
) -> None:
    wall_clock = SteppedWallClock()
    port = free_port()
    broker = Broker(
        broker_config(
            tmp_path,
            port,
            "group.initial.rebalance.delay.ms=0",
            "group.min.session.timeout.ms=500",
        ),
        clock=wall_clock,
    )
    await broker.start()

    def create() -> None:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(30)

    await asyncio.to_thread(create)
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, f"127.0.0.1:{port}", GROUP, str(SESSION_MS)]
    )
    try:

        def stable_with_one_member() -> bool:
            summary = broker.groups.state.describe(GROUP)
            return (
                summary is not None
                and summary.state is GroupState.STABLE
                and len(summary.members) == 1
            )

        await until(stable_with_one_member, JOIN_BOUND_S, "the consumer's group stable")

        wall_clock.step_ms = -HOUR_MS
        consumer.send_signal(signal.SIGKILL)
        await asyncio.to_thread(consumer.wait)

        def no_member() -> bool:
            summary = broker.groups.state.describe(GROUP)
            return summary is not None and not summary.members

        await until(no_member, EXPIRY_BOUND_S, "the dead member expired")
        summary = broker.groups.state.describe(GROUP)
        assert summary is not None
        assert summary.state is GroupState.EMPTY
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        async with asyncio.timeout(30):
            await broker.stop()
