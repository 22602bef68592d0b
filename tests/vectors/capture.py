"""Regenerate the wire vectors in tests/vectors/ from real Kafka clients.

Run from the repository root:  .venv/bin/python tests/vectors/capture.py

- librdkafka (through confluent-kafka) and kcat (the Debian package, its own
  librdkafka): a tiny socket server records the first requests they send. Their
  ApiVersions request is answered with ottla's own `encode_response` of
  `build_api_versions_response`; the next request being Metadata (not a retried
  ApiVersions) shows that librdkafka accepted ottla's answer.
- aiokafka and kafka-python: Produce, Fetch and Metadata requests (with real record
  batches from their own batch builders) encoded by their own protocol classes.

- group APIs of all four clients: a `RecordingProxy` in front of a real `ottla serve`
  (advertising the proxy's port) records every request and response; each client
  joins a group, consumes, commits, describes/lists groups where it can, and leaves.
  The last exchange of each group API version per client is stored, the response as
  `<client>/<api>_v<N>.response.bin`. Index entries of files written by other capture
  scripts (capture_consumer_protocol.py) are kept.

Each vector is one request frame without its 4-byte size prefix, as
`decode_request` takes it: `<client>/<api>_v<N>.bin`. `index.json` lists them with
the client's version and the header fields a test checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiokafka
import confluent_kafka
import kafka
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.fetch import FetchRequest_v11
from aiokafka.protocol.metadata import MetadataRequest_v5
from aiokafka.protocol.produce import ProduceRequest_v8
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
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
from tests.integration.conftest import BrokerProcess, free_port  # noqa: E402

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


# -- group APIs through a recording proxy in front of a real `ottla serve` --------------------

GROUP_APIS = frozenset({8, 9, 10, 11, 12, 13, 14, 15, 16, 42, 68, 69})
GROUP_TOPIC = "vectors"
KCAT_TOPIC = "vectors-kcat"
GROUP_RECORDS_PER_PARTITION = 2
HEARTBEAT = 12
CLIENT_IDS = {
    "librdkafka": "ottla-vectors",
    "kcat": "kcat-vectors",
    "aiokafka": "aiokafka-vectors",
    "kafka-python": "kafka-python-vectors",
}
# Written by capture_consumer_protocol.py (librdkafka's KIP-848 member); the classic
# member's requests of the same API version get a "-classic" suffix.
CONSUMER_PROTOCOL_FILES = frozenset(
    {
        "librdkafka/offset_commit_v9",
        "librdkafka/offset_fetch_v9",
        "librdkafka/consumer_group_describe_v0",
    }
)


@dataclass
class Exchange:
    """One request frame and the broker's response frame (None until it arrives)."""

    request: bytes
    response: bytes | None = None

    @property
    def header(self) -> tuple[int, int, int]:
        api_key, api_version, correlation_id = struct.unpack_from(">hhi", self.request)
        return api_key, api_version, correlation_id

    @property
    def client_id(self) -> str | None:
        (length,) = struct.unpack_from(">h", self.request, 8)
        return None if length < 0 else self.request[10 : 10 + length].decode()


class RecordingProxy:
    """Forwards bytes between clients and a broker unchanged, recording every exchange.

    The broker advertises the proxy's port (`advertised.listeners`), so the clients'
    coordinator and partition-leader connections come through it too.
    """

    def __init__(self) -> None:
        self.target_port = 0
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])

    def start(self, target_port: int) -> None:
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def seen(self, client_id: str, api_key: int) -> bool:
        with self._lock:
            return any(
                e.client_id == client_id and e.header[0] == api_key and e.response is not None
                for e in self.exchanges
            )

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
            pending: dict[int, Exchange] = {}
            for source, sink, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, requests, pending), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        requests: bool,
        pending: dict[int, Exchange],
    ) -> None:
        decoder = FrameDecoder(1 << 30)
        try:
            while data := source.recv(65536):
                decoder.feed(data)
                while (frame := decoder.next_frame()) is not None:
                    self._note(bytes(frame), requests, pending)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _note(self, frame: bytes, requests: bool, pending: dict[int, Exchange]) -> None:
        with self._lock:
            if requests:
                exchange = Exchange(frame)
                pending[exchange.header[2]] = exchange
                self.exchanges.append(exchange)
            else:
                (correlation_id,) = struct.unpack_from(">i", frame)
                answered = pending.pop(correlation_id, None)
                if answered is not None:
                    answered.response = frame


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + CAPTURE_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"capture: timed out waiting for {what}")
        time.sleep(0.05)


def _setup_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "setup"})
    topics = [NewTopic(GROUP_TOPIC, 2, 1), NewTopic(KCAT_TOPIC, 2, 1)]
    for future in admin.create_topics(topics).values():
        future.result(30)
    _produce_group_records(bootstrap, GROUP_TOPIC)


def _produce_group_records(bootstrap: str, topic: str) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "client.id": "setup"})
    for partition in (0, 1):
        for index in range(GROUP_RECORDS_PER_PARTITION):
            producer.produce(topic, b"record %d" % index, b"key", partition=partition)
    if producer.flush(30) != 0:
        raise SystemExit("capture: setup records were not delivered")


def _librdkafka_group(bootstrap: str, proxy: RecordingProxy) -> None:
    client_id, group = CLIENT_IDS["librdkafka"], "vectors-librdkafka"
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "heartbeat.interval.ms": 100,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([GROUP_TOPIC])
    received: list[Any] = []
    deadline = time.monotonic() + CAPTURE_TIMEOUT_S
    while len(received) < 2 * GROUP_RECORDS_PER_PARTITION or not proxy.seen(client_id, HEARTBEAT):
        if time.monotonic() > deadline:
            raise SystemExit(f"capture: {client_id} consumed {len(received)} records")
        received += [m for m in consumer.consume(10, 0.1) if m.error() is None]
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id})
    admin.describe_consumer_groups([group])[group].result(30)
    admin.list_consumer_groups().result(30)
    consumer.commit(asynchronous=False)
    partitions = [confluent_kafka.TopicPartition(GROUP_TOPIC, p) for p in (0, 1)]
    consumer.committed(partitions, timeout=30)
    consumer.close()
    admin.delete_consumer_groups([group])[group].result(30)


def _kcat_group(bootstrap: str, proxy: RecordingProxy) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        raise SystemExit("kcat is not installed (apt-get install kcat)")
    command = [kcat, "-b", bootstrap, "-G", "vectors-kcat", KCAT_TOPIC, "-c", "4", "-q"]
    for setting in (
        "client.id=kcat-vectors",
        "auto.offset.reset=earliest",
        "heartbeat.interval.ms=100",
        "auto.commit.interval.ms=100",
    ):
        command += ["-X", setting]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The records arrive only once kcat has joined and heartbeated; it exits after 4.
        _wait_for(lambda: proxy.seen("kcat-vectors", HEARTBEAT), "kcat's heartbeat")
        _produce_group_records(bootstrap, KCAT_TOPIC)
        if process.wait(CAPTURE_TIMEOUT_S) != 0:
            raise SystemExit("capture: kcat failed")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _aiokafka_group(bootstrap: str, proxy: RecordingProxy) -> None:
    client_id, group = "aiokafka-vectors", "vectors-aiokafka"
    consumer = aiokafka.AIOKafkaConsumer(
        GROUP_TOPIC,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=100,
    )
    await consumer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    await admin.start()
    try:
        received = 0
        deadline = time.monotonic() + CAPTURE_TIMEOUT_S
        while received < 2 * GROUP_RECORDS_PER_PARTITION or not proxy.seen(client_id, HEARTBEAT):
            if time.monotonic() > deadline:
                raise SystemExit(f"capture: aiokafka consumed {received} records")
            batches = await consumer.getmany(timeout_ms=100)
            received += sum(len(records) for records in batches.values())
        await admin.list_consumer_groups()
        await admin.describe_consumer_groups([group])
        await consumer.commit()
        await consumer.committed(aiokafka.TopicPartition(GROUP_TOPIC, 0))
        await admin.list_consumer_group_offsets(group)
    finally:
        await consumer.stop()
        await admin.close()


def _kafka_python_group(bootstrap: str, proxy: RecordingProxy) -> None:
    client_id, group = "kafka-python-vectors", "vectors-kafka-python"
    consumer = kafka.KafkaConsumer(
        GROUP_TOPIC,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=100,
    )
    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        received = 0
        deadline = time.monotonic() + CAPTURE_TIMEOUT_S
        while received < 2 * GROUP_RECORDS_PER_PARTITION or not proxy.seen(client_id, HEARTBEAT):
            if time.monotonic() > deadline:
                raise SystemExit(f"capture: kafka-python consumed {received} records")
            batches = consumer.poll(timeout_ms=100)
            received += sum(len(records) for records in batches.values())
        admin.list_groups()
        admin.describe_groups([group])
        consumer.commit()
        consumer.committed(kafka.TopicPartition(GROUP_TOPIC, 0))
        consumer.close()
        admin.delete_groups([group])
    finally:
        consumer.close()
        admin.close()


def capture_groups() -> dict[str, list[Exchange]]:
    """Per client, the last exchange of each group API version it sent to a real ottla."""
    proxy = RecordingProxy()
    with tempfile.TemporaryDirectory() as directory:
        broker = BrokerProcess(
            Path(directory) / "data",
            free_port(),
            [
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy.port}",
                "group.initial.rebalance.delay.ms=0",
            ],
        )
        broker.start()
        proxy.start(broker.port)
        bootstrap = f"127.0.0.1:{proxy.port}"
        try:
            _setup_topics(bootstrap)
            _librdkafka_group(bootstrap, proxy)
            _kcat_group(bootstrap, proxy)
            asyncio.run(_aiokafka_group(bootstrap, proxy))
            _kafka_python_group(bootstrap, proxy)
        finally:
            broker.stop(signal.SIGKILL)
            proxy.close()
    captured: dict[str, list[Exchange]] = {}
    for client, client_id in CLIENT_IDS.items():
        latest: dict[tuple[int, int], Exchange] = {}
        for exchange in proxy.exchanges:
            api_key, api_version, _ = exchange.header
            answered = exchange.response is not None
            if exchange.client_id == client_id and answered and api_key in GROUP_APIS:
                latest[(api_key, api_version)] = exchange
        captured[client] = [latest[k] for k in sorted(latest)]
    return captured


def main() -> None:
    index: list[dict[str, Any]] = []
    captures = {
        "librdkafka": capture_librdkafka,
        "kcat": capture_kcat,
        "aiokafka": capture_aiokafka,
        "kafka-python": capture_kafka_python,
    }
    versions: dict[str, str] = {}
    for client, capture in captures.items():
        client_version, frames = capture()
        versions[client] = client_version
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
    for client, exchanges in capture_groups().items():
        client_version = versions[client]
        for exchange in exchanges:
            api_key, api_version, correlation_id = exchange.header
            stem = f"{client}/{API_NAMES[api_key]}_v{api_version}"
            if stem in CONSUMER_PROTOCOL_FILES:
                stem += "-classic"
            assert exchange.response is not None
            (HERE / f"{stem}.bin").write_bytes(exchange.request)
            (HERE / f"{stem}.response.bin").write_bytes(exchange.response)
            index.append(
                {
                    "file": f"{stem}.bin",
                    "response": f"{stem}.response.bin",
                    "client": client_version,
                    "api_key": api_key,
                    "api_version": api_version,
                    "correlation_id": correlation_id,
                    "client_id": exchange.client_id,
                }
            )
            print(f"{stem}.bin: {len(exchange.request)} bytes, response {len(exchange.response)}")
    # Entries of files written by other capture scripts (capture_consumer_protocol.py) stay.
    index_path = HERE / "index.json"
    written = {entry["file"] for entry in index}
    if index_path.exists():
        kept = json.loads(index_path.read_text())
        index += [entry for entry in kept if entry["file"] not in written]
    index_path.write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
