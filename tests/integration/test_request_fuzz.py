"""Requests with random field values, of every API and version ottla serves, never end
in a handler failure: each is answered (with an error code where its values make no
sense) or waits (a join, a long poll), and the broker keeps serving.

Each request entity is drawn from kio's field types (tests/protocol/strategies.py),
so every one is well-formed on the wire; what is random is what the fields say: ids,
counts, names, timeouts, epochs. Hypothesis's derandomised examples make a run
repeatable. Each request goes to one live broker on a connection of its own. Two
fields are pinned so that the broker answers at once: a Produce asks acks=1 (acks=0
has no answer) and a Fetch waits at most 0 ms. FUZZ_EXAMPLES in the environment sets
the examples per API version (default 10).

Proves, for each API version: the broker never closes a connection without answering
(what a handler exception does, logged `handler_failed`), its log gains no
`handler_failed` line, and it still answers Metadata. Found at first: OffsetCommit
and OffsetFetch v10 naming the zero topic id, Metadata v10-v11 with a null topic
name, DeleteTopics v1-v5 naming "" (each an encoding failure and a dropped
connection), and a CreateTopics for two billion partitions (built in memory).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ottla.protocol import SUPPORTED_APIS
from tests.integration.conftest import BrokerProcess, shared_broker_in
from tests.integration.wire import Wire, metadata, request_frame
from tests.protocol.strategies import entities

pytestmark = pytest.mark.timeout(120)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # per API version; more by hand
ANSWER_TIMEOUT_S = 2.0  # a request still unanswered then is waiting, not failed
PRODUCE, FETCH = 0, 1

SERVED = [
    (key, version)
    for key in SUPPORTED_APIS.keys()  # noqa: SIM118 - the registry is not a dict
    for version in range(SUPPORTED_APIS[key].min_version, SUPPORTED_APIS[key].max_version + 1)
    if SUPPORTED_APIS[key].serves(version)
]


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with shared_broker_in(tmp_path_factory.mktemp("fuzz")) as broker:
        yield broker


def _answerable(api_key: int, body: Any) -> Any:
    """The request with the fields pinned that would keep it from being answered now."""
    if api_key == PRODUCE:
        return dataclasses.replace(body, acks=1)
    if api_key == FETCH:
        return dataclasses.replace(body, max_wait=datetime.timedelta(0))
    return body


def _handler_failures(broker: BrokerProcess) -> list[str]:
    assert broker.log_path is not None
    text = broker.log_path.read_text(errors="replace")
    return [line[:400] for line in text.splitlines() if "handler_failed" in line]


@pytest.mark.parametrize(
    ("api_key", "version"),
    SERVED,
    ids=[f"{SUPPORTED_APIS[k].name}-v{v}" for k, v in SERVED],
)
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_requests_are_answered(
    shared_broker: BrokerProcess, api_key: int, version: int, data: st.DataObject
) -> None:
    body = _answerable(api_key, data.draw(entities(SUPPORTED_APIS[api_key].request_type(version))))
    failures_before = len(_handler_failures(shared_broker))
    with Wire(shared_broker.bootstrap) as wire:
        wire.sock.settimeout(ANSWER_TIMEOUT_S)
        wire.send_raw(request_frame(api_key, version, 1, body))
        try:
            wire.recv_frame()
        except TimeoutError:
            pass  # waiting (a join, a controller write): not a failure
        except ConnectionError:
            pytest.fail(f"closed without an answer: {body!r}"[:2000])
    assert shared_broker.process is not None and shared_broker.process.poll() is None
    assert _handler_failures(shared_broker)[failures_before:] == []
    with Wire(shared_broker.bootstrap) as wire:
        assert metadata(wire, None).brokers  # still serving
