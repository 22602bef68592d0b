"""The replica fetcher keeps an incremental fetch session with its leader (KIP-227).

Proves, with the real `ReplicaFetchers` (its NodeClient, codec and session handler)
against a scripted leader on a loopback socket that checks every Fetch it receives:
the first fetch is full (session 0, epoch 0, every partition); after the leader names
a session the follower sends (id, 1), (id, 2), ... listing only partitions whose fetch
offset moved; it appends what the leader sends; FETCH_SESSION_ID_NOT_FOUND makes the
very next fetch full with session 0 (no back-off: the back-off here is a minute, far
beyond the test's wait); a partition no longer followed is forgotten; after
INVALID_FETCH_SESSION_EPOCH the next fetch is full and names the old session; a
partition answered with an error (an unknown topic id, which a leader leaves out of its
session) is listed again after its back-off, which starts at 10 ms whatever
replica.fetch.backoff.ms says and doubles with each error in a row up to it; a
partition gained while a fetch is parked at the leader is fetched at once, on a new
connection, and one gained while the connection is being opened is in its first fetch;
a fetch unanswered past its deadline drops the connection; a fetch builds the fetch
state only of the partitions the previous answer touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import struct
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ottla.broker import fetch_pipe, replica_fetcher
from ottla.broker.replica_fetcher import FETCH_VERSION, ReplicaFetchers, retry_delay_s
from ottla.broker.rpc import FETCH_RECEIVE_BUFFER_BYTES
from ottla.protocol import (
    SUPPORTED_APIS,
    DecodedRequest,
    ErrorCode,
    Record,
    build_batch,
    decode_request,
    encode_response,
    iter_batches,
    make,
)

TOPIC_ID = uuid.UUID(int=99)
LEADER = 1
LEADER_EPOCH = 3
WAIT_S = 10.0  # a bound on a broken fetcher, never reached when it works


class _Log:
    def __init__(self) -> None:
        self.epoch_cache = SimpleNamespace(latest_epoch=LEADER_EPOCH)


class _Partition:
    """What the fetcher uses of a follower partition: offsets and appends."""

    def __init__(self, index: int) -> None:
        self.topic = "t"
        self.index = index
        self.name = f"t-{index}"
        self.topic_id = TOPIC_ID
        self.log = _Log()
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.follower_of = LEADER
        self.high_watermark = 0

    def append_as_follower(self, records: Any, high_watermark: int, now_ms: int) -> int:
        for batch in iter_batches(bytes(records)):
            assert batch.base_offset == self.log_end_offset
            self.log_end_offset = batch.base_offset + batch.last_offset_delta + 1
        self.high_watermark = high_watermark
        return len(records)


class _Leader:
    """A scripted leader: hands each Fetch to the test, which answers it."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[DecodedRequest, asyncio.StreamWriter]] = asyncio.Queue()
        self.connections = 0
        self.closed = asyncio.Event()  # a connection was closed by the follower

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                await self.requests.put((decode_request(await reader.readexactly(size)), writer))
        self.closed.set()

    async def next(self) -> tuple[Any, Any]:
        """(request body, answer function) of the next Fetch."""
        request, writer = await asyncio.wait_for(self.requests.get(), WAIT_S)
        assert request.header.api_key == 1 and request.api_version == FETCH_VERSION

        def answer(
            partitions: tuple[Any, ...] = (),
            session_id: int = 0,
            error: ErrorCode = ErrorCode.none,
        ) -> None:
            body = make(
                SUPPORTED_APIS[1].response_type(FETCH_VERSION),
                throttle_time=datetime.timedelta(0),
                error_code=error,
                session_id=session_id,
                responses=(
                    (_module().FetchableTopicResponse(topic_id=TOPIC_ID, partitions=partitions),)
                    if partitions
                    else ()
                ),
            )
            writer.writelines(encode_response(request.header, body))

        return request.body, answer


def _module() -> Any:
    return SUPPORTED_APIS[1].response_module(FETCH_VERSION)


def _data(index: int, high_watermark: int, records: bytes = b"") -> Any:
    return make(
        _module().PartitionData,
        partition_index=index,
        error_code=ErrorCode.none,
        high_watermark=high_watermark,
        last_stable_offset=high_watermark,
        log_start_offset=0,
        aborted_transactions=None,
        preferred_read_replica=-1,
        records=records,
    )


def _error_data(index: int, error: ErrorCode) -> Any:
    return make(
        _module().PartitionData,
        partition_index=index,
        error_code=error,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=None,
        preferred_read_replica=-1,
        records=b"",
    )


def _listed(body: Any) -> dict[int, int]:
    """partition -> fetch offset of the partitions a Fetch lists."""
    return {
        int(p.partition): int(p.fetch_offset)
        for t in body.topics
        if t.topic_id == TOPIC_ID
        for p in t.partitions
    }


def _session(body: Any) -> tuple[int, int]:
    return int(body.session_id), int(body.session_epoch)


def _broker(port: int, partitions: dict[tuple[str, int], _Partition], backoff_ms: int) -> Any:
    """What `ReplicaFetchers` uses of a follower broker."""
    config = {
        "replica.fetch.wait.max.ms": 500,
        "replica.fetch.min.bytes": 1,
        "replica.fetch.max.bytes": 1 << 20,
        "replica.fetch.response.max.bytes": 10 << 20,
        "replica.fetch.backoff.ms": backoff_ms,
    }
    return SimpleNamespace(
        config=SimpleNamespace(get=config.__getitem__),
        image=SimpleNamespace(
            brokers={LEADER: SimpleNamespace(endpoints=(("PLAINTEXT", "127.0.0.1", port),))},
            topics_by_id={TOPIC_ID: SimpleNamespace(name="t")},
        ),
        replicas=SimpleNamespace(get=lambda topic, index: partitions.get((topic, index))),
        node_id=2,
        controller=SimpleNamespace(broker_epoch=5),
        clock=lambda: 0,
        node_client=None,
    )


async def test_follower_fetches_incrementally_and_falls_back_to_full() -> None:
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 0): _Partition(0), ("t", 1): _Partition(1)}
    broker = _broker(port, partitions, backoff_ms=60_000)
    fetchers = ReplicaFetchers(broker)
    try:
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))

        body, answer = await leader.next()
        assert _session(body) == (0, 0)
        assert _listed(body) == {0: 0, 1: 0}
        assert int(body.replica_state.replica_id) == 2
        batch = bytes(build_batch([Record(key=None, value=b"a"), Record(key=None, value=b"b")]))
        answer((_data(0, 2, batch), _data(1, 0)), session_id=42)

        # Only partition 0 moved (it appended two records): it alone is listed.
        body, answer = await leader.next()
        assert _session(body) == (42, 1)
        assert _listed(body) == {0: 2}
        assert partitions[("t", 0)].log_end_offset == 2
        assert partitions[("t", 0)].high_watermark == 2
        answer(session_id=42)

        body, answer = await leader.next()
        assert _session(body) == (42, 2)
        assert _listed(body) == {}
        answer(error=ErrorCode.fetch_session_id_not_found)

        # The leader lost the session (say it restarted): a full fetch at once.
        body, answer = await leader.next()
        assert _session(body) == (0, 0)
        assert _listed(body) == {0: 2, 1: 0}
        answer((_data(0, 2), _data(1, 0)), session_id=43)

        body, answer = await leader.next()
        assert _session(body) == (43, 1)
        fetchers.update({("t", 0): (LEADER, LEADER_EPOCH)})  # no longer follows t-1
        answer(session_id=43)

        body, answer = await leader.next()
        assert _session(body) == (43, 2)
        assert _listed(body) == {}
        assert [(t.topic_id, list(t.partitions)) for t in body.forgotten_topics_data] == [
            (TOPIC_ID, [1])
        ]
        answer(error=ErrorCode.invalid_fetch_session_epoch)

        body, answer = await leader.next()
        assert _session(body) == (43, 0)
        assert _listed(body) == {0: 2}
        assert not body.forgotten_topics_data
    finally:
        await fetchers.stop()
        server.close()


async def test_partition_answered_with_an_error_is_listed_again() -> None:
    """The follower's only partition from this leader gets an error in the full fetch
    that opens the session: it backs off (no fetch is sent meanwhile), then is listed
    again although its fetch offset did not change."""
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 1): _Partition(1)}
    fetchers = ReplicaFetchers(_broker(port, partitions, backoff_ms=50))
    try:
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))
        body, answer = await leader.next()
        assert _session(body) == (0, 0)
        assert _listed(body) == {1: 0}
        answer((_error_data(1, ErrorCode.unknown_topic_id),), session_id=42)

        body, answer = await leader.next()
        assert _session(body) == (42, 1)
        assert _listed(body) == {1: 0}
        assert not body.forgotten_topics_data
    finally:
        await fetchers.stop()
        server.close()


def test_partition_retry_backs_off_from_10_ms_to_the_configured_maximum() -> None:
    assert [retry_delay_s(n, 1.0) for n in range(1, 9)] == [
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.0,
    ]
    assert retry_delay_s(10_000, 1.0) == 1.0
    assert retry_delay_s(1, 0.005) == 0.005


async def test_new_topic_unknown_to_the_leader_is_retried_at_once() -> None:
    """The follower's first fetch of a new topic races the leader applying it: the
    leader answers UNKNOWN_TOPIC_ID. The retry comes after 10 ms, not after
    replica.fetch.backoff.ms (a minute here, far beyond the test's wait)."""
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 0): _Partition(0)}
    fetchers = ReplicaFetchers(_broker(port, partitions, backoff_ms=60_000))
    try:
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))
        for epoch in (0, 1, 2):
            body, answer = await leader.next()
            assert _session(body) == (42 if epoch else 0, epoch)
            assert _listed(body) == {0: 0}
            answer((_error_data(0, ErrorCode.unknown_topic_id),), session_id=42)
        body, answer = await leader.next()
        assert _listed(body) == {0: 0}
    finally:
        await fetchers.stop()
        server.close()


async def test_new_partition_does_not_wait_for_a_parked_fetch() -> None:
    """A fetch is parked at the leader (unanswered) when the follower gains a partition:
    the fetcher drops that connection and fetches both partitions at once on a new one,
    rather than after the parked fetch's timeout (10.5 s here, beyond the test's wait)."""
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 0): _Partition(0), ("t", 1): _Partition(1)}
    fetchers = ReplicaFetchers(_broker(port, partitions, backoff_ms=60_000))
    try:
        fetchers.update({("t", 0): (LEADER, LEADER_EPOCH)})
        body, _ = await leader.next()  # parked: never answered
        assert _listed(body) == {0: 0}
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))
        body, _ = await leader.next()
        assert _session(body) == (0, 0)
        assert _listed(body) == {0: 0, 1: 0}
        assert leader.connections == 2
    finally:
        await fetchers.stop()
        server.close()


async def test_partition_gained_while_connecting_is_in_the_first_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition is gained while the fetch connection is still being opened: the
    first fetch on it lists both partitions, and no second connection is opened."""
    gate, opening = asyncio.Event(), asyncio.Event()
    real_open = fetch_pipe.open_pipe

    async def slow_open(*args: Any) -> Any:
        if not gate.is_set():
            opening.set()
            await gate.wait()
        return await real_open(*args)

    monkeypatch.setattr(replica_fetcher, "open_pipe", slow_open)
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 0): _Partition(0), ("t", 1): _Partition(1)}
    fetchers = ReplicaFetchers(_broker(port, partitions, backoff_ms=60_000))
    try:
        fetchers.update({("t", 0): (LEADER, LEADER_EPOCH)})
        await asyncio.wait_for(opening.wait(), WAIT_S)
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))
        gate.set()
        body, answer = await leader.next()
        assert _session(body) == (0, 0)
        assert _listed(body) == {0: 0, 1: 0}
        answer(session_id=0)
        body, _ = await leader.next()
        assert _listed(body) == {0: 0, 1: 0}
        assert leader.connections == 1
    finally:
        await fetchers.stop()
        server.close()


async def test_a_fetch_unanswered_past_its_deadline_drops_the_connection() -> None:
    """The leader never answers: past the fetch's deadline (replica.fetch.wait.max.ms
    plus 10 s, shortened here) the connection is dropped and, after the back-off, the
    next fetch is full, on a new connection. (And a fetch connection has its large
    receive buffer.)"""
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", 0): _Partition(0)}
    fetchers = ReplicaFetchers(_broker(port, partitions, backoff_ms=10))
    fetchers.wait_max_ms = -9_900  # a deadline 0.1 s after each send
    try:
        fetchers.update({("t", 0): (LEADER, LEADER_EPOCH)})
        body, answer = await leader.next()
        pipe = fetchers.sources[LEADER].pipe
        assert pipe is not None
        # Linux caps the request at rmem_max and reports twice what it grants.
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        expected = 2 * min(FETCH_RECEIVE_BUFFER_BYTES, rmem_max)
        assert pipe.socket().getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == expected
        answer(session_id=42)
        body, _ = await leader.next()  # never answered
        assert _session(body) == (42, 1)
        await asyncio.wait_for(leader.closed.wait(), WAIT_S)
        body, _ = await leader.next()
        assert _session(body) == (42, 0)  # full, closing the old session
        assert leader.connections == 2
    finally:
        await fetchers.stop()
        server.close()


async def test_only_partitions_an_answer_touched_have_their_fetch_state_built_again() -> None:
    """Forty partitions followed, one of them busy: after the first (full) fetch, each
    fetch builds the state of the partitions the previous answer carried, not all forty
    (a follower of 1,000 idle partitions spent most of its CPU rebuilding them)."""
    leader = _Leader()
    server = await asyncio.start_server(leader.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    partitions = {("t", i): _Partition(i) for i in range(40)}
    broker = _broker(port, partitions, backoff_ms=60_000)
    fetchers = ReplicaFetchers(broker)
    built: list[int] = []
    fetch_of = fetchers._fetch_of

    def counting(key: tuple[str, int], epoch: int) -> Any:
        built.append(key[1])
        return fetch_of(key, epoch)

    fetchers._fetch_of = counting  # type: ignore[method-assign]
    try:
        fetchers.update(dict.fromkeys(partitions, (LEADER, LEADER_EPOCH)))
        body, answer = await leader.next()
        assert len(_listed(body)) == 40 and sorted(built) == list(range(40))
        answer(tuple(_data(i, 0) for i in range(40)), session_id=7)  # touches all 40

        body, answer = await leader.next()
        assert _listed(body) == {}
        built.clear()
        batch = bytes(build_batch([Record(key=None, value=b"v")]))
        answer((_data(3, 1, batch),), session_id=7)

        body, answer = await leader.next()
        assert _listed(body) == {3: 1}
        assert built == [3]  # the one partition the answer carried
        answer(session_id=7)

        body, answer = await leader.next()
        assert _listed(body) == {}
        assert built == [3]  # an empty answer touched nothing
    finally:
        await fetchers.stop()
        server.close()
