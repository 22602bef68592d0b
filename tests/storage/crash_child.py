"""Child process of test_crash.py: append deterministic batches until killed.

Usage: crash_child.py <directory> <seed>. Opens the log (recovering it), prints
`R <log_end_offset>`, then appends batches forever, flushing every few batches and
printing `F <log_end_offset>` after each `flush()` returns (so the parent knows what
must survive a SIGKILL). Appends carry up to 12 batches (up to ~75 KB) each, or go
batch by batch through `append_batch` (the broker's produce path).
"""

from __future__ import annotations

import functools
import hashlib
import random
import sys

import structlog

from ottla.protocol import Record, RecordBatchView, build_batch
from ottla.storage import Log, LogConfig

CONFIG = LogConfig(segment_bytes=256 * 1024, index_interval_bytes=1024, segment_index_bytes=4096)


@functools.cache
def _template(kind: int) -> bytes:
    count = 1 + kind % 4
    size = 50 + (kind * 7919) % 6000
    seed = hashlib.sha256(str(kind).encode()).digest()
    value = (seed * (size // len(seed) + 1))[:size]
    records = [
        Record(key=b"%d-%d" % (kind, index), value=value, offset_delta=index)
        for index in range(count)
    ]
    return bytes(build_batch(records, base_timestamp=1_000_000 + kind))


def expected_batch(base_offset: int) -> bytearray:
    """The batch whose first offset is `base_offset` (parent and child agree).

    Its content depends on `base_offset % 61` (templates are built once, so the
    child spends its time appending, not encoding); the base offset is patched in.
    """
    batch = bytearray(_template(base_offset % 61))
    RecordBatchView(batch).set_base_offset(base_offset)
    return batch


def main() -> None:
    directory, seed = sys.argv[1], int(sys.argv[2])
    # stdout carries the protocol to the parent; log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    rng = random.Random(seed)
    log = Log.open(directory, CONFIG)
    out = sys.stdout
    out.write(f"R {log.log_end_offset}\n")
    out.flush()
    while True:
        for _ in range(rng.randint(1, 4)):
            # Several batches per append: one large pwritev a kill can land inside.
            batches, offset = [], log.log_end_offset
            for _ in range(rng.randint(1, 12)):
                batches.append(expected_batch(offset))
                offset += 1 + offset % 61 % 4
            if rng.random() < 0.5:
                log.append(b"".join(batches), now_ms=0)
            else:  # the produce path, one batch at a time (mostly its fast path)
                for batch in batches:
                    log.append_batch(RecordBatchView(bytes(batch)), 0)
        log.flush()
        out.write(f"F {log.log_end_offset}\n")
        out.flush()


if __name__ == "__main__":
    main()
