"""A follower's lag is measured on a monotonic clock: a wall clock stepped back keeps
no silent follower in the ISR.

The leader records when each follower was last caught up and shrinks the ISR once that
is `replica.lag.time.max.ms` ago (cluster/replication.py). ottla took those times from
the wall clock, and a caught-up time only moves forward (`max`), so after the wall
clock was stepped back an hour (NTP, an operator, a VM snapshot restored) a follower
that stopped fetching looked caught up for that hour: it stayed in the ISR and every
acks=all write waited for it until the produce timed out. Here three real brokers run
in-process on loopback, each with a wall clock the test steps an hour back; one
follower then stops fetching (its heartbeats go on, so only the lag rule can remove
it), and the leader must drop it from the ISR within a few lag intervals.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker
from tests.broker.inprocess import SteppedWallClock, running_cluster, until

HOUR_MS = 3_600_000
LAG_MS = 1_000
START_BOUND_S = 60
SHRINK_BOUND_S = 15  # the shrink check runs every LAG_MS / 2; a few intervals suffice
TOPIC = "orders"


def _isr(broker: Broker) -> tuple[int, ...]:
    topic = broker.image.topics_by_name.get(TOPIC)
    if topic is None or 0 not in topic.partitions:
        return ()
    return tuple(topic.partitions[0].isr)


async def test_a_wall_clock_stepped_back_keeps_no_silent_follower_in_the_isr(
    tmp_path: Path,
) -> None:
    wall_clock = SteppedWallClock()
    async with running_cluster(
        tmp_path, "isrClockCluster0000001", f"replica.lag.time.max.ms={LAG_MS}", clock=wall_clock
    ) as brokers:
        bootstrap = ",".join(f"127.0.0.1:{b.bound_ports[0]}" for b in brokers.values())

        def create() -> None:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            topic = NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})
            admin.create_topics([topic])[TOPIC].result(30)

        await asyncio.to_thread(create)
        await until(
            lambda: all(len(_isr(b)) == 3 for b in brokers.values()), START_BOUND_S, "ISR of 3"
        )
        leader_id = brokers[1].image.topics_by_name[TOPIC].partitions[0].leader
        silent_id = next(n for n in (1, 2, 3) if n != leader_id)
        silent = brokers[silent_id]

        wall_clock.step_ms = -HOUR_MS
        assert wall_clock() < time.time_ns() // 1_000_000 - HOUR_MS + 60_000
        await silent.fetchers.stop()
        silent.fetchers.update = lambda follow: None  # type: ignore[method-assign]

        leader = brokers[leader_id]
        await until(
            lambda: silent_id not in _isr(leader),
            SHRINK_BOUND_S,
            f"follower {silent_id} out of the ISR after it stopped fetching",
        )
        assert len(_isr(leader)) == 2
        assert not leader.image.brokers[silent_id].fenced  # the lag rule removed it
