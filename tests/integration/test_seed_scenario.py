"""The seed scenario of issue 5, written the way applications write it, with confluent-kafka.

An order service produces 2,000 orders to `order-events`, keyed by customer id, with
headers `correlation-id` (unique per order) and `source`. A notification service
and an inventory service each consume in their own group (two members each, in
threads) with `enable.auto.commit=false`, committing synchronously after processing
each batch. The inventory service fails on every order whose id is a multiple of 97,
tries it 3 times, then produces it to `order-events.dlt` with its original key and
headers plus an `error` header and commits past it.

Proves, against a real `ottla serve`:
- with no member stopping, every order reaches each service exactly once (no
  duplicates at all) and each processing is committed exactly once; per customer
  (key) each service sees the orders in production order; the inventory service tried
  each failing order exactly 3 times and every other order once; the DLT holds
  exactly the failing orders, once each, with their original key, headers and an
  error header; both groups' committed offsets equal the log end offsets;
- with one notification member closing mid-way without committing its in-flight
  batch, every order still reaches both services, the only duplicates are exactly
  the records that member processed after its last commit (each processed twice),
  per-key order holds within each member and in first processing, and the committed
  offsets still end at the log end.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.integration.conftest import BrokerProcess

TOPIC = "order-events"
DLT = "order-events.dlt"
PARTITIONS = 6
ORDERS = 2000
CUSTOMERS = 40
FAIL_EVERY = 97
TRIES_MAX = 3
BATCH = 50
SOURCE = b"order-service"
STOP_AFTER = 300  # records the stopping notification member processes before it stops
WAIT_S = 60.0
FAILING = {order_id for order_id in range(1, ORDERS + 1) if order_id % FAIL_EVERY == 0}


def _correlation_id(order_id: int) -> str:
    return f"corr-{order_id:05d}"


def _customer(order_id: int) -> bytes:
    return b"customer-%02d" % (order_id % CUSTOMERS)


@dataclass(frozen=True)
class Processed:
    """One processing of one record by one member."""

    member: str
    correlation_id: str
    key: bytes
    order_id: int
    partition: int
    offset: int


@dataclass
class ServiceLog:
    """What a service's members did, in the order they did it (appended under a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    processed: list[Processed] = field(default_factory=list)
    # (member, partition, next offset) per successful synchronous commit
    commits: list[tuple[str, int, int]] = field(default_factory=list)
    # every event in order, for the committed-once accounting
    events: list[tuple[str, Processed | tuple[int, int]]] = field(default_factory=list)
    assignments: dict[str, set[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def record(self, item: Processed) -> None:
        with self.lock:
            self.processed.append(item)
            self.events.append((item.member, item))

    def committed(self, member: str, partition: int, next_offset: int) -> None:
        with self.lock:
            self.commits.append((member, partition, next_offset))
            self.events.append((member, (partition, next_offset)))

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def committed_processings(self) -> Counter[str]:
        """How often each correlation id's processing was covered by its member's commit."""
        result: Counter[str] = Counter()
        pending: dict[str, list[Processed]] = defaultdict(list)
        with self.lock:
            events = list(self.events)
        for member, event in events:
            if isinstance(event, Processed):
                pending[member].append(event)
                continue
            partition, next_offset = event
            keep = []
            for item in pending[member]:
                if item.partition == partition and item.offset < next_offset:
                    result[item.correlation_id] += 1
                else:
                    keep.append(item)
            pending[member] = keep
        return result

    def uncommitted(self, member: str) -> set[tuple[int, int]]:
        """(partition, offset) processed by `member` and never covered by its commits."""
        committed_to: dict[int, int] = {}
        with self.lock:
            for who, partition, next_offset in self.commits:
                if who == member:
                    committed_to[partition] = max(committed_to.get(partition, 0), next_offset)
            return {
                (p.partition, p.offset)
                for p in self.processed
                if p.member == member and p.offset >= committed_to.get(p.partition, 0)
            }


Handler = Callable[[str, Message], None]


class Service:
    """A consumer group of two members (threads), each processing then committing."""

    def __init__(self, name: str, bootstrap: str, handle: Handler) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.handle = handle
        self.log = ServiceLog()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, members: int, stop_after: dict[str, int] | None = None) -> None:
        for index in range(members):
            member = f"{self.name}-{index}"
            limit = (stop_after or {}).get(member)
            thread = threading.Thread(target=self._member, args=(member, limit), name=member)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), thread.name

    def members_share_all_partitions(self, members: list[str]) -> bool:
        with self.log.lock:
            owned = [self.log.assignments.get(m, set()) for m in members]
        return all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS))

    def _member(self, member: str, stop_after: int | None) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.name,
                "client.id": member,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )

        def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
            with self.log.lock:
                self.log.assignments[member] = {tp.partition for tp in partitions}

        def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
            with self.log.lock:
                self.log.assignments[member] = set()

        consumer.subscribe([TOPIC], on_assign=on_assign, on_revoke=on_revoke)
        handled = 0
        try:
            while not self.stop.is_set():
                messages = consumer.consume(BATCH, 0.2)
                batch = []
                for message in messages:
                    error = message.error()
                    if error is None:
                        batch.append(message)
                    elif error.code() != KafkaError._PARTITION_EOF:
                        self.log.fail(f"{member}: consume error {error}")
                if not batch:
                    continue
                next_offsets: dict[int, int] = {}
                for message in batch:
                    self.handle(member, message)
                    next_offsets[int(message.partition() or 0)] = int(message.offset() or 0) + 1
                handled += len(batch)
                if stop_after is not None and handled >= stop_after:
                    return  # closes below without committing the batch in flight
                offsets = [TopicPartition(TOPIC, p, o) for p, o in next_offsets.items()]
                try:
                    result = consumer.commit(offsets=offsets, asynchronous=False)
                except Exception as error:  # a failed commit is a test failure, not a crash
                    self.log.fail(f"{member}: commit failed {error}")
                    continue
                for tp in result or []:
                    if tp.error is not None:
                        self.log.fail(f"{member}: commit of {tp} failed")
                    else:
                        self.log.committed(member, tp.partition, tp.offset)
        except Exception as error:
            self.log.fail(f"{member}: {error!r}")
        finally:
            consumer.close()


def _header(message: Message, name: str) -> bytes:
    headers = message.headers() or []
    assert isinstance(headers, list)  # a consumed record's headers are a list of pairs
    values = [value for key, value in headers if key == name]
    assert len(values) == 1 and isinstance(values[0], bytes), (name, headers)
    return values[0]


def _processed(member: str, message: Message) -> Processed:
    order = json.loads(message.value() or b"{}")
    assert _header(message, "source") == SOURCE
    correlation_id = _header(message, "correlation-id").decode()
    assert correlation_id == _correlation_id(order["order_id"])
    return Processed(
        member=member,
        correlation_id=correlation_id,
        key=bytes(message.key() or b""),
        order_id=int(order["order_id"]),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
    )


class InventoryError(Exception):
    pass


class Inventory:
    """Reserves stock; fails on every order whose id % 97 == 0, on every try."""

    def __init__(self, dead_letters: Producer) -> None:
        self.dead_letters = dead_letters
        self.tries: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.dlt_errors: list[str] = []

    def reserve(self, correlation_id: str, order_id: int) -> None:
        with self.lock:
            self.tries[correlation_id] += 1
        if order_id % FAIL_EVERY == 0:
            raise InventoryError(f"no stock for order {order_id}")

    def handle(self, service: Service, member: str, message: Message) -> None:
        item = _processed(member, message)
        error: InventoryError | None = None
        for _ in range(TRIES_MAX):
            try:
                self.reserve(item.correlation_id, item.order_id)
            except InventoryError as failure:
                error = failure
            else:
                error = None
                break
        if error is not None:
            self.dead_letter(message, error)
        service.log.record(item)

    def dead_letter(self, message: Message, error: Exception) -> None:
        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                with self.lock:
                    self.dlt_errors.append(str(err))

        headers = [*(message.headers() or []), ("error", str(error).encode())]
        self.dead_letters.produce(
            DLT, message.value(), message.key(), headers=headers, on_delivery=delivered
        )
        assert self.dead_letters.flush(30) == 0  # delivered before the commit past it


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic(DLT, 1, 1)])
    for future in futures.values():
        future.result(30)


def _produce_orders(bootstrap: str) -> None:
    errors: list[str] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    for order_id in range(1, ORDERS + 1):
        value = json.dumps({"order_id": order_id, "amount_cents": order_id * 7}).encode()
        producer.produce(
            TOPIC,
            value,
            _customer(order_id),
            headers=[
                ("correlation-id", _correlation_id(order_id).encode()),
                ("source", SOURCE),
            ],
            on_delivery=delivered,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling state kept by consumer threads
    raise AssertionError(f"timed out waiting for {what}")


def _read_dlt(bootstrap: str) -> list[Message]:
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "dlt-reader", "enable.auto.commit": False}
    )
    try:
        _, end = reader.get_watermark_offsets(TopicPartition(DLT, 0), timeout=10)
        reader.assign([TopicPartition(DLT, 0, 0)])
        messages: list[Message] = []
        deadline = time.monotonic() + 30
        while len(messages) < end and time.monotonic() < deadline:
            messages += [m for m in reader.consume(100, 0.5) if m.error() is None]
        return messages
    finally:
        reader.close()


def _committed_and_end_offsets(bootstrap: str, group: str) -> tuple[list[int], list[int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        committed = [tp.offset for tp in consumer.committed(partitions, timeout=20)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        return committed, ends
    finally:
        consumer.close()


def _orders_by_key(items: list[Processed]) -> dict[bytes, list[int]]:
    result: dict[bytes, list[int]] = defaultdict(list)
    for item in items:
        result[item.key].append(item.order_id)
    return result


def _all_committed(service: Service, all_ids: set[str]) -> bool:
    return set(service.log.committed_processings()) == all_ids


def _strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("stop_one", [False, True], ids=["all-members", "member-stops-mid-way"])
def test_orders_reach_notification_and_inventory_once_and_failures_go_to_the_dlt(
    broker_factory: Any, stop_one: bool
) -> None:
    broker: BrokerProcess = broker_factory("group.initial.rebalance.delay.ms=0")
    bootstrap = broker.bootstrap
    _create_topics(bootstrap)
    dead_letters = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    inventory_logic = Inventory(dead_letters)
    notification = Service(
        "notification-service",
        bootstrap,
        lambda member, m: notification.log.record(_processed(member, m)),
    )
    inventory = Service(
        "inventory-service",
        bootstrap,
        lambda member, m: inventory_logic.handle(inventory, member, m),
    )
    victim = "notification-service-0"
    services = [notification, inventory]
    notification.start(2, {victim: STOP_AFTER} if stop_one else None)
    inventory.start(2)
    all_ids = {_correlation_id(order_id) for order_id in range(1, ORDERS + 1)}
    try:
        for service in services:
            members = [f"{service.name}-0", f"{service.name}-1"]
            _wait(functools.partial(service.members_share_all_partitions, members), "stable")
        _produce_orders(bootstrap)
        for service in services:
            _wait(
                functools.partial(_all_committed, service, all_ids),
                f"{service.name} to process and commit every order",
            )
    finally:
        for service in services:
            service.join()
    for service in services:
        assert service.log.failures == []

    # Every order reached each service; committed exactly once.
    for service in services:
        processed = Counter(p.correlation_id for p in service.log.processed)
        assert set(processed) == all_ids, service.name
        assert set(service.log.committed_processings().values()) == {1}, service.name
    assert Counter(p.correlation_id for p in inventory.log.processed) == dict.fromkeys(all_ids, 1)

    # Per customer, orders arrive in production order (within each member, and first seen).
    for service in services:
        first_seen: list[Processed] = []
        seen: set[str] = set()
        for item in service.log.processed:
            if item.correlation_id not in seen:
                seen.add(item.correlation_id)
                first_seen.append(item)
        for key, order_ids in _orders_by_key(first_seen).items():
            assert _strictly_increasing(order_ids), (service.name, key)
        for member in {p.member for p in service.log.processed}:
            mine = [p for p in service.log.processed if p.member == member]
            for key, order_ids in _orders_by_key(mine).items():
                assert _strictly_increasing(order_ids), (member, key)

    notified = Counter(p.correlation_id for p in notification.log.processed)
    duplicates = {cid for cid, count in notified.items() if count > 1}
    if not stop_one:
        assert duplicates == set()
    else:
        assert max(notified.values()) == 2
        uncommitted = notification.log.uncommitted(victim)
        assert uncommitted, "the stopped member had a batch in flight"
        by_position = {
            (p.partition, p.offset): p.correlation_id for p in notification.log.processed
        }
        assert duplicates == {by_position[position] for position in uncommitted}
        assert sum(1 for p in notification.log.processed if p.member == victim) >= STOP_AFTER

    # The inventory service tried each failing order 3 times, the others once.
    assert inventory_logic.tries == {
        cid: TRIES_MAX if int(cid.split("-")[1]) in FAILING else 1 for cid in all_ids
    }
    assert inventory_logic.dlt_errors == []

    # The DLT holds exactly the failing orders, with the original key and headers + error.
    dead = _read_dlt(bootstrap)
    dead_ids = [_header(m, "correlation-id").decode() for m in dead]
    assert Counter(dead_ids) == {_correlation_id(order_id): 1 for order_id in FAILING}
    for message in dead:
        order_id = json.loads(message.value() or b"{}")["order_id"]
        assert message.key() == _customer(order_id)
        assert message.headers() == [
            ("correlation-id", _correlation_id(order_id).encode()),
            ("source", SOURCE),
            ("error", f"no stock for order {order_id}".encode()),
        ]

    # The groups' committed offsets are the log end offsets.
    for service in services:
        committed, ends = _committed_and_end_offsets(bootstrap, service.name)
        assert committed == ends, service.name
        assert sum(ends) == ORDERS
