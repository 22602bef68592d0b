"""The metadata log's state machine: committed Raft entries -> the `MetadataImage`.

Metadata records live in the Raft log `__cluster_metadata-0/` (cluster/raft/log.py), one
record per entry, each entry a Kafka record batch of one record whose key is the record
type and whose value is its JSON (records.py). The Raft driver hands committed entries to
`apply` in offset order on every node, so every node's image is the same function of the
same log. Control entries (a new leader's leader-change) carry no metadata and only move
the image's offset.

A snapshot is one record batch holding the whole image as records (topics, partitions,
configs, brokers, the producer-id watermark): replaying it on an empty image rebuilds it.

`encode_payloads(records)` turns records into the payloads a proposal carries; the broker
proposes them through the driver and waits for their commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    Endpoint,
    MetadataRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    TopicRecord,
    decode_metadata_record,
    encode_metadata_record,
)
from ottla.cluster.raft.codec import METADATA_TOPIC
from ottla.cluster.raft.memlog import Snapshot
from ottla.cluster.raft.messages import Entry
from ottla.protocol import ProtocolError, Record, RecordBatchView, build_batch, decode_records

__all__ = ["METADATA_TOPIC", "MetadataLog", "decode_payload", "encode_payloads", "image_records"]

log = structlog.get_logger("ottla.metadata")

ImageListener = Callable[[MetadataImage, MetadataImage], None]


def encode_payloads(records: Sequence[MetadataRecord], now_ms: int) -> list[bytes]:
    """One Raft entry payload (a one-record batch) per metadata record."""
    payloads = []
    for record in records:
        key, value = encode_metadata_record(record)
        payloads.append(bytes(build_batch([Record(key=key, value=value)], base_timestamp=now_ms)))
    return payloads


def decode_payload(payload: bytes) -> list[MetadataRecord]:
    """The metadata records of an entry's batch (RuntimeError if unreadable: a committed
    entry this node cannot apply means its image would diverge, so it must stop)."""
    try:
        view = RecordBatchView(payload)
        view.validate()
        return [decode_metadata_record(r.key or b"", r.value or b"") for r in decode_records(view)]
    except (ProtocolError, ValueError) as error:
        raise RuntimeError(f"metadata entry is unreadable: {error}") from error


def image_records(image: MetadataImage) -> list[MetadataRecord]:
    """Records that rebuild `image` from an empty one (a snapshot's content)."""
    records: list[MetadataRecord] = []
    for broker in sorted(image.brokers.values(), key=lambda b: b.broker_id):
        records.append(
            RegisterBrokerRecord(
                broker.broker_id,
                broker.incarnation_id,
                broker.broker_epoch,
                tuple(Endpoint(name, host, port) for name, host, port in broker.endpoints),
                broker.rack,
                broker.fenced,
            )
        )
    for topic in sorted(image.topics_by_name.values(), key=lambda t: t.name):
        records.append(TopicRecord(topic.name, topic.topic_id))
        for index in sorted(topic.partitions):
            p = topic.partitions[index]
            records.append(
                PartitionRecord(
                    topic.topic_id,
                    p.partition_id,
                    p.replicas,
                    p.isr,
                    p.leader,
                    p.leader_epoch,
                    p.partition_epoch,
                    p.removing_replicas,
                    p.adding_replicas,
                )
            )
        for name, value in sorted(topic.configs.items()):
            records.append(ConfigRecord(TOPIC_RESOURCE, topic.name, name, value))
    for resource, configs in sorted(image.broker_configs.items()):
        for name, value in sorted(configs.items()):
            records.append(ConfigRecord(BROKER_RESOURCE, resource, name, value))
    if image.next_producer_id:
        records.append(ProducerIdsRecord(-1, -1, image.next_producer_id))
    return records


class MetadataLog:
    """The image, and the Raft state machine that keeps it (see the module docstring)."""

    def __init__(self, on_change: ImageListener | None = None) -> None:
        self.image = MetadataImage()
        self.on_change = on_change

    # -- StateMachine ----------------------------------------------------------------

    def apply(self, entries: Sequence[Entry]) -> None:
        before = image = self.image
        for entry in entries:
            records = [] if entry.control else decode_payload(entry.payload)
            image = image.apply(records, entry.offset)
        self.image = image
        self._changed(before, image)

    def restore(self, snapshot: Snapshot) -> None:
        before = self.image
        records = decode_payload(snapshot.data) if snapshot.data else []
        self.image = MetadataImage().apply(records, snapshot.snapshot_id.end_offset - 1)
        log.info("metadata_snapshot_loaded", offset=self.image.offset)
        self._changed(before, self.image)

    def snapshot_data(self) -> bytes:
        records = image_records(self.image)
        if not records:
            return b""
        return bytes(
            build_batch(
                [
                    Record(key=key, value=value)
                    for key, value in (encode_metadata_record(r) for r in records)
                ]
            )
        )

    def _changed(self, before: MetadataImage, after: MetadataImage) -> None:
        """Tell the listener (the broker's reaction: open, close, lead, follow). Its
        failure is logged, never raised: the records are committed and applied, and an
        exception here would escape the Raft driver between ready() and advance(),
        wedging this node's quorum member for good (every later input refused)."""
        if self.on_change is None or before is after:
            return
        try:
            self.on_change(before, after)
        except Exception:  # a boundary: the image stands, the reaction failed
            log.exception("metadata_listener_failed", offset=after.offset)
