"""The Raft core survives thousands of seeded simulated faults, and the simulator can fail.

Proves: over OTTLA_SIM_SEEDS seeds (default 2000; even seeds run 3 nodes, odd seeds 5)
with message loss, duplication, delay/reordering, partitions, clean and lossy crashes
(including crashes part-way through a Ready), restarts, snapshots and resignations, no
safety property is violated after any event and every calm period elects a leader that
commits (see tests/sim/simulator.py for the checks); a seed replays exactly; and planted
bugs (a vote granted without the log check, a high watermark without a majority) are
caught, so the checks are known to be able to fail.

Replay one seed: OTTLA_SIM_SEED=1234 .venv/bin/pytest tests/sim -k replay -s
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from ottla.cluster.raft.core import RaftCore
from tests.sim.simulator import Simulation, Violation, replay_command, run_seed

SEEDS = int(os.environ.get("OTTLA_SIM_SEEDS", "2000"))
WORKERS = int(os.environ.get("OTTLA_SIM_WORKERS", str(min(2, os.cpu_count() or 1))))


def _run_many(seeds: range, core_class: type[RaftCore] = RaftCore) -> list[tuple[int, str]]:
    """Failures (seed, message) over `seeds`, in seed order."""
    if WORKERS <= 1 or len(seeds) < 50:
        results = [run_seed(seed, core_class=core_class) for seed in seeds]
    else:
        with ProcessPoolExecutor(WORKERS) as pool:
            results = list(pool.map(_run_seed_with, seeds, [core_class] * len(seeds), chunksize=25))
    return [(seed, message) for seed, message, _ in results if message is not None]


def _run_seed_with(seed: int, core_class: type[RaftCore]) -> tuple[int, str | None, int]:
    return run_seed(seed, core_class=core_class)


def test_seeds_find_no_violation() -> None:
    failures = _run_many(range(SEEDS))
    report = "\n\n".join(message for _, message in failures[:5])
    assert not failures, (
        f"{len(failures)} of {SEEDS} seeds failed: {[seed for seed, _ in failures]}\n{report}"
    )


def test_replay() -> None:
    """Re-run OTTLA_SIM_SEED (seed 0 if unset) and print its event trace on failure."""
    seed = int(os.environ.get("OTTLA_SIM_SEED", "0"))
    simulation = Simulation(seed)
    try:
        simulation.run()
    except Violation:
        print("\n".join(simulation.trace))
        raise
    print(f"seed {seed}: {simulation.events} events, {len(simulation.committed)} committed")


def test_a_seed_replays_exactly() -> None:
    first, second = Simulation(7).run(), Simulation(7).run()
    assert first.trace == second.trace
    assert first.events == second.events
    assert first.committed == second.committed
    assert len(first.committed) > 10 and len(first.leaders) >= 1


def test_both_cluster_sizes_run() -> None:
    assert len(Simulation(2).voters) == 3
    assert len(Simulation(3).voters) == 5


class _VoteWithoutLogCheck(RaftCore):
    """Planted bug: grants (pre-)votes without comparing logs (Raft's election restriction)."""

    def log_up_to_date(self, last_offset_epoch: int, last_offset: int) -> bool:
        return True


class _CommitWithoutMajority(RaftCore):
    """Planted bug: the leader's high watermark is its own synced log end offset."""

    def _update_high_watermark(self) -> None:
        if self._durable_end > self._high_watermark:
            self._high_watermark = self._durable_end
            self._wake_parked()


@pytest.mark.parametrize("core_class", [_VoteWithoutLogCheck, _CommitWithoutMajority])
def test_planted_bug_is_caught(core_class: type[RaftCore]) -> None:
    failures = _run_many(range(40), core_class)
    assert failures, f"{core_class.__name__} survived 40 seeds: the simulator cannot fail"
    seed, message = failures[0]
    assert replay_command(seed) in message
    print(f"{core_class.__name__}: {len(failures)}/40 seeds fail; first: {message}")
