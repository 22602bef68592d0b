"""Metadata records: the entries of the metadata log, named as Kafka's KRaft names them.

Everything the cluster knows is the result of applying these in order to a
`MetadataImage` (image.py). Fields follow Kafka's record definitions
(metadata/*.json in the Kafka source): TopicRecord, PartitionRecord,
PartitionChangeRecord, RemoveTopicRecord, ConfigRecord, RegisterBrokerRecord,
BrokerRegistrationChangeRecord (fencing and unfencing), ProducerIdsRecord.

On disk each record is one Kafka record in a batch of the metadata log: the key is
the record type name, the value a JSON object of its fields. JSON (rather than
Kafka's binary ApiMessage encoding) keeps the metadata log readable with `kcat`
and a text editor; it is small and read only at startup and by followers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "BrokerRegistrationChangeRecord",
    "ConfigRecord",
    "MetadataRecord",
    "PartitionChangeRecord",
    "PartitionRecord",
    "ProducerIdsRecord",
    "RegisterBrokerRecord",
    "RemoveTopicRecord",
    "TopicRecord",
    "decode_metadata_record",
    "encode_metadata_record",
]

# ConfigResource types, as Kafka numbers them.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4


@dataclass(frozen=True)
class MetadataRecord:
    """Base of every metadata record; `TYPE` is the Kafka record name."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True)
class TopicRecord(MetadataRecord):
    TYPE: ClassVar[str] = "TopicRecord"
    name: str
    topic_id: uuid.UUID


@dataclass(frozen=True)
class PartitionRecord(MetadataRecord):
    TYPE: ClassVar[str] = "PartitionRecord"
    topic_id: uuid.UUID
    partition_id: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0
    removing_replicas: tuple[int, ...] = ()
    adding_replicas: tuple[int, ...] = ()


@dataclass(frozen=True)
class PartitionChangeRecord(MetadataRecord):
    """A change of leader and/or ISR and/or replicas and/or the replicas being removed or
    added by a reassignment (KIP-455); None means unchanged."""

    TYPE: ClassVar[str] = "PartitionChangeRecord"
    topic_id: uuid.UUID
    partition_id: int
    leader: int | None = None
    isr: tuple[int, ...] | None = None
    replicas: tuple[int, ...] | None = None
    removing_replicas: tuple[int, ...] | None = None
    adding_replicas: tuple[int, ...] | None = None


@dataclass(frozen=True)
class RemoveTopicRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RemoveTopicRecord"
    topic_id: uuid.UUID


@dataclass(frozen=True)
class ConfigRecord(MetadataRecord):
    """Set (value) or delete (value None) one config of a resource."""

    TYPE: ClassVar[str] = "ConfigRecord"
    resource_type: int
    resource_name: str
    name: str
    value: str | None


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int
    security_protocol: int = 0


@dataclass(frozen=True)
class RegisterBrokerRecord(MetadataRecord):
    TYPE: ClassVar[str] = "RegisterBrokerRecord"
    broker_id: int
    incarnation_id: uuid.UUID
    broker_epoch: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None
    fenced: bool = False


@dataclass(frozen=True)
class BrokerRegistrationChangeRecord(MetadataRecord):
    """A change of a registered broker: `fenced` True fences it, False unfences it, None
    leaves it (Kafka's BrokerRegistrationChangeRecord, whose int8 `fenced` is -1/0/1)."""

    TYPE: ClassVar[str] = "BrokerRegistrationChangeRecord"
    broker_id: int
    broker_epoch: int
    fenced: bool | None = None


@dataclass(frozen=True)
class ProducerIdsRecord(MetadataRecord):
    """A block of producer ids handed to a broker: ids below next_producer_id are used."""

    TYPE: ClassVar[str] = "ProducerIdsRecord"
    broker_id: int
    broker_epoch: int
    next_producer_id: int


_TYPES: dict[str, type[MetadataRecord]] = {
    cls.TYPE: cls
    for cls in (
        TopicRecord,
        PartitionRecord,
        PartitionChangeRecord,
        RemoveTopicRecord,
        ConfigRecord,
        RegisterBrokerRecord,
        BrokerRegistrationChangeRecord,
        ProducerIdsRecord,
    )
}


def _to_json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def encode_metadata_record(record: MetadataRecord) -> tuple[bytes, bytes]:
    """(key, value) bytes of a record as stored in the metadata log."""
    return record.TYPE.encode(), json.dumps(_to_json(asdict(record)), sort_keys=True).encode()


def decode_metadata_record(key: bytes, value: bytes) -> MetadataRecord:
    """The record stored as (key, value); ValueError on anything unknown or malformed."""
    cls = _TYPES.get(key.decode(errors="replace"))
    if cls is None:
        raise ValueError(f"unknown metadata record type {key!r}")
    data = json.loads(value)
    kwargs: dict[str, Any] = {}
    for field in fields(cls):
        if field.name not in data:
            continue
        raw = data[field.name]
        kwargs[field.name] = _from_json(field.name, raw)
    return cls(**kwargs)


def _from_json(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    if name in ("topic_id", "incarnation_id"):
        return uuid.UUID(raw)
    if name == "endpoints":
        return tuple(Endpoint(**item) for item in raw)
    if isinstance(raw, list):
        return tuple(raw)
    return raw
