"""Opening new partitions' logs in a worker thread, a batch at a time.

Opening a partition creates its directory and five files; on a slow disk that is
several milliseconds each, and a node given a topic of 1,000 partitions used to
spend seconds on its event loop doing it: every request it serves, its Raft
heartbeats and its followers' fetches waited (bench/topic_creation.py measured
stalls of 2-18 s on three nodes). Kafka creates logs off its network threads too.

An image change that adds at most IN_PLACE_MAX partitions (a topic of a few
partitions: a few milliseconds), or adds an internal topic's, still opens them on the
loop, so they are hosted as
soon as the change is applied, as before; so does startup, before the node serves.
For a larger change the broker hands each partition the image places on it, and that
it does not host yet, to `want`; a task opens the wanted partitions in a worker thread, up
to `BATCH` per call (`open_partition_log`), fsyncs their partition.metadata files
there, and then, back on the loop, hosts those still wanted (`ReplicaManager.register`)
and calls `on_opened` so the broker gives them their roles from the current image.
Until then the partition is not hosted: requests for it answer
NOT_LEADER_OR_FOLLOWER, which clients and followers retry, as they do while Kafka
creates a log.

A partition whose log cannot be opened (a full disk, an I/O error: the OSError of
`open_partition_log`, here or in place on the loop) is not dropped: it waits in
`failed` and is wanted again every RETRY_S, so it comes up once the disk has room;
until then produce, fetch and ListOffsets answer KAFKA_STORAGE_ERROR for it, as Kafka
does for a partition in an offline log directory. `on_failed` tells the broker first,
which stops the node when that lets another in-sync replica lead
(`Broker.partition_open_failed`). One failed open no longer keeps the image's other
partitions from opening.

The image may change while a batch is in the thread: `forget` (topic deleted,
partition moved away) drops a wanted partition, and `want` with another topic id
replaces it. A partition opened for a spec no longer wanted is closed and its
directory deleted, in the thread, before the next batch opens anything, so a
same-named topic created again opens after the old one is gone. While a batch is in
the thread its keys are in `ReplicaManager.opening`, and removals leave those
directories to this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ottla.broker.partitions import Partition, ReplicaManager, open_partition_log
from ottla.storage import Log, LogConfig

__all__ = ["BATCH", "IN_PLACE_MAX", "RETRY_S", "OpenSpec", "PartitionOpener"]

log = structlog.get_logger("ottla.partition_opener")

BATCH = 64  # partitions per worker call: big enough to amortise, small enough to start soon
IN_PLACE_MAX = 32  # new partitions an image change may open on the event loop
RETRY_S = 5.0  # between tries to open a partition whose log could not be opened

Key = tuple[str, int]


@dataclass(frozen=True, eq=False)
class OpenSpec:
    """A partition the image places on this node, as `open_partition` takes it."""

    topic: str
    index: int
    topic_id: uuid.UUID
    config: LogConfig
    topic_configs: dict[str, str]
    leader_epoch: int

    @property
    def key(self) -> Key:
        return (self.topic, self.index)

    def arguments(self) -> tuple[str, int, uuid.UUID, LogConfig, dict[str, str], int]:
        """`ReplicaManager.open_partition`'s arguments but the clock's."""
        return (
            self.topic,
            self.index,
            self.topic_id,
            self.config,
            self.topic_configs,
            self.leader_epoch,
        )


@dataclass
class _Opened:
    spec: OpenSpec
    log: Log | None = None
    error: OSError | None = None
    unsynced: bool = False  # its partition.metadata awaits an fsync


class PartitionOpener:
    """See the module docstring."""

    def __init__(
        self,
        replicas: ReplicaManager,
        clock: Callable[[], int],
        on_opened: Callable[[], None],
        on_failed: Callable[[OpenSpec, OSError], None] = lambda _spec, _error: None,
    ) -> None:
        self.replicas = replicas
        self.clock = clock
        self.on_opened = on_opened
        self.on_failed = on_failed
        self.wanted: dict[Key, OpenSpec] = {}
        # Partitions whose last open failed, each wanted again after retry_s.
        self.failed: dict[Key, OpenSpec] = {}
        self.retry_s = RETRY_S
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._idle = asyncio.Event()
        self._idle.set()

    def in_place(self, spec: OpenSpec, count: int, startup: bool) -> bool:
        """Whether one of `count` partitions an image change adds opens on the loop: at
        startup (nothing is served yet), in a change of at most IN_PLACE_MAX (a few
        milliseconds; hosted at once, as a client that creates a topic and writes to
        it at once expects), or of an internal topic (`__consumer_offsets`, created
        once, whose group coordinator writes to it as soon as it exists), unless this
        partition is already wanted here (it keeps its order behind the thread's)."""
        if spec.key in self.wanted or spec.key in self.replicas.opening:
            return False
        return startup or count <= IN_PLACE_MAX or spec.topic.startswith("__")

    def want(self, spec: OpenSpec) -> None:
        """Open this partition soon (the newest spec of a key wins)."""
        if self._stopped:
            return
        self.failed.pop(spec.key, None)
        self.wanted[spec.key] = spec
        self._idle.clear()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, key: Key) -> None:
        self.wanted.pop(key, None)
        self.failed.pop(key, None)

    def forget_topic(self, topic: str) -> None:
        for key in [k for k in self.wanted if k[0] == topic]:
            del self.wanted[key]
        for key in [k for k in self.failed if k[0] == topic]:
            del self.failed[key]

    def open_failed(self, spec: OpenSpec, error: OSError) -> None:
        """Opening `spec`'s log failed (here or in place): tell the broker, try again
        after retry_s."""
        log.error(
            "partition_open_failed",
            partition=f"{spec.topic}-{spec.index}",
            error=str(error),
            retry_s=self.retry_s,
        )
        if self._stopped:
            return
        self.failed[spec.key] = spec
        try:
            self.on_failed(spec, error)
        except Exception as failure:  # a boundary: the retry stands
            log.error("partition_open_failed_hook", error=repr(failure), exc_info=failure)
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(self.retry_s, self._open_again)

    def _open_again(self) -> None:
        self._retry = None
        for spec in list(self.failed.values()):
            if self.replicas.get(spec.topic, spec.index) is None:
                self.want(spec)
            else:  # opened in place since (the image changed it again)
                del self.failed[spec.key]

    async def idle(self) -> None:
        """Until nothing is wanted or being opened (tests, shutdown)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Open nothing more; wait for a batch in the thread, whose partitions are hosted
        (the broker closes them with the rest) but given no role."""
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.failed.clear()
        task = self._task
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
        self.wanted.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.wanted and not self._stopped:
                batch = list(self.wanted.values())[:BATCH]
                keys = {spec.key for spec in batch}
                self.replicas.opening |= keys
                try:
                    opened = await loop.run_in_executor(
                        None, _open_batch, self.replicas.data_dir, batch, self.clock()
                    )
                finally:
                    self.replicas.opening -= keys
                unwanted = self._host(opened)
                if unwanted:
                    await loop.run_in_executor(None, _discard, unwanted)
                if not self._stopped:
                    try:
                        self.on_opened()
                    except Exception as error:  # a task boundary: log, go on opening
                        log.error("partition_roles_failed", error=repr(error), exc_info=error)
        except Exception as error:  # a task boundary: log; a later want starts again
            log.error("partition_open_task_failed", error=repr(error), exc_info=error)
        finally:
            self._task = None
            if self.wanted and not self._stopped:
                self._task = loop.create_task(self._run())
            else:
                self._idle.set()

    def _host(self, opened: list[_Opened]) -> list[Log]:
        """Host each opened log still wanted as opened; the rest, to discard."""
        unwanted: list[Log] = []
        for result in opened:
            spec = result.spec
            latest = self.wanted.get(spec.key)
            if result.error is not None:
                if latest is spec:
                    del self.wanted[spec.key]
                    self.open_failed(spec, result.error)
                continue
            assert result.log is not None
            if latest is None or latest.topic_id != spec.topic_id:
                unwanted.append(result.log)
                continue
            del self.wanted[spec.key]
            partition = self.replicas.register(
                Partition(
                    spec.topic,
                    spec.index,
                    spec.topic_id,
                    result.log,
                    latest.config,
                    latest.topic_configs,
                    latest.leader_epoch,
                ),
                unsynced=result.unsynced,
            )
            if latest.config != spec.config:
                partition.log.update_config(latest.config)
        return unwanted


def _open_batch(data_dir: Path, batch: list[OpenSpec], now_ms: int) -> list[_Opened]:
    """In a worker thread: open each partition's log. The partition.metadata files
    written are fsynced once hosted, by another worker (`ReplicaManager.register`),
    while this one opens the next batch."""
    results: list[_Opened] = []
    for spec in batch:
        directory = data_dir / f"{spec.topic}-{spec.index}"
        try:
            log_, unsynced = open_partition_log(directory, spec.topic_id, spec.config, now_ms)
        except OSError as error:
            results.append(_Opened(spec, error=error))
            continue
        results.append(_Opened(spec, log=log_, unsynced=unsynced))
    return results


def _discard(unwanted: list[Log]) -> None:
    """In a worker thread: close the logs opened for partitions no longer wanted and
    delete their directories."""
    for log_ in unwanted:
        try:
            log_.delete()
        except OSError as error:
            log.warning("partition_discard_failed", directory=str(log_.directory), error=str(error))
