"""ISR changes from the leader: AlterPartition to the active controller.

A leader shrinks the ISR of its partitions whose followers have not caught up for
`replica.lag.time.max.ms` (checked every half of it, as Kafka's `isr-expiration`
task), and expands it when a follower outside it reaches the high watermark (checked
on that follower's fetch). Either way it sends AlterPartition v3 (its broker epoch, the
partition's leader epoch and partition epoch, the proposed ISR) through
`controller.call` (in place on the active controller, else in an Envelope); the
controller validates the epochs and commits a PartitionChangeRecord, and the new ISR
reaches the leader through its metadata image (`Partition.update_leader_isr`). At most
one AlterPartition per partition is in flight; a refused or failed one is simply
retried by the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from ottla.protocol import SUPPORTED_APIS, ErrorCode, make

if TYPE_CHECKING:
    from ottla.broker.broker import Broker
    from ottla.broker.partitions import Partition

__all__ = ["IsrManager"]

log = structlog.get_logger("ottla.isr")

ALTER_PARTITION_VERSION = 3
_ALTER_PARTITION = SUPPORTED_APIS[56]
_ALTER_TIMEOUT_S = 5.0


class IsrManager:
    """See the module docstring."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.lag_time_max_ms = int(broker.config.get("replica.lag.time.max.ms"))
        self._in_flight: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._shrink_loop())

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    def maybe_expand(self, partition: Partition, replica_id: int) -> None:
        """On a follower's fetch: propose it joins the ISR once it has caught up."""
        state = partition.replication
        if state is None or not state.can_join_isr(replica_id):
            return
        self._propose(partition, (*state.isr, replica_id), "expand")

    async def _shrink_loop(self) -> None:
        interval_s = max(self.lag_time_max_ms / 2, 50) / 1000
        while True:
            await asyncio.sleep(interval_s)
            now = self.broker.monotonic_clock()
            for partition in self.broker.replicas:
                state = partition.replication
                if state is None:
                    continue
                out = state.out_of_sync_replicas(now, self.lag_time_max_ms)
                if out:
                    isr = tuple(r for r in state.isr if r not in out)
                    self._propose(partition, isr, "shrink")

    def _propose(self, partition: Partition, isr: tuple[int, ...], reason: str) -> None:
        key = (partition.topic, partition.index)
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        task = asyncio.get_running_loop().create_task(self._alter(partition, isr, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _alter(self, partition: Partition, isr: tuple[int, ...], reason: str) -> None:
        key = (partition.topic, partition.index)
        state = partition.replication
        try:
            if state is None:
                return
            log.info(
                "isr_change_proposed",
                partition=partition.name,
                reason=reason,
                isr=list(state.isr),
                new_isr=list(isr),
            )
            response = await self.broker.controller.call(
                self._request(partition, state.partition_epoch, isr), _ALTER_TIMEOUT_S
            )
            code = _first_error(response)
            if code is not ErrorCode.none:
                log.warning("isr_change_refused", partition=partition.name, error=code.name)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a task boundary: the next check proposes again
            log.warning("isr_change_failed", partition=partition.name, error=repr(error))
        finally:
            self._in_flight.discard(key)

    def _request(self, partition: Partition, partition_epoch: int, isr: tuple[int, ...]) -> Any:
        module = _ALTER_PARTITION.request_module(ALTER_PARTITION_VERSION)
        broker_epoch = self.broker.controller.broker_epoch
        return make(
            _ALTER_PARTITION.request_type(ALTER_PARTITION_VERSION),
            broker_id=self.broker.node_id,
            broker_epoch=broker_epoch,
            topics=(
                make(
                    module.TopicData,
                    topic_id=partition.topic_id,
                    partitions=(
                        make(
                            module.PartitionData,
                            partition_index=partition.index,
                            leader_epoch=partition.leader_epoch,
                            new_isr_with_epochs=tuple(
                                make(module.BrokerState, broker_id=r, broker_epoch=-1) for r in isr
                            ),
                            leader_recovery_state=0,
                            partition_epoch=partition_epoch,
                        ),
                    ),
                ),
            ),
        )


def _first_error(response: Any) -> ErrorCode:
    if response.error_code != ErrorCode.none:
        return ErrorCode(int(response.error_code))
    for topic in response.topics:
        for partition in topic.partitions:
            if partition.error_code != ErrorCode.none:
                return ErrorCode(int(partition.error_code))
    return ErrorCode.none
