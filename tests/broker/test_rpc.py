"""NodeClient's connections: responses cut from the stream and matched to their callers.

Proves, against a scripted peer on a loopback socket: pipelined requests get their own
responses, including multi-megabyte ones (a replica fetch) that arrive in many reads
and a small one behind them; a response frame with a bad size fails every pending call
with ConnectionError, and so does the peer closing the connection, each reporting the
lost connection once (`on_lost`); the next call opens a new connection. A refused
connection raises ConnectionRefusedError (the Raft driver's sign that nothing listens
there) and reports nothing, as no connection was open; nor does closing the client.
Fetch-lane sockets get a receive buffer of FETCH_RECEIVE_BUFFER_BYTES (as far as the
kernel allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest

from ottla.broker.rpc import FETCH_RECEIVE_BUFFER_BYTES, NodeClient
from ottla.protocol import (
    SUPPORTED_APIS,
    DecodedRequest,
    ErrorCode,
    decode_request,
    encode_response,
    make,
)

FETCH_VERSION = 15
WAIT_S = 10.0


def _fetch_request(max_bytes: int) -> Any:
    module = SUPPORTED_APIS[1].request_module(FETCH_VERSION)
    return make(
        SUPPORTED_APIS[1].request_type(FETCH_VERSION),
        cluster_id=None,
        replica_state=make(module.ReplicaState, replica_id=2, replica_epoch=1),
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(),
        forgotten_topics_data=(),
        rack_id="",
    )


def _fetch_response(records: bytes) -> Any:
    module = SUPPORTED_APIS[1].response_module(FETCH_VERSION)
    data = make(
        module.PartitionData,
        partition_index=0,
        error_code=ErrorCode.none,
        high_watermark=0,
        last_stable_offset=0,
        log_start_offset=0,
        aborted_transactions=None,
        preferred_read_replica=-1,
        records=records,
    )
    return make(
        SUPPORTED_APIS[1].response_type(FETCH_VERSION),
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=0,
        responses=(module.FetchableTopicResponse(topic_id=None, partitions=(data,)),),
    )


class _Peer:
    """Hands each request to the test with the writer to answer on."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[DecodedRequest, asyncio.StreamWriter]] = asyncio.Queue()
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                await self.requests.put((decode_request(await reader.readexactly(size)), writer))

    async def next(self) -> tuple[DecodedRequest, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.requests.get(), WAIT_S)


async def _started() -> tuple[_Peer, asyncio.AbstractServer, NodeClient, list[tuple[int, str]]]:
    peer = _Peer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    lost: list[tuple[int, str]] = []
    client = NodeClient(
        {7: ("127.0.0.1", server.sockets[0].getsockname()[1])},
        on_lost=lambda node, lane: lost.append((node, lane)),
    )
    return peer, server, client, lost


def _records(response: Any) -> bytes:
    return bytes(response.responses[0].partitions[0].records)


async def test_pipelined_responses_large_and_small_reach_their_callers() -> None:
    peer, server, client, lost = await _started()
    try:
        sizes = (3 << 20, 10, 200_000)
        calls = [
            asyncio.ensure_future(client.send(7, _fetch_request(size), WAIT_S)) for size in sizes
        ]
        payloads = []
        for index in range(len(sizes)):
            request, writer = await peer.next()
            size = int(request.body.max_bytes)
            payload = bytes([index + 1]) * size
            payloads.append(payload)
            chunks = b"".join(
                bytes(c) for c in encode_response(request.header, _fetch_response(payload))
            )
            # Dribble the big one out in pieces, so it spans many reads.
            for start in range(0, len(chunks), 100_000):
                writer.write(chunks[start : start + 100_000])
                await writer.drain()
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
        assert [_records(r) for r in results] == payloads
        assert lost == []
    finally:
        await client.close()
        server.close()


async def test_bad_frame_size_fails_pending_calls() -> None:
    peer, server, client, lost = await _started()
    try:
        call = asyncio.ensure_future(client.send(7, _fetch_request(1), WAIT_S))
        _, writer = await peer.next()
        writer.write(struct.pack(">i", -5) + b"junk")
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(call, WAIT_S)
        assert lost == [(7, "fetch")]
    finally:
        await client.close()
        server.close()


async def test_peer_closing_fails_pending_calls_and_a_new_connection_follows() -> None:
    peer, server, client, lost = await _started()
    try:
        call = asyncio.ensure_future(client.send(7, _fetch_request(1), WAIT_S))
        _, writer = await peer.next()
        writer.close()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(call, WAIT_S)
        assert lost == [(7, "fetch")]

        call = asyncio.ensure_future(client.send(7, _fetch_request(4), WAIT_S))
        request, writer = await peer.next()
        writer.writelines(encode_response(request.header, _fetch_response(b"back")))
        assert _records(await asyncio.wait_for(call, WAIT_S)) == b"back"
        assert peer.connections == 2
    finally:
        await client.close()
        server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_raises_and_reports_nothing() -> None:
    lost: list[tuple[int, str]] = []
    client = NodeClient(
        {3: ("127.0.0.1", _free_port())}, on_lost=lambda n, lane: lost.append((n, lane))
    )
    try:
        with pytest.raises(ConnectionRefusedError):
            await client.send(3, ApiVersionsRequest(), timeout_s=5)
    finally:
        await client.close()
    assert lost == []


async def test_a_connection_failing_after_its_caller_gave_up_is_not_left_unretrieved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller cancelled while its connection is being opened (a replica fetch
    interrupted, a Raft request's timeout) leaves the opening to finish alone; when it
    then fails, asyncio must not report "Task exception was never retrieved" (seen in
    a broker's log when a connect to a cut-off node timed out)."""
    failed = asyncio.Event()

    async def slow_failure(self: NodeClient, node_id: int, lane: str) -> Any:
        await asyncio.sleep(0.05)
        failed.set()
        raise TimeoutError("connect timed out")

    monkeypatch.setattr(NodeClient, "_open", slow_failure)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    client = NodeClient({4: ("127.0.0.1", _free_port())})
    try:
        caller = asyncio.ensure_future(client.send(4, ApiVersionsRequest(), timeout_s=5))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(failed.wait(), WAIT_S)
        await asyncio.sleep(0)  # the opening task's done callbacks
        del caller
        gc.collect()  # an unretrieved exception is reported when its task is collected
        assert not [c for c in reported if "never retrieved" in str(c.get("message"))]
    finally:
        loop.set_exception_handler(previous)
        await client.close()


async def test_closing_the_client_reports_nothing() -> None:
    gate, received = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(4), "big")
        await reader.readexactly(size)
        received.set()  # the client holds an open connection with a request pending
        await gate.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lost: list[tuple[int, str]] = []
    client = NodeClient({5: ("127.0.0.1", port)}, on_lost=lambda n, lane: lost.append((n, lane)))
    pending = asyncio.ensure_future(client.send(5, ApiVersionsRequest(), timeout_s=5))
    try:
        await received.wait()
        await client.close()
        with pytest.raises(ConnectionError):
            await pending
        assert lost == []
    finally:
        gate.set()
        server.close()
        await server.wait_closed()


async def test_fetch_lane_gets_a_large_receive_buffer() -> None:
    peer, server, client, _ = await _started()
    try:
        call = asyncio.ensure_future(client.send(7, _fetch_request(1), WAIT_S))
        request, writer = await peer.next()
        writer.writelines(encode_response(request.header, _fetch_response(b"x")))
        await asyncio.wait_for(call, WAIT_S)
        sock = client._connections[(7, "fetch")].socket()
        # Linux caps the request at rmem_max and reports twice what it grants.
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        expected = 2 * min(FETCH_RECEIVE_BUFFER_BYTES, rmem_max)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == expected
    finally:
        await client.close()
        server.close()
