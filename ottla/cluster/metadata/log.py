"""The node's metadata log on disk, and the image rebuilt from it.

Metadata records are stored as Kafka record batches in the partition log
`__cluster_metadata-0/` of the data dir, as KRaft does. `MetadataLog.open` replays
every batch into a `MetadataImage`; `append(records)` writes one batch, applies it
and returns the new image. With one voter, a record is committed as soon as it is
appended; the cluster issue puts Raft replication under `append` without changing
its callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.records import (
    MetadataRecord,
    decode_metadata_record,
    encode_metadata_record,
)
from ottla.protocol import ProtocolError, Record, build_batch, decode_records, iter_batches
from ottla.storage import Log, LogConfig

__all__ = ["METADATA_TOPIC", "MetadataLog"]

log = structlog.get_logger("ottla.metadata")

METADATA_TOPIC = "__cluster_metadata"
_CONFIG = LogConfig(segment_bytes=64 * 1024 * 1024, retention_ms=-1, max_message_bytes=8 << 20)


class MetadataLog:
    """Append-only metadata records and the image they produce."""

    def __init__(self, log_: Log, image: MetadataImage) -> None:
        self._log = log_
        self.image = image

    @classmethod
    def open(cls, data_dir: Path, now_ms: int) -> MetadataLog:
        """Open (creating) the metadata log and replay it into an image."""
        log_ = Log.open(data_dir / f"{METADATA_TOPIC}-0", _CONFIG, now_ms=now_ms)
        image = MetadataImage()
        offset = log_.log_start_offset
        while offset < log_.log_end_offset:
            with log_.read(offset, 1 << 20) as result:
                for batch in iter_batches(result.records):
                    try:
                        records = [
                            decode_metadata_record(r.key or b"", r.value or b"")
                            for r in decode_records(batch)
                        ]
                    except (ProtocolError, ValueError) as error:
                        raise RuntimeError(
                            f"metadata log batch at offset {batch.base_offset} is unreadable: "
                            f"{error}"
                        ) from error
                    image = image.apply(records, batch.last_offset)
                if result.next_offset <= offset:
                    break
                offset = result.next_offset
        log.info("metadata_loaded", offset=image.offset, topics=len(image.topics_by_name))
        return cls(log_, image)

    def append(self, records: Sequence[MetadataRecord], now_ms: int) -> MetadataImage:
        """Write `records` as one batch (committed at once with one voter), apply them."""
        if not records:
            return self.image
        batch = build_batch(
            [
                Record(key=key, value=value, offset_delta=index)
                for index, (key, value) in enumerate(encode_metadata_record(r) for r in records)
            ],
            base_timestamp=now_ms,
        )
        appended = self._log.append(batch, leader_epoch=0, now_ms=now_ms)
        self._log.flush(now_ms)
        self.image = self.image.apply(records, appended.last_offset)
        return self.image

    def close(self) -> None:
        self._log.close()
