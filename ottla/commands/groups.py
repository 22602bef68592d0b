"""`ottla groups list|describe|reset-offsets|delete`: consumer-group administration.

Like Kafka's kafka-consumer-groups.sh, against any broker (`--bootstrap-server`):

- `list` asks every broker of the cluster for its groups (ListGroups) and shows each
  group's id, state, type (classic or consumer) and protocol type.
- `describe GROUP` finds the group's coordinator (FindCoordinator) and asks it, not
  the bootstrap server: ConsumerGroupDescribe when the coordinator supports it and
  knows the group as a consumer-protocol (KIP-848) group, else DescribeGroups, whose
  classic assignment bytes are decoded as Kafka's ConsumerProtocolAssignment. Per
  partition (assigned or committed): committed offset (OffsetFetch), log end offset
  (ListOffsets latest, asked of the partition's leader) and lag.
- `reset-offsets GROUP --topic T [--partition N ...]` with one of `--to-earliest`,
  `--to-latest`, `--to-offset N` (clamped to the partition's earliest..latest, as
  Kafka does) or `--to-datetime ISO8601` (the first offset at or after it, the log
  end if none; a time without a zone is local time). Only for an Empty (or unknown)
  group; prints the plan and commits it (OffsetCommit, generation -1, empty member
  id) unless `--dry-run`.
- `delete GROUP...` (DeleteGroups; a group with members is NON_EMPTY_GROUP).

Broker errors are printed on stderr as Kafka's error name and message, exit code 1.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import functools
import itertools
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from ottla.client import Client, ClientError
from ottla.commands.output import print_json, print_table
from ottla.protocol import ErrorCode, make

__all__ = ["add_parser", "decode_assignment", "run"]

_TIMEOUT = datetime.timedelta(seconds=30)
_GROUP_KEY_TYPE = 0
_LATEST = -1
_EARLIEST = -2
_NO_GENERATION = -1
_RESETTABLE_STATES = ("Empty", "Dead")
_COORDINATOR_WAIT_S = 10.0
_RETRY_PAUSE_S = 0.2
T = TypeVar("T")
_COORDINATOR_RETRIABLE = (
    ErrorCode.coordinator_not_available,
    ErrorCode.coordinator_load_in_progress,
)


def _retrying(call: Callable[[], T], loading: Callable[[T], bool]) -> T:
    """`call()` again while its answer says the coordinator is not ready (loading its
    partition, or moving), for up to _COORDINATOR_WAIT_S, as Kafka's admin client does."""
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        answer = call()
        if not loading(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(_RETRY_PAUSE_S)  # waiting out the coordinator's load, not a test


def _loading(code: ErrorCode) -> bool:
    return code in _COORDINATOR_RETRIABLE


class CommandError(Exception):
    """A failure to report on stderr as one line; exit code 1."""


def add_parser(commands: Any) -> None:
    """Register `groups` and its subcommands on the CLI's subparsers."""
    parser = commands.add_parser(
        "groups", help="list, describe, reset offsets of and delete consumer groups"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list groups: id, state, type and protocol type"),
        ("describe", "members, assignments, committed offsets and lag of a group"),
        ("reset-offsets", "commit new offsets for an Empty group"),
        ("delete", "delete Empty groups and their offsets"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--bootstrap-server", default="127.0.0.1:9092", metavar="HOST:PORT")
        action.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("describe", "reset-offsets"):
            action.add_argument("group")
        if name == "delete":
            action.add_argument("groups", nargs="+", metavar="group")
        if name == "reset-offsets":
            action.add_argument("--topic", required=True)
            action.add_argument(
                "--partition",
                type=int,
                action="append",
                metavar="N",
                help="only this partition (repeatable); default: every partition",
            )
            target = action.add_mutually_exclusive_group(required=True)
            target.add_argument("--to-earliest", action="store_true")
            target.add_argument("--to-latest", action="store_true")
            target.add_argument("--to-offset", type=int, metavar="N")
            target.add_argument("--to-datetime", metavar="ISO8601")
            action.add_argument(
                "--dry-run", action="store_true", help="print the plan, commit nothing"
            )


def run(args: argparse.Namespace) -> int:
    try:
        with _Cluster(args.bootstrap_server) as cluster:
            if args.action == "list":
                return _list(cluster, args)
            if args.action == "describe":
                return _describe(cluster, args)
            if args.action == "reset-offsets":
                return _reset_offsets(cluster, args)
            return _delete(cluster, args)
    except CommandError as error:
        print(f"ottla: {error}", file=sys.stderr)
        return 1


# -- errors ---------------------------------------------------------------------------------


@functools.cache
def _kafka_messages() -> dict[str, str]:
    """Kafka's message for each error code, read from the docstrings of kio's enum."""
    source = sys.modules[ErrorCode.__module__].__file__
    if source is None:
        return {}
    try:
        tree = ast.parse(Path(source).read_text())
    except (OSError, SyntaxError):
        return {}
    messages: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "ErrorCode":
            body = node.body
            for item, following in itertools.pairwise(body):
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.targets[0], ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    messages[item.targets[0].id] = following.value.value.strip()
    return messages


def describe_error(code: ErrorCode, message: str | None = None) -> str:
    """`NAME: message` with the broker's message, else Kafka's text for the code."""
    text = message or _kafka_messages().get(code.name, "")
    return f"{code.name.upper()}: {text}".rstrip(": ")


# -- connections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Partition:
    leader: int
    leader_epoch: int


@dataclass(frozen=True)
class _Topic:
    name: str
    topic_id: uuid.UUID | None
    partitions: dict[int, _Partition]


class _Cluster:
    """The bootstrap connection plus one connection per broker, opened when needed."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = Client(bootstrap)
        self._clients: dict[str, Client] = {}
        self._brokers: dict[int, tuple[str, int]] = {}
        self._topics: dict[str, _Topic] | None = None

    def __enter__(self) -> _Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.bootstrap.close()
        for client in self._clients.values():
            client.close()

    def client(self, host: str, port: int) -> Client:
        address = f"{host}:{port}"
        if address not in self._clients:
            self._clients[address] = Client(address)
        return self._clients[address]

    def node(self, node_id: int) -> Client:
        self.topics()
        if node_id not in self._brokers:
            raise CommandError(f"broker {node_id} is not in the cluster's metadata")
        return self.client(*self._brokers[node_id])

    def broker_ids(self) -> list[int]:
        self.topics()
        return sorted(self._brokers)

    def topics(self) -> dict[str, _Topic]:
        """Every topic of the cluster (Metadata, asked once)."""
        if self._topics is None:

            def build(module: ModuleType, version: int) -> Any:
                return make(
                    module.MetadataRequest,
                    topics=None,
                    allow_auto_topic_creation=False,
                    include_cluster_authorized_operations=False,
                    include_topic_authorized_operations=False,
                )

            response = self.bootstrap.call("metadata", build)
            self._brokers = {int(b.node_id): (b.host, int(b.port)) for b in response.brokers}
            self._topics = {
                t.name: _Topic(
                    t.name,
                    getattr(t, "topic_id", None),
                    {
                        int(p.partition_index): _Partition(
                            int(p.leader_id), int(getattr(p, "leader_epoch", -1))
                        )
                        for p in t.partitions
                    },
                )
                for t in response.topics
                if t.error_code is ErrorCode.none and t.name
            }
        return self._topics

    def topic_name(self, name: str | None, topic_id: uuid.UUID | None) -> str | None:
        if name:
            return name
        for topic in self.topics().values():
            if topic.topic_id == topic_id:
                return topic.name
        return None

    def coordinator(self, group: str) -> tuple[Client, dict[str, Any]]:
        """A connection to `group`'s coordinator, found with FindCoordinator."""

        def build(module: ModuleType, version: int) -> Any:
            return make(
                module.FindCoordinatorRequest,
                key=group,
                key_type=_GROUP_KEY_TYPE,
                coordinator_keys=(group,),
            )

        deadline = time.monotonic() + _COORDINATOR_WAIT_S
        while True:
            response = self.bootstrap.call("find_coordinator", build)
            found = response.coordinators[0] if hasattr(response, "coordinators") else response
            error = found.error_code
            if error is ErrorCode.none:
                break
            if error not in _COORDINATOR_RETRIABLE or time.monotonic() > deadline:
                raise CommandError(
                    f"cannot find the coordinator of group {group}: "
                    + describe_error(error, getattr(found, "error_message", None))
                )
            time.sleep(_RETRY_PAUSE_S)  # the coordinator is loading; Kafka's tools retry too
        where = {"node_id": int(found.node_id), "host": found.host, "port": int(found.port)}
        return self.client(found.host, int(found.port)), where

    def log_offsets(
        self, wanted: dict[str, list[int]], timestamp: int
    ) -> dict[tuple[str, int], int]:
        """ListOffsets for `timestamp` (-1 latest, -2 earliest, else ms) per partition,
        asked of each partition's leader; -1 where no offset answers the timestamp."""
        topics = self.topics()
        by_leader: dict[int, dict[str, list[int]]] = {}
        for name, partitions in wanted.items():
            for index in partitions:
                known = topics.get(name)
                if known is None or index not in known.partitions:
                    raise CommandError(f"{name}-{index}: " + describe_error(_UNKNOWN_PARTITION))
                leader = known.partitions[index].leader
                by_leader.setdefault(leader, {}).setdefault(name, []).append(index)
        result: dict[tuple[str, int], int] = {}
        for leader, layout in by_leader.items():

            def build(module: ModuleType, version: int, layout: Any = layout) -> Any:
                return make(
                    module.ListOffsetsRequest,
                    replica_id=-1,
                    isolation_level=0,
                    timeout=_TIMEOUT,
                    topics=tuple(
                        make(
                            module.ListOffsetsTopic,
                            name=name,
                            partitions=tuple(
                                make(
                                    module.ListOffsetsPartition,
                                    partition_index=index,
                                    current_leader_epoch=-1,
                                    timestamp=timestamp,
                                    max_num_offsets=1,
                                )
                                for index in indexes
                            ),
                        )
                        for name, indexes in layout.items()
                    ),
                )

            response = self.node(leader).call("list_offsets", build)
            for topic in response.topics:
                for item in topic.partitions:
                    if item.error_code is not ErrorCode.none:
                        raise CommandError(
                            f"{topic.name}-{item.partition_index}: "
                            + describe_error(item.error_code)
                        )
                    result[(topic.name, int(item.partition_index))] = int(item.offset)
        return result


_UNKNOWN_PARTITION = ErrorCode.unknown_topic_or_partition


# -- assignment bytes -------------------------------------------------------------------------

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


def decode_assignment(data: bytes) -> dict[str, list[int]] | None:
    """Kafka's ConsumerProtocolAssignment (any version): int16 version, then
    [topic string, [partition int32]], then user data bytes (ignored).
    None when the bytes are not one (another protocol type, or garbage)."""
    if not data:
        return {}
    try:
        offset = _INT16.size  # the version: every version starts with the same layout
        (topic_count,) = _INT32.unpack_from(data, offset)
        offset += _INT32.size
        if topic_count < 0 or topic_count > len(data):
            return None
        result: dict[str, list[int]] = {}
        for _ in range(topic_count):
            (name_bytes,) = _INT16.unpack_from(data, offset)
            offset += _INT16.size
            if name_bytes < 0 or offset + name_bytes > len(data):
                return None
            name = data[offset : offset + name_bytes].decode()
            offset += name_bytes
            (count,) = _INT32.unpack_from(data, offset)
            offset += _INT32.size
            if count < 0 or offset + count * _INT32.size > len(data):
                return None
            partitions = struct.unpack_from(f">{count}i", data, offset)
            offset += count * _INT32.size
            result.setdefault(name, []).extend(partitions)
        return {name: sorted(partitions) for name, partitions in result.items()}
    except (struct.error, UnicodeDecodeError):
        return None


# -- list -------------------------------------------------------------------------------------


def _list(cluster: _Cluster, args: argparse.Namespace) -> int:
    def build(module: ModuleType, version: int) -> Any:
        return make(module.ListGroupsRequest, states_filter=(), types_filter=())

    groups: dict[str, dict[str, Any]] = {}
    failed = 0
    for node_id in cluster.broker_ids():
        response = cluster.node(node_id).call("list_groups", build)
        if response.error_code is not ErrorCode.none:
            print(f"broker {node_id}: {describe_error(response.error_code)}", file=sys.stderr)
            failed = 1
            continue
        for group in response.groups:
            groups[group.group_id] = {
                "group": group.group_id,
                "state": getattr(group, "group_state", None),
                "type": getattr(group, "group_type", None),
                "protocol_type": group.protocol_type,
            }
    rows = [groups[name] for name in sorted(groups)]
    if args.json:
        print_json(rows, sys.stdout)
    else:
        print_table(
            [(r["group"], r["state"], r["type"], r["protocol_type"] or None) for r in rows],
            ("group", "state", "type", "protocol-type"),
            sys.stdout,
        )
    return failed


# -- describe ---------------------------------------------------------------------------------


def _describe_group(cluster: _Cluster, coordinator: Client, group: str) -> dict[str, Any] | None:
    """The group as a dict (None: unknown group), members with decoded assignments."""
    described = _consumer_group_describe(cluster, coordinator, group)
    if described is not None:
        return described

    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.DescribeGroupsRequest, groups=(group,), include_authorized_operations=False
        )

    found = _retrying(
        lambda: coordinator.call("describe_groups", build).groups[0],
        lambda answer: _loading(answer.error_code),
    )
    if found.error_code is ErrorCode.group_id_not_found or (
        found.error_code is ErrorCode.none and found.group_state == "Dead"
    ):
        return None
    if found.error_code is not ErrorCode.none:
        raise CommandError(
            f"group {group}: "
            + describe_error(found.error_code, getattr(found, "error_message", None))
        )
    members = []
    for member in found.members:
        assignment = (
            decode_assignment(bytes(member.member_assignment))
            if found.protocol_type == "consumer"
            else None
        )
        members.append(
            {
                "member_id": member.member_id,
                "instance_id": getattr(member, "group_instance_id", None),
                "client_id": member.client_id,
                "host": member.client_host,
                "assignment": assignment,
            }
        )
    return {
        "group": group,
        "state": found.group_state,
        "type": "classic",
        "protocol_type": found.protocol_type,
        "protocol": found.protocol_data or None,
        "members": members,
    }


def _consumer_group_describe(
    cluster: _Cluster, coordinator: Client, group: str
) -> dict[str, Any] | None:
    """ConsumerGroupDescribe (KIP-848), if the coordinator advertises it and knows the
    group as a consumer-protocol group; None otherwise (then DescribeGroups answers)."""
    try:
        coordinator.version_for("consumer_group_describe")
    except ClientError:
        return None

    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.ConsumerGroupDescribeRequest,
            group_ids=(group,),
            include_authorized_operations=False,
        )

    found = coordinator.call("consumer_group_describe", build).groups[0]
    if found.error_code is not ErrorCode.none:
        # GROUP_ID_NOT_FOUND: unknown, or a classic group (Kafka's admin client then
        # falls back to DescribeGroups, as we do).
        return None
    members = []
    for member in found.members:
        assignment: dict[str, list[int]] = {}
        for item in member.assignment.topic_partitions:
            name = cluster.topic_name(item.topic_name, item.topic_id) or str(item.topic_id)
            assignment.setdefault(name, []).extend(int(p) for p in item.partitions)
        members.append(
            {
                "member_id": member.member_id,
                "instance_id": member.instance_id,
                "client_id": member.client_id,
                "host": member.client_host,
                "assignment": {k: sorted(v) for k, v in assignment.items()},
            }
        )
    return {
        "group": group,
        "state": found.group_state,
        "type": "consumer",
        "protocol_type": "consumer",
        "protocol": found.assignor_name or None,
        "members": members,
    }


def _committed(cluster: _Cluster, coordinator: Client, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (OffsetFetch of every partition)."""

    def build(module: ModuleType, version: int) -> Any:
        if version >= 8:
            request_group = make(
                module.OffsetFetchRequestGroup,
                group_id=group,
                member_id=None,
                member_epoch=-1,
                topics=None,
            )
            return make(module.OffsetFetchRequest, groups=(request_group,), require_stable=False)
        return make(module.OffsetFetchRequest, group_id=group, topics=None, require_stable=False)

    def fetch() -> Any:
        response = coordinator.call("offset_fetch", build)
        return response.groups[0] if hasattr(response, "groups") else response

    answer = _retrying(fetch, lambda a: _loading(getattr(a, "error_code", ErrorCode.none)))
    error = getattr(answer, "error_code", ErrorCode.none)
    if error is not ErrorCode.none:
        raise CommandError(f"group {group}: cannot fetch offsets: " + describe_error(error))
    result: dict[tuple[str, int], int] = {}
    for topic in answer.topics:
        name = cluster.topic_name(getattr(topic, "name", None), getattr(topic, "topic_id", None))
        if name is None:
            continue  # a deleted topic's offsets
        for item in topic.partitions:
            if item.error_code is ErrorCode.none and int(item.committed_offset) >= 0:
                result[(name, int(item.partition_index))] = int(item.committed_offset)
    return result


def _describe(cluster: _Cluster, args: argparse.Namespace) -> int:
    coordinator, where = cluster.coordinator(args.group)
    described = _describe_group(cluster, coordinator, args.group)
    if described is None:
        raise CommandError(f"group {args.group}: " + describe_error(ErrorCode.group_id_not_found))
    described["coordinator"] = where
    committed = _committed(cluster, coordinator, args.group)
    owners: dict[tuple[str, int], dict[str, Any]] = {}
    for member in described["members"]:
        for name, partitions in (member["assignment"] or {}).items():
            for index in partitions:
                owners[(name, index)] = member
    keys = sorted(set(committed) | set(owners))
    wanted: dict[str, list[int]] = {}
    for name, index in keys:
        if name in cluster.topics() and index in cluster.topics()[name].partitions:
            wanted.setdefault(name, []).append(index)
    log_end = cluster.log_offsets(wanted, _LATEST) if wanted else {}
    offsets = []
    for key in keys:
        owner = owners.get(key, {})
        current, end = committed.get(key), log_end.get(key)
        offsets.append(
            {
                "topic": key[0],
                "partition": key[1],
                "committed_offset": current,
                "log_end_offset": end,
                "lag": None if current is None or end is None else max(end - current, 0),
                "member_id": owner.get("member_id"),
                "host": owner.get("host"),
                "client_id": owner.get("client_id"),
            }
        )
    described["offsets"] = offsets
    if args.json:
        print_json(described, sys.stdout)
        return 0
    print(
        f"Group: {described['group']}  State: {described['state']}  "
        f"Type: {described['type']}  Protocol: "
        f"{described['protocol_type'] or '-'}/{described['protocol'] or '-'}  "
        f"Coordinator: {where['node_id']} ({where['host']}:{where['port']})  "
        f"Members: {len(described['members'])}"
    )
    if described["members"]:
        print()
        print_table(
            [
                (
                    m["member_id"],
                    m["instance_id"],
                    m["client_id"],
                    m["host"],
                    _format_assignment(m["assignment"]),
                )
                for m in described["members"]
            ],
            ("member-id", "instance-id", "client-id", "host", "assignment"),
            sys.stdout,
        )
    if offsets:
        print()
        print_table(
            [
                (
                    o["topic"],
                    o["partition"],
                    o["committed_offset"],
                    o["log_end_offset"],
                    o["lag"],
                    o["member_id"],
                )
                for o in offsets
            ],
            ("topic", "partition", "current-offset", "log-end-offset", "lag", "member-id"),
            sys.stdout,
        )
    return 0


def _format_assignment(assignment: dict[str, list[int]] | None) -> str:
    if assignment is None:
        return "?"
    if not assignment:
        return "-"
    return " ".join(
        f"{name}:{','.join(map(str, partitions))}"
        for name, partitions in sorted(assignment.items())
    )


# -- reset-offsets ----------------------------------------------------------------------------


def _parse_datetime(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time; no zone means local time."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--to-datetime: expected ISO 8601 (2026-01-31T12:00:00[.sss][+00:00|Z]), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def _plan(cluster: _Cluster, args: argparse.Namespace) -> dict[tuple[str, int], int]:
    topic = cluster.topics().get(args.topic)
    if topic is None:
        raise CommandError(f"topic {args.topic}: " + describe_error(_UNKNOWN_PARTITION))
    partitions = sorted(set(args.partition)) if args.partition else sorted(topic.partitions)
    for index in partitions:
        if index not in topic.partitions:
            raise CommandError(f"{args.topic}-{index}: " + describe_error(_UNKNOWN_PARTITION))
    wanted = {args.topic: partitions}
    if args.to_earliest:
        return cluster.log_offsets(wanted, _EARLIEST)
    latest = cluster.log_offsets(wanted, _LATEST)
    if args.to_latest:
        return latest
    if args.to_offset is not None:
        earliest = cluster.log_offsets(wanted, _EARLIEST)
        return {k: min(max(args.to_offset, earliest[k]), latest[k]) for k in latest}
    found = cluster.log_offsets(wanted, _parse_datetime(args.to_datetime))
    return {k: (offset if offset >= 0 else latest[k]) for k, offset in found.items()}


def _reset_offsets(cluster: _Cluster, args: argparse.Namespace) -> int:
    coordinator, _ = cluster.coordinator(args.group)
    described = _describe_group(cluster, coordinator, args.group)
    state = "Dead" if described is None else described["state"]
    if state not in _RESETTABLE_STATES:
        members = 0 if described is None else len(described["members"])
        raise CommandError(
            f"group {args.group} is {state} with {members} member(s): offsets can only be "
            "reset while the group is Empty (stop its consumers first)"
        )
    plan = _plan(cluster, args)
    rows = [
        {"group": args.group, "topic": name, "partition": index, "new_offset": offset}
        for (name, index), offset in sorted(plan.items())
    ]
    errors: dict[tuple[str, int], ErrorCode] = {}
    if not args.dry_run:
        errors = _commit(cluster, coordinator, args.group, plan)
    for row in rows:
        error = errors.get((row["topic"], row["partition"]))
        row["error"] = None if error is None else error.name.upper()
    if args.json:
        print_json(rows, sys.stdout)
    else:
        print_table(
            [(r["group"], r["topic"], r["partition"], r["new_offset"]) for r in rows],
            ("group", "topic", "partition", "new-offset"),
            sys.stdout,
        )
        if args.dry_run:
            print("(dry run: nothing committed)")
    for (name, index), error in sorted(errors.items()):
        print(f"{name}-{index}: {describe_error(error)}", file=sys.stderr)
    return 1 if errors else 0


def _commit(
    cluster: _Cluster, coordinator: Client, group: str, plan: dict[tuple[str, int], int]
) -> dict[tuple[str, int], ErrorCode]:
    """OffsetCommit as a simple consumer (generation -1, no member); the failures."""
    layout: dict[str, list[tuple[int, int]]] = {}
    for (name, index), offset in sorted(plan.items()):
        layout.setdefault(name, []).append((index, offset))
    topics = cluster.topics()

    def build(module: ModuleType, version: int) -> Any:
        return make(
            module.OffsetCommitRequest,
            group_id=group,
            generation_id_or_member_epoch=_NO_GENERATION,
            member_id="",
            group_instance_id=None,
            retention_time=datetime.timedelta(milliseconds=-1),
            topics=tuple(
                make(
                    module.OffsetCommitRequestTopic,
                    name=name,
                    topic_id=topics[name].topic_id,
                    partitions=tuple(
                        make(
                            module.OffsetCommitRequestPartition,
                            partition_index=index,
                            committed_offset=offset,
                            committed_leader_epoch=-1,
                            committed_metadata="",
                        )
                        for index, offset in items
                    ),
                )
                for name, items in layout.items()
            ),
        )

    response = _retrying(
        lambda: coordinator.call("offset_commit", build),
        lambda answer: any(
            _loading(item.error_code) for topic in answer.topics for item in topic.partitions
        ),
    )
    failures: dict[tuple[str, int], ErrorCode] = {}
    for topic in response.topics:
        known = cluster.topic_name(getattr(topic, "name", None), getattr(topic, "topic_id", None))
        for item in topic.partitions:
            if item.error_code is not ErrorCode.none:
                failures[(known or "?", int(item.partition_index))] = item.error_code
    return failures


# -- delete -----------------------------------------------------------------------------------


def _by_coordinator(cluster: _Cluster, groups: list[str]) -> Iterator[tuple[Client, list[str]]]:
    clients: dict[int, tuple[Client, list[str]]] = {}
    for group in groups:
        client, where = cluster.coordinator(group)
        clients.setdefault(where["node_id"], (client, []))[1].append(group)
    yield from clients.values()


def _delete(cluster: _Cluster, args: argparse.Namespace) -> int:
    rows = []
    for coordinator, groups in _by_coordinator(cluster, list(dict.fromkeys(args.groups))):

        def build(module: ModuleType, version: int, groups: list[str] = groups) -> Any:
            return make(module.DeleteGroupsRequest, groups_names=tuple(groups))

        def delete(coordinator: Client = coordinator, build: Any = build) -> Any:
            return coordinator.call("delete_groups", build).results

        results = _retrying(delete, lambda answer: any(_loading(r.error_code) for r in answer))
        for result in results:
            ok = result.error_code is ErrorCode.none
            rows.append(
                {
                    "group": result.group_id,
                    "error": None if ok else result.error_code.name.upper(),
                    "message": None if ok else describe_error(result.error_code),
                }
            )
            if ok and not args.json:
                print(f"deleted group {result.group_id}")
            if not ok:
                print(
                    f"group {result.group_id}: {describe_error(result.error_code)}",
                    file=sys.stderr,
                )
    if args.json:
        print_json(rows, sys.stdout)
    return 1 if any(r["error"] for r in rows) else 0
