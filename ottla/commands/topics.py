"""`ottla topics list|describe|create|delete`: topic administration from the shell.

Like Kafka's kafka-topics.sh, against any broker (`--bootstrap-server`): `list`
names the topics; `describe` shows each partition's leader, replicas and in-sync
replicas plus the topic's own configs; `create` takes `--partitions`,
`--replication-factor` and repeated `--config key=value`; `delete` removes topics.
Errors from the broker are printed as Kafka's error name and message, exit code 1.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import uuid
from types import ModuleType
from typing import Any

from ottla.client import Client
from ottla.commands.output import print_json, print_table
from ottla.protocol import ErrorCode, make

__all__ = ["add_parser", "run"]

_TIMEOUT = datetime.timedelta(seconds=30)
_TOPIC_RESOURCE = 2


def add_parser(commands: Any) -> None:
    """Register `topics` and its subcommands on the CLI's subparsers."""
    parser = commands.add_parser("topics", help="list, describe, create and delete topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list topic names"),
        ("describe", "partitions, leaders, replicas, ISR and configs"),
        ("create", "create a topic"),
        ("delete", "delete topics"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--bootstrap-server", default="127.0.0.1:9092", metavar="HOST:PORT")
        action.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("describe", "delete"):
            action.add_argument("topics", nargs="*" if name == "describe" else "+")
        if name == "create":
            action.add_argument("topic")
            action.add_argument("--partitions", type=int, default=-1)
            action.add_argument("--replication-factor", type=int, default=-1)
            action.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    with Client(args.bootstrap_server) as client:
        if args.action == "list":
            return _list(client, args)
        if args.action == "describe":
            return _describe(client, args)
        if args.action == "create":
            return _create(client, args)
        return _delete(client, args)


def _metadata(client: Client, topics: list[str] | None) -> Any:
    def build(module: ModuleType, version: int) -> Any:
        requested = (
            None
            if topics is None
            else tuple(make(module.MetadataRequestTopic, name=t, topic_id=None) for t in topics)
        )
        return make(
            module.MetadataRequest,
            topics=requested,
            allow_auto_topic_creation=False,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False,
        )

    return client.call("metadata", build)


def _list(client: Client, args: argparse.Namespace) -> int:
    names = sorted(t.name for t in _metadata(client, None).topics)
    if args.json:
        print_json(names, sys.stdout)
    else:
        for name in names:
            print(name)
    return 0


def _describe(client: Client, args: argparse.Namespace) -> int:
    metadata = _metadata(client, args.topics or None)
    configs = _topic_configs(client, [t.name for t in metadata.topics if t.error_code == 0])
    failed = 0
    result = []
    for topic in sorted(metadata.topics, key=lambda t: t.name or ""):
        if topic.error_code is not ErrorCode.none:
            print(f"{topic.name}: {topic.error_code.name.upper()}", file=sys.stderr)
            failed = 1
            continue
        result.append(
            {
                "topic": topic.name,
                "topic_id": str(topic.topic_id),
                "configs": configs.get(topic.name, {}),
                "partitions": [
                    {
                        "partition": p.partition_index,
                        "leader": p.leader_id,
                        "leader_epoch": p.leader_epoch,
                        "replicas": list(p.replica_nodes),
                        "isr": list(p.isr_nodes),
                        "offline": list(getattr(p, "offline_replicas", ())),
                    }
                    for p in sorted(topic.partitions, key=lambda p: p.partition_index)
                ],
            }
        )
    if args.json:
        print_json(result, sys.stdout)
        return failed
    for entry in result:
        own = ", ".join(f"{k}={v}" for k, v in sorted(entry["configs"].items())) or "-"
        print(
            f"Topic: {entry['topic']}  TopicId: {entry['topic_id']}  "
            f"Partitions: {len(entry['partitions'])}  Configs: {own}"
        )
        print_table(
            [
                (
                    p["partition"],
                    p["leader"],
                    p["leader_epoch"],
                    ",".join(map(str, p["replicas"])),
                    ",".join(map(str, p["isr"])),
                )
                for p in entry["partitions"]
            ],
            ("partition", "leader", "epoch", "replicas", "isr"),
            sys.stdout,
        )
    return failed


def _topic_configs(client: Client, names: list[str]) -> dict[str, dict[str, str | None]]:
    """The topics' own (dynamic) configs, by topic."""
    if not names:
        return {}

    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.DescribeConfigsRequest,
            resources=tuple(
                make(
                    module.DescribeConfigsResource,
                    resource_type=_TOPIC_RESOURCE,
                    resource_name=name,
                    configuration_keys=None,
                )
                for name in names
            ),
            include_synonyms=False,
            include_documentation=False,
        )

    response = client.call("describe_configs", build)
    return {
        result.resource_name: {
            c.name: c.value for c in result.configs if getattr(c, "config_source", 0) == 1
        }
        for result in response.results
        if result.error_code is ErrorCode.none
    }


def _create(client: Client, args: argparse.Namespace) -> int:
    configs = []
    for item in args.config:
        key, separator, value = item.partition("=")
        if not separator:
            print(f"--config: expected KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        configs.append((key.strip(), value.strip()))

    def build(module: ModuleType, version: int) -> Any:
        topic = make(
            module.CreatableTopic,
            name=args.topic,
            num_partitions=args.partitions,
            replication_factor=args.replication_factor,
            assignments=(),
            configs=tuple(make(module.CreatableTopicConfig, name=k, value=v) for k, v in configs),
        )
        return make(
            module.CreateTopicsRequest, topics=(topic,), timeout=_TIMEOUT, validate_only=False
        )

    result = client.call("create_topics", build).topics[0]
    return _report(args, "created", [(result.name, result.error_code, result.error_message)])


def _delete(client: Client, args: argparse.Namespace) -> int:
    def build(module: ModuleType, version: int) -> Any:
        if version >= 6:
            return make(
                module.DeleteTopicsRequest,
                topics=tuple(
                    make(module.DeleteTopicState, name=n, topic_id=_ZERO) for n in args.topics
                ),
                timeout=_TIMEOUT,
            )
        return make(module.DeleteTopicsRequest, topic_names=tuple(args.topics), timeout=_TIMEOUT)

    response = client.call("delete_topics", build)
    return _report(
        args,
        "deleted",
        [(r.name, r.error_code, getattr(r, "error_message", None)) for r in response.responses],
    )


def _report(args: argparse.Namespace, verb: str, results: list[tuple[Any, Any, Any]]) -> int:
    failed = 0
    rows = []
    for name, code, message in results:
        ok = code is ErrorCode.none
        failed |= not ok
        rows.append({"topic": name, "error": None if ok else code.name.upper(), "message": message})
        if not args.json:
            if ok:
                print(f"{verb} topic {name}")
            else:
                print(f"{name}: {code.name.upper()}: {message or ''}".rstrip(": "), file=sys.stderr)
    if args.json:
        print_json(rows, sys.stdout)
    return 1 if failed else 0


_ZERO = uuid.UUID(int=0)
