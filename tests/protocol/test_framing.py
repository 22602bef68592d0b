"""FrameDecoder cuts size-prefixed frames correctly however the stream is split.

Proves: a stream split at every byte boundary yields the same frames; many frames in
one feed come out in order; a large frame received through get_buffer/buffer_updated
is filled in place; a negative or oversized size raises ProtocolError and leaves the
decoder broken for good; `buffered_bytes` counts what the decoder holds and returns
to 0 once every frame is taken; `partial` tells a stream cut mid-frame.
"""

from __future__ import annotations

import tracemalloc

import pytest

from ottla.protocol import ErrorCode, FrameDecoder, ProtocolError, frame_size_prefix


def _framed(*payloads: bytes) -> bytes:
    return b"".join(frame_size_prefix(len(p)) + p for p in payloads)


def _drain(decoder: FrameDecoder) -> list[bytes]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(bytes(frame))
    return frames


PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"\x00" * 70_000, b"tail"]


def test_split_at_every_byte_boundary() -> None:
    stream = _framed(*PAYLOADS[:4], b"last")
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        decoder.feed(stream[:cut])
        first = _drain(decoder)
        decoder.feed(stream[cut:])
        assert first + _drain(decoder) == [*PAYLOADS[:4], b"last"], cut
        assert decoder.buffered_bytes == 0
        assert not decoder.partial


def test_split_around_a_large_frame_boundaries() -> None:
    # Frames above the 64 KiB scratch size take the in-place path: cut around its
    # prefix and its end, where the two paths hand over.
    stream = _framed(b"x", PAYLOADS[4], b"y")
    large_start = 5
    large_end = large_start + 4 + len(PAYLOADS[4])
    cuts = [*range(large_start - 1, large_start + 9), *range(large_end - 3, large_end + 6)]
    for cut in cuts:
        decoder = FrameDecoder()
        decoder.feed(stream[:cut])
        first = _drain(decoder)
        decoder.feed(stream[cut:])
        assert first + _drain(decoder) == [b"x", PAYLOADS[4], b"y"], cut
        assert decoder.buffered_bytes == 0


def test_byte_at_a_time() -> None:
    stream = _framed(*PAYLOADS[:4])
    decoder = FrameDecoder()
    for index in range(len(stream)):
        decoder.feed(stream[index : index + 1])
    assert _drain(decoder) == PAYLOADS[:4]
    assert decoder.buffered_bytes == 0


def test_many_frames_in_one_feed_in_order() -> None:
    payloads = [str(index).encode() * (index % 7) for index in range(1000)]
    decoder = FrameDecoder()
    decoder.feed(_framed(*payloads))
    assert decoder.buffered_bytes == sum(4 + len(p) for p in payloads)
    assert _drain(decoder) == payloads
    assert decoder.buffered_bytes == 0


def test_buffered_bytes_accounting() -> None:
    decoder = FrameDecoder()
    stream = _framed(b"abc", b"defgh")
    decoder.feed(stream[:2])
    assert decoder.buffered_bytes == 2
    assert decoder.partial
    decoder.feed(stream[2:9])
    assert decoder.buffered_bytes == 9
    assert decoder.next_frame() == b"abc"
    assert decoder.buffered_bytes == 2
    decoder.feed(stream[9:])
    assert decoder.buffered_bytes == 9
    assert decoder.next_frame() == b"defgh"
    assert decoder.buffered_bytes == 0
    assert decoder.next_frame() is None
    assert not decoder.partial


def test_large_frame_via_get_buffer_is_filled_in_place() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = _framed(payload, b"next")
    decoder = FrameDecoder()
    position = 0
    large_buffers = []
    while position < len(stream):
        buffer = decoder.get_buffer()
        assert len(buffer) > 0
        if len(buffer) > 65_536:
            large_buffers.append(buffer.obj)
        take = min(len(buffer), len(stream) - position, 100_000)
        buffer[:take] = stream[position : position + take]
        decoder.buffer_updated(take)
        position += take
    # After the prefix, the transport writes straight into the frame's own buffer.
    assert large_buffers, "a large frame must be received into its own buffer"
    frame = decoder.next_frame()
    assert frame == payload
    assert frame is large_buffers[0]
    assert decoder.next_frame() == b"next"
    assert decoder.buffered_bytes == 0


def test_small_frames_via_get_buffer() -> None:
    stream = _framed(*PAYLOADS[:4])
    decoder = FrameDecoder()
    position = 0
    while position < len(stream):
        buffer = decoder.get_buffer()
        take = min(len(buffer), len(stream) - position, 7)
        buffer[:take] = stream[position : position + take]
        decoder.buffer_updated(take)
        position += take
    assert _drain(decoder) == PAYLOADS[:4]
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize(
    "prefix", [b"\xff\xff\xff\xff", b"\x80\x00\x00\x00", frame_size_prefix(1025)]
)
def test_bad_size_breaks_the_decoder_for_good(prefix: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    decoder.feed(_framed(b"ok"))
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(prefix + b"\x00" * 8)
    assert raised.value.error_code is ErrorCode.invalid_request
    # Frames cut before the error are still there; the stream is not.
    assert decoder.next_frame() == b"ok"
    for _ in range(2):
        with pytest.raises(ProtocolError):
            decoder.feed(_framed(b"fine"))
        with pytest.raises(ProtocolError):
            decoder.get_buffer()


def test_bad_size_split_across_feeds() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    decoder.feed(b"\x00\x10")
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x00\x00")
    with pytest.raises(ProtocolError):
        decoder.feed(b"")


def test_frame_at_exactly_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_bytes=100_000)
    decoder.feed(_framed(b"z" * 100_000))
    assert decoder.next_frame() == b"z" * 100_000


def test_oversized_size_allocates_nothing() -> None:
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decoder.feed(frame_size_prefix(2**31 - 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_bytes=0)
