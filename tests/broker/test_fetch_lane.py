"""A follower session's fetch lane answers exactly what the generic Fetch path answers
(broker/handlers/fetch_lane.py).

A real broker in the test's event loop, a follower's Fetch v15 requests (replica
state set) written over a raw connection. The same script runs twice on fresh
brokers: with the lane, and with the lane declining every frame (the generic path
alone). The responses must be the same bytes, and the lane must have served the
incremental fetches it is for. The script covers: the full fetch that opens the
session (generic); an incremental fetch with records ready; one with nothing ready
that parks and is answered by the next append; one whose max_wait passes with
nothing new; a stale leader epoch (UNKNOWN_LEADER_EPOCH); a last fetched epoch the
leader does not have (a diverging epoch); a fetch forgetting the partition (left to
the generic path); a wrong session epoch (INVALID_FETCH_SESSION_EPOCH, generic); and
a malformed frame on the lane's connection (the broker closes it and keeps serving).

And bad input: a session's incremental fetch cut short, with bytes flipped or with
garbage appended, 300 ways (a seeded generator), is answered, waits or closes its
connection, never fails a handler; the broker keeps serving the partition's records
intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.broker import Broker
from ottla.broker.handlers.fetch_lane import FetchLane
from ottla.broker.partitions import Partition
from ottla.broker.server import Connection
from ottla.protocol import Record, build_batch
from ottla.protocol.fetch_wire import read_fetch_response
from tests.broker.inprocess import running_broker, until
from tests.integration.wire import kio_module, request_frame

BOUND_S = 30
TOPIC = "lane"
REPLICA_ID = 2
FETCH_VERSION = 15


def _batch(value: bytes) -> bytes:
    return bytes(build_batch([Record(key=None, value=value)], base_timestamp=1_700_000_000_000))


def _fetch(
    correlation_id: int,
    topic_id: uuid.UUID,
    session: tuple[int, int],
    offset: int | None,
    *,
    max_wait_ms: int = 60_000,  # longer than BOUND_S: a fetch that waits it out fails
    leader_epoch: int = 0,
    fetched_epoch: int = -1,
    forget: bool = False,
) -> bytes:
    module = kio_module(1, FETCH_VERSION)
    partitions = (
        ()
        if offset is None
        else (
            module.FetchPartition(
                partition=0,
                current_leader_epoch=leader_epoch,
                fetch_offset=offset,
                last_fetched_epoch=fetched_epoch,
                log_start_offset=0,
                partition_max_bytes=1 << 20,
            ),
        )
    )
    body = module.FetchRequest(
        cluster_id=None,
        replica_state=module.ReplicaState(replica_id=REPLICA_ID, replica_epoch=1),
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=1,
        max_bytes=1 << 24,
        isolation_level=0,
        session_id=session[0],
        session_epoch=session[1],
        topics=(module.FetchTopic(topic_id=topic_id, partitions=partitions),) if partitions else (),
        forgotten_topics_data=(
            (module.ForgottenTopic(topic_id=topic_id, partitions=(0,)),) if forget else ()
        ),
        rack_id="",
    )
    return request_frame(1, FETCH_VERSION, correlation_id, body)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(BOUND_S):
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)


def _body(frame: bytes) -> Any:
    """A Fetch response's body (after the correlation id and the empty tag section)."""
    return read_fetch_response(frame, 5, FETCH_VERSION)[0]


async def _created_partition(broker: Broker) -> Partition:
    """Topic TOPIC (one partition, RF 1) created with confluent-kafka's AdminClient, once
    this broker leads its partition."""
    bootstrap = f"127.0.0.1:{broker.bound_ports[0]}"

    def create() -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(BOUND_S)

    await asyncio.to_thread(create)
    await until(lambda: broker.partition(TOPIC, 0) is not None, BOUND_S, "the partition")
    partition = broker.partition(TOPIC, 0)
    assert partition is not None
    return partition


async def _script(broker: Broker) -> list[bytes]:
    partition = await _created_partition(broker)
    for value in (b"a", b"b", b"c"):
        assert partition.append_records(_batch(value), 0).error_code == 0
    topic_id = partition.topic_id
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.bound_ports[0])
    answers: list[bytes] = []

    async def ask(frame: bytes) -> bytes:
        writer.write(frame)
        await writer.drain()
        answers.append(await _read_frame(reader))
        return answers[-1]

    try:
        session_id = _body(await ask(_fetch(1, topic_id, (0, 0), 0))).session_id
        assert session_id > 0
        # Records ready at offset 1 (the follower holds one).
        await ask(_fetch(2, topic_id, (session_id, 1), 1))
        # Nothing ready: parks until the next append.
        writer.write(_fetch(3, topic_id, (session_id, 2), 3))
        await writer.drain()
        await until(lambda: _parked(broker), BOUND_S, "the fetch parked")
        assert partition.append_records(_batch(b"d"), 0).error_code == 0
        answers.append(await _read_frame(reader))
        # Nothing new within max_wait.
        await ask(_fetch(4, topic_id, (session_id, 3), 4, max_wait_ms=30))
        # A leader epoch this leader does not have yet.
        await ask(_fetch(5, topic_id, (session_id, 4), 4, leader_epoch=7))
        # A last fetched epoch beyond the leader's: diverging.
        await ask(_fetch(6, topic_id, (session_id, 5), 4, fetched_epoch=3))
        # Forgetting the partition, then a wrong session epoch: the generic path.
        await ask(_fetch(7, topic_id, (session_id, 6), None, forget=True))
        await ask(_fetch(8, topic_id, (session_id, 99), 4))
        # A frame that stops mid-field: the connection closes, nothing else does.
        good = _fetch(9, topic_id, (session_id, 7), 4)
        writer.write(struct.pack(">i", len(good) - 24) + good[4:-20])
        await writer.drain()
        async with asyncio.timeout(BOUND_S):
            assert await reader.read() == b""
    finally:
        writer.close()
    assert broker.partition(TOPIC, 0) is partition and partition.log_end_offset == 4
    # Each broker names the topic with its own id: compare the answers without it.
    return [answer.replace(topic_id.bytes, bytes(16)) for answer in answers]


def _parked(broker: Broker) -> bool:
    """A fetch waits on some connection (its response is pending)."""
    return any(c.pending_responses for c in broker._connections)


def _count_taken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap `FetchLane.offer`; the returned list grows by one per frame a lane took."""
    real = FetchLane.offer
    taken: list[int] = []

    def offer(lane: FetchLane, frame: bytes) -> bool:
        took = real(lane, frame)
        if took:
            taken.append(1)
        return took

    monkeypatch.setattr(FetchLane, "offer", offer)
    return taken


async def test_the_lane_answers_what_the_generic_path_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = _count_taken(monkeypatch)
    async with running_broker(tmp_path / "lane") as broker:
        with_lane = await _script(broker)
    # Fetches 2-6 are the lane's; 1 opens the session, 7 forgets, 8 has a wrong epoch,
    # 9 is malformed.
    assert len(taken) == 5
    monkeypatch.setattr(FetchLane, "offer", lambda lane, frame: False)
    async with running_broker(tmp_path / "generic") as broker:
        generic = await _script(broker)
    assert len(with_lane) == len(generic) == 8
    for index, (lane_answer, generic_answer) in enumerate(zip(with_lane, generic, strict=True)):
        assert lane_answer == generic_answer, f"answer {index + 1} differs"
    # And the answers say what the script asked for (records, errors, a diverging epoch).
    bodies = [_body(a) for a in with_lane]
    parts = [b.responses[0].partitions[0] if b.responses else None for b in bodies]
    assert parts[1] is not None and len(parts[1].records) > 0  # records ready
    assert parts[2] is not None and b"d" in bytes(parts[2].records)  # woken by the append
    # max_wait passed with no records: only the high watermark the append moved.
    assert parts[3] is not None and len(parts[3].records or b"") == 0
    assert parts[3].high_watermark == 4
    assert parts[4] is not None and parts[4].error_code == 75  # UNKNOWN_LEADER_EPOCH
    assert parts[5] is not None and parts[5].diverging_epoch.epoch == 0
    assert bodies[7].error_code == 71  # INVALID_FETCH_SESSION_EPOCH


MUTATIONS = 300


async def test_mangled_lane_frames_never_fail_a_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aborted: list[str] = []
    real_abort = Connection.abort

    def abort(connection: Connection, event: str, error: BaseException) -> None:
        aborted.append(event)
        real_abort(connection, event, error)

    monkeypatch.setattr(Connection, "abort", abort)
    taken = _count_taken(monkeypatch)
    rng = random.Random(11)
    async with running_broker(tmp_path) as broker:
        partition = await _created_partition(broker)
        assert partition.append_records(_batch(b"kept"), 0).error_code == 0
        topic_id = partition.topic_id
        full = _fetch(1, topic_id, (0, 0), 0, max_wait_ms=0)
        for _ in range(MUTATIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.bound_ports[0])
            try:
                writer.write(full)
                session_id = _body(await _read_frame(reader)).session_id
                frame = bytearray(_fetch(2, topic_id, (session_id, 1), 1, max_wait_ms=0)[4:])
                kind = rng.randrange(3)
                if kind == 0:
                    frame = frame[: rng.randrange(len(frame))]
                elif kind == 1:
                    for _ in range(rng.randrange(1, 4)):
                        frame[rng.randrange(len(frame))] = rng.randrange(256)
                else:
                    frame += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
                writer.write(struct.pack(">i", len(frame)) + bytes(frame))
                # Answered, closed, or parked (a flipped max_wait): any of them, in bound.
                with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
                    async with asyncio.timeout(0.2):
                        await reader.readexactly(4)
            finally:
                writer.close()
        # Still serving, the record intact, and no handler ever failed.
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.bound_ports[0])
        try:
            writer.write(full)
            body = _body(await _read_frame(reader))
        finally:
            writer.close()
        assert b"kept" in bytes(body.responses[0].partitions[0].records)
        assert "handler_failed" not in aborted
        assert "malformed_request" in aborted  # the mangling reached the decoder
        assert taken  # and some mangled frames were still the lane's to serve
