"""`ottla cluster status`: the metadata quorum and the brokers, from any node.

DescribeCluster (v2: fenced flags) names the brokers and the active controller;
DescribeQuorum is answered only by the quorum leader, so a node that is not the leader
(NOT_LEADER_OR_FOLLOWER) is followed to the leader named in its answer. The quorum part
shows the leader, its epoch, the high watermark and each voter's log end offset and lag
(high watermark - log end offset). A Metadata request for every topic then lists the
under-replicated partitions (an ISR smaller than the replica set) and the offline ones
(no leader, -1). `--json` prints the same as one object.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any

from ottla.client import Client, ClientError
from ottla.commands.output import print_json, print_table
from ottla.protocol import ErrorCode, make

__all__ = ["add_parser", "run"]

_METADATA_TOPIC = "__cluster_metadata"


def add_parser(commands: Any) -> None:
    """Register `cluster` and its subcommands on the CLI's subparsers."""
    parser = commands.add_parser("cluster", help="the metadata quorum and the brokers")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="quorum leader, epoch, voters, lag; brokers")
    status.add_argument("--bootstrap-server", default="127.0.0.1:9092", metavar="HOST:PORT")
    status.add_argument("--json", action="store_true", help="machine-readable output")


def _describe_cluster(client: Client) -> Any:
    return client.call(
        "describe_cluster",
        lambda m, v: make(
            m.DescribeClusterRequest,
            include_cluster_authorized_operations=False,
            endpoint_type=1,
            include_fenced_brokers=True,
        ),
    )


def _describe_quorum(client: Client) -> Any:
    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.DescribeQuorumRequest,
            topics=(
                make(
                    module.TopicData,
                    topic_name=_METADATA_TOPIC,
                    partitions=(make(module.PartitionData, partition_index=0),),
                ),
            ),
        )

    return client.call("describe_quorum", build).topics[0].partitions[0]


def _metadata(client: Client) -> Any:
    return client.call(
        "metadata",
        lambda m, v: make(
            m.MetadataRequest,
            topics=None,
            allow_auto_topic_creation=False,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False,
        ),
    )


def _partition_health(metadata: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(under-replicated, offline) partitions of every topic, by topic and index."""
    under: list[dict[str, Any]] = []
    offline: list[dict[str, Any]] = []
    for topic in sorted(metadata.topics, key=lambda t: t.name or ""):
        for p in sorted(topic.partitions, key=lambda p: int(p.partition_index)):
            entry = {
                "topic": topic.name,
                "partition": int(p.partition_index),
                "leader": int(p.leader_id),
                "replicas": [int(r) for r in p.replica_nodes],
                "isr": [int(r) for r in p.isr_nodes],
            }
            if int(p.leader_id) < 0:
                offline.append(entry)
            if len(p.isr_nodes) < len(p.replica_nodes):
                under.append(entry)
    return under, offline


def status(bootstrap: str) -> dict[str, Any]:
    """The quorum, brokers and partition health as a JSON-able dict."""
    with Client(bootstrap) as client:
        cluster = _describe_cluster(client)
        quorum = _describe_quorum(client)
        under, offline = _partition_health(_metadata(client))
    brokers = {int(b.broker_id): f"{b.host}:{b.port}" for b in cluster.brokers}
    if quorum.error_code is not ErrorCode.none:
        leader = int(quorum.leader_id)
        address = brokers.get(leader)
        if address is None:
            raise ClientError(f"no quorum leader reachable (leader {leader})")
        with Client(address) as client:
            quorum = _describe_quorum(client)
        if quorum.error_code is not ErrorCode.none:
            raise ClientError(f"DescribeQuorum failed: {quorum.error_code.name}")
    high_watermark = int(quorum.high_watermark)
    return {
        "cluster_id": cluster.cluster_id,
        "controller_id": int(cluster.controller_id),
        "quorum": {
            "leader_id": int(quorum.leader_id),
            "leader_epoch": int(quorum.leader_epoch),
            "high_watermark": high_watermark,
            "voters": [
                {
                    "node_id": int(v.replica_id),
                    "log_end_offset": int(v.log_end_offset),
                    "lag": max(high_watermark - int(v.log_end_offset), 0),
                }
                for v in sorted(quorum.current_voters, key=lambda v: int(v.replica_id))
            ],
        },
        "brokers": [
            {
                "node_id": int(b.broker_id),
                "host": b.host,
                "port": int(b.port),
                "fenced": bool(getattr(b, "is_fenced", False)),
                "alive": not bool(getattr(b, "is_fenced", False)),
            }
            for b in sorted(cluster.brokers, key=lambda b: int(b.broker_id))
        ],
        "under_replicated_partitions": under,
        "offline_partitions": offline,
    }


def run(args: argparse.Namespace) -> int:
    result = status(args.bootstrap_server)
    if args.json:
        print_json(result, sys.stdout)
        return 0
    quorum = result["quorum"]
    print(
        f"cluster {result['cluster_id']}  quorum leader {quorum['leader_id']}  "
        f"epoch {quorum['leader_epoch']}  high watermark {quorum['high_watermark']}"
    )
    rows = [
        [
            v["node_id"],
            "leader" if v["node_id"] == quorum["leader_id"] else "follower",
            v["log_end_offset"],
            v["lag"],
        ]
        for v in quorum["voters"]
    ]
    print_table(rows, ["voter", "role", "log_end_offset", "lag"], sys.stdout)
    print()
    rows = [
        [b["node_id"], f"{b['host']}:{b['port']}", "fenced" if b["fenced"] else "alive"]
        for b in result["brokers"]
    ]
    print_table(rows, ["broker", "endpoint", "state"], sys.stdout)
    for title, key in (
        ("under-replicated partitions", "under_replicated_partitions"),
        ("offline partitions", "offline_partitions"),
    ):
        print()
        partitions = result[key]
        if not partitions:
            print(f"{title}: none")
            continue
        print(f"{title}: {len(partitions)}")
        rows = [
            [
                p["topic"],
                p["partition"],
                p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
            ]
            for p in partitions
        ]
        print_table(rows, ["topic", "partition", "leader", "replicas", "isr"], sys.stdout)
    return 0
