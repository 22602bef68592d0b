"""Broker configuration with Kafka's property names.

Sources, later ones winning: built-in defaults (a laptop: 127.0.0.1:9092,
`./ottla-data`), a `server.properties`-style file (`--config FILE`), environment
variables (`OTTLA_LOG_DIRS` for `log.dirs`: upper case, dots and dashes become
underscores), the shortcuts `--data-dir DIR` and `--listen HOST:PORT` (which also
resets `advertised.listeners` to it), and `--override key=value`.

Every property is declared once in `BROKER_CONFIGS` with its type, default and
validator; a bad value raises `ConfigError` whose message names the property, and
the CLI prints that one line and exits. `TOPIC_CONFIGS` declares the per-topic
properties (Kafka's LogConfig names) with the broker property that supplies each
default, for CreateTopics validation and DescribeConfigs. Some are accepted, listed and
kept without any effect, as Kafka 3.x keeps them: `message.format.version` and
`message.downconversion.enable` (ottla writes and serves only v2 batches),
`message.timestamp.difference.max.ms` (`message.timestamp.before.max.ms` and
`.after.max.ms` decide), the replication throttles (no quotas here) and
`local.retention.*` (no tiered storage: `remote.storage.enable=true` is refused).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BROKER_CONFIGS",
    "TOPIC_CONFIGS",
    "BrokerConfig",
    "ConfigDef",
    "ConfigError",
    "Listener",
    "load_config",
    "parse_properties",
]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the property."""


@dataclass(frozen=True)
class ConfigDef:
    """One property: its Kafka name, type, default (as Kafka writes it) and doc."""

    name: str
    type: str  # "int", "long", "bool", "string", "list", "double", "class"
    default: str | None
    doc: str
    validator: Callable[[Any], str | None] | None = None
    sensitive: bool = False
    read_only: bool = True


def _consumer_assignors(value: Any) -> str | None:
    names = [v.strip() for v in value] if isinstance(value, list) else str(value).split(",")
    unknown = [n for n in names if n.strip() not in ("uniform", "range")]
    if unknown or not names:
        return f"unknown assignors {unknown}; ottla has uniform and range"
    return None


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value is None or value >= minimum else f"must be at least {minimum}"

    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in choices]
        return f"must be one of {', '.join(choices)}" if bad else None

    return check


def _cleanup_policy(value: Any) -> str | None:
    if not value or any(v not in ("delete", "compact") for v in value):
        return "must be a list of delete and/or compact"
    return None


def _throttled_replicas(value: Any) -> str | None:
    """Kafka's ThrottledReplicaListValidator: empty, `*`, or `partition:broker` pairs."""
    entries = [v.strip() for v in (value or []) if v.strip()]
    if entries == ["*"]:
        return None
    for entry in entries:
        partition, _, broker = entry.partition(":")
        if not (partition.isdigit() and broker.isdigit()):
            return "must be * or a list of partition:broker pairs (e.g. 0:101,1:102)"
    return None


def _message_format_version(value: Any) -> str | None:
    """Any Kafka release name (0.8.0 ... 3.9-IV0); the value has no effect (module doc)."""
    if value is None or re.fullmatch(r"\d+\.\d+(\.\d+){0,2}(-IV\d+)?", str(value)):
        return None
    return f"{value!r} is not a Kafka version"


def _remote_storage(value: Any) -> str | None:
    if value:
        return (
            "tiered storage is not supported: remote.log.storage.system.enable is false on "
            "this broker (Kafka's answer: enable it at broker level first)"
        )
    return None


_COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
_DEFS: list[ConfigDef] = [
    ConfigDef("node.id", "int", "1", "This node's id in the cluster.", _at_least(0)),
    ConfigDef(
        "process.roles",
        "list",
        "broker,controller",
        "The roles this process plays: broker, controller, or both.",
        _one_of("broker", "controller"),
    ),
    ConfigDef(
        "listeners",
        "list",
        "PLAINTEXT://127.0.0.1:9092",
        "Comma-separated listeners: NAME://host:port.",
    ),
    ConfigDef(
        "advertised.listeners",
        "list",
        None,
        "Listeners given to clients in Metadata; defaults to listeners.",
    ),
    ConfigDef("listener.security.protocol.map", "list", None, "Listener name to protocol."),
    ConfigDef("controller.listener.names", "list", "CONTROLLER", "Listeners of the controller."),
    ConfigDef("inter.broker.listener.name", "string", None, "Listener brokers use between them."),
    ConfigDef("controller.quorum.voters", "list", "", "Voters: id@host:port, comma-separated."),
    ConfigDef(
        "cluster.id",
        "string",
        None,
        "Cluster id; generated on first start of a single-voter node if unset, required "
        "when controller.quorum.voters lists several voters.",
    ),
    ConfigDef(
        "controller.quorum.election.timeout.ms",
        "int",
        "1000",
        "Base election timeout (randomised up to twice it).",
        _at_least(1),
    ),
    ConfigDef(
        "controller.quorum.fetch.timeout.ms",
        "int",
        "2000",
        "A follower with no successful fetch for this long starts an election.",
        _at_least(1),
    ),
    ConfigDef(
        "controller.quorum.request.timeout.ms",
        "int",
        "2000",
        "Timeout of a request between quorum voters.",
        _at_least(1),
    ),
    ConfigDef(
        "controller.quorum.retry.backoff.ms",
        "int",
        "20",
        "Backoff before retrying a failed quorum request.",
        _at_least(0),
    ),
    ConfigDef("log.dirs", "list", "./ottla-data", "Directory holding the data (one supported)."),
    ConfigDef("log.dir", "string", None, "Alias of log.dirs with a single directory."),
    ConfigDef("num.partitions", "int", "1", "Partitions of auto-created topics.", _at_least(1)),
    ConfigDef(
        "default.replication.factor",
        "int",
        "1",
        "Replication factor of auto-created topics.",
        _at_least(1),
    ),
    ConfigDef(
        "auto.create.topics.enable", "bool", "true", "Create unknown topics on Metadata/Produce."
    ),
    ConfigDef("delete.topic.enable", "bool", "true", "Allow DeleteTopics."),
    ConfigDef("log.retention.hours", "int", "168", "Retention in hours.", _at_least(-1)),
    ConfigDef("log.retention.minutes", "int", None, "Retention in minutes (over hours)."),
    ConfigDef("log.retention.ms", "long", None, "Retention in ms (over minutes and hours)."),
    ConfigDef("log.retention.bytes", "long", "-1", "Retention by size per partition."),
    ConfigDef(
        "log.segment.bytes",
        "int",
        "1073741824",
        "Size of a log segment file.",
        _at_least(14),
    ),
    ConfigDef("log.roll.hours", "int", "168", "Roll a segment after this time.", _at_least(1)),
    ConfigDef("log.roll.ms", "long", None, "Roll a segment after this time (over hours)."),
    ConfigDef(
        "log.retention.check.interval.ms",
        "long",
        "300000",
        "How often retention runs.",
        _at_least(1),
    ),
    ConfigDef("log.cleanup.policy", "list", "delete", "Default cleanup policy.", _cleanup_policy),
    ConfigDef("log.cleaner.enable", "bool", "true", "Run the log cleaner (compaction)."),
    ConfigDef(
        "log.cleaner.delete.retention.ms", "long", "86400000", "How long tombstones are kept."
    ),
    ConfigDef("log.cleaner.min.compaction.lag.ms", "long", "0", "Minimum age to compact."),
    ConfigDef(
        "log.cleaner.max.compaction.lag.ms",
        "long",
        "9223372036854775807",
        "Maximum time a record stays uncompacted.",
    ),
    ConfigDef("log.cleaner.min.cleanable.ratio", "double", "0.5", "Dirty ratio to compact."),
    ConfigDef("log.cleaner.backoff.ms", "long", "15000", "Sleep when nothing to clean."),
    ConfigDef(
        "log.index.interval.bytes", "int", "4096", "Bytes between index entries.", _at_least(0)
    ),
    ConfigDef("log.index.size.max.bytes", "int", "10485760", "Maximum index file size."),
    ConfigDef(
        "log.flush.interval.messages",
        "long",
        "9223372036854775807",
        "Messages before a flush.",
        _at_least(1),
    ),
    ConfigDef("log.flush.interval.ms", "long", None, "Time before a flush."),
    ConfigDef(
        "log.message.timestamp.after.max.ms",
        "long",
        "9223372036854775807",
        "Latest record CreateTime accepted, ms after the broker's clock.",
        _at_least(0),
    ),
    ConfigDef(
        "log.message.timestamp.before.max.ms",
        "long",
        "9223372036854775807",
        "Earliest record CreateTime accepted, ms before the broker's clock.",
        _at_least(0),
    ),
    ConfigDef(
        "log.message.timestamp.type",
        "string",
        "CreateTime",
        "Timestamp type.",
        _one_of("CreateTime", "LogAppendTime"),
    ),
    ConfigDef("log.preallocate", "bool", "false", "Preallocate segment files."),
    ConfigDef(
        "message.max.bytes",
        "int",
        "1048588",
        "Largest record batch the broker accepts.",
        _at_least(0),
    ),
    ConfigDef(
        "socket.request.max.bytes",
        "int",
        "104857600",
        "Largest request frame.",
        _at_least(1),
    ),
    ConfigDef(
        "queued.max.request.bytes",
        "long",
        "-1",
        "Bytes of requests in flight per connection before reading pauses (-1: 100 MiB).",
    ),
    ConfigDef("replica.fetch.max.bytes", "int", "1048576", "Follower fetch size per partition."),
    ConfigDef("replica.fetch.wait.max.ms", "int", "500", "Longest wait of a follower fetch."),
    ConfigDef("replica.fetch.min.bytes", "int", "1", "Bytes a follower fetch waits for."),
    ConfigDef(
        "replica.fetch.response.max.bytes", "int", "10485760", "Largest follower fetch response."
    ),
    ConfigDef("replica.fetch.backoff.ms", "int", "1000", "Follower backoff after a fetch error."),
    ConfigDef(
        "replica.high.watermark.checkpoint.interval.ms",
        "long",
        "5000",
        "How often the partitions' high watermarks are written to disk.",
        _at_least(1),
    ),
    ConfigDef(
        "compression.type",
        "string",
        "producer",
        "Broker-side compression.",
        _one_of(*_COMPRESSION_TYPES),
    ),
    ConfigDef("min.insync.replicas", "int", "1", "Minimum ISR for acks=all.", _at_least(1)),
    ConfigDef("unclean.leader.election.enable", "bool", "false", "Elect out-of-sync replicas."),
    ConfigDef(
        "offsets.topic.num.partitions",
        "int",
        "50",
        "Partitions of __consumer_offsets.",
        _at_least(1),
    ),
    ConfigDef(
        "offsets.topic.replication.factor", "short", "3", "Replication of __consumer_offsets."
    ),
    ConfigDef("offsets.retention.minutes", "int", "10080", "Offsets kept for empty groups."),
    ConfigDef(
        "offsets.topic.segment.bytes", "int", "104857600", "Segment size of __consumer_offsets."
    ),
    ConfigDef(
        "transaction.state.log.num.partitions",
        "int",
        "50",
        "Partitions of __transaction_state.",
        _at_least(1),
    ),
    ConfigDef(
        "transaction.state.log.replication.factor",
        "short",
        "3",
        "Replication of __transaction_state.",
    ),
    ConfigDef("group.initial.rebalance.delay.ms", "int", "3000", "Delay of the first rebalance."),
    ConfigDef("group.min.session.timeout.ms", "int", "6000", "Smallest session timeout."),
    ConfigDef("group.max.session.timeout.ms", "int", "1800000", "Largest session timeout."),
    ConfigDef("group.max.size", "int", "2147483647", "Members of one group at most.", _at_least(1)),
    ConfigDef(
        "group.consumer.session.timeout.ms",
        "int",
        "45000",
        "Consumer-protocol (KIP-848) members silent this long are removed.",
        _at_least(1),
    ),
    ConfigDef(
        "group.consumer.heartbeat.interval.ms",
        "int",
        # Kafka's default is 5000. A KIP-848 rebalance waits for the owners of moving
        # partitions to heartbeat (the coordinator cannot push), so the interval is
        # the rebalance time: 500 ms makes a join settle in ~0.5 s (5 s with Kafka's
        # default) for a tiny cost per member; raise it for groups of thousands.
        "500",
        "Heartbeat interval given to consumer-protocol (KIP-848) members "
        "(ottla's default; Kafka's is 5000).",
        _at_least(1),
    ),
    ConfigDef(
        "group.consumer.max.size",
        "int",
        "2147483647",
        "Members of one consumer-protocol group at most.",
        _at_least(1),
    ),
    ConfigDef(
        "group.consumer.assignors",
        "list",
        "uniform,range",
        "Server-side assignors (uniform, range); the first is the default.",
        _consumer_assignors,
    ),
    ConfigDef("transactional.id.expiration.ms", "int", "604800000", "Idle transactional ids."),
    ConfigDef("producer.id.expiration.ms", "int", "86400000", "Idle producer ids are forgotten."),
    ConfigDef("max.connections", "int", "2147483647", "Connections accepted at most."),
    ConfigDef("connections.max.idle.ms", "long", "600000", "Idle connections are closed."),
    ConfigDef("broker.session.timeout.ms", "int", "9000", "Fence a broker silent for this long."),
    ConfigDef("broker.heartbeat.interval.ms", "int", "2000", "Broker heartbeat interval."),
    ConfigDef("replica.lag.time.max.ms", "long", "30000", "Followers behind this long leave ISR."),
    ConfigDef(
        "controlled.shutdown.enable",
        "bool",
        "true",
        "On SIGTERM, move leadership to other in-sync replicas before stopping.",
    ),
    ConfigDef(
        "controlled.shutdown.timeout.ms",
        "int",
        "5000",
        "Longest wait for a controlled shutdown before stopping anyway.",
        _at_least(0),
    ),
    ConfigDef(
        "auto.leader.rebalance.enable",
        "bool",
        "true",
        "Move leadership back to the preferred replica once it is in the ISR.",
    ),
    ConfigDef(
        "leader.imbalance.check.interval.seconds",
        "long",
        "300",
        "How often the controller looks for partitions not led by their preferred replica.",
        _at_least(1),
    ),
    ConfigDef("fetch.max.bytes", "int", "57671680", "Largest fetch response.", _at_least(0)),
    ConfigDef("max.incremental.fetch.session.cache.slots", "int", "1000", "Fetch sessions kept."),
    ConfigDef(
        "log.format",
        "string",
        "auto",
        "Log lines: auto, json or console.",
        _one_of("auto", "json", "console"),
    ),
    ConfigDef(
        "log.level", "string", "info", "Log level.", _one_of("debug", "info", "warning", "error")
    ),
]
BROKER_CONFIGS: Mapping[str, ConfigDef] = {d.name: d for d in _DEFS}


@dataclass(frozen=True)
class TopicConfigDef:
    """A per-topic property and the broker property that gives its default."""

    name: str
    type: str
    broker_default: str | None  # name of the broker property, or None
    default: str | None  # used when broker_default is None
    validator: Callable[[Any], str | None] | None = None


_TOPIC_DEFS = [
    TopicConfigDef("cleanup.policy", "list", "log.cleanup.policy", None, _cleanup_policy),
    TopicConfigDef(
        "compression.type", "string", "compression.type", None, _one_of(*_COMPRESSION_TYPES)
    ),
    TopicConfigDef(
        "delete.retention.ms", "long", "log.cleaner.delete.retention.ms", None, _at_least(0)
    ),
    TopicConfigDef("file.delete.delay.ms", "long", None, "60000", _at_least(0)),
    TopicConfigDef("flush.messages", "long", "log.flush.interval.messages", None, _at_least(1)),
    TopicConfigDef("flush.ms", "long", None, "9223372036854775807", _at_least(0)),
    TopicConfigDef(
        "follower.replication.throttled.replicas", "list", None, "", _throttled_replicas
    ),
    TopicConfigDef("index.interval.bytes", "int", "log.index.interval.bytes", None, _at_least(0)),
    TopicConfigDef("leader.replication.throttled.replicas", "list", None, "", _throttled_replicas),
    TopicConfigDef("local.retention.bytes", "long", None, "-2", _at_least(-2)),
    TopicConfigDef("local.retention.ms", "long", None, "-2", _at_least(-2)),
    TopicConfigDef(
        "max.compaction.lag.ms", "long", "log.cleaner.max.compaction.lag.ms", None, _at_least(1)
    ),
    TopicConfigDef("max.message.bytes", "int", "message.max.bytes", None, _at_least(0)),
    TopicConfigDef("message.downconversion.enable", "bool", None, "true"),
    TopicConfigDef("message.format.version", "string", None, "3.0-IV1", _message_format_version),
    TopicConfigDef(
        "message.timestamp.difference.max.ms",
        "long",
        None,
        "9223372036854775807",
        _at_least(0),
    ),
    TopicConfigDef(
        "message.timestamp.after.max.ms",
        "long",
        "log.message.timestamp.after.max.ms",
        None,
        _at_least(0),
    ),
    TopicConfigDef(
        "message.timestamp.before.max.ms",
        "long",
        "log.message.timestamp.before.max.ms",
        None,
        _at_least(0),
    ),
    TopicConfigDef(
        "message.timestamp.type",
        "string",
        "log.message.timestamp.type",
        None,
        _one_of("CreateTime", "LogAppendTime"),
    ),
    TopicConfigDef("min.cleanable.dirty.ratio", "double", "log.cleaner.min.cleanable.ratio", None),
    TopicConfigDef(
        "min.compaction.lag.ms", "long", "log.cleaner.min.compaction.lag.ms", None, _at_least(0)
    ),
    TopicConfigDef("min.insync.replicas", "int", "min.insync.replicas", None, _at_least(1)),
    TopicConfigDef("preallocate", "bool", "log.preallocate", None),
    TopicConfigDef("remote.storage.enable", "bool", None, "false", _remote_storage),
    TopicConfigDef("retention.bytes", "long", "log.retention.bytes", None),
    TopicConfigDef("retention.ms", "long", None, None, _at_least(-1)),
    TopicConfigDef("segment.bytes", "int", "log.segment.bytes", None, _at_least(14)),
    TopicConfigDef("segment.index.bytes", "int", "log.index.size.max.bytes", None, _at_least(4)),
    TopicConfigDef("segment.jitter.ms", "long", None, "0", _at_least(0)),
    TopicConfigDef("segment.ms", "long", None, None, _at_least(1)),
    TopicConfigDef(
        "unclean.leader.election.enable", "bool", "unclean.leader.election.enable", None
    ),
]
TOPIC_CONFIGS: Mapping[str, TopicConfigDef] = {d.name: d for d in _TOPIC_DEFS}


def _convert(name: str, kind: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if kind in ("int", "long", "short"):
            return int(text)
        if kind == "double":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError(f"{text!r} is not true or false")
            return lowered == "true"
        if kind == "list":
            return [item.strip() for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise ConfigError(f"{name}: invalid {kind} value {raw!r} ({error})") from None
    return text


def parse_value(definition: ConfigDef | TopicConfigDef, raw: str) -> Any:
    """Convert and validate `raw` for `definition`; ConfigError names the property."""
    value = _convert(definition.name, definition.type, raw)
    if definition.validator is not None:
        problem = definition.validator(value)
        if problem:
            raise ConfigError(f"{definition.name}: {raw!r} {problem}")
    return value


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """Parse Java-properties text (key=value or key: value, # and ! comments)."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]?\s*(.*)$", stripped)
        if match is None:
            raise ConfigError(f"{source}:{number}: cannot parse {line!r}")
        result[match.group(1)] = match.group(2)
    return result


@dataclass(frozen=True)
class Listener:
    """One listener: its name (PLAINTEXT, CONTROLLER, ...), host and port."""

    name: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, setting: str) -> Listener:
        match = re.fullmatch(r"([A-Za-z0-9_]+)://(\[[^\]]*\]|[^:]*):(\d+)", text.strip())
        if match is None:
            raise ConfigError(f"{setting}: {text!r} is not NAME://host:port")
        host = match.group(2).strip("[]")
        port = int(match.group(3))
        if port > 65535:
            raise ConfigError(f"{setting}: port {port} is out of range")
        return cls(match.group(1).upper(), host, port)


class BrokerConfig:
    """Validated broker configuration; `get(name)` returns the typed value.

    Values are kept with their source ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG"), as
    DescribeConfigs reports them.
    """

    def __init__(self, values: Mapping[str, str]) -> None:
        self._raw: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._explicit: set[str] = set()
        for name, definition in BROKER_CONFIGS.items():
            if definition.default is not None:
                self._values[name] = parse_value(definition, definition.default)
                self._raw[name] = definition.default
            else:
                self._values[name] = None
        for name, raw in values.items():
            known = BROKER_CONFIGS.get(name)
            if known is None:
                # Kafka logs unknown properties and carries on; so do we (they are
                # kept so DescribeConfigs shows them), with no type checks.
                self._raw[name] = raw
                self._values[name] = raw
                self._explicit.add(name)
                continue
            self._values[name] = parse_value(known, raw)
            self._raw[name] = raw
            self._explicit.add(name)
        self._check()

    def _check(self) -> None:
        if self._values.get("log.dir") and "log.dirs" not in self._explicit:
            self._values["log.dirs"] = [self._values["log.dir"]]
        if len(self.log_dirs) != 1:
            raise ConfigError(
                f"log.dirs: ottla keeps data in exactly one directory, got {self.log_dirs}"
            )
        listeners = self.listeners
        if not listeners:
            raise ConfigError("listeners: at least one listener is required")
        names = [listener.name for listener in listeners]
        if len(set(names)) != len(names):
            raise ConfigError(f"listeners: duplicate listener names in {names}")
        self.advertised_listeners  # noqa: B018 - validates the property

    def get(self, name: str) -> Any:
        return self._values[name]

    def raw(self, name: str) -> str | None:
        return self._raw.get(name)

    def is_explicit(self, name: str) -> bool:
        return name in self._explicit

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._values.items()

    # -- typed shortcuts ---------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return int(self._values["node.id"])

    @property
    def data_dir(self) -> Path:
        return Path(self._values["log.dirs"][0])

    @property
    def log_dirs(self) -> list[str]:
        return list(self._values["log.dirs"])

    @property
    def listeners(self) -> list[Listener]:
        return [Listener.parse(text, "listeners") for text in self._values["listeners"]]

    @property
    def advertised_listeners(self) -> list[Listener]:
        advertised = self._values.get("advertised.listeners")
        if not advertised:
            return self.listeners
        return [Listener.parse(text, "advertised.listeners") for text in advertised]

    @property
    def retention_ms(self) -> int:
        """log.retention.ms, else minutes, else hours, as Kafka resolves them."""
        if self._values.get("log.retention.ms") is not None:
            return int(self._values["log.retention.ms"])
        if self._values.get("log.retention.minutes") is not None:
            return int(self._values["log.retention.minutes"]) * 60_000
        hours = int(self._values["log.retention.hours"])
        return -1 if hours < 0 else hours * 3_600_000

    @property
    def roll_ms(self) -> int:
        if self._values.get("log.roll.ms") is not None:
            return int(self._values["log.roll.ms"])
        return int(self._values["log.roll.hours"]) * 3_600_000

    def topic_default(self, name: str) -> str:
        """The broker-level default of topic property `name`, as a string."""
        definition = TOPIC_CONFIGS[name]
        if name == "retention.ms":
            return str(self.retention_ms)
        if name == "segment.ms":
            return str(self.roll_ms)
        if name == "flush.ms" and self._values.get("log.flush.interval.ms") is not None:
            return str(self._values["log.flush.interval.ms"])
        if definition.broker_default is not None:
            raw = self._raw.get(definition.broker_default)
            if raw is not None:
                return raw
        assert definition.default is not None, name
        return definition.default


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Properties from OTTLA_* environment variables (OTTLA_LOG_DIRS -> log.dirs)."""
    known = {name.upper().replace(".", "_").replace("-", "_"): name for name in BROKER_CONFIGS}
    result: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith("OTTLA_"):
            continue
        suffix = key[len("OTTLA_") :]
        name = known.get(suffix, suffix.lower().replace("_", "."))
        result[name] = value
    return result


def load_config(
    config_file: str | None = None,
    overrides: Iterable[str] = (),
    data_dir: str | None = None,
    listen: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> BrokerConfig:
    """Merge every source (see module doc) into a validated BrokerConfig."""
    values: dict[str, str] = {}
    if config_file is not None:
        try:
            text = Path(config_file).read_text()
        except OSError as error:
            raise ConfigError(f"--config: cannot read {config_file}: {error.strerror}") from None
        values.update(parse_properties(text, config_file))
    values.update(env_overrides(os.environ if environ is None else environ))
    if data_dir is not None:
        values["log.dirs"] = data_dir
    if listen is not None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--listen: expected HOST:PORT, got {listen!r}")
        values["listeners"] = f"PLAINTEXT://{listen}"
        values.pop("advertised.listeners", None)
    for item in overrides:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--override: expected key=value, got {item!r}")
        values[key.strip()] = value.strip()
    return BrokerConfig(values)


def render_markdown() -> str:
    """docs/configuration.md: every broker and topic property with its default.

    `ottla config` prints it; a test keeps the committed file equal to it, so the
    operator docs cannot drift from what the broker accepts.
    """
    lines = [
        "# Configuration",
        "",
        "Generated by `ottla config` from `ottla/config.py`; do not edit by hand.",
        "",
        "Broker properties keep Kafka's names. Sources, later ones winning: defaults, "
        "`--config FILE`, `OTTLA_*` environment variables (`OTTLA_LOG_DIRS` sets "
        "`log.dirs`), `--data-dir`/`--listen`, `--override key=value`.",
        "",
        "## Broker properties",
        "",
        "| property | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, definition in BROKER_CONFIGS.items():
        if definition.default is None:
            default = "(none)"
        else:
            default = f"`{definition.default}`" if definition.default else "(empty)"
        lines.append(f"| `{name}` | {definition.type} | {default} | {definition.doc} |")
    lines += [
        "",
        "## Topic properties",
        "",
        "Set per topic (CreateTopics, AlterConfigs, IncrementalAlterConfigs); a topic "
        "without its own value takes the broker property named here.",
        "",
        "| property | type | broker default from | default |",
        "| --- | --- | --- | --- |",
    ]
    for name, topic_definition in TOPIC_CONFIGS.items():
        source = f"`{topic_definition.broker_default}`" if topic_definition.broker_default else "-"
        shown = "(broker)" if topic_definition.default is None else f"`{topic_definition.default}`"
        lines.append(f"| `{name}` | {topic_definition.type} | {source} | {shown} |")
    return "\n".join(lines) + "\n"
