"""Capture librdkafka's KIP-848 consumer-protocol requests into tests/vectors/.

Run from the repository root:  .venv/bin/python tests/vectors/capture_consumer_protocol.py

Starts `ottla serve` advertising a recording proxy in front of it, so every request
of a confluent-kafka consumer with `group.protocol=consumer` passes the proxy: the
consumer joins (ConsumerGroupHeartbeat), fetches its offsets (OffsetFetch), commits
one (OffsetCommit with its member epoch), and an AdminClient describes the group
(ConsumerGroupDescribe). The first frame of each of those APIs is stored without its
size prefix as `librdkafka/<api>_v<N>.bin` and listed in `index.json` (entries of
other files are kept).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ottla.protocol import SUPPORTED_APIS

HERE = Path(__file__).resolve().parent
WANTED = {68: "consumer_group_heartbeat", 69: "consumer_group_describe", 8: None, 9: None}
TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingProxy:
    """Forwards connections to the broker; keeps the first client frame of each API."""

    def __init__(self, port: int, target: int) -> None:
        self.target = target
        self.frames: dict[int, bytes] = {}
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _read(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                (size,) = struct.unpack(">i", self._read(client, 4))
                frame = self._read(client, size)
                (api_key,) = struct.unpack(">h", frame[:2])
                self.frames.setdefault(api_key, frame)
                upstream.sendall(struct.pack(">i", size) + frame)
        except (ConnectionError, OSError):
            upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        sink.close()


def capture() -> dict[int, bytes]:
    broker_port, proxy_port = _free_port(), _free_port()
    proxy = RecordingProxy(proxy_port, broker_port)
    with tempfile.TemporaryDirectory() as work:
        command = [
            sys.executable,
            "-m",
            "ottla",
            "serve",
            "--data-dir",
            work,
            "--listen",
            f"127.0.0.1:{broker_port}",
            "--override",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}",
            "--override",
            "group.consumer.heartbeat.interval.ms=500",
        ]
        broker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(broker_port)
            return _drive(f"127.0.0.1:{proxy_port}", proxy)
        finally:
            broker.terminate()
            broker.wait(20)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the broker is still starting


def _drive(bootstrap: str, proxy: RecordingProxy) -> dict[int, bytes]:
    deadline = time.monotonic() + TIMEOUT_S
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "ottla-vectors"})
    for future in admin.create_topics([NewTopic("orders", 2, 1)]).values():
        future.result(10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "ottla-vectors",
            "group.id": "vectors",
            "group.protocol": "consumer",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["orders"])
    while not consumer.assignment() or 9 not in proxy.frames:
        consumer.poll(0.1)
        if time.monotonic() > deadline:
            raise RuntimeError("no assignment")
    consumer.commit(offsets=[TopicPartition("orders", 0, 1)], asynchronous=False)
    described: Any = admin.describe_consumer_groups(["vectors"])["vectors"].result(10)
    assert described.group_id == "vectors"
    consumer.close()
    return {key: frame for key, frame in proxy.frames.items() if key in WANTED}


def main() -> None:
    frames = capture()
    versions = confluent_kafka.__version__, confluent_kafka.libversion()[0]
    client = "confluent-kafka {}, librdkafka {}".format(*versions)
    index_path = HERE / "index.json"
    index: list[dict[str, Any]] = json.loads(index_path.read_text())
    for api_key, frame in sorted(frames.items()):
        api_version, correlation_id, length = struct.unpack(">hih", frame[2:10])
        client_id = frame[10 : 10 + length].decode()
        name = f"librdkafka/{SUPPORTED_APIS[api_key].name}_v{api_version}.bin"
        (HERE / name).write_bytes(frame)
        index = [entry for entry in index if entry["file"] != name]
        index.append(
            {
                "file": name,
                "client": client,
                "api_key": api_key,
                "api_version": api_version,
                "correlation_id": correlation_id,
                "client_id": client_id,
            }
        )
        print(f"wrote {name} ({len(frame)} bytes)")
    index_path.write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
