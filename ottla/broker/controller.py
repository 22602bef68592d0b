"""The controller shell: the active controller's writes, and each broker's lifecycle.

The active controller is the metadata quorum's leader. Its decisions are pure rules
(cluster/controller: rules.py, placement.py, fencing.py); this shell runs them and
does what they say, in this order: decide on the current image, propose the records,
wait for their commit (which applies them to the image), answer.

- `write(decide)`: on the leader, writes run one after another (a chain of futures, no
  lock): each `decide(image)` sees every earlier write applied, so two CreateTopics of
  one name can never both commit. Raises NotLeaderError on a non-leader.
- `call(request)`: send a controller request (CreateTopics, DeleteTopics,
  CreatePartitions, AlterConfigs, IncrementalAlterConfigs, BrokerRegistration,
  BrokerHeartbeat, AllocateProducerIds: Kafka's request bodies) to the active
  controller. On the leader it is handled here; elsewhere the original request is
  forwarded in an Envelope (handlers/quorum.py), as Kafka forwards to the active
  controller, and the answer is returned once this node has applied the metadata
  offset the controller reached. Retried on NOT_CONTROLLER or a lost connection until
  `timeout_s`.
- Broker side, on every node: register at startup (BrokerRegistration with a fresh
  incarnation id per process; a retry with the same incarnation is idempotent), then
  heartbeat every `broker.heartbeat.interval.ms` (BrokerHeartbeat); a heartbeat
  answered STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED registers again.
  The heartbeat comes at once, not at the interval, when this node learns of a new
  quorum leader or its connection to the active controller breaks: fast fencing
  (below) must never catch a live broker.
- Controller side, on the leader: a tick every quarter session (at most 250 ms, sooner
  when a deadline is nearer) fences brokers silent for `broker.session.timeout.ms`
  (fencing.Sessions.expire); on becoming leader every registered broker gets a full
  session. Fast fencing (fencing.py): a broker whose heartbeat connection closes, and
  the previous quorum leader when this node becomes the active controller, are fenced
  after `FAST_FENCING_GRACE_MS` unless they heartbeat; a SIGKILLed node is then fenced
  in about a second rather than the 9 s session (Kafka waits the session). With
  `auto.leader.rebalance.enable`, every `leader.imbalance.check.interval.seconds` (the
  first one an interval after becoming the active controller, as in Kafka) the tick
  also moves leadership back to preferred replicas (leadership.preferred_imbalance).
- Reassignments (KIP-455): an AlterPartition whose ISR change brings the last target
  replica of a reassigning partition in sync also commits the switch to the target
  replicas (reassignment.complete_reassignment), in the same write.
- Controlled shutdown (`controlled_shutdown()`, called by Broker.stop before anything
  closes, when `controlled.shutdown.enable`): the heartbeat loop stops and this node
  sends BrokerHeartbeats with `want_shut_down` every `_SHUTDOWN_POLL_S` until the
  controller answers `should_shut_down` (it then leads nothing another in-sync replica
  could lead, and is fenced) or `controlled.shutdown.timeout.ms` passes; then the
  broker stops as it would have anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import structlog

from ottla.broker.clocks import monotonic_ms
from ottla.cluster import (
    AlterPartitionResult,
    Endpoint,
    HeartbeatResult,
    MetadataImage,
    MetadataRecord,
    NotLeaderError,
    Role,
    Sessions,
)
from ottla.protocol import (
    SUPPORTED_APIS,
    DecodedRequest,
    ErrorCode,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    make,
)

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.server import Connection

__all__ = ["ControllerShell", "ControllerUnavailableError"]

log = structlog.get_logger("ottla.controller")

T = TypeVar("T")
Decide = Callable[[MetadataImage], tuple[list[MetadataRecord], T]]

_RETRY_S = 0.05
# How long a broker presumed dead (fast fencing, module docstring) has to heartbeat.
# A live one does within a round trip: it heartbeats at once on a new connection.
FAST_FENCING_GRACE_MS = 500
_SHUTDOWN_POLL_S = 0.1
_SHUTDOWN_ATTEMPT_S = 1.0
CALL_TIMEOUT_S = 15.0
_ENVELOPE = 58


class ControllerUnavailableError(Exception):
    """No active controller answered a controller request in time."""


def frame_bytes(chunks: list[Any]) -> bytes:
    """A framed message without its 4-byte size prefix."""
    return b"".join(bytes(c) for c in chunks)[4:]


class ControllerShell:
    """See the module docstring."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        config = broker.config
        self.session_timeout_ms = int(config.get("broker.session.timeout.ms"))
        self.heartbeat_interval_ms = int(config.get("broker.heartbeat.interval.ms"))
        self.sessions = Sessions(self.session_timeout_ms, FAST_FENCING_GRACE_MS)
        # Broker sessions and the controller's timers run on a monotonic clock, as
        # Kafka's BrokerHeartbeatManager does: a wall clock stepped forward by more
        # than a session would fence every broker at once (all heartbeats look old).
        self.clock: Callable[[], int] = monotonic_ms
        self._heartbeat_now = asyncio.Event()
        self._fencing_wake = asyncio.Event()
        self._heartbeat_connections: dict[int, Connection] = {}
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self._tail: asyncio.Future[None] | None = None
        self._leader_epoch_seen = -1
        self._forwarded: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.rebalance_enabled = bool(config.get("auto.leader.rebalance.enable"))
        self.imbalance_check_interval_ms = (
            int(config.get("leader.imbalance.check.interval.seconds")) * 1000
        )
        self._next_imbalance_check_ms = 0
        self.controlled_shutdown_enabled = bool(config.get("controlled.shutdown.enable"))
        self.controlled_shutdown_timeout_ms = int(config.get("controlled.shutdown.timeout.ms"))

    # -- the active controller ---------------------------------------------------------

    @property
    def is_active(self) -> bool:
        raft = self.broker.raft
        return raft is not None and raft.is_leader

    def _check_leadership(self) -> None:
        raft = self.broker.raft
        assert raft is not None
        if raft.is_leader and raft.leader_epoch != self._leader_epoch_seen:
            self._leader_epoch_seen = raft.leader_epoch
            now = self.clock()
            suspects = {raft.previous_leader_id} - {self.broker.node_id, -1}
            self.sessions.reset(self.broker.image, now, suspects)
            self._heartbeat_connections.clear()
            self._next_imbalance_check_ms = now + self.imbalance_check_interval_ms
            log.info(
                "controller_activated",
                node_id=self.broker.node_id,
                epoch=raft.leader_epoch,
                suspects=sorted(suspects),
            )

    async def write(self, decide: Decide[T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run `decide` on the up-to-date image, commit its records, return its result."""
        raft = self.broker.raft
        assert raft is not None
        if not raft.is_leader:
            raise NotLeaderError(raft.leader_id, raft.leader_epoch)
        previous = self._tail
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail = done
        try:
            if previous is not None and not previous.done():
                await asyncio.shield(previous)
            if not raft.is_leader:
                raise NotLeaderError(raft.leader_id, raft.leader_epoch)
            self._check_leadership()
            records, result = decide(self.broker.image)
            if records:
                future = self.broker.propose_metadata_nowait(records)
                if not future.done():
                    async with asyncio.timeout(timeout_s):
                        await asyncio.shield(future)
                else:
                    future.result()
            return result
        finally:
            done.set_result(None)
            if self._tail is done:
                self._tail = None

    def is_forwarded(self, request: DecodedRequest) -> bool:
        return id(request) in self._forwarded

    async def handle_local(self, request: DecodedRequest, forwarded: bool) -> Any:
        """Run a controller request's handler on this (leader) node."""
        if forwarded:
            self._forwarded.add(id(request))
        try:
            result = self.broker.dispatcher.handle(cast("Connection", None), request)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            return result
        finally:
            self._forwarded.discard(id(request))

    # -- any node: requests to the active controller -------------------------------------

    async def call(self, body: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """Send a controller request to the active controller (module docstring)."""
        raft = self.broker.raft
        assert raft is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        frame = frame_bytes(encode_request(body, 0, f"ottla-node-{self.broker.node_id}"))
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                if raft.is_leader:
                    return await self.handle_local(decode_request(frame), forwarded=True)
                if raft.leader_id >= 0:
                    answer = await self._forward(raft.leader_id, frame, body, remaining)
                    if answer is not None:
                        offset, response = answer
                        async with asyncio.timeout(deadline - loop.time()):
                            await raft.wait_applied(offset)
                        return response
            except NotLeaderError:
                pass
            except TimeoutError:
                break
            await asyncio.sleep(_RETRY_S)
        raise ControllerUnavailableError(
            f"no active controller answered within {timeout_s:.0f} s (leader {raft.leader_id})"
        )

    async def forward_request(self, request: DecodedRequest) -> Any:
        """A client's controller request received by a non-leader: the controller's answer."""
        return await self.call(request.body)

    async def _forward(
        self, leader_id: int, frame: bytes, body: Any, timeout_s: float
    ) -> tuple[int, Any] | None:
        client = self.broker.node_client
        assert client is not None
        envelope = make(
            SUPPORTED_APIS[_ENVELOPE].request_type(0),
            request_data=frame,
            request_principal=None,
            client_host_address=b"",
        )
        try:
            response = await client.send(leader_id, envelope, max(timeout_s, 0.001))
        except (OSError, ConnectionError):
            return None
        if response.error_code == ErrorCode.request_timed_out:
            raise TimeoutError("the active controller did not commit in time")
        if response.error_code != ErrorCode.none or not response.response_data:
            return None  # NOT_CONTROLLER: ask again once the leader is known
        data = bytes(response.response_data)
        offset = int.from_bytes(data[:8], "big", signed=True)
        _, inner = decode_response(data[8:], body)
        if getattr(inner, "error_code", None) == ErrorCode.not_controller:
            return None
        return offset, inner

    # -- liveness signals (fast fencing, module docstring) ---------------------------------

    def heartbeat_connection(self, connection: Connection, broker_id: int) -> None:
        """A BrokerHeartbeat from `broker_id` arrived (in an Envelope) on `connection`."""
        self._heartbeat_connections[broker_id] = connection

    def connection_closed(self, connection: Connection) -> None:
        """A client connection closed: if it carried a broker's latest heartbeat, that
        broker is presumed dead until it heartbeats again."""
        carried = [b for b, c in self._heartbeat_connections.items() if c is connection]
        if not carried:
            return
        broker_id = carried[0]
        del self._heartbeat_connections[broker_id]
        if not self.is_active:
            return
        self.sessions.connection_lost(broker_id, self.clock())
        self._fencing_wake.set()
        log.info("broker_connection_lost", broker_id=broker_id, grace_ms=self.sessions.grace_ms)

    def node_connection_lost(self, node_id: int, lane: str) -> None:
        """This node's connection to `node_id` closed (rpc.NodeClient.on_lost)."""
        raft = self.broker.raft
        if lane == "control" and raft is not None and node_id == raft.leader_id:
            self._heartbeat_now.set()

    def leader_changed(self, leader_id: int) -> None:
        """The quorum leader this node knows changed (RaftDriver.on_leader_change)."""
        if leader_id >= 0:
            self._heartbeat_now.set()
            self._fencing_wake.set()

    # -- broker lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._heartbeat_loop()))
        self._tasks.append(loop.create_task(self._fencing_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    async def register_self(self, timeout_s: float = CALL_TIMEOUT_S) -> None:
        broker = self.broker
        spec = SUPPORTED_APIS[62]
        module = spec.request_module(spec.max_version)
        body = make(
            spec.request_type(spec.max_version),
            broker_id=broker.node_id,
            cluster_id=broker.cluster_id,
            incarnation_id=self.incarnation_id,
            listeners=tuple(
                make(
                    module.Listener,
                    name=lst.name,
                    host=lst.host,
                    port=lst.port,
                    security_protocol=0,
                )
                for lst in broker.config.advertised_listeners
            ),
            features=(),
            rack=None,
            is_migrating_zk_broker=False,
            log_dirs=(),
            previous_broker_epoch=self.broker_epoch,
        )
        response = await self.call(body, timeout_s)
        if response.error_code != ErrorCode.none:
            raise ControllerUnavailableError(f"registration refused: {response.error_code.name}")
        self.broker_epoch = int(response.broker_epoch)
        log.info("broker_registered", node_id=broker.node_id, broker_epoch=self.broker_epoch)

    def _heartbeat_request(self, want_shut_down: bool) -> Any:
        spec = SUPPORTED_APIS[63]
        return make(
            spec.request_type(spec.max_version),
            broker_id=self.broker.node_id,
            broker_epoch=self.broker_epoch,
            current_metadata_offset=self.broker.image.offset,
            want_fence=False,
            want_shut_down=want_shut_down,
            offline_log_dirs=(),
        )

    async def controlled_shutdown(self) -> bool:
        """Move this node's leadership away before it stops (module docstring); whether
        the controller confirmed within `controlled.shutdown.timeout.ms`.

        The whole exchange is bounded by that timeout: the last node of a cluster has
        no quorum left to commit its shutdown, and its calls to the controller would
        otherwise keep retrying well past it (15 s seen).
        """
        timeout_s = self.controlled_shutdown_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                return await self._controlled_shutdown()
        except TimeoutError:
            log.warning("controlled_shutdown_incomplete", node_id=self.broker.node_id)
            return False

    async def _controlled_shutdown(self) -> bool:
        raft = self.broker.raft
        image = self.broker.image
        others_alive = [
            b
            for b, broker in image.brokers.items()
            if b != self.broker.node_id and not broker.fenced
        ]
        if (
            not self.controlled_shutdown_enabled
            or raft is None
            or self.broker_epoch < 0
            or not others_alive
        ):
            # No live broker to hand leadership to (a single node, or the last of a
            # cluster stopping): nothing could move, and no quorum may be left to
            # confirm it.
            return False
        if not _has_quorum_leader(raft.role):
            # Between elections, or cut off from the majority (the last node of a
            # cluster may not have applied the fencing of the one that stopped just
            # before it): no controller could confirm within the timeout.
            log.warning("controlled_shutdown_skipped", reason="no quorum leader", role=raft.role)
            return False
        await self.stop()  # no ordinary heartbeat may unfence this node meanwhile
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.controlled_shutdown_timeout_ms / 1000
        while loop.time() < deadline:
            try:
                attempt_s = min(deadline - loop.time(), _SHUTDOWN_ATTEMPT_S)
                response = await self.call(self._heartbeat_request(True), max(attempt_s, 0.001))
                if response.error_code == ErrorCode.none and response.should_shut_down:
                    log.info(
                        "controlled_shutdown_done",
                        node_id=self.broker.node_id,
                        elapsed_ms=int((loop.time() - started) * 1000),
                    )
                    return True
                if response.error_code != ErrorCode.none:
                    break
            except ControllerUnavailableError:
                pass  # asked again while a quorum leader is known, below
            except Exception as error:  # a shutdown step: log, then stop anyway
                log.warning("controlled_shutdown_failed", error=repr(error))
                break
            if not _has_quorum_leader(raft.role):
                break  # the quorum went away meanwhile: nothing will confirm
            await asyncio.sleep(_SHUTDOWN_POLL_S)
        log.warning("controlled_shutdown_incomplete", node_id=self.broker.node_id)
        return False

    async def _heartbeat_loop(self) -> None:
        interval_s = self.heartbeat_interval_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._heartbeat_now.wait()
            self._heartbeat_now.clear()
            body = self._heartbeat_request(False)
            try:
                response = await self.call(body, max(interval_s * 2, 1.0))
                if response.error_code in (
                    ErrorCode.stale_broker_epoch,
                    ErrorCode.broker_id_not_registered,
                ):
                    await self.register_self(max(interval_s * 2, 1.0))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a task boundary: log, heartbeat again
                log.warning("broker_heartbeat_failed", error=repr(error))
            await asyncio.sleep(_RETRY_S)  # wake-ups never make a heartbeat storm

    async def _fencing_loop(self) -> None:
        tick_ms = min(self.session_timeout_ms / 4, 250)
        while True:
            wait_ms = tick_ms
            if self.is_active:
                deadline = self.sessions.next_deadline_ms(self.broker.image)
                if deadline is not None:
                    wait_ms = min(wait_ms, max(deadline - self.clock(), 1))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_ms / 1000):
                    await self._fencing_wake.wait()
            self._fencing_wake.clear()
            if not self.is_active:
                continue
            try:
                self._check_leadership()
                now = self.clock()
                fenced = await self.write(self._expire)
                if fenced:
                    log.warning("brokers_fenced", records=len(fenced), now_ms=now)
                if self.rebalance_enabled and now >= self._next_imbalance_check_ms:
                    self._next_imbalance_check_ms = now + self.imbalance_check_interval_ms
                    moved = await self.write(self._rebalance)
                    if moved:
                        log.info("preferred_leaders_elected", partitions=len(moved))
            except NotLeaderError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a task boundary: log, tick again
                log.warning("fencing_tick_failed", error=repr(error))

    def _expire(self, image: MetadataImage) -> tuple[list[MetadataRecord], list[MetadataRecord]]:
        return _twice(self.sessions.expire(image, self.clock()))

    def _rebalance(self, image: MetadataImage) -> tuple[list[MetadataRecord], list[MetadataRecord]]:
        from ottla.cluster import preferred_imbalance  # noqa: PLC0415

        return _twice(preferred_imbalance(image, self.sessions.shutting_down))

    # -- controller-side request handling (called by handlers/controller.py) ---------------

    async def registration(
        self, broker_id: int, incarnation_id: uuid.UUID, endpoints: tuple[Endpoint, ...]
    ) -> int:
        from ottla.cluster import register  # noqa: PLC0415

        def decide(image: MetadataImage) -> tuple[list[MetadataRecord], int]:
            records, epoch = register(
                image, broker_id, incarnation_id, endpoints, None, image.offset + 1
            )
            self.sessions.registered(broker_id, self.clock())
            if records:
                log.info("broker_registration", broker_id=broker_id, broker_epoch=epoch)
            return records, epoch

        return await self.write(decide)

    async def heartbeat(
        self, broker_id: int, broker_epoch: int, want_shut_down: bool = False
    ) -> HeartbeatResult:
        def decide(image: MetadataImage) -> tuple[list[MetadataRecord], HeartbeatResult]:
            result = self.sessions.heartbeat(
                image, broker_id, broker_epoch, self.clock(), want_shut_down
            )
            if result.records:
                event = "broker_shutting_down" if want_shut_down else "broker_unfenced"
                log.info(event, broker_id=broker_id, records=len(result.records))
            return result.records, result

        return await self.write(decide)

    async def alter_partition(
        self,
        broker_id: int,
        topic_id: uuid.UUID,
        partition_id: int,
        leader_epoch: int,
        partition_epoch: int,
        new_isr: tuple[int, ...],
    ) -> AlterPartitionResult:
        from ottla.cluster import alter_partition, complete_reassignment  # noqa: PLC0415

        def decide(image: MetadataImage) -> tuple[list[MetadataRecord], AlterPartitionResult]:
            records, result = alter_partition(
                image,
                broker_id,
                topic_id,
                partition_id,
                leader_epoch,
                partition_epoch,
                new_isr,
                self.sessions.shutting_down,
            )
            if records:  # the ISR change may complete a reassignment (KIP-455)
                done = complete_reassignment(
                    image.apply(records, image.offset),
                    topic_id,
                    partition_id,
                    self.sessions.shutting_down,
                )
                if done:
                    log.info(
                        "reassignment_completed", topic_id=str(topic_id), partition=partition_id
                    )
                records = [*records, *done]
            if records:
                log.info(
                    "isr_changed",
                    topic_id=str(topic_id),
                    partition=partition_id,
                    leader_id=broker_id,
                    isr=list(result.isr),
                )
            return records, result

        return await self.write(decide)

    async def allocate_producer_ids(
        self, broker_id: int, broker_epoch: int, block_size: int
    ) -> int:
        from ottla.cluster import allocate_producer_ids  # noqa: PLC0415

        return await self.write(
            lambda image: allocate_producer_ids(image, broker_id, broker_epoch, block_size)
        )


def _has_quorum_leader(role: Role) -> bool:
    """Whether this node follows or is the quorum leader (a controller is reachable)."""
    return role in (Role.LEADER, Role.FOLLOWER)


def _twice(records: list[MetadataRecord]) -> tuple[list[MetadataRecord], list[MetadataRecord]]:
    return records, records


def envelope_response_data(offset: int, request: DecodedRequest, response: Any) -> bytes:
    """An Envelope's response_data: 8-byte metadata offset, then the response frame."""
    return offset.to_bytes(8, "big", signed=True) + frame_bytes(
        encode_response(request.header, response)
    )
