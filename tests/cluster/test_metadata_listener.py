"""A failing image listener never stops the metadata log.

Proves: when the broker's reaction to a new image raises (say a partition directory it
cannot open), `MetadataLog.apply` still applies the entries and returns normally, the
next entries apply too, and the listener hears of them; the Raft driver calling it is
never left between ready() and advance() with every later input refused.
"""

from __future__ import annotations

import uuid

from ottla.cluster.metadata.image import MetadataImage
from ottla.cluster.metadata.log import MetadataLog, encode_payloads
from ottla.cluster.metadata.records import TopicRecord
from ottla.cluster.raft.messages import Entry


def _entry(offset: int, name: str) -> Entry:
    (payload,) = encode_payloads([TopicRecord(name, uuid.UUID(int=offset + 1))], now_ms=1)
    return Entry(offset=offset, epoch=1, payload=payload)


def test_a_raising_listener_is_logged_and_the_log_goes_on() -> None:
    heard: list[set[str]] = []

    def listener(before: MetadataImage, after: MetadataImage) -> None:
        heard.append(set(after.topics_by_name))
        if len(heard) == 1:
            raise OSError("no space left on device")

    metadata = MetadataLog(on_change=listener)
    metadata.apply([_entry(0, "first")])
    assert set(metadata.image.topics_by_name) == {"first"}
    metadata.apply([_entry(1, "second")])
    assert set(metadata.image.topics_by_name) == {"first", "second"}
    assert heard == [{"first"}, {"first", "second"}]
