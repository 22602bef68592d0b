"""Replica placement for new partitions (PURE).

Kafka's rack-unaware assignment: partition p's replicas start at broker
(start + p) mod n and follow with a shift that grows every n partitions, so leaders
spread evenly and followers do not always pair the same brokers. `start` comes from
the caller (a seeded choice or the number of existing partitions), never from a
random source here.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["assign_replicas"]


def assign_replicas(
    broker_ids: Sequence[int],
    partitions: int,
    replication_factor: int,
    start: int = 0,
    first_partition: int = 0,
) -> list[tuple[int, ...]]:
    """Replica lists for partitions first_partition..first_partition+partitions-1."""
    brokers = sorted(broker_ids)
    count = len(brokers)
    if replication_factor > count:
        raise ValueError(
            f"replication factor {replication_factor} larger than available brokers {count}"
        )
    result: list[tuple[int, ...]] = []
    for index in range(first_partition, first_partition + partitions):
        first = (start + index) % count
        shift = 1 + (index // count) % max(count - 1, 1)
        replicas = [brokers[first]]
        for replica in range(1, replication_factor):
            candidate = (first + shift + replica - 1) % count
            while brokers[candidate] in replicas:
                candidate = (candidate + 1) % count
            replicas.append(brokers[candidate])
        result.append(tuple(replicas))
    return result
