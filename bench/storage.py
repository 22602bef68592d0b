"""Storage benchmark: `python -m bench.storage [--quick] [--dir PATH]`.

Measures, on the disk holding `--dir` (default: a temporary directory):

1. append throughput of 1 KiB, 16 KiB and 1 MiB batches (512 MiB per side) against
   plain sequential `os.write()` of the same bytes to a file in the same directory,
   in the same run:
   - "view": `Log.append_batch(view, now_ms, leader_epoch)`, the broker's produce
     path. The view (over a memoryview of the batch) is built and CRC-checked before
     the timed loop, as `Partition.append_records` does while handling the request
     (`iter_batches`, measured by `bench.protocol`); storage does not repeat the CRC;
   - "bytes": `Log.append(batch_bytes)`, where storage itself checks the header and
     CRC32C of every batch before writing it;
   each assigns the offset, stamps the leader epoch, writes the batch through the
   segment's descriptor and keeps the sparse indexes; plain `write()` only copies.
   Both sides without fsync in the loop, then including the final fsync (ottla:
   `flush()`, which also writes the pending index entries). The three sides take
   turns 4 MiB at a time (rotating order; `os.sync()` before each run), so that other
   jobs, writeback and page-cache reclaim fall on all of them alike; the table gives
   the totals and, in brackets, the median of the per-chunk ratios. `--repeats N`
   runs N times and keeps the median run. Every batch is the same bytes, so the time
   index gets one entry; a last row uses 16 KiB batches whose timestamps all differ
   and rise (a time-index entry per batch, as under a busy producer), 4,096 batches;
2. read throughput: `Log.read` over the whole log, first pass (CRC-verifies each
   batch once) and second pass, each copying the bytes out as a socket send would;
3. reopen time of a 2 GiB log after a clean close, after an unclean stop (no clean
   marker; recovery scans from the last recovery point) and after an unclean stop
   without a recovery checkpoint (full scan of every batch);
4. resident memory (RSS) while 2,000 partition logs are open.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ottla.protocol import Record, RecordBatchView, build_batch
from ottla.storage import Log, LogConfig, MapBudget

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def _batch_of(total_bytes: int, timestamp_ms: int = 0) -> bytes:
    """A one-record batch whose whole size is `total_bytes`."""
    probe = build_batch([Record(key=b"k", value=b"")])
    overhead = len(probe)
    value_bytes = total_bytes - overhead
    for _ in range(4):  # the value's varint length grows with it
        batch = build_batch(
            [Record(key=b"k", value=os.urandom(max(0, value_bytes)))], base_timestamp=timestamp_ms
        )
        value_bytes += total_bytes - len(batch)
    assert len(batch) == total_bytes, (len(batch), total_bytes)
    return bytes(batch)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _drop(log: Log) -> None:
    """Abandon a log without closing it: what a crash leaves (after a flush)."""
    del log
    gc.collect()


class _Side:
    """One side of the append comparison: `run(items)` appends or writes them in order."""

    def __init__(self, kind: str, target: Path) -> None:
        self.kind = kind
        self.loop_s = 0.0
        self.sync_s = 0.0
        self.chunks_s: list[float] = []
        self._log: Log | None = None
        self._fd = -1
        if kind == "plain":
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        else:
            self._log = Log.open(target, LogConfig(max_message_bytes=2 * MIB))

    def run(self, items: list[bytes] | list[RecordBatchView]) -> None:
        # The same loop shape on every side: one call per batch, nothing else.
        if self.kind == "view":  # the broker's path: it validated each batch (CRC)
            assert self._log is not None
            append_batch = self._log.append_batch
            started = time.perf_counter()
            for view in items:
                append_batch(view, 0, 0)  # type: ignore[arg-type]
        elif self.kind == "bytes":
            assert self._log is not None
            append = self._log.append
            started = time.perf_counter()
            for batch in items:
                append(batch, now_ms=0, leader_epoch=0)
        else:
            write, fd = os.write, self._fd
            started = time.perf_counter()
            for batch in items:
                write(fd, batch)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        self.loop_s += elapsed
        self.chunks_s.append(elapsed)

    def sync_and_close(self) -> None:
        started = time.perf_counter()
        if self._log is not None:
            self._log.flush()  # fdatasync, and the pending index entries
            self.sync_s = time.perf_counter() - started
            self._log.close()
        else:
            os.fsync(self._fd)
            self.sync_s = time.perf_counter() - started
            os.close(self._fd)


_CHUNK_BYTES = 4 * MIB


def _paired_run(root: Path, batches: list[bytes], count: int, tag: str) -> dict[str, _Side]:
    """Write `count` batches (cycling through `batches`) on each side, 4 MiB at a time
    per side, taking turns in rotating order, so that whatever else the machine does
    (other jobs, writeback, page-cache reclaim) falls on all sides alike."""
    # What the broker's Partition.append_records does with a request's records.
    views = [RecordBatchView(memoryview(batch)) for batch in batches]
    for view in views:
        view.validate()
    rounds = -(-count // len(batches))
    sequences: dict[str, list[bytes] | list[RecordBatchView]] = {
        "view": (views * rounds)[:count],
        "bytes": (batches * rounds)[:count],
        "plain": (batches * rounds)[:count],
    }
    os.sync()
    sides = {kind: _Side(kind, root / f"{kind}-{tag}") for kind in sequences}
    kinds = list(sides)
    per_chunk = max(1, _CHUNK_BYTES // len(batches[0]))
    for chunk, start in enumerate(range(0, count, per_chunk)):
        for kind in kinds[chunk % 3 :] + kinds[: chunk % 3]:
            sides[kind].run(sequences[kind][start : start + per_chunk])
    for kind in kinds[1:] + kinds[:1]:
        sides[kind].sync_and_close()
    for path in root.glob(f"*-{tag}"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return sides


def bench_append(root: Path, total_bytes: int, repeats: int) -> list[str]:
    """Paired runs (see `_paired_run`); the median run of `repeats`."""
    lines = [
        "| batch | plain write() MB/s | ottla append_batch(view) MB/s | ratio (median of "
        "4 MiB chunks) | ottla append(bytes) MB/s | ratio (chunks) | plain +fsync MB/s "
        "| ottla (view) +fsync MB/s | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rising_count = 4096
    cases = [
        (f"{size // KIB} KiB", [_batch_of(size)], max(1, total_bytes // size))
        for size in (KIB, 16 * KIB, MIB)
    ]
    cases.append(
        (
            "16 KiB, rising timestamps",
            [_batch_of(16 * KIB, 1_700_000_000_000 + index) for index in range(rising_count)],
            rising_count,
        )
    )
    for number, (label, batches, count) in enumerate(cases):
        runs = [
            _paired_run(root, batches, count, f"{number}-{repeat}") for repeat in range(repeats)
        ]
        sides = sorted(runs, key=lambda run: run["plain"].loop_s / run["view"].loop_s)[
            len(runs) // 2
        ]
        plain, view, raw = sides["plain"], sides["view"], sides["bytes"]

        def chunk_ratio(side: _Side, plain: _Side = plain) -> float:
            return statistics.median(
                p / o for p, o in zip(plain.chunks_s, side.chunks_s, strict=True)
            )

        megabytes = count * len(batches[0]) / 1e6
        plain_synced, view_synced = plain.loop_s + plain.sync_s, view.loop_s + view.sync_s
        lines.append(
            f"| {label} | {megabytes / plain.loop_s:.0f} | {megabytes / view.loop_s:.0f} "
            f"| {plain.loop_s / view.loop_s:.0%} ({chunk_ratio(view):.0%}) "
            f"| {megabytes / raw.loop_s:.0f} "
            f"| {plain.loop_s / raw.loop_s:.0%} ({chunk_ratio(raw):.0%}) "
            f"| {megabytes / plain_synced:.0f} | {megabytes / view_synced:.0f} "
            f"| {plain_synced / view_synced:.0%} |"
        )
    return lines


def bench_read_and_reopen(root: Path, log_bytes: int) -> list[str]:
    directory = root / "reopen-0"
    batch = _batch_of(16 * KIB)
    log = Log.open(directory)
    for _ in range(log_bytes // len(batch)):
        log.append(batch, now_ms=0)
    active_bytes = log.active_segment.size
    segments = len(log.segments)
    # Stop without closing or flushing: the recovery point is the active segment's
    # base (written when the previous segment rolled), so all of it gets scanned.
    _drop(log)
    lines = [f"log of {log_bytes / GIB:.2f} GiB in 16 KiB batches, {segments} segments:", ""]
    unclean_s = _timed(lambda: Log.open(directory).close())
    lines.append(
        f"- reopen after an unclean stop (scans the active segment from the recovery "
        f"point: {active_bytes / MIB:.0f} MiB): {unclean_s * 1000:.0f} ms"
    )
    clean_s = _timed(lambda: Log.open(directory).close())
    lines.append(f"- reopen after a clean close: {clean_s * 1000:.0f} ms")
    (directory / ".clean-shutdown").unlink()
    (directory / "recovery-point-checkpoint").unlink()
    full_s = _timed(lambda: Log.open(directory).close())
    lines.append(
        f"- reopen after an unclean stop without a recovery checkpoint (scans all "
        f"{log_bytes / GIB:.2f} GiB): {full_s * 1000:.0f} ms"
    )

    log = Log.open(directory)
    for label in ("first read (CRC-verifies)", "second read"):
        offset, copied = 0, 0
        started = time.perf_counter()
        while offset < log.log_end_offset:
            with log.read(offset, MIB) as result:
                copied += len(bytes(result.records))
                offset = result.next_offset
        seconds = time.perf_counter() - started
        lines.append(
            f"- read, {label}, 1 MiB fetches copied out: {copied / 1e6 / seconds:.0f} MB/s"
        )
    log.close()
    shutil.rmtree(directory)
    return lines


def bench_partitions(root: Path, partitions: int) -> list[str]:
    gc.collect()
    before = _rss_bytes()
    budget = MapBudget()
    batch = _batch_of(KIB)
    logs = []
    started = time.perf_counter()
    for partition in range(partitions):
        log = Log.open(root / f"many-{partition}", map_budget=budget)
        log.append(batch, now_ms=0)
        logs.append(log)
    open_s = time.perf_counter() - started
    gc.collect()
    after = _rss_bytes()
    descriptors = len(os.listdir("/proc/self/fd"))
    maps = len(Path("/proc/self/maps").read_text().splitlines())
    for log in logs:
        log.close()
    for partition in range(partitions):
        shutil.rmtree(root / f"many-{partition}")
    return [
        f"- {partitions} partitions open (one 1 KiB batch each): RSS +"
        f"{(after - before) / MIB:.0f} MiB ({(after - before) / partitions / KIB:.1f} KiB "
        f"per partition), {descriptors} descriptors, {maps} memory maps, "
        f"opened in {open_s:.1f} s"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (same disk)")
    parser.add_argument("--repeats", type=int, default=0, help="append runs per kind (median)")
    parser.add_argument("--append-only", action="store_true", help="skip read/reopen/RSS")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    # Per side: three sides of 512 MiB stay under the kernel's dirty-page thresholds
    # on the 23 GiB machine of bench/RESULTS.md, so every side appends into the page
    # cache. With 1 GiB per side the last fifth of each run met dirty throttling
    # (pauses of 20-100 ms in balance_dirty_pages), each landing on one side's chunk.
    append_bytes = 64 * MIB if args.quick else 512 * MIB
    log_bytes = 128 * MIB if args.quick else 2 * GIB
    partitions = 200 if args.quick else 2000
    root = Path(tempfile.mkdtemp(prefix="ottla-bench-", dir=args.dir))
    try:
        print(f"storage benchmark in {root} ({os.cpu_count()} cores)", flush=True)
        print(f"append, {append_bytes / MIB:.0f} MiB per side and run:", flush=True)
        for line in bench_append(root, append_bytes, args.repeats or (1 if args.quick else 3)):
            print(line, flush=True)
        print(flush=True)
        if args.append_only:
            return 0
        for line in bench_read_and_reopen(root, log_bytes):
            print(line, flush=True)
        for line in bench_partitions(root, partitions):
            print(line, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
