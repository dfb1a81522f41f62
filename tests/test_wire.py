"""Wire codec: frame round-trips, strict decoding, fuzzing of the decoder."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_cp.wire import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    TIMEOUT,
    Frame,
    FrameEncoder,
    Hello,
    RaftBatch,
    Refused,
    Request,
    Response,
    TransportError,
    Welcome,
    WireError,
    WireProblem,
    decode,
    decode_body,
    encode,
    encode_body,
    transport_error_of,
)
from bedrock_cp.wire._framing import FrameDecoder

from .framing import encode_frame

FRAMES: list[Frame] = [
    Hello(PROTOCOL_VERSION, "prod", 3, "peer"),
    Hello(PROTOCOL_VERSION, "", 0, "client"),
    Welcome(PROTOCOL_VERSION, "prod", 1),
    Refused("cluster id 'a' != 'b'"),
    RaftBatch([b"\x00\x01", b"", b"x" * 70_000]),
    RaftBatch([]),
    Request(7, 250, encode_body({"op": "ping"})),
    Response(2**40, encode_body([1, "two", b"three"])),
]


def _same(a: Frame, b: Frame) -> bool:
    # msgspec.Raw compares by identity-free bytes only via bytes(); compare field by field.
    if type(a) is not type(b):
        return False
    for name in a.__struct_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, msgspec.Raw):
            x, y = bytes(x), bytes(y)
        if x != y:
            return False
    return True


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips_through_the_framing(frame: Frame) -> None:
    wire = encode(frame)
    (body,) = FrameDecoder().feed(wire)
    assert _same(decode(body), frame)


def test_encode_is_the_framing_layout_of_the_msgpack_body() -> None:
    # u32 little-endian length | body: what the frame decoder splits on.
    for frame in FRAMES:
        assert encode(frame) == encode_frame(msgspec.msgpack.encode(frame))


def test_frames_are_tagged_arrays_not_maps() -> None:
    body = encode(Refused("no"))[4:]
    assert msgspec.msgpack.decode(body) == ["refused", "no"]
    for cls in (Hello, Welcome, Refused, RaftBatch, Request, Response, TransportError):
        cfg = cls.__struct_config__
        assert cfg.array_like and cfg.frozen and not cfg.gc and isinstance(cfg.tag, str)


def test_reused_buffer_does_not_leak_between_frames() -> None:
    big = encode(RaftBatch([b"y" * 2_000_000]))
    small = encode(Refused("x"))
    assert len(small) < 20
    assert decode(small[4:]) == Refused("x")
    assert len(big) > 2_000_000


@pytest.mark.parametrize(
    ("body", "problem", "path"),
    [
        (b"\x92\xa3foo\x01", WireProblem.INVALID, "$[0]"),  # unknown tag
        (b"\x92\xa4raft\x91\x01", WireProblem.INVALID, "$[1][0]"),  # wrong field type
        (b"\x94\xa3req\x05d", WireProblem.TRUNCATED, None),
        (b"\x92\xa7refused\xa1x\xc0", WireProblem.TRAILING_BYTES, None),
        (b"\xc1", WireProblem.MALFORMED, None),  # an opcode MessagePack never uses
        (b"", WireProblem.TRUNCATED, None),
        # A Hello whose kind is none of its allowed values: the path names the field.
        (msgspec.msgpack.encode(["hello", 1, "c", 1, "martian"]), WireProblem.INVALID, "$[4]"),
        (b"\x92\xa7refused\xa2\x80\x80", WireProblem.BAD_UTF8, None),  # invalid UTF-8 in a str
        (b"\x94\xa3req\x01\x01" + b"\x91" * 200_000 + b"\xc0", WireProblem.TOO_DEEP, None),
    ],
)
def test_decode_of_junk_raises_wire_error_naming_the_problem(
    body: bytes, problem: WireProblem, path: str | None
) -> None:
    with pytest.raises(WireError) as err:
        decode(body)
    assert err.value.part == "frame"
    assert err.value.problem is problem
    assert err.value.path == path
    # One line for a log, naming what was wrong.
    assert str(err.value).startswith(f"undecodable frame ({problem}): ")
    assert "\n" not in str(err.value)


def test_encode_refuses_a_frame_over_the_cap() -> None:
    enc = FrameEncoder(max_frame=100)
    assert len(enc.encode(RaftBatch([b"x" * 50]))) < 100
    with pytest.raises(
        WireError, match=r"RaftBatch frame of \d+ bytes exceeds the 100 byte limit"
    ) as err:
        enc.encode(RaftBatch([b"x" * 200]))
    assert err.value.problem is WireProblem.OVERSIZE
    assert MAX_FRAME == 16 * 1024 * 1024


class _Put(msgspec.Struct, tag="put", array_like=True, frozen=True):
    key: bytes
    value: bytes


class _Get(msgspec.Struct, tag="get", array_like=True, frozen=True):
    key: bytes


def test_bodies_round_trip_through_a_union_of_the_layer_above() -> None:
    raw = encode_body(_Put(b"k", b"v"))
    req = decode(encode(Request(1, 10, raw))[4:])
    assert isinstance(req, Request)
    assert decode_body(req.body, _Put | _Get) == _Put(b"k", b"v")
    with pytest.raises(WireError) as err:
        decode_body(encode_body(["nope"]), _Put | _Get)
    assert (err.value.part, err.value.problem, err.value.path) == (
        "body",
        WireProblem.INVALID,
        "$[0]",
    )


def test_transport_error_is_recognised_only_for_its_own_tag() -> None:
    err = TransportError(TIMEOUT, "no answer within 5 ms")
    assert transport_error_of(encode_body(err)) == err
    assert transport_error_of(encode_body(_Get(b"k"))) is None
    assert transport_error_of(encode_body(["transport_erro", "x", "y"])) is None
    assert transport_error_of(encode_body({"code": "timeout"})) is None
    assert transport_error_of(msgspec.Raw(b"")) is None


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except WireError:
        return
    assert isinstance(frame, Hello | Welcome | Refused | RaftBatch | Request | Response)


@given(
    st.sampled_from(FRAMES[:-3] + FRAMES[-2:]),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(min_value=0),
)
def test_mutated_valid_frames_never_raise_anything_but_wire_error(
    frame: Frame, flips: list[tuple[int, int]], cut: int
) -> None:
    # Mutations of real frames reach deeper into the decoder than random bytes.
    body = bytearray(encode(frame)[4:])
    for at, value in flips:
        body[at % len(body)] = value
    body = body[: len(body) - cut % 3]
    try:
        frame = decode(bytes(body))
    except WireError:
        return
    assert isinstance(frame, Hello | Welcome | Refused | RaftBatch | Request | Response)
