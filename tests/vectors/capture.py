"""Regenerate the wire vectors in tests/vectors/ from real Kafka clients.

Run from the repository root:  .venv/bin/python tests/vectors/capture.py

- librdkafka (through confluent-kafka) and kcat (the Debian package, its own
  librdkafka): a tiny socket server records the first requests they send. Their
  ApiVersions request is answered with ottla's own `encode_response` of
  `build_api_versions_response`; the next request being Metadata (not a retried
  ApiVersions) shows that librdkafka accepted ottla's answer.
- aiokafka and kafka-python: Produce, Fetch and Metadata requests (with real record
  batches from their own batch builders) encoded by their own protocol classes.

Each vector is one request frame without its 4-byte size prefix, as
`decode_request` takes it: `<client>/<api>_v<N>.bin`. `index.json` lists them with
the client's version and the header fields a test checks.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiokafka
import confluent_kafka
import kafka
from aiokafka.protocol.fetch import FetchRequest_v11
from aiokafka.protocol.metadata import MetadataRequest_v5
from aiokafka.protocol.produce import ProduceRequest_v8
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ottla.protocol import (  # noqa: E402
    SUPPORTED_APIS,
    FrameDecoder,
    build_api_versions_response,
    decode_request,
    encode_response,
)
from ottla.protocol.codec import UnsupportedRequest  # noqa: E402

API_NAMES = {spec.api_key: spec.name for spec in SUPPORTED_APIS.values()}
CAPTURE_TIMEOUT_S = 15.0


class RecordingServer:
    """Accepts connections, records request frames, answers ApiVersions only."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.frames: list[bytes] = []
        self.done = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self.done.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                self._serve_connection(connection)
        self._listener.close()

    def _serve_connection(self, connection: socket.socket) -> None:
        decoder = FrameDecoder()
        connection.settimeout(0.2)
        while not self.done.is_set():
            try:
                data = connection.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            decoder.feed(data)
            while (frame := decoder.next_frame()) is not None:
                self.frames.append(bytes(frame))
                if len(self.frames) >= self.wanted:
                    self.done.set()
                    return
                self._answer(connection, bytes(frame))

    def _answer(self, connection: socket.socket, frame: bytes) -> None:
        try:
            request = decode_request(frame)
            header, version = request.header, request.api_version
            body = build_api_versions_response(version)
        except UnsupportedRequest as error:
            header = error.header
            body = build_api_versions_response(header.api_version, error.error_code)
        if header.api_key != 18:
            return  # only ApiVersions is answered; the client then waits
        connection.sendall(b"".join(bytes(c) for c in encode_response(header, body)))

    def wait(self) -> list[bytes]:
        self.done.wait(CAPTURE_TIMEOUT_S)
        self.done.set()
        return self.frames


def capture_librdkafka() -> tuple[str, list[bytes]]:
    server = RecordingServer(wanted=2)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": f"127.0.0.1:{server.port}", "client.id": "ottla-vectors"}
    )
    deadline = time.monotonic() + CAPTURE_TIMEOUT_S
    while not server.done.is_set() and time.monotonic() < deadline:
        producer.poll(0.05)
    frames = server.wait()
    del producer
    versions = (
        f"confluent-kafka {confluent_kafka.version()}, librdkafka {confluent_kafka.libversion()[0]}"
    )
    return versions, frames


def capture_kcat() -> tuple[str, list[bytes]]:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise SystemExit("kcat is not installed (apt-get install kcat)")
    server = RecordingServer(wanted=2)
    process = subprocess.Popen(
        [kcat, "-b", f"127.0.0.1:{server.port}", "-L", "-m", "10", "-X", "client.id=kcat-vectors"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    frames = server.wait()
    process.kill()
    process.wait()
    version = subprocess.run([kcat, "-V"], capture_output=True, text=True, check=False)
    line = next((x for x in version.stdout.splitlines() if "librdkafka" in x), "")
    return f"kcat ({line.strip() or 'Debian'})", frames


def _aiokafka_batch() -> bytes:
    builder = AioBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, 1_700_000_000_000, b"key", b"value from aiokafka", [("h", b"v")])
    builder.append(1, 1_700_000_000_001, None, b"second", [])
    return bytes(builder.build())


def capture_aiokafka() -> tuple[str, list[bytes]]:
    requests: list[Any] = [
        ProduceRequest_v8(None, -1, 30_000, [("orders", [(0, _aiokafka_batch())])]),
        FetchRequest_v11(
            -1,
            500,
            1,
            52_428_800,
            0,
            0,
            -1,
            [("orders", [(0, 0, 42, -1, 1_048_576)])],
            [],
            "",
        ),
        MetadataRequest_v5(["orders"], False),
    ]
    frames = []
    for index, request in enumerate(requests, start=1):
        header = request.build_request_header(correlation_id=index, client_id="aiokafka-vectors")
        frames.append(header.encode() + request.encode())
    return f"aiokafka {aiokafka.__version__}", frames


def _kafka_python_batch() -> bytes:
    builder = KpBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, 1_700_000_000_000, b"key", b"value from kafka-python", [("h", b"v")])
    return bytes(builder.build())


def capture_kafka_python() -> tuple[str, list[bytes]]:
    produce = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name="orders",
                partition_data=[
                    ProduceRequest.TopicProduceData.PartitionProduceData(
                        index=0, records=_kafka_python_batch()
                    )
                ],
            )
        ],
    )
    fetch_topic = FetchRequest.FetchTopic
    fetch = FetchRequest(
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52_428_800,
        isolation_level=1,
        session_id=0,
        session_epoch=-1,
        topics=[
            fetch_topic(
                topic="orders",
                partitions=[
                    fetch_topic.FetchPartition(
                        partition=0, fetch_offset=42, partition_max_bytes=1_048_576
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    metadata = MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name="orders")],
        allow_auto_topic_creation=False,
    )
    frames = []
    for index, (request, version) in enumerate([(produce, 9), (fetch, 12), (metadata, 12)], 1):
        request.with_header(correlation_id=index, client_id="kafka-python-vectors")
        frames.append(bytes(request.encode(version=version, header=True)))
    return f"kafka-python {kafka.__version__}", frames


def main() -> None:
    index: list[dict[str, Any]] = []
    captures = {
        "librdkafka": capture_librdkafka,
        "kcat": capture_kcat,
        "aiokafka": capture_aiokafka,
        "kafka-python": capture_kafka_python,
    }
    for client, capture in captures.items():
        client_version, frames = capture()
        if not frames:
            raise SystemExit(f"{client}: no request captured")
        directory = HERE / client
        directory.mkdir(exist_ok=True)
        for frame in frames:
            api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame)
            name = f"{API_NAMES.get(api_key, f'api{api_key}')}_v{api_version}.bin"
            (directory / name).write_bytes(frame)
            try:
                client_id = decode_request(frame).header.client_id
            except UnsupportedRequest as error:
                client_id = error.header.client_id
            index.append(
                {
                    "file": f"{client}/{name}",
                    "client": client_version,
                    "api_key": api_key,
                    "api_version": api_version,
                    "correlation_id": correlation_id,
                    "client_id": client_id,
                }
            )
            print(f"{client}/{name}: {len(frame)} bytes")
    (HERE / "index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
