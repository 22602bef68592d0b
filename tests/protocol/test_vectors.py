"""Every captured real-client request in tests/vectors/ decodes with decode_request.

Proves: each stored frame (librdkafka, kcat, aiokafka, kafka-python) decodes with
its recorded api key, version, correlation id and client id, and without trailing
bytes; the key body fields are what the capture script made the clients send
(topics, offsets, record batches that validate and decode); librdkafka and kcat went
on from ApiVersions to Metadata, i.e. they accepted ottla's ApiVersions answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ottla.protocol import decode_records, decode_request, iter_batches, kio_body

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
INDEX: list[dict[str, Any]] = json.loads((VECTORS / "index.json").read_text())


def test_index_covers_every_client_and_file() -> None:
    clients = {entry["file"].split("/")[0] for entry in INDEX}
    assert clients == {"librdkafka", "kcat", "aiokafka", "kafka-python"}
    stored = {str(p.relative_to(VECTORS)) for p in VECTORS.glob("*/*.bin")}
    responses = {entry["response"] for entry in INDEX if "response" in entry}
    assert stored == {entry["file"] for entry in INDEX} | responses


@pytest.mark.parametrize("entry", INDEX, ids=[entry["file"] for entry in INDEX])
def test_vector_decodes(entry: dict[str, Any]) -> None:
    frame = (VECTORS / entry["file"]).read_bytes()
    decoded = decode_request(frame)
    header = decoded.header
    assert header.api_key == entry["api_key"]
    assert header.api_version == entry["api_version"]
    assert header.correlation_id == entry["correlation_id"]
    assert header.client_id == entry["client_id"]
    body = kio_body(decoded)
    if header.api_key == 18 and header.api_version >= 3:
        assert body.client_software_name  # e.g. "librdkafka"
        assert body.client_software_version
    elif header.api_key == 3 and entry["file"].split("/")[0] in ("aiokafka", "kafka-python"):
        assert [topic.name for topic in body.topics] == ["orders"]
        assert body.allow_auto_topic_creation is False
    elif header.api_key == 0:
        (topic,) = body.topic_data
        assert topic.name == "orders"
        (partition,) = topic.partition_data
        assert partition.index == 0
        batches = list(iter_batches(partition.records))
        assert len(batches) == 1
        records = decode_records(batches[0])
        assert records[0].key == b"key"
        assert records[0].value is not None and records[0].value.startswith(b"value from ")
        assert records[0].headers == (("h", b"v"),)
    elif header.api_key == 1:
        (topic,) = body.topics
        assert topic.topic == "orders"
        (partition,) = topic.partitions
        assert (partition.partition, partition.fetch_offset) == (0, 42)
        assert partition.partition_max_bytes == 1_048_576


@pytest.mark.parametrize("client", ["librdkafka", "kcat"])
def test_librdkafka_went_on_to_metadata(client: str) -> None:
    # Only the connect-time captures (capture_consumer_protocol.py adds group requests).
    sent = [
        entry
        for entry in INDEX
        if entry["file"].startswith(client + "/") and entry["api_key"] in (18, 3)
    ]
    assert [(e["api_key"], e["correlation_id"]) for e in sent] == [(18, 1), (3, 2)]
