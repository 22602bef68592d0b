"""A replica whose disk fills up under acks=all load, then gets room again (issue 7).

A full disk on one replica must cost that replica, not the partition. Three voters in
network namespaces (tests/netns/harness.py), fast failure detection
(leader_faults.FAST_FAILOVER), topics with replication factor 3 and
min.insync.replicas=2. The victim is stopped cleanly, its data dir moved onto a 4 MiB
tmpfs and started again; an idempotent confluent-kafka producer (acks=all) writes
records of 1 KiB, more than the victim's disk holds.

A follower (not the quorum leader where the placement allows), 20,000 records to a
1-partition topic. Proves:
- every record is acknowledged and none fails: the leader drops the victim from the
  ISR after `replica.lag.time.max.ms` and goes on with the replicas left;
- the victim is still running, out of the ISR, its disk full, and no task of it died
  of the errors; 40 topics created meanwhile make its metadata log (on the same disk)
  refuse writes: it stalls and waits for room (ottla/cluster/raft/driver.py);
- once the tmpfs is grown, the victim's metadata log is written, it knows every new
  topic, and it is back in the ISR with a log equal, batch for batch and byte for
  byte, to the leader's; a consumer reads every record once, in order.

The leader of a partition (made leader again by a preferred election after its
restart), 8,000 records to that partition. As Kafka halts a broker whose log directory
failed, the victim stops (exit code 1, after trying a controlled shutdown) once an
append fails while another replica is in the ISR (Broker.log_dir_failed). Proves:
- every record is acknowledged and none fails: the partition moves to an in-sync
  replica (another leader, a higher epoch, the victim out of the ISR);
- the victim says why it stopped, and no task of it died of an error;
- restarted with room, it rejoins the ISR with the new leader's log; a consumer reads
  the partition's records once, in order.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient

from ottla.protocol import ErrorCode
from tests.netns.harness import NetnsCluster, Node, until
from tests.netns.leader_faults import (
    FAST_FAILOVER,
    RoundRobinWriter,
    assert_round_robin_once_in_order,
    consume_values,
    replicated_topic,
    segment_batches,
    topic_state,
    topic_with_a_victim,
)

RECORDS = 20_000
TOPIC = "full"
VALUE_BYTES = 1024
LEADER_TOPIC = "fullleader"
LEADER_RECORDS = 8_000
MORE_TOPICS = 40

pytestmark = [pytest.mark.timeout(200), pytest.mark.netns_overrides(*FAST_FAILOVER)]


def _free_bytes(path: Path) -> int:
    result = subprocess.run(
        ["df", "--output=avail", "-B1", str(path)], capture_output=True, text=True, check=True
    )
    return int(result.stdout.split()[-1])


def _whole_log(node: Node) -> str:
    return node.log_path.read_text(errors="replace")


@contextlib.contextmanager
def _on_a_small_disk(cluster: NetnsCluster, victim: int) -> Iterator[Node]:
    """Stop `victim` cleanly, move its data dir onto a 4 MiB tmpfs, start it again."""
    node = cluster.nodes[victim]
    cluster.kill(victim, signal.SIGTERM)
    aside = node.data_dir.with_name("data.before")
    node.data_dir.rename(aside)
    node.data_dir.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(node.data_dir)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["cp", "-a", f"{aside}/.", str(node.data_dir)], check=True)
        cluster.start(victim)
        yield node
    finally:
        cluster.kill(victim)
        subprocess.run(["umount", "-l", str(node.data_dir)], check=False)


def _grow(node: Node) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(node.data_dir)], check=True)


@pytest.fixture
def small_disk(netns_cluster: NetnsCluster) -> Iterator[tuple[NetnsCluster, int]]:
    """The cluster with its topic, and a follower moved onto a 4 MiB tmpfs."""
    cluster = netns_cluster
    leader = replicated_topic(cluster, TOPIC, 1)[0][0]
    quorum_leader = cluster.leader()
    followers = [n for n in cluster.nodes if n != leader]
    victim = min(followers, key=lambda n: (n == quorum_leader, n))
    with _on_a_small_disk(cluster, victim):
        yield cluster, victim


def test_a_follower_out_of_disk_leaves_the_isr_and_rejoins_with_room(
    small_disk: tuple[NetnsCluster, int],
) -> None:
    cluster, victim = small_disk
    node = cluster.nodes[victim]

    def isr() -> tuple[int, ...]:
        return topic_state(cluster, cluster.leader(), TOPIC)[0][2]

    until(lambda: isr() == (1, 2, 3), 30.0, f"node {victim} back in the ISR after its restart")
    leader = topic_state(cluster, cluster.leader(), TOPIC)[0][0]

    writer = RoundRobinWriter(cluster.bootstrap_servers, TOPIC, 1, RECORDS)
    started = time.monotonic()
    for i in range(RECORDS):
        value = str(i).encode().ljust(VALUE_BYTES)
        writer.write(value, 0)
    remaining = writer.producer.flush(120)
    print(f"{writer.acknowledged} records acknowledged in {time.monotonic() - started:.1f} s")
    assert remaining == 0, f"{remaining} records never delivered"
    assert writer.errors == [], writer.errors[:5]

    assert node.process is not None and node.process.poll() is None, "the victim died"
    assert victim not in isr()
    assert _free_bytes(node.data_dir) < VALUE_BYTES * 16
    assert "No space left on device" in _whole_log(node)
    assert "Traceback" not in _whole_log(node)  # errors handled, no task died of one

    # Metadata the victim must log on its full disk: new topics, committed by the other
    # two voters meanwhile.
    quorum_leader = cluster.leader()
    for i in range(MORE_TOPICS):
        code = cluster.create_topic(quorum_leader, f"more{i}", partitions=1, replication_factor=3)
        assert code is ErrorCode.none, code
    until(
        lambda: "raft.storage_failed" in _whole_log(node), 30.0, "the victim's metadata log refused"
    )

    _grow(node)
    grown = time.monotonic()
    until(lambda: isr() == (1, 2, 3), 60.0, f"node {victim} back in the ISR with room")
    print(f"node {victim} back in the ISR {time.monotonic() - grown:.1f} s after its disk grew")
    ours = segment_batches(node.data_dir / f"{TOPIC}-0")
    theirs = segment_batches(cluster.nodes[leader].data_dir / f"{TOPIC}-0")
    assert ours == theirs and ours
    until(lambda: "raft.storage_recovered" in _whole_log(node), 30.0, "the metadata log written")

    def knows_every_topic() -> bool:
        names = {t.name for t in cluster.metadata(victim).topics}
        return all(f"more{i}" in names for i in range(MORE_TOPICS))

    until(knows_every_topic, 30.0, "the victim's metadata caught up")

    read = consume_values(cluster.bootstrap_servers, TOPIC, 1, RECORDS)
    assert_round_robin_once_in_order(writer.acked, read, RECORDS)


def test_a_leader_out_of_disk_stops_and_its_partition_moves(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    partition, victim, _epoch = topic_with_a_victim(cluster, LEADER_TOPIC)
    with _on_a_small_disk(cluster, victim) as node:

        def state() -> tuple[int, int, tuple[int, ...]]:
            return topic_state(cluster, cluster.leader(), LEADER_TOPIC)[partition]

        until(lambda: state()[2] == (1, 2, 3), 30.0, f"node {victim} back in the ISR")
        # It stopped leading on SIGTERM: make it the leader again (it is the preferred one).
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        elected = admin.elect_leaders(
            ElectionType.PREFERRED, [TopicPartition(LEADER_TOPIC, partition)]
        )
        assert all(error is None for error in elected.result(20).values())
        until(lambda: state()[0] == victim, 30.0, f"node {victim} leading again")
        epoch_before = state()[1]

        writer = RoundRobinWriter(cluster.bootstrap_servers, LEADER_TOPIC, 3, LEADER_RECORDS)
        for i in range(LEADER_RECORDS):
            value = str(i).encode().ljust(VALUE_BYTES)
            writer.write(value, partition)
        remaining = writer.producer.flush(120)
        assert remaining == 0, f"{remaining} records never delivered"
        assert writer.errors == [], writer.errors[:5]

        assert node.process is not None
        code = node.process.wait(30)
        node.process = None
        print(f"node {victim} exited with {code}; {writer.acknowledged} records acknowledged")
        assert code == 1
        assert "log_dir_failed" in _whole_log(node)
        assert "ottla: stopped: the log directory" in _whole_log(node)
        assert "Traceback" not in _whole_log(node)
        lead, epoch, isr = state()
        assert lead != victim and epoch > epoch_before and victim not in isr

        _grow(node)
        cluster.start(victim)
        until(lambda: state()[2] == (1, 2, 3), 60.0, f"node {victim} back in the ISR with room")
        directory = f"{LEADER_TOPIC}-{partition}"
        ours = segment_batches(node.data_dir / directory)
        theirs = segment_batches(cluster.nodes[lead].data_dir / directory)
        assert ours == theirs and ours

    read = consume_values(cluster.bootstrap_servers, LEADER_TOPIC, 3, LEADER_RECORDS)
    assert sorted(writer.acked[partition]) == list(range(LEADER_RECORDS))
    assert read[partition] == list(range(LEADER_RECORDS))  # each once, in order
