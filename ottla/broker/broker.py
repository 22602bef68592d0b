"""The Broker: configuration, metadata, partitions and listeners wired together.

Lifecycle:
- `start()`: lock the data dir, read or write `meta.properties` (cluster id, node
  id), bind the listeners (a port in use fails before any log is opened), open the
  Raft log and start the driver (a quorum of one elects itself and replays the
  metadata log into the image at once; with several voters the node serves the
  quorum's requests and waits until it has caught up with the leader), register
  itself through the quorum, open every hosted partition, and start the timers.
- `stop()`: stop accepting, let in-flight requests finish (bounded), flush and
  close every log (each writes its clean-shutdown marker), close the metadata log.

Handlers reach everything through this object (`broker.image`, `broker.replicas`,
`await broker.append_metadata(...)`), which owns the mutable state on the event loop.

Metadata writes: `append_metadata(records)` proposes the records through the Raft
quorum and returns once they are committed and applied to this node's image. On the
quorum leader that is a local proposal (with one voter it commits before the call
returns, without yielding); on any other node the records are forwarded to the leader
(Envelope, see handlers/quorum.py) and the call waits until this node has applied the
leader's commit. Every node applies the same committed records to its image, and
`_apply_image` opens or removes the partitions it hosts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from ottla import __version__
from ottla.broker import high_watermarks, meta_properties, partition_dirs
from ottla.broker.clocks import monotonic_ms, wall_ms
from ottla.broker.controller import ControllerShell, ControllerUnavailableError
from ottla.broker.dispatch import Dispatcher
from ottla.broker.fetch_sessions import FetchSessionCache
from ottla.broker.groups.coordinator import GroupCoordinator
from ottla.broker.isr import IsrManager
from ottla.broker.partition_opener import OpenSpec, PartitionOpener
from ottla.broker.partitions import Partition, ReplicaManager
from ottla.broker.replica_fetcher import ReplicaFetchers
from ottla.broker.rpc import NodeClient, parse_voters
from ottla.broker.server import Connection, ConnectionLimits
from ottla.cluster import (
    MetadataImage,
    MetadataLog,
    MetadataRecord,
    RaftConfig,
    RaftDriver,
    RaftStorage,
    RaftStorageError,
    TopicImage,
    encode_payloads,
)
from ottla.config import TOPIC_CONFIGS, BrokerConfig, ConfigError, parse_value
from ottla.protocol import SUPPORTED_APIS, ErrorCode, make
from ottla.storage import LogConfig, abort_clean, clean, commit_clean, prepare_clean

__all__ = ["Broker", "StartupError", "validate_topic_config"]

log = structlog.get_logger("ottla.broker")

PRODUCER_ID_BLOCK = 1000
_SHUTDOWN_GRACE_S = 5.0
METADATA_WRITE_TIMEOUT_S = 15.0
_RETRY_S = 0.05


class StartupError(Exception):
    """Startup cannot proceed; the message is the one line the operator sees."""


class MetadataUnavailableError(Exception):
    """A metadata write could not be committed in time (no reachable quorum leader)."""


class Broker:
    """One ottla node (single voter until the cluster issue)."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: Callable[[], int] = wall_ms,
        monotonic_clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self.config = config
        # clocks.py: the wall clock for timestamps and ages of data, the monotonic
        # one for how long a follower has lagged (the ISR).
        self.clock = clock
        self.monotonic_clock = monotonic_clock
        self.node_id = config.node_id
        self.data_dir = config.data_dir
        self.cluster_id = ""
        self.metadata: MetadataLog | None = None
        self.raft: RaftDriver | None = None
        self.node_client: NodeClient | None = None
        self._raft_storage: RaftStorage | None = None
        self.replicas = ReplicaManager(self.data_dir)
        # New partitions open in a worker thread once the node serves (partition_opener.py);
        # until then (startup, replaying the metadata log) they open in place.
        self.opener = PartitionOpener(
            self.replicas, self.clock, self._partitions_opened, self.partition_open_failed
        )
        self._open_in_place = True
        self.groups = GroupCoordinator(self)
        self.fetch_sessions = FetchSessionCache(
            int(config.get("max.incremental.fetch.session.cache.slots"))
        )
        self.dispatcher = Dispatcher(self)
        self.controller = ControllerShell(self)
        self.fetchers = ReplicaFetchers(self)
        self.isr = IsrManager(self)
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[Connection] = set()
        self._timers: list[asyncio.Task[None]] = []
        self._lock_fd: int | None = None
        self._next_producer_id = 0
        self._producer_id_limit = 0
        self.bound_ports: list[int] = []
        self.stopping = False
        # Set when this node should stop because its log directory failed (see
        # `log_dir_failed`); `failure` says why. `ottla serve` waits on it.
        self.failed = asyncio.Event()
        self.failure: str | None = None
        self.replicas.on_storage_error = self.log_dir_failed

    # -- state accessors -------------------------------------------------------------

    @property
    def image(self) -> MetadataImage:
        assert self.metadata is not None
        return self.metadata.image

    async def append_metadata(
        self, records: list[MetadataRecord], timeout_s: float = METADATA_WRITE_TIMEOUT_S
    ) -> MetadataImage:
        """On the active controller: commit metadata records (after earlier controller
        writes) and return the image with them applied. Raises NotLeaderError elsewhere:
        other nodes send requests to the controller (`controller.call`), not records."""
        if records:
            await self.controller.write(lambda _image: (records, None), timeout_s)
        return self.image

    def propose_metadata_nowait(self, records: list[MetadataRecord]) -> asyncio.Future[int]:
        """On the leader: propose `records` and return the commit future (already done on a
        quorum of one). Raises NotLeaderError elsewhere."""
        assert self.raft is not None
        return self.raft.propose(encode_payloads(records, self.clock()))

    async def propose_metadata(self, payloads: list[bytes], timeout_s: float) -> int:
        """On the leader: propose entry payloads, return the last offset once committed."""
        assert self.raft is not None
        future = self.raft.propose(payloads)
        if future.done():  # one voter: committed already
            return future.result()
        async with asyncio.timeout(max(timeout_s, 0.001)):
            return await asyncio.shield(future)

    def live_broker_ids(self) -> list[int]:
        return self.image.live_broker_ids()

    def topic_properties(self, topic: TopicImage) -> dict[str, str]:
        """Effective topic configs: broker defaults overlaid with the topic's own."""
        properties = {name: self.config.topic_default(name) for name in TOPIC_CONFIGS}
        properties.update(topic.configs)
        return properties

    def log_config(self, properties: dict[str, str]) -> LogConfig:
        return LogConfig.from_properties(properties)

    async def allocate_producer_id(self) -> int:
        """A fresh producer id, from blocks the active controller hands out
        (AllocateProducerIds, recorded as ProducerIdsRecord in the metadata log)."""
        while self._next_producer_id >= self._producer_id_limit:
            spec = SUPPORTED_APIS[67]
            response = await self.controller.call(
                make(
                    spec.request_type(0),
                    broker_id=self.node_id,
                    broker_epoch=self.controller.broker_epoch,
                )
            )
            if response.error_code != ErrorCode.none:
                raise MetadataUnavailableError(
                    f"no producer ids from the controller: {response.error_code.name}"
                )
            if self._next_producer_id < self._producer_id_limit:
                break  # a concurrent caller got a block meanwhile
            self._next_producer_id = int(response.producer_id_start)
            self._producer_id_limit = self._next_producer_id + int(response.producer_id_len)
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        return producer_id

    # -- startup ---------------------------------------------------------------------

    async def start(self) -> None:
        self._prepare_data_dir()
        partition_dirs.remove_marked(self.data_dir)  # deletions a crash interrupted
        self.replicas.restored_high_watermarks = high_watermarks.load(self.data_dir)
        # Bind before opening any log: a port in use ends startup with its one line.
        await self._listen()
        started = self.clock()
        voters = self._quorum_voters()
        try:
            storage = RaftStorage.open(self.data_dir, started)
        except (RaftStorageError, OSError) as error:
            raise StartupError(f"log.dirs: metadata log unreadable: {error}") from None
        self._raft_storage = storage
        self.metadata = MetadataLog(on_change=self._apply_image)
        self.node_client = NodeClient(
            {k: v for k, v in voters.items() if k != self.node_id},
            on_lost=self.controller.node_connection_lost,
        )
        client = self.node_client
        request_timeout_s = int(self.config.get("controller.quorum.request.timeout.ms")) / 1000

        class _Transport:
            async def send(self, node_id: int, request: Any) -> Any:
                timeout_s = request_timeout_s
                max_wait = getattr(request, "max_wait", None)
                if max_wait is not None:
                    timeout_s += max_wait.total_seconds()
                return await client.send(node_id, request, timeout_s)

        self.raft = RaftDriver(
            self.node_id,
            RaftConfig(
                voters=frozenset(voters),
                election_timeout_ms=int(self.config.get("controller.quorum.election.timeout.ms")),
                fetch_timeout_ms=int(self.config.get("controller.quorum.fetch.timeout.ms")),
                request_timeout_ms=int(self.config.get("controller.quorum.request.timeout.ms")),
                retry_backoff_ms=int(self.config.get("controller.quorum.retry.backoff.ms")),
            ),
            storage,
            _Transport(),
            self.metadata,
            cluster_id=self.cluster_id,
            on_leader_change=self.controller.leader_changed,
        )
        self.raft.start()
        for server in self._servers:
            await server.start_serving()
        # A quorum of one is caught up already; several voters wait for a leader.
        await self.raft.wait_caught_up()
        self._set_aside_strays()
        self._open_in_place = False
        try:
            await self.controller.register_self()
        except ControllerUnavailableError as error:
            raise StartupError(f"controller.quorum.voters: cannot register: {error}") from None
        self.controller.start()
        self.isr.start()
        self.groups.load()
        self._timers.append(asyncio.create_task(self._retention_loop()))
        self._timers.append(asyncio.create_task(self._high_watermark_loop()))
        if self.config.get("log.cleaner.enable"):
            self._timers.append(asyncio.create_task(self._cleaner_loop()))
        log.info(
            "broker_started",
            version=__version__,
            node_id=self.node_id,
            listeners=",".join(
                f"{lst.name}://{lst.host}:{p}"
                for lst, p in zip(self.config.listeners, self.bound_ports, strict=True)
            ),
            data_dir=str(self.data_dir),
            cluster_id=self.cluster_id,
            partitions=len(self.replicas.partitions),
            voters=",".join(str(v) for v in sorted(voters)),
            quorum_leader=self.raft.leader_id,
        )

    def _quorum_voters(self) -> dict[int, tuple[str, int]]:
        """`controller.quorum.voters`, or this node alone at its first listener."""
        try:
            voters = parse_voters(self.config.get("controller.quorum.voters") or [])
        except ValueError as error:
            raise StartupError(f"controller.quorum.voters: {error}") from None
        if not voters:
            listener = self.config.listeners[0]
            return {self.node_id: (listener.host or "127.0.0.1", self.bound_ports[0])}
        if self.node_id not in voters:
            raise StartupError(
                f"controller.quorum.voters: node.id {self.node_id} is not a voter; "
                "broker-only nodes (observers) are not supported yet"
            )
        return voters

    def _set_aside_strays(self) -> None:
        """Partition directories the caught-up image does not place on this node (their
        topic deleted, or the partition reassigned away, while it was down) are set
        aside (partition_dirs.sweep_strays)."""
        hosted = {
            f"{name}-{index}"
            for name, topic in self.image.topics_by_name.items()
            for index, partition in topic.partitions.items()
            if self.node_id in partition.replicas
        }
        partition_dirs.sweep_strays(self.data_dir, hosted)

    def _prepare_data_dir(self) -> None:
        directory = self.data_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise StartupError(
                f"log.dirs: data directory {directory} is not writable: {error.strerror}"
            ) from None
        fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(
                f"log.dirs: data directory {directory} is in use by another ottla process"
            ) from None
        self._lock_fd = fd
        meta = directory / meta_properties.FILE_NAME
        configured = self.config.get("cluster.id")
        try:
            stored = meta_properties.read(meta)
        except OSError as error:
            raise StartupError(f"log.dirs: cannot read {meta}: {error.strerror}") from None
        except meta_properties.MetaPropertiesError as error:
            raise StartupError(
                f"log.dirs: {error}; restore it, or give the node an empty data directory"
            ) from None
        if stored is not None:
            self.cluster_id = stored.cluster_id
            if stored.node_id is not None and stored.node_id != self.node_id:
                raise StartupError(
                    f"node.id: {self.node_id} does not match node.id {stored.node_id} "
                    f"stored in {meta}"
                )
            if configured and configured != self.cluster_id:
                raise StartupError(
                    f"cluster.id: {configured} does not match cluster id {self.cluster_id} "
                    f"of data directory {directory}"
                )
        else:
            voters = self.config.get("controller.quorum.voters") or []
            if not configured and len([v for v in voters if v.strip()]) > 1:
                raise StartupError(
                    "cluster.id: required when controller.quorum.voters lists several "
                    "voters (every node of a cluster must be formatted with the same id)"
                )
            self.cluster_id = configured or _new_cluster_id()
            meta_properties.write(meta, self.cluster_id, self.node_id)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        limits = ConnectionLimits(
            max_frame_bytes=int(self.config.get("socket.request.max.bytes")),
            in_flight_bytes_max=_in_flight_limit(self.config),
        )
        for listener in self.config.listeners:
            try:
                server = await loop.create_server(
                    lambda: self._new_connection(limits),
                    host=listener.host or None,
                    port=listener.port,
                    reuse_address=True,
                    backlog=1024,
                    start_serving=False,
                )
            except OSError as error:
                raise StartupError(
                    f"listeners: cannot listen on {listener.host}:{listener.port}: "
                    f"{error.strerror or error}"
                ) from None
            self._servers.append(server)
            sockets = server.sockets
            self.bound_ports.append(sockets[0].getsockname()[1] if sockets else listener.port)

    def _new_connection(self, limits: ConnectionLimits) -> Connection:
        connection = Connection(
            self.dispatcher.handle,
            self.dispatcher.handle_unsupported,
            limits,
            on_close=self._connection_closed,
        )
        self._connections.add(connection)
        return connection

    def _connection_closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        self.fetch_sessions.connection_closed(connection)
        self.controller.connection_closed(connection)

    # -- image application -----------------------------------------------------------

    def _apply_image(self, before: MetadataImage, after: MetadataImage) -> None:
        """Open partitions this node hosts; close and delete those of removed topics and
        those reassigned away from this node."""
        for name, topic in before.topics_by_name.items():
            current = after.topics_by_name.get(name)
            if current is None or current.topic_id != topic.topic_id:
                self.opener.forget_topic(name)
                self.replicas.remove_topic(name)
                log.info("topic_deleted", topic=name)
        now = self.clock()
        new: list[OpenSpec] = []  # partitions to host that are not yet hosted
        for name, topic in after.topics_by_name.items():
            previous = before.topics_by_name.get(name)
            if previous is topic:
                continue
            properties = self.topic_properties(topic)
            try:
                config = self.log_config(properties)
            except ValueError as error:
                log.error("topic_config_invalid", topic=name, error=str(error))
                config = LogConfig()
            for index, partition in topic.partitions.items():
                if self.node_id not in partition.replicas:
                    self.opener.forget((name, index))
                    if self.replicas.get(name, index) is not None:  # reassigned away
                        self.replicas.remove_partition(name, index)
                        log.info("partition_removed", topic=name, partition=index)
                    continue
                spec = OpenSpec(
                    name, index, topic.topic_id, config, properties, partition.leader_epoch
                )
                if self.replicas.get(name, index) is not None:
                    self.replicas.open_partition(*spec.arguments(), now)
                else:
                    new.append(spec)
            if previous is None:
                log.info("topic_created", topic=name, partitions=len(topic.partitions))
        for spec in new:
            if self.opener.in_place(spec, len(new), startup=self._open_in_place):
                self.opener.forget(spec.key)  # no retry pending once this one is done
                try:
                    self.replicas.open_partition(*spec.arguments(), now)
                except OSError as error:  # the rest of the image still applies
                    self.opener.open_failed(spec, error)
            else:
                self.opener.want(spec)
        self._apply_roles(after, self.monotonic_clock())
        self.groups.on_image(after)  # load / unload groups of __consumer_offsets leadership

    def _partitions_opened(self) -> None:
        """A batch of new partitions is hosted: their roles, and groups they lead."""
        self._apply_roles(self.image, self.monotonic_clock())
        self.groups.on_image(self.image)

    def _apply_roles(self, image: MetadataImage, now: int) -> None:
        """Each hosted partition's role per the image: a leader (a new leader epoch starts
        fresh follower state; an ISR change updates it), or a follower of the image's
        leader (fetched by a replica fetcher task), or neither (leader -1). `now` is
        the monotonic clock's: the followers' lag is measured from it."""
        follow: dict[tuple[str, int], tuple[int, int]] = {}
        for partition in self.replicas:
            topic = image.topics_by_name.get(partition.topic)
            state = topic.partitions.get(partition.index) if topic is not None else None
            if state is None:
                continue
            role = (state.leader, state.leader_epoch)
            if state.leader == self.node_id:
                if partition.replication is None or partition.role != role:
                    partition.become_leader(
                        self.node_id,
                        state.leader_epoch,
                        state.replicas,
                        state.isr,
                        state.partition_epoch,
                        now,
                    )
                    if len(state.replicas) > 1:
                        log.info(
                            "partition_leader",
                            partition=partition.name,
                            leader_epoch=state.leader_epoch,
                            isr=list(state.isr),
                            high_watermark=partition.high_watermark,
                            log_end_offset=partition.log_end_offset,
                        )
                elif partition.replication.partition_epoch != state.partition_epoch:
                    partition.update_leader_isr(
                        state.replicas, state.isr, state.partition_epoch, now
                    )
            else:
                if partition.replication is not None or partition.role != role:
                    partition.become_follower(state.leader, state.leader_epoch, state.isr)
                    log.info(
                        "partition_follower",
                        partition=partition.name,
                        leader_id=state.leader,
                        leader_epoch=state.leader_epoch,
                    )
                partition.isr = state.isr
                if state.leader >= 0:
                    follow[(partition.topic, partition.index)] = role
            partition.role = role
        self.fetchers.update(follow)

    def partition(self, topic: str, index: int) -> Partition | None:
        """The partition if this node leads it (per the image), else None: produce, fetch
        and offset requests for it then answer NOT_LEADER_OR_FOLLOWER."""
        hosted = self.replicas.get(topic, index)
        if hosted is None:
            return None
        image = self.image.topics_by_name.get(topic)
        state = image.partitions.get(index) if image is not None else None
        if state is None or state.leader != self.node_id:
            return None
        return hosted

    def leader_of(self, topic: str, index: int) -> tuple[int, int]:
        """(leader id, leader epoch) of a partition per the image; (-1, -1) if unknown."""
        image = self.image.topics_by_name.get(topic)
        state = image.partitions.get(index) if image is not None else None
        return (state.leader, state.leader_epoch) if state is not None else (-1, -1)

    # -- timers ----------------------------------------------------------------------

    async def _cleaner_loop(self) -> None:
        """Compact `cleanup.policy=compact` partitions, one at a time, off the event loop.

        Each pass prepares a job on the loop (pinning sealed segments), cleans in a
        worker thread, and commits on the loop; a partition is cleaned again only once
        a new segment has been sealed since its last clean (ottla has no dirty-ratio
        accounting yet, so this stands in for `min.cleanable.dirty.ratio`).
        """
        backoff_s = int(self.config.get("log.cleaner.backoff.ms")) / 1000
        cleaned_upto: dict[tuple[str, int], int] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(backoff_s)
            for partition in self.replicas:
                key = (partition.topic, partition.index)
                sealed = partition.log.segments[:-1]
                if not sealed or cleaned_upto.get(key) == sealed[-1].next_offset:
                    continue
                job = prepare_clean(partition.log, self.clock())
                if job is None:
                    continue
                try:
                    result = await loop.run_in_executor(None, clean, job)
                except Exception as error:  # a task boundary: log, keep cleaning others
                    abort_clean(job)
                    log.error("cleaner_failed", partition=partition.name, error=repr(error))
                    continue
                if not commit_clean(partition.log, result):  # stale: it discarded the job
                    continue
                cleaned_upto[key] = sealed[-1].next_offset
                log.info(
                    "partition_compacted",
                    partition=partition.name,
                    records_before=result.records_before,
                    records_after=result.records_after,
                    bytes_before=result.bytes_before,
                    bytes_after=result.bytes_after,
                )

    async def _retention_loop(self) -> None:
        interval_s = int(self.config.get("log.retention.check.interval.ms")) / 1000
        expiration_ms = int(self.config.get("producer.id.expiration.ms"))
        while True:
            await asyncio.sleep(interval_s)
            now = self.clock()
            for partition in self.replicas:
                try:
                    deleted = partition.log.apply_retention(
                        now, high_watermark=partition.high_watermark
                    )
                    partition.log.maybe_flush(now)
                    partition.producers.expire(now, expiration_ms)
                except Exception as error:  # a task boundary: log and carry on
                    log.error("retention_failed", partition=partition.name, error=repr(error))
                    continue
                if deleted:
                    partition.log_start_moved()
                    log.info(
                        "retention_deleted",
                        partition=partition.name,
                        segments=deleted,
                        log_start_offset=partition.log_start_offset,
                    )

    async def _high_watermark_loop(self) -> None:
        """Write the high-watermark checkpoint when it changed, every
        replica.high.watermark.checkpoint.interval.ms (broker/high_watermarks.py)."""
        interval_s = int(self.config.get("replica.high.watermark.checkpoint.interval.ms")) / 1000
        written: high_watermarks.Entries | None = None
        while True:
            await asyncio.sleep(interval_s)
            checkpoint = high_watermarks.entries(self.replicas)
            if checkpoint == written:
                continue
            try:
                await asyncio.to_thread(high_watermarks.save, self.data_dir, checkpoint)
            except OSError as error:  # a full or failing disk: the next round tries again
                log.warning("high_watermark_checkpoint_failed", error=str(error))
                continue
            written = checkpoint

    def _checkpoint_high_watermarks(self) -> None:
        """The last checkpoint, at shutdown (after the fetchers stopped)."""
        try:
            high_watermarks.save(self.data_dir, high_watermarks.entries(self.replicas))
        except OSError as error:
            log.warning("high_watermark_checkpoint_failed", error=str(error))

    # -- shutdown --------------------------------------------------------------------

    def log_dir_failed(self, partition: Partition, error: OSError) -> None:
        """The disk refused an append to a partition this node leads (full, I/O error).

        Kafka halts a broker whose last log directory failed, so that the partitions it
        led move to in-sync replicas on healthy disks. ottla stops the same way, through
        the controlled shutdown of SIGTERM (leaderships move first), when that helps:
        when another replica is in the partition's ISR. A node alone with its data keeps
        running: it answers writes KAFKA_STORAGE_ERROR and still serves reads. A
        follower's failed append only costs its place in the ISR (the replica fetcher
        tries again, and catches up once there is room)."""
        if partition.replication is None:
            return
        self._log_dir_failed(partition.name, list(partition.isr), error)

    def partition_open_failed(self, spec: OpenSpec, error: OSError) -> None:
        """The disk refused to open (create) a partition's log. A partition the image
        has this node lead, with another replica in its ISR, is better led there: the
        node stops as for a failed append (`log_dir_failed`). Otherwise the opener
        tries again later and the partition answers KAFKA_STORAGE_ERROR meanwhile."""
        topic = self.image.topic(spec.topic)
        state = topic.partitions.get(spec.index) if topic is not None else None
        if state is None or state.leader != self.node_id:
            return
        self._log_dir_failed(f"{spec.topic}-{spec.index}", list(state.isr), error)

    def _log_dir_failed(self, partition: str, isr: list[int], error: OSError) -> None:
        if self.failed.is_set() or self.stopping or error.errno not in _LOG_DIR_FAILURES:
            return
        if len(isr) < 2:
            return
        self.failure = f"the log directory {self.data_dir} failed: {error}"
        log.critical(
            "log_dir_failed", node_id=self.node_id, partition=partition, error=str(error), isr=isr
        )
        self.failed.set()

    def unhosted_error(self, topic: str, index: int) -> ErrorCode:
        """The error for a partition this node does not serve: unknown when the image has
        no such partition, KAFKA_STORAGE_ERROR while its log cannot be opened here,
        else NOT_LEADER_OR_FOLLOWER (led elsewhere, or still opening)."""
        image = self.image.topic(topic)
        if image is None or index not in image.partitions:
            return ErrorCode.unknown_topic_or_partition
        if (topic, index) in self.opener.failed:
            return ErrorCode.kafka_storage_error
        return ErrorCode.not_leader_or_follower

    async def stop(self) -> None:
        opened = self.metadata is not None  # else startup failed and said why
        if opened:  # leadership moves to other in-sync replicas while this node serves
            await self.controller.controlled_shutdown()
        for server in self._servers:
            server.close()
        self.groups.stop()
        await self.opener.stop()
        await self.controller.stop()
        await self.isr.stop()
        await self.fetchers.stop()
        for task in self._timers:
            task.cancel()
        # Answer waiting fetches now instead of at their max_wait.
        self.stopping = True
        for partition in self.replicas:
            partition.wake_waiters()
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        while any(not c.idle for c in self._connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._connections):
            connection.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
        if self.raft is not None:
            with contextlib.suppress(Exception):
                await self.raft.stop()
        if self.node_client is not None:
            await self.node_client.close()
        if opened:
            self._checkpoint_high_watermarks()
        self.replicas.close()
        if self._raft_storage is not None:
            try:
                self._raft_storage.close()
            except OSError as error:  # a full or failing disk: the next start recovers it
                log.warning("metadata_log_close_failed", error=str(error))
            self._raft_storage = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if opened:
            log.info("broker_stopped", node_id=self.node_id)

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "cluster_id": self.cluster_id}


# What a failed log directory looks like (Kafka's KafkaStorageException cases): a full
# disk or quota, an I/O error, a file system remounted read-only after an error. Any
# other OSError of an append is a bug here, not the disk: it does not stop the node.
_LOG_DIR_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _in_flight_limit(config: BrokerConfig) -> int:
    value = int(config.get("queued.max.request.bytes"))
    return value if value > 0 else 100 * 1024 * 1024


def _new_cluster_id() -> str:
    """A cluster id in Kafka's form: a random UUID, URL-safe base64, 22 characters."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def validate_topic_config(name: str, value: str | None) -> str | None:
    """Why (name, value) is not a valid topic config, or None (for the controller rules)."""
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        return f"Unknown topic config name: {name}"
    if value is None:
        return None
    try:
        parse_value(definition, value)
    except ConfigError as error:
        return f"Invalid value {value} for configuration {name}: {error}"
    return None
