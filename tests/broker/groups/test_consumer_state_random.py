"""Seeded random interaction with the KIP-848 consumer group machine.

Proves: under any interleaving of joins (dynamic and static), heartbeats reporting
owned partitions (or nothing), stale and future epochs, subscription changes, leaves
(-1 and -2), new partitions, members that stop heartbeating and clock advances
(session and rebalance timeouts), after every event: no partition is in the current
assignment (assigned or pending revocation) of two members; member epochs never
exceed the assignment epoch, which never exceeds the group epoch; the reported
deadline is the machine's next one. Once the clients only heartbeat, the group
becomes Stable with every partition of the subscribed topics assigned to exactly
one subscribed member. A failure prints its seed; replay with
OTTLA_CONSUMER_GROUP_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import dataclass, field

import pytest

from ottla.broker.groups.consumer_state import (
    ConsumerGroupConfig,
    HeartbeatRequest,
    HeartbeatResult,
    TopicInfo,
)
from ottla.broker.groups.state import Effects, GroupConfig, GroupCoordinatorState
from ottla.protocol import ErrorCode

SEEDS = (
    [int(os.environ["OTTLA_CONSUMER_GROUP_SEED"])]
    if "OTTLA_CONSUMER_GROUP_SEED" in os.environ
    else range(60)
)
T, U = uuid.UUID(int=1), uuid.UUID(int=2)
SESSION = 10_000
REBALANCE = 20_000


@dataclass
class Client:
    """A well-behaved KIP-848 client: it applies each assignment it is given at once."""

    member_id: str
    instance: str | None
    names: tuple[str, ...]
    epoch: int = -1  # -1: not in the group
    owned: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    alive: bool = True
    restarted: bool = False  # a new process (new member id) after it left


def _partitions(owned: set[tuple[uuid.UUID, int]]) -> tuple[tuple[uuid.UUID, tuple[int, ...]], ...]:
    by_topic: dict[uuid.UUID, list[int]] = {}
    for topic_id, index in sorted(owned):
        by_topic.setdefault(topic_id, []).append(index)
    return tuple((t, tuple(ps)) for t, ps in by_topic.items())


def _run(seed: int, steps: int = 300) -> None:
    rng = random.Random(seed)
    assignors = rng.choice([("uniform", "range"), ("range", "uniform")])
    consumer = ConsumerGroupConfig(
        session_timeout_ms=SESSION, heartbeat_interval_ms=1000, assignors=assignors
    )
    state = GroupCoordinatorState(GroupConfig(initial_rebalance_delay_ms=0, consumer=consumer))
    topics = {"t": TopicInfo(T, "t", rng.randint(1, 8)), "u": TopicInfo(U, "u", rng.randint(1, 5))}
    clients = [
        Client(f"m{i}", f"i{i}" if rng.random() < 0.3 else None, rng.choice([("t",), ("t", "u")]))
        for i in range(rng.randint(1, 5))
    ]
    now = 0
    incarnations = 0

    def check(effects: Effects) -> None:
        state.check_invariants()
        assert effects.deadline_ms == state.next_deadline_ms(), f"seed {seed}"

    def send(client: Client, epoch: int, owned: bool | None = True, full: bool = False) -> None:
        joining = epoch == 0
        request = HeartbeatRequest(
            member_id=client.member_id,
            member_epoch=epoch,
            instance_id=client.instance,
            rebalance_timeout_ms=REBALANCE if joining or full else -1,
            subscribed_topic_names=client.names if joining or full else None,
            owned=(() if joining else (_partitions(client.owned) if owned or full else None)),
            server_assignor=rng.choice([None, None, "range", "uniform"]) if joining else None,
        )
        result, effects = state.consumer_heartbeat("g", request, topics, now)
        check(effects)
        take(client, epoch, result)

    def take(client: Client, epoch: int, result: HeartbeatResult) -> None:
        if result.error is ErrorCode.none:
            if epoch < 0:
                client.epoch, client.owned = -1, set()
                return
            client.epoch = result.member_epoch
            if result.assignment is not None:
                client.owned = {(t, p) for t, ps in result.assignment for p in ps}
        elif result.error in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
            client.epoch, client.owned = -1, set()  # it lost its partitions; rejoins
        else:
            assert result.error in (
                ErrorCode.unreleased_instance_id,
                ErrorCode.fenced_instance_id,
            ), f"seed {seed}: {result}"

    for _ in range(steps):
        client = rng.choice(clients)
        action = rng.random()
        if not client.alive:
            if action < 0.2:
                client.alive = True
            continue
        if client.epoch < 0:
            if client.restarted:
                client.restarted = False
                incarnations += 1
                client.member_id = f"{client.member_id.split('.')[0]}.{incarnations}"
            send(client, 0)
        elif action < 0.45:
            send(client, client.epoch, owned=rng.random() < 0.7)
        elif action < 0.5:
            send(client, client.epoch + rng.choice([-1, 1]))
        elif action < 0.55:
            send(client, -1)
            client.restarted = True
        elif action < 0.58 and client.instance is not None:
            send(client, -2)
            client.epoch, client.restarted = -1, True
        elif action < 0.63:
            client.names = rng.choice([("t",), ("u",), ("t", "u")])
            send(client, client.epoch, full=True)
        elif action < 0.66:
            name = rng.choice(["t", "u"])
            info = topics[name]
            topics[name] = TopicInfo(info.topic_id, name, info.partitions + 1)
        elif action < 0.7:
            client.alive = False
        else:
            now += rng.randint(0, 4000)
            check(state.tick(now))
    # Only heartbeats from now on: members of stopped processes expire, the group converges.
    for client in clients:
        client.alive = True
    for _ in range(3):
        now += SESSION // 2 + 1
        for client in clients:
            send(client, max(client.epoch, 0), owned=True)
        check(state.tick(now))
    for _ in range(12):
        for client in clients:
            send(client, max(client.epoch, 0), owned=True)
    group = state.groups["g"].consumer
    assert group is not None
    assert group.state_name == "Stable", f"seed {seed}: {group.state_name}"
    holders: dict[tuple[uuid.UUID, int], str] = {}
    for member in group.members.values():
        for tp in member.assigned:
            assert tp not in holders
            holders[tp] = member.member_id
    wanted = {
        (topics[name].topic_id, index)
        for member in group.members.values()
        for name in member.subscribed_topic_names
        for index in range(topics[name].partitions)
    }
    assert set(holders) == wanted, f"seed {seed}: unassigned {wanted - set(holders)}"
    for tp, member_id in holders.items():
        name = "t" if tp[0] == T else "u"
        assert name in group.members[member_id].subscribed_topic_names, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_consumer_group_keeps_invariants(seed: int) -> None:
    _run(seed)
