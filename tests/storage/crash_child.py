"""Child process of test_crash.py: append deterministic batches until killed.

Usage: crash_child.py <directory> <seed>. Opens the log (recovering it), prints
`R <log_end_offset>`, then appends batches forever, flushing every few batches and
printing `F <log_end_offset>` after each `flush()` returns (so the parent knows what
must survive a SIGKILL).
"""

from __future__ import annotations

import hashlib
import random
import sys

import structlog

from ottla.protocol import Record, build_batch
from ottla.storage import Log, LogConfig

CONFIG = LogConfig(segment_bytes=256 * 1024, index_interval_bytes=1024, segment_index_bytes=4096)


def expected_batch(base_offset: int) -> bytearray:
    """The batch whose first offset is `base_offset` (parent and child agree)."""
    count = 1 + base_offset % 4
    size = 50 + (base_offset * 7919) % 16000
    seed = hashlib.sha256(str(base_offset).encode()).digest()
    value = (seed * (size // len(seed) + 1))[:size]
    records = [
        Record(key=b"%d" % (base_offset + index), value=value, offset_delta=index)
        for index in range(count)
    ]
    return build_batch(records, base_offset=base_offset, base_timestamp=1_000_000 + base_offset)


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
        for _ in range(rng.randint(1, 16)):
            batch = expected_batch(log.log_end_offset)
            log.append(batch, now_ms=0)
        log.flush()
        out.write(f"F {log.log_end_offset}\n")
        out.flush()


if __name__ == "__main__":
    main()
