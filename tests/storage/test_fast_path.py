"""`Log.append_batch`'s fast path does exactly what the general append path does.

Proves: for random sequences of appends (views and bytes, growing and stalling
timestamps, leader epochs, batches over `max.message.bytes`), follower appends,
flushes, reads, rolls, truncations, config changes and reopens, under random small
settings (segments, index intervals and capacities, `flush.messages`, `flush.ms`,
`segment.ms`), a log taking the fast path and a log forced onto the general path
for every append return the same results, hold the same state after every step
(segments, offsets, timestamps, index entries, recovery point, epochs) and leave
byte-identical files.
Also: a view shorter than its batch is refused, and the fast path is really taken.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ottla.protocol import ErrorCode, ProtocolError, RecordBatchView
from ottla.storage import Log, LogConfig
from ottla.storage.config import LONG_MAX

from .helpers import make_batch, read_all, with_base_offset


class _GeneralOnly(Log):
    """A log that never arms the fast path: every append takes the general path."""

    def _arm(self, now_ms: int) -> None:
        self._fast = None


@dataclass
class _Append:
    records: int
    value_bytes: int
    timestamp_step_ms: int
    now_step_ms: int
    leader_epoch: int | None
    as_view: bool
    no_timestamp: bool


_APPENDS = st.builds(
    _Append,
    records=st.integers(1, 4),
    value_bytes=st.sampled_from([0, 40, 300, 700]),
    # segment.ms and flush.ms are 1000 and 500 below: step onto and over them.
    timestamp_step_ms=st.sampled_from([0, 0, 1, 5, 400, -3, 1000, 1001]),
    now_step_ms=st.sampled_from([0, 0, 1, 300, 499, 500, 1000, 1001]),
    leader_epoch=st.sampled_from([None, None, 0, 1, 2]),
    as_view=st.booleans(),
    no_timestamp=st.sampled_from([False, False, False, True]),  # segment.ms by now_ms
)
_OPERATIONS = st.lists(
    st.one_of(
        _APPENDS,
        _APPENDS,
        _APPENDS,
        _APPENDS,
        st.sampled_from(
            ["flush", "read", "roll", "truncate", "config", "reopen", "time", "follower"]
        ),
    ),
    min_size=20,
    max_size=80,
)
_CONFIGS = st.builds(
    LogConfig,
    segment_bytes=st.sampled_from([1500, 4000, 20_000, 1 << 30]),
    index_interval_bytes=st.sampled_from([0, 100, 600, 4096]),
    segment_index_bytes=st.sampled_from([24, 96, 10 * 1024 * 1024]),
    flush_messages=st.sampled_from([1, 7, 40, LONG_MAX]),
    flush_ms=st.sampled_from([500, LONG_MAX]),
    segment_ms=st.sampled_from([1000, 7 * 24 * 3600 * 1000]),
    max_message_bytes=st.sampled_from([1200, 1024 * 1024]),
)


def _state(log: Log) -> object:
    segments = [
        (
            segment.base_offset,
            segment.size,
            segment.next_offset,
            segment.max_timestamp,
            segment.offset_of_max_timestamp,
            segment.first_batch_timestamp,
            segment.verified_bytes,
            segment.index_mark,
            segment.last_indexed_timestamp,
            segment.active,
            segment.offset_index.entries,
            segment.time_index.entries,
            bytes(segment.offset_index.mirror or b""),
            bytes(segment.time_index.mirror or b""),
        )
        for segment in log.segments
    ]
    return (
        segments,
        log.log_start_offset,
        log.log_end_offset,
        log.recovery_point,
        log.unflushed_messages,
        log.epoch_cache.entries,
    )


def _append(log: Log, batch: bytes, as_view: bool, now_ms: int, leader_epoch: int | None) -> object:
    try:
        if as_view:
            return log.append_batch(RecordBatchView(batch), now_ms, leader_epoch)
        return log.append(batch, now_ms=now_ms, leader_epoch=leader_epoch)
    except ProtocolError as error:
        return error.error_code


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_CONFIGS, operations=_OPERATIONS)
def test_the_fast_path_matches_the_general_path(
    config: LogConfig, operations: list[_Append | str]
) -> None:
    _check_equivalence(config, operations)


_SAME = _Append(1, 0, 0, 0, None, True, False)  # 73 bytes, 1 offset
_BOUNDARIES = [
    # Each setting exactly on a multiple of the batch, offsets or steps.
    LogConfig(segment_bytes=73 * 5, index_interval_bytes=73, segment_index_bytes=8 * 3),
    LogConfig(index_interval_bytes=73 * 2, segment_index_bytes=12 * 2),
    LogConfig(flush_messages=4),
    LogConfig(flush_ms=500),
    LogConfig(segment_ms=1000),
]


@pytest.mark.parametrize("config", _BOUNDARIES)
@pytest.mark.parametrize(
    "step",
    [
        _SAME,
        _Append(1, 0, 500, 250, 1, True, False),
        _Append(1, 0, 0, 1001, None, False, True),  # no timestamps: segment.ms by now_ms
        _Append(1, 0, 1001, 499, 0, True, False),
    ],
)
def test_the_fast_path_matches_the_general_path_on_every_boundary(
    config: LogConfig, step: _Append, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offsets relative to a segment's base roll at 2**31 - 1: make that reachable.
    monkeypatch.setattr("ottla.storage.log.RELATIVE_OFFSET_MAX", 9)
    script: list[_Append | str] = [step] * 23 + ["flush"] + [_SAME, step] * 9 + ["reopen"]
    _check_equivalence(config, script + [step] * 12 + ["read", "time"])


def _check_equivalence(config: LogConfig, operations: list[_Append | str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        fast = Log.open(Path(root) / "fast-0", config)
        general = _GeneralOnly.open(Path(root) / "general-0", config)
        logs = [fast, general]
        timestamp_ms, now_ms, epoch = 10_000, 0, 0
        for operation in operations:
            results = []
            if isinstance(operation, _Append):
                timestamp_ms += operation.timestamp_step_ms
                now_ms += operation.now_step_ms
                if operation.leader_epoch is not None:
                    epoch = max(epoch, operation.leader_epoch)
                batch = bytes(
                    make_batch(
                        operation.records,
                        value_bytes=operation.value_bytes,
                        timestamp_ms=-1 if operation.no_timestamp else timestamp_ms,
                    )
                )
                leader_epoch = None if operation.leader_epoch is None else epoch
                for log in logs:
                    results.append(_append(log, batch, operation.as_view, now_ms, leader_epoch))
            elif operation == "follower":  # a leader's batch, after a compaction gap
                for log in logs:
                    batch = with_base_offset(
                        make_batch(2, timestamp_ms=timestamp_ms), log.log_end_offset + 3
                    )
                    results.append(log.append(batch, now_ms=now_ms, assign_offsets=False))
            elif operation == "flush":
                for log in logs:
                    log.flush(now_ms)
            elif operation == "read":
                for log in logs:
                    results.append(read_all(log))
            elif operation == "time":
                for log in logs:
                    results.append(log.offset_for_timestamp(timestamp_ms - 2))
            elif operation == "roll":
                for log in logs:
                    log.roll(now_ms)
            elif operation == "truncate":
                for log in logs:
                    log.truncate_to(max(log.log_start_offset, log.log_end_offset - 5))
            elif operation == "config":
                for log in logs:
                    log.update_config(config)
            elif operation == "reopen":
                fast.close()
                general.close()
                fast = Log.open(fast.directory, config, now_ms=now_ms)
                general = _GeneralOnly.open(general.directory, config, now_ms=now_ms)
                logs = [fast, general]
            assert results[:1] == results[1:], operation
            assert _state(fast) == _state(general), operation
        assert read_all(fast) == read_all(general)
        fast.close()
        general.close()
        fast_files = sorted(path.name for path in fast.directory.iterdir())
        assert fast_files == sorted(path.name for path in general.directory.iterdir())
        for name in fast_files:
            expected = (general.directory / name).read_bytes()
            assert (fast.directory / name).read_bytes() == expected, name


def test_the_fast_path_is_taken_and_refuses_a_short_view(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0")
    batch = bytes(make_batch(3))
    assert log.append_batch(RecordBatchView(batch), 0) == 0
    assert log._fast is not None  # armed by the first (general) append
    armed = log._fast
    assert log.append_batch(RecordBatchView(batch), 0) == 3
    assert log._fast is armed  # the second append did not take the general path
    size = log.active_segment.size
    short = RecordBatchView(batch[:-1] + b"")  # the header promises one byte more
    with pytest.raises(ProtocolError) as caught:
        log.append_batch(short, 0)
    assert caught.value.error_code == ErrorCode.corrupt_message
    assert (log.log_end_offset, log.active_segment.size) == (6, size)
    assert log.append_batch(RecordBatchView(batch), 0) == 6
    assert len(read_all(log)) == 3
    log.close()


@pytest.mark.parametrize("ending", ["close", "delete"])
def test_a_closed_log_refuses_appends_on_the_fast_path_too(tmp_path: Path, ending: str) -> None:
    log = Log.open(tmp_path / "t-0")
    batch = RecordBatchView(bytes(make_batch(2)))
    log.append_batch(batch, 0)
    log.append_batch(batch, 0)
    getattr(log, ending)()
    with pytest.raises(AssertionError, match="closed"):
        log.append_batch(batch, 0)


def test_the_fast_path_is_armed_again_after_a_clean_reopen(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0")
    batch = RecordBatchView(bytes(make_batch(2)))
    log.append_batch(batch, 0)
    log.close()
    log = Log.open(tmp_path / "t-0")
    assert log.active_segment.verified_bytes == 0  # not CRC-checked since opening
    log.append_batch(batch, 0)  # the general path, which arms the fast one
    armed = log._fast
    assert armed is not None
    log.append_batch(batch, 0)
    assert log._fast is armed and log.log_end_offset == 6
    assert log.active_segment.verified_bytes == 0
    log.close()


def test_growing_the_active_file_keeps_unwritten_index_entries(tmp_path: Path) -> None:
    # A raised segment.bytes lets the active segment grow past what was preallocated;
    # the index entries not yet written to their files must survive the reopening.
    log = Log.open(tmp_path / "t-0", LogConfig(segment_bytes=4000, index_interval_bytes=0))
    batch = RecordBatchView(bytes(make_batch(1, value_bytes=300)))
    for _ in range(10):
        log.append_batch(batch, 0)
    segment = log.active_segment
    assert segment.offset_index.pending_entries == 9  # one per batch after the first
    log.update_config(LogConfig(segment_bytes=1 << 20, index_interval_bytes=0))
    for _ in range(10):
        log.append_batch(batch, 0)
    assert log.active_segment is segment and segment.capacity_bytes > 4000
    assert segment.offset_index.entries == 19
    assert [segment.offset_index.entry(i)[0] for i in range(19)] == list(range(1, 20))
    log.close()
