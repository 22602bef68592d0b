"""Every client produces and consumes 1 MB records.

The broker runs with `message.max.bytes=2000000` (above the 1048588 default, so a
1 MiB record plus its batch overhead fits); admin clients also set the topic's
`max.message.bytes`, and producers raise their request size limit. Each client
produces three records of exactly 1 MiB of random base64 text, plain and
zstd, and reads them back intact, past consumer fetch limits of 1 MiB (KIP-74: a
whole batch is returned even when it is larger than the fetch limit).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import pytest

from tests.integration.clients import CLIENTS, EARLIEST, Rec, client_for
from tests.integration.conftest import BrokerProcess, shared_broker_in

pytestmark = pytest.mark.timeout(120)

ONE_MB = 1 << 20
LIMIT = 2_000_000


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("large"), f"message.max.bytes={LIMIT}") as broker:
        yield broker


@pytest.mark.parametrize("codec", ["none", "zstd"])
@pytest.mark.parametrize("name", CLIENTS)
def test_one_megabyte_records(shared_broker: BrokerProcess, name: str, codec: str) -> None:
    client = client_for(name, shared_broker.bootstrap)
    topic = f"large-{name}-{codec}"
    client.create_topic(topic, 1, {"max.message.bytes": str(LIMIT)})
    # Random base64 text: hardly compressible, and printable for kcat's JSON output.
    values = [base64.b64encode(os.urandom(ONE_MB))[:ONE_MB] for _ in range(3)]
    client.produce(topic, [Rec(None, v) for v in values], compression=codec, max_bytes=LIMIT * 2)
    got = client.consume(topic, 0, EARLIEST, 3)
    assert [g.offset for g in got] == [0, 1, 2]
    assert [len(g.value or b"") for g in got] == [ONE_MB] * 3
    assert [hashlib.sha256(g.value or b"").digest() for g in got] == [
        hashlib.sha256(v).digest() for v in values
    ]
