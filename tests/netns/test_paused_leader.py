"""A partition leader frozen (SIGSTOP) past its session, then thawed: a zombie (issue 7).

A process stopped by the kernel, a VM paused by its host or a long stall looks like a
dead node to the others, but comes back believing it still leads, with requests that
arrived while it was frozen waiting in its sockets. Kafka's answer: the controller
fences it and elects a new leader from the ISR; the zombie cannot complete an acks=all
write (the ISR no longer fetches from it and the controller refuses its ISR change),
learns of the new leader from the metadata log, truncates what it appended meanwhile
and follows.

Three voters in network namespaces (tests/netns/harness.py), fast failure detection
(leader_faults.FAST_FAILOVER). A topic with 3 partitions, replication factor 3 and
min.insync.replicas=2; partition P is one whose leader (the victim) is not the quorum
leader where the placement allows it. 40 records go to P with acks=all through
confluent-kafka; the victim is stopped with SIGSTOP; an acks=all Produce is then sent
straight to it, on a connection opened before the stop, and waits in its socket.

Proves:
- the others elect a new leader of P from the ISR (higher epoch, the victim out of the
  ISR), which takes 40 more acks=all records;
- thawed, the zombie answers the Produce that waited with an error (NOT_ENOUGH_REPLICAS,
  its _AFTER_APPEND variant, REQUEST_TIMED_OUT or NOT_LEADER_OR_FOLLOWER), never NONE;
- it rejoins P's ISR on every node with a log equal, batch for batch and byte for byte,
  to the new leader's, holding none of the zombie's records;
- a consumer reads P's 80 acknowledged records exactly once, in order, and nothing else.
"""

from __future__ import annotations

import pytest

from tests.integration.wire import Wire
from tests.netns.harness import NetnsCluster
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    REFUSALS,
    acks_all_produce,
    consume_keys,
    log_end_offset,
    new_leader_elected,
    produce_acked,
    produce_error,
    rejoined_with_the_same_log,
    topic_with_a_victim,
)

TOPIC = "frozen"
ACKED_EACH = 40
PRODUCE_TIMEOUT_MS = 2000

pytestmark = [pytest.mark.timeout(150), pytest.mark.netns_overrides(*FAST_FAILOVER)]


def test_a_frozen_leader_thawed_acknowledges_nothing_and_follows(
    netns_cluster: NetnsCluster,
) -> None:
    cluster = netns_cluster
    partition, victim, epoch_before = topic_with_a_victim(cluster, TOPIC)
    majority = [n for n in cluster.nodes if n != victim]

    acked_before = [f"acked-before-{i}".encode() for i in range(ACKED_EACH)]
    produce_acked(cluster.bootstrap_servers, TOPIC, partition, acked_before)

    with Wire(cluster.nodes[victim].bootstrap) as wire:
        cluster.pause(victim)
        zombie_keys = [f"zombie-{i}".encode() for i in range(5)]
        produce = acks_all_produce(TOPIC, partition, zombie_keys, PRODUCE_TIMEOUT_MS)
        correlation_id = wire.send(0, 9, produce)  # waits in the frozen node's socket

        # 1. The others elect a new leader, which takes acks=all writes.
        new_leader = new_leader_elected(cluster, TOPIC, partition, victim, epoch_before)
        acked_after = [f"acked-after-{i}".encode() for i in range(ACKED_EACH)]
        majority_bootstrap = ",".join(cluster.nodes[n].bootstrap for n in majority)
        produce_acked(majority_bootstrap, TOPIC, partition, acked_after)

        # 2. Thawed, the zombie acknowledges nothing.
        cluster.resume(victim)
        code = produce_error(wire.receive(0, 9, correlation_id))
    print(f"the thawed leader {victim} answered the acks=all write that waited with {code}")
    assert code in REFUSALS, code

    # 3. It follows the new leader: back in the ISR, its log the leader's.
    batches = rejoined_with_the_same_log(cluster, TOPIC, partition, victim, new_leader)
    assert log_end_offset(batches) == 2 * ACKED_EACH
    assert not any(b"zombie-" in batch for batch in batches)

    # 4. Every acknowledged record, exactly once, in order; nothing else.
    keys = consume_keys(cluster.bootstrap_servers, TOPIC, partition, 2 * ACKED_EACH)
    assert keys == acked_before + acked_after
