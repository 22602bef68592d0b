"""Microbenchmarks of the protocol layer's hot paths.

Run:  .venv/bin/python -m bench.protocol

Prints microseconds per operation (best and median of several timeit repeats) for:
decoding a Produce v9 request with 1, 10 and 100 partitions (one 1 KiB batch each),
and the length pre-check's share of it; reading a batch header and verifying its
CRC32C for 1 KiB and 1 MiB batches; encoding a Fetch response with 1 and 100
partitions of 1 MiB each (records as memoryviews of one buffer, as a log segment's
would be), and the same with empty records to show the per-partition cost.
"""

from __future__ import annotations

import datetime
import functools
import io
import statistics
import struct
import sys
import timeit
from collections.abc import Callable
from typing import Any

from kio.serial import entity_writer

from ottla.protocol import (
    SUPPORTED_APIS,
    ErrorCode,
    Record,
    RecordBatchView,
    RequestHeader,
    build_batch,
    decode_request,
    encode_response,
)
from ottla.protocol.lengths import check_lengths

REPEATS = 7
# The Produce frames' header: api_key, api_version, correlation_id, "bench", no tags.
BODY_OFFSET = 2 + 2 + 4 + 2 + 5 + 1


def measure(function: Callable[[], object]) -> tuple[float, float]:
    """(best, median) microseconds per call."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    number = max(1, number // 2)
    runs = [total / number * 1e6 for total in timer.repeat(repeat=REPEATS, number=number)]
    return min(runs), statistics.median(runs)


def batch_of(size_bytes: int) -> bytearray:
    """A v2 batch of about `size_bytes`, uncompressed, 1 KiB records."""
    value = bytes(range(256)) * 4
    count = max(1, size_bytes // 1040)
    records = [Record(key=None, value=value[: size_bytes - 80] if count == 1 else value)]
    records *= count
    return build_batch(records)


def produce_frame(partitions: int, batch: bytes) -> bytes:
    version = 9
    spec = SUPPORTED_APIS[0]
    request_type = spec.request_type(version)
    module = sys.modules[request_type.__module__]
    body = request_type(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            module.TopicProduceData(
                name="bench",
                partition_data=tuple(
                    module.PartitionProduceData(index=index, records=batch)
                    for index in range(partitions)
                ),
            ),
        ),
    )
    out = io.BytesIO()
    out.write(struct.pack(">hhih", 0, version, 1, 5) + b"bench\x00")
    entity_writer(request_type)(out, body)
    return out.getvalue()


def fetch_response(partitions: int, records: list[memoryview] | None) -> tuple[Any, RequestHeader]:
    version = SUPPORTED_APIS[1].max_version
    spec = SUPPORTED_APIS[1]
    module = spec.response_module(version)
    body = spec.response_type(version)(
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        session_id=0,
        responses=(
            module.FetchableTopicResponse(
                topic_id=None,
                partitions=tuple(
                    module.PartitionData(
                        partition_index=index,
                        error_code=ErrorCode.none,
                        high_watermark=1_000_000,
                        last_stable_offset=1_000_000,
                        log_start_offset=0,
                        aborted_transactions=None,
                        records=None if records is None else records[index],
                    )
                    for index in range(partitions)
                ),
            ),
        ),
    )
    return body, RequestHeader(1, version, 1, "bench", 2, 0)


def main() -> None:
    rows: list[tuple[str, float, float]] = []

    def row(name: str, function: Callable[[], object]) -> None:
        best, median = measure(function)
        rows.append((name, best, median))
        print(f"{name:<58} {best:>11.1f} {median:>11.1f}", flush=True)

    print(f"{'operation':<58} {'best µs':>11} {'median µs':>11}")
    batch_1k = bytes(batch_of(1024))
    assert 900 < len(batch_1k) < 1200, len(batch_1k)
    for partitions in (1, 10, 100):
        frame = produce_frame(partitions, batch_1k)
        assert decode_request(frame).header.body_offset == BODY_OFFSET
        row(
            f"decode Produce v9, {partitions} x 1 KiB batch",
            functools.partial(decode_request, frame),
        )
        request_type = SUPPORTED_APIS[0].request_type(9)
        row(
            f"  of which length pre-check ({partitions} partitions)",
            functools.partial(check_lengths, request_type, frame, BODY_OFFSET),
        )

    batch_1m = bytes(batch_of(1 << 20))
    for label, batch in (("1 KiB", batch_1k), ("1 MiB", batch_1m)):

        def header_and_crc(b: bytes = batch) -> None:
            RecordBatchView(b).validate()

        row(f"batch header + CRC32C, {label} batch ({len(batch)} B)", header_and_crc)
        row(f"  of which header only, {label}", functools.partial(RecordBatchView, batch))

    segment = bytearray(b"\x00" * (100 << 20))
    views = [memoryview(segment)[i << 20 : (i + 1) << 20] for i in range(100)]
    for partitions in (1, 100):
        body, header = fetch_response(partitions, views)
        row(
            f"encode Fetch v{header.api_version}, {partitions} x 1 MiB (memoryviews)",
            functools.partial(encode_response, header, body),
        )
        empty, header = fetch_response(partitions, None)
        row(
            f"  same, records null ({partitions} partitions)",
            functools.partial(encode_response, header, empty),
        )


if __name__ == "__main__":
    main()
