"""The connection pipeline: ordered responses, back-pressure, bad frames.

Proves, over real loopback sockets with a stub handler: responses leave in request
order even when an earlier request completes later; a connection whose requests
exceed the in-flight byte limit stops being read until they drain; an oversized
frame or garbage closes only that connection while another is still served; an
unsupported request gets the answer the dispatcher gives (UNSUPPORTED_VERSION here)
or, given none, closes the connection; a `Deferred` answer (acks=all, a waiting
fetch) keeps that order, finishes once, runs its cancel hooks once and leaves no
reference cycle behind.
"""

from __future__ import annotations

import asyncio
import gc
import struct
from collections.abc import Callable
from typing import Any

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest

from ottla.broker.server import Chunks, Connection, ConnectionLimits, Deferred
from ottla.protocol import DecodedRequest, UnsupportedRequest, build_api_versions_response
from tests.integration.rawclient import encode_request

Handler = Callable[[Connection, DecodedRequest], Any]


async def _serve(
    handler: Handler, limits: ConnectionLimits
) -> tuple[asyncio.AbstractServer, int, list[Connection]]:
    connections: list[Connection] = []

    def factory() -> Connection:
        connection = Connection(handler, _unsupported, limits, on_close=None)
        connections.append(connection)
        return connection

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


def _api_versions(correlation_id: int) -> bytes:
    return encode_request(ApiVersionsRequest(), correlation_id)


async def test_responses_leave_in_request_order() -> None:
    release = asyncio.Event()

    async def slow(body: Any) -> Any:
        await release.wait()
        return body

    def handler(connection: Connection, request: DecodedRequest) -> Any:
        body = build_api_versions_response(0)
        if request.header.correlation_id == 1:
            return slow(body)
        return body

    server, port, _ = await _serve(handler, ConnectionLimits(1 << 20, 1 << 20))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_api_versions(1) + _api_versions(2) + _api_versions(3))
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_read_frame(reader), 0.2)  # nothing before request 1
    release.set()
    ids = [struct.unpack_from(">i", await _read_frame(reader))[0] for _ in range(3)]
    assert ids == [1, 2, 3]
    writer.close()
    server.close()


async def test_reading_pauses_above_the_in_flight_limit() -> None:
    release = asyncio.Event()

    async def held(body: Any) -> Any:
        await release.wait()
        return body

    def handler(connection: Connection, request: DecodedRequest) -> Any:
        return held(build_api_versions_response(0))

    frame = _api_versions(0)
    server, port, connections = await _serve(handler, ConnectionLimits(1 << 20, 3 * len(frame)))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(_api_versions(i) for i in range(10)))
    await writer.drain()
    connection = connections[0]
    for _ in range(100):
        if connection._reading_paused:
            break
        await asyncio.sleep(0.01)
    assert connection._reading_paused
    release.set()
    ids = [struct.unpack_from(">i", await _read_frame(reader))[0] for _ in range(10)]
    assert ids == list(range(10))
    assert not connection._reading_paused
    writer.close()
    server.close()


async def test_bad_frames_close_only_their_connection() -> None:
    def handler(connection: Connection, request: DecodedRequest) -> Any:
        return build_api_versions_response(0)

    server, port, _ = await _serve(handler, ConnectionLimits(1024, 1 << 20))
    healthy_reader, healthy_writer = await asyncio.open_connection("127.0.0.1", port)
    for payload in (struct.pack(">i", 4096) + b"x" * 10, struct.pack(">i", 3) + b"\xff" * 3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the broker
        writer.close()
    healthy_writer.write(_api_versions(9))
    await healthy_writer.drain()
    assert struct.unpack_from(">i", await _read_frame(healthy_reader))[0] == 9
    healthy_writer.close()
    server.close()


def _unsupported(unsupported: UnsupportedRequest) -> Chunks | None:
    """Answers an unknown api key 999 with its correlation id and error 35; closes on
    any other (the broker's dispatcher closes on all but ApiVersions)."""
    header = unsupported.header
    if header.api_key != 999:
        return None
    body = struct.pack(">ih", header.correlation_id, 35)
    return [struct.pack(">i", len(body)), body]


async def test_an_unsupported_request_closes_unless_answered() -> None:
    def handler(connection: Connection, request: DecodedRequest) -> Any:
        raise AssertionError("not reached")

    server, port, _ = await _serve(handler, ConnectionLimits(1024, 1 << 20))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = struct.pack(">hhih", 998, 0, 78, -1)
    writer.write(struct.pack(">i", len(body)) + body)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the broker
    writer.close()
    server.close()


async def test_unknown_api_key_gets_unsupported_version() -> None:
    def handler(connection: Connection, request: DecodedRequest) -> Any:
        raise AssertionError("not reached")

    server, port, _ = await _serve(handler, ConnectionLimits(1024, 1 << 20))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = struct.pack(">hhih", 999, 0, 77, -1)
    writer.write(struct.pack(">i", len(body)) + body)
    await writer.drain()
    frame = await _read_frame(reader)
    assert struct.unpack(">ih", frame) == (77, 35)
    writer.close()
    server.close()


async def test_deferred_responses_keep_request_order_and_leave_no_cycles() -> None:
    # Request 1 is answered through a Deferred completed later (as acks=all and a
    # waiting fetch are), 2 at once: 2 waits for 1. Nothing the deferred path made is
    # left for the cycle collector.
    pending: list[Deferred] = []

    def handler(connection: Connection, request: DecodedRequest) -> Any:
        if request.header.correlation_id == 1:
            deferred = Deferred()
            pending.append(deferred)
            return deferred
        return build_api_versions_response(0)

    server, port, _ = await _serve(handler, ConnectionLimits(1 << 20, 1 << 20))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    gc.collect()
    gc.disable()
    try:
        writer.write(_api_versions(1) + _api_versions(2))
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_read_frame(reader), 0.2)  # nothing before request 1
        pending.pop().complete(build_api_versions_response(0))
        ids = [struct.unpack_from(">i", await _read_frame(reader))[0] for _ in range(2)]
        assert ids == [1, 2]
        collected = gc.collect()
    finally:
        gc.enable()
    writer.close()
    server.close()
    assert collected == 0, f"{collected} objects were only freed by the cycle collector"


def test_deferred_finishes_once_and_cancel_runs_its_hooks_once() -> None:
    answers: list[tuple[Any, BaseException | None]] = []
    early = Deferred()
    early.complete("body")  # before the connection binds it
    early.bind(lambda body, error: answers.append((body, error)))
    early.complete("again")
    early.cancel()
    assert answers == [("body", None)]

    hooks: list[str] = []
    waiting = Deferred()
    waiting.bind(lambda body, error: answers.append((body, error)))
    waiting.on_cancel(lambda: hooks.append("timer"))

    def failing_hook() -> None:
        raise RuntimeError("a failing hook must not skip the others")

    waiting.on_cancel(failing_hook)
    waiting.on_cancel(lambda: hooks.append("waiters"))
    waiting.cancel()
    waiting.cancel()
    waiting.complete("late")
    waiting.fail(RuntimeError("late"))
    assert hooks == ["timer", "waiters"]
    assert answers == [("body", None)]

    failed = Deferred()
    failed.bind(lambda body, error: answers.append((body, error)))
    error = RuntimeError("handler bug")
    failed.fail(error)
    assert answers[-1] == (None, error)
