"""A partition leader cut off from the other two by packet drop (not a kill) (issue 7).

Three voters in network namespaces (tests/netns/harness.py), broker.session.timeout.ms
3000 (heartbeat 500 ms), replica.lag.time.max.ms 3000, fast quorum timeouts. A topic
with 3 partitions, replication factor 3 and min.insync.replicas=2; partition P is one
whose leader (the victim) is not the quorum leader. 40 records are produced to P with
acks=all through confluent-kafka, then nft DROP rules cut the victim off from the other
two nodes; the test process still reaches it.

Proves, clause by clause:
- the cut-off leader stops acknowledging acks=all writes: two Produce requests (acks=-1)
  sent straight to it are answered with an error (NOT_ENOUGH_REPLICAS, its _AFTER_APPEND
  variant, REQUEST_TIMED_OUT or NOT_LEADER_OR_FOLLOWER), never NONE;
- the majority elects a new leader for P from the ISR (not the victim, not -1, a higher
  leader epoch, the victim out of the ISR), which takes acks=all writes (40 more records);
- the victim appended the unacknowledged records locally: before healing, its log end
  offset (read from its partition directory: ListOffsets answers the high watermark)
  is beyond the new leader's high watermark at the election, and its log holds them;
- after healing, the victim truncates that divergent tail and rejoins: every node's
  Metadata has it back in P's ISR, its log holds, batch for batch and byte for byte,
  what the new leader's holds, and none of the unacknowledged records;
- no acknowledged record is lost: a consumer reads P's 80 acknowledged records exactly
  once, in order, and nothing else.

Run twice: with 40 acknowledged records before the cut, and with none. In the second
the victim's divergent tail is of the topic's first leader epoch, which the new
leader's log (it starts at the next epoch, from offset 0) does not hold at all; Kafka's
leader answers such an epoch as ending where its own first epoch starts, and the victim
truncates everything. ottla's leader used to answer it as unknown (-1, -1), which the
victim ignored: it fetched again and again at the same offset and never rejoined the ISR
(found by tests/netns/test_nemesis.py, seed 11: a partition stuck with an ISR of one,
so every acks=all write to it failed).
"""

from __future__ import annotations

import pytest

from ottla.protocol import ErrorCode
from tests.integration.wire import Wire, fetch_partition
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
    segment_batches,
    topic_with_a_victim,
)

TOPIC = "cut"
ACKED_EACH = 40
PRODUCE_TIMEOUT_MS = 2000

pytestmark = [pytest.mark.timeout(150), pytest.mark.netns_overrides(*FAST_FAILOVER)]


def _produce_raw(cluster: NetnsCluster, node_id: int, partition: int, keys: list[bytes]) -> object:
    """Produce v9 acks=-1 of one batch straight to `node_id`; its error code."""
    with Wire(cluster.nodes[node_id].bootstrap) as wire:
        response = wire.request(0, 9, acks_all_produce(TOPIC, partition, keys, PRODUCE_TIMEOUT_MS))
    return produce_error(response)


@pytest.mark.parametrize("acked_first", [ACKED_EACH, 0])
def test_a_partitioned_leader_stops_acking_and_truncates_its_divergent_tail(
    netns_cluster: NetnsCluster, acked_first: int
) -> None:
    cluster = netns_cluster
    partition, victim, epoch_before = topic_with_a_victim(cluster, TOPIC)
    majority = [n for n in cluster.nodes if n != victim]

    acked_before = [f"acked-before-{i}".encode() for i in range(acked_first)]
    if acked_before:
        produce_acked(cluster.bootstrap_servers, TOPIC, partition, acked_before)

    cluster.isolate(victim)

    # 1. The cut-off leader acknowledges no acks=all write.
    unacked = [[f"unacked-{r}-{i}".encode() for i in range(5)] for r in range(2)]
    codes = [_produce_raw(cluster, victim, partition, keys) for keys in unacked]
    print(f"the cut-off leader {victim} answered acks=all writes with {codes}")
    assert all(c in REFUSALS for c in codes), codes

    # 2. The majority elects a new leader from the ISR.
    new_leader = new_leader_elected(cluster, TOPIC, partition, victim, epoch_before)
    with Wire(cluster.nodes[new_leader].bootstrap) as wire:
        data = fetch_partition(wire, TOPIC, partition, 0)
    assert data.error_code is ErrorCode.none
    high_watermark = int(data.high_watermark)
    assert high_watermark == acked_first

    # 3. The victim appended the records it never acknowledged: a divergent tail.
    victim_before_heal = segment_batches(cluster.nodes[victim].data_dir / f"{TOPIC}-{partition}")
    victim_end = log_end_offset(victim_before_heal)
    print(f"victim log end offset {victim_end}, new leader's high watermark {high_watermark}")
    assert victim_end > high_watermark
    assert any(b"unacked-" in batch for batch in victim_before_heal)

    acked_after = [f"acked-after-{i}".encode() for i in range(ACKED_EACH)]
    majority_bootstrap = ",".join(cluster.nodes[n].bootstrap for n in majority)
    produce_acked(majority_bootstrap, TOPIC, partition, acked_after)

    # 4. Healed, the victim truncates, catches up and rejoins the ISR.
    cluster.heal(victim)
    batches = rejoined_with_the_same_log(cluster, TOPIC, partition, victim, new_leader)
    assert log_end_offset(batches) == acked_first + ACKED_EACH
    assert not any(b"unacked-" in batch for batch in batches)

    # 5. Every acknowledged record, exactly once, in order; nothing else.
    keys = consume_keys(cluster.bootstrap_servers, TOPIC, partition, acked_first + ACKED_EACH)
    assert keys == acked_before + acked_after
