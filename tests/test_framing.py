"""Receive-path framing (Cython): splitting, size caps, hostile lengths."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_cp.wire._framing import DEFAULT_MAX_FRAME, FrameDecoder, FrameError

from .framing import encode_frame


def test_encode_then_feed_round_trips() -> None:
    dec = FrameDecoder()
    assert dec.feed(encode_frame(b"hello") + encode_frame(b"") + encode_frame(b"x" * 70_000)) == [
        b"hello",
        b"",
        b"x" * 70_000,
    ]
    assert dec.buffered() == 0
    assert dec.frames_decoded == 3


@given(
    bodies=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_chunking_yields_the_same_frames(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder()
    out: list[bytes] = []
    for a, b in itertools.pairwise(points):
        out.extend(dec.feed(stream[a:b]))
    assert out == bodies
    assert dec.buffered() == 0


def test_length_of_2_pow_31_is_refused_before_allocation() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds the 16777216 byte limit"):
        dec.feed(struct.pack("<I", 2**31) + b"abc")


def test_frame_just_over_a_custom_cap_is_refused_and_at_cap_is_accepted() -> None:
    dec = FrameDecoder(max_frame=8)
    assert dec.feed(encode_frame(b"12345678")) == [b"12345678"]
    with pytest.raises(FrameError, match="9 bytes exceeds the 8 byte limit"):
        dec.feed(encode_frame(b"123456789"))


def test_truncated_frame_waits_for_more_bytes() -> None:
    dec = FrameDecoder()
    frame = encode_frame(b"abcdef")
    assert dec.feed(frame[:3]) == []
    assert dec.feed(frame[3:7]) == []
    assert dec.buffered() == 7
    assert dec.feed(frame[7:]) == [b"abcdef"]


def test_default_cap_is_16_mib() -> None:
    assert DEFAULT_MAX_FRAME == 16 * 1024 * 1024
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=0)
