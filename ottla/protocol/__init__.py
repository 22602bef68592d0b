"""ottla.protocol: the Kafka wire protocol, sans-IO (PURE: no asyncio, sockets, clock).

Frames (`FrameDecoder`), request/response headers, the API registry
(`SUPPORTED_APIS`), request decoding and response encoding through kio
(`decode_request`, `encode_response`), record batches (`RecordBatchView`,
`iter_batches`, `record_codec`), Kafka error codes (`ErrorCode`) and the one
exception type for bad input (`ProtocolError`).
"""

from ottla.protocol.apis import (
    SUPPORTED_APIS,
    ApiRegistry,
    ApiSpec,
    build_api_versions_response,
    make_spec,
)
from ottla.protocol.codec import (
    DecodedRequest,
    UnsupportedRequest,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    frame_encoded,
    kio_body,
)
from ottla.protocol.entities import has_field, make
from ottla.protocol.errors import ErrorCode, ProtocolError
from ottla.protocol.fetch_wire import (
    FETCH_FLEXIBLE_MIN,
    REPLICA_FETCH_VERSION,
    EncodedBody,
    FetchPartitionRequest,
    FetchRequestBody,
    FetchResponseBody,
    FetchTopic,
    ReplicaPartition,
    ReplicaStateRequest,
    read_fetch_answer,
    set_correlation_id,
    write_fetch_response,
    write_replica_fetch,
)
from ottla.protocol.framing import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, frame_size_prefix
from ottla.protocol.header import (
    RequestHeader,
    decode_request_header,
    encode_request_header,
    encode_response_header,
)
from ottla.protocol.record_codec import (
    ControlRecordType,
    Record,
    build_batch,
    build_control_batch,
    compress,
    decode_control_record,
    decode_records,
    decompress,
)
from ottla.protocol.records import (
    BATCH_HEADER_BYTES,
    LOG_OVERHEAD_BYTES,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    Compression,
    RecordBatchView,
    TimestampType,
    iter_batches,
    peek_batch_size,
)

__all__ = [
    "BATCH_HEADER_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "FETCH_FLEXIBLE_MIN",
    "LOG_OVERHEAD_BYTES",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "REPLICA_FETCH_VERSION",
    "SUPPORTED_APIS",
    "ApiRegistry",
    "ApiSpec",
    "Compression",
    "ControlRecordType",
    "DecodedRequest",
    "EncodedBody",
    "ErrorCode",
    "FetchPartitionRequest",
    "FetchRequestBody",
    "FetchResponseBody",
    "FetchTopic",
    "FrameDecoder",
    "ProtocolError",
    "Record",
    "RecordBatchView",
    "ReplicaPartition",
    "ReplicaStateRequest",
    "RequestHeader",
    "TimestampType",
    "UnsupportedRequest",
    "build_api_versions_response",
    "build_batch",
    "build_control_batch",
    "compress",
    "decode_control_record",
    "decode_records",
    "decode_request",
    "decode_request_header",
    "decode_response",
    "decompress",
    "encode_request",
    "encode_request_header",
    "encode_response",
    "encode_response_header",
    "frame_encoded",
    "frame_size_prefix",
    "has_field",
    "iter_batches",
    "kio_body",
    "make",
    "make_spec",
    "peek_batch_size",
    "read_fetch_answer",
    "set_correlation_id",
    "write_fetch_response",
    "write_replica_fetch",
]
