"""Every client round-trips keys, headers, null keys and null values under every codec.

For each of confluent-kafka, aiokafka, kafka-python and kcat, and each codec
(none, gzip, snappy, lz4, zstd): the client creates a topic through its admin API
(kcat: auto-create), produces records with keys, headers, a null key and a null
value, and reads them back from the earliest offset exactly as produced, at
consecutive offsets; the stored batches carry the client's codec.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ottla.protocol import Compression, iter_batches
from tests.integration.clients import CLIENTS, EARLIEST, Rec, client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, fetch_partition

pytestmark = pytest.mark.timeout(120)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("records")) as broker:
        yield broker


def _records(client: str, codec: str, per_record_headers: bool) -> list[Rec]:
    header = (("origin", client.encode()), ("codec", codec.encode()))
    records = [
        Rec(f"key-{i}".encode(), f"value-{i}-{codec}".encode() * (i + 1), header) for i in range(20)
    ]
    records.append(Rec(None, b"value-without-key", header))
    records.append(Rec(b"tombstone", None, header))
    if per_record_headers:
        records.append(Rec(b"k", b"two headers, one repeated", (("a", b"1"), ("a", b"2"))))
        records.append(Rec(b"k", b"no headers", ()))
    return records


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", CLIENTS)
def test_round_trip(shared_broker: BrokerProcess, name: str, codec: str) -> None:
    client = client_for(name, shared_broker.bootstrap)
    topic = f"records-{name}-{codec}"
    client.create_topic(topic, 1, {})
    records = _records(name, codec, client.sets_per_record_headers)
    client.produce(topic, records, compression=codec)
    got = client.consume(topic, 0, EARLIEST, len(records))
    assert [g.offset for g in got] == list(range(len(records)))
    assert [(g.key, g.value, g.headers) for g in got] == [
        (r.key, r.value, r.headers) for r in records
    ]
    # The log holds batches in the client's codec (the broker keeps the batch bytes);
    # librdkafka sends a batch uncompressed when compressing would not shrink it.
    with Wire(shared_broker.bootstrap) as wire:
        stored = bytes(fetch_partition(wire, topic, 0, 0).records)
    codecs = [b.compression for b in iter_batches(stored)]
    assert Compression[codec.upper()] in codecs
    assert set(codecs) <= {Compression[codec.upper()], Compression.NONE}
