"""AlterReplicaLogDirs v1-v2: move a replica to another log directory of its broker.

ottla keeps every partition in one data directory (`log.dirs` names one), so the only
move it can make is to where a replica already is. As Kafka's
ReplicaManager.alterReplicaLogDirs answers, per partition:

- NONE when the path is this broker's log directory and the broker hosts a replica
  of the partition (moving a replica to its own directory is a no-op);
- LOG_DIR_NOT_FOUND when the path is not a log directory of this broker;
- REPLICA_NOT_AVAILABLE when this broker has no replica of the partition;
- INVALID_TOPIC_EXCEPTION when the name is too long for the "-future" directory Kafka
  would make during a move (KAFKA-4893).

Paths are compared as absolute, resolved paths, the form DescribeLogDirs reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ottla.broker.handlers.build import NO_THROTTLE, make, response_module, response_type
from ottla.protocol import DecodedRequest, ErrorCode

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["handle_alter_replica_log_dirs"]

_NAME_MAX = 255
_FUTURE_SUFFIX = len(".") + 32 + len("-future")  # "<topic>-<p>.<uuid hex>-future"


def handle_alter_replica_log_dirs(
    broker: Broker, connection: Connection, request: DecodedRequest
) -> Any:
    module = response_module(request)
    own = broker.data_dir.resolve()
    results: dict[str, list[Any]] = {}
    for directory in request.body.dirs:
        known = _resolved(str(directory.path)) == own
        for topic in directory.topics:
            for index in topic.partitions:
                code = _outcome(broker, known, str(topic.name), int(index))
                results.setdefault(str(topic.name), []).append(
                    make(
                        module.AlterReplicaLogDirPartitionResult,
                        partition_index=index,
                        error_code=code,
                    )
                )
    return make(
        response_type(request),
        throttle_time=NO_THROTTLE,
        results=tuple(
            make(module.AlterReplicaLogDirTopicResult, topic_name=name, partitions=tuple(parts))
            for name, parts in results.items()
        ),
    )


def _outcome(broker: Broker, known_dir: bool, topic: str, index: int) -> ErrorCode:
    if len(f"{topic}-{index}") + _FUTURE_SUFFIX > _NAME_MAX:
        return ErrorCode.invalid_topic_exception
    if not known_dir:
        return ErrorCode.log_dir_not_found
    if broker.replicas.get(topic, index) is None:
        return ErrorCode.replica_not_available
    return ErrorCode.none


def _resolved(path: str) -> Path | None:
    """`path` made absolute and resolved, or None if it cannot be (a NUL byte, a loop)."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
