"""JT/T 808 framing: escaping (JT/T 808-2013 section 4.4), the check code, and the stream splitter."""

from __future__ import annotations

import itertools
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808.framing import ESC, FLAG, MAX_FRAME, FrameSplitter, check_code, escape, unescape
from ingest.rejection import Reason, Refusal

# --- escaping -----------------------------------------------------------------------------------


def test_standard_example_section_4_4():
    # JT/T 808-2013 4.4: 0x30 0x7e 0x08 0x7d 0x55 is sent as 0x30 0x7d 0x02 0x08 0x7d 0x01 0x55
    raw = bytes([0x30, 0x7E, 0x08, 0x7D, 0x55])
    wire = bytes([0x30, 0x7D, 0x02, 0x08, 0x7D, 0x01, 0x55])
    assert escape(raw) == wire
    assert unescape(wire) == raw


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"", b""),
        (b"\x7e", b"\x7d\x02"),
        (b"\x7d", b"\x7d\x01"),
        (b"\x7d\x02", b"\x7d\x01\x02"),  # an escaped-looking pair in the data stays data
        (b"\x7d\x01", b"\x7d\x01\x01"),
        (b"\x7e\x7e", b"\x7d\x02\x7d\x02"),
        (b"\x7d\x7e\x7d", b"\x7d\x01\x7d\x02\x7d\x01"),
        (b"abc", b"abc"),
    ],
)
def test_escape_edge_cases(raw, wire):
    assert escape(raw) == wire
    assert unescape(wire) == raw


@pytest.mark.parametrize(
    "wire",
    [b"\x7d", b"\x30\x7d", b"\x7d\x03", b"\x7d\x00\x01", b"\x7d\x7d\x01", b"\x7d\x01\x7d", b"\x30\x7e\x31"],
)
def test_bad_escapes_refused(wire):
    with pytest.raises(Refusal) as err:
        unescape(wire)
    assert err.value.reason == Reason.BAD_SYNTAX


@given(st.binary(max_size=300))
def test_escape_round_trip(raw):
    wire = escape(raw)
    assert FLAG not in wire
    assert unescape(wire) == raw
    assert len(wire) == len(raw) + raw.count(FLAG) + raw.count(ESC)


@given(st.binary(max_size=60))
def test_unescape_only_refuses(wire):
    try:
        raw = unescape(wire)
    except Refusal as bad:
        assert bad.reason == Reason.BAD_SYNTAX
    else:
        assert escape(raw) == wire


# --- check code ---------------------------------------------------------------------------------


def test_check_code_by_hand():
    assert check_code(b"") == 0
    assert check_code(b"\x5a") == 0x5A
    assert check_code(bytes([0x01, 0x02, 0x04])) == 0x07
    assert check_code(bytes([0xFF, 0x0F, 0xF0])) == 0x00


@given(st.binary(max_size=2000))
def test_check_code_is_xor_of_bytes(data):
    assert check_code(data) == reduce(lambda a, b: a ^ b, data, 0)


# --- splitter -----------------------------------------------------------------------------------

frames_st = st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\x7e", b"\x7d\x02")), max_size=8)


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


@given(
    frames_st,
    st.binary(max_size=30).map(lambda b: b.replace(b"\x7e", b"")),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.booleans(),
)
def test_splitter_any_chunking(frames, garbage, cuts, shared_flags):
    joiner = b"\x7e" if shared_flags else b"\x7e\x7e"
    stream = garbage + (b"\x7e" + joiner.join(frames) + b"\x7e" if frames else b"")
    splitter = FrameSplitter()
    got = [f for chunk in _cut(stream, cuts) for f in splitter.feed(chunk)]
    assert got == frames
    assert splitter.garbage == len(garbage)
    assert splitter.overlong == 0
    assert splitter.pending == 0


def test_splitter_adjacent_and_empty_frames():
    s = FrameSplitter()
    assert s.feed(b"\x7e\x7e\x7e") == []
    assert s.feed(b"\x7e\x01\x02\x7e\x7e\x03\x7e") == [b"\x01\x02", b"\x03"]
    assert s.feed(b"") == []
    assert s.garbage == 0


def test_splitter_garbage_before_first_flag():
    s = FrameSplitter()
    assert s.feed(b"HELLO") == []
    assert s.feed(b"!\x7e\x0a") == []
    assert s.feed(b"\x0b\x7e") == [b"\x0a\x0b"]
    assert s.garbage == 6


def test_splitter_drops_overlong_frames_and_recovers():
    s = FrameSplitter(max_frame=10)
    assert s.feed(b"\x7e" + b"\x01" * 6) == []
    assert s.feed(b"\x02" * 6) == []  # 12 bytes: dropped
    assert s.pending == 0
    assert s.feed(b"\x03" * 100) == []  # still the overlong frame
    assert s.feed(b"\x7e\x04\x05\x7e") == [b"\x04\x05"]
    assert (s.overlong, s.garbage) == (1, 112)
    assert s.feed(b"\x7e" + b"\x06" * 10 + b"\x7e") == [b"\x06" * 10]  # exactly max_frame is kept


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=500), max_size=20))
def test_splitter_memory_bounded(chunks):
    s = FrameSplitter(max_frame=64)
    for chunk in chunks:
        for frame in s.feed(chunk):
            assert 0 < len(frame) <= 64
        assert s.pending <= 64


def test_default_bound_holds_the_longest_frame():
    longest = b"\x7e" * (MAX_FRAME // 2)
    s = FrameSplitter()
    assert s.feed(b"\x7e" + escape(longest) + b"\x7e") == [escape(longest)]
    with pytest.raises(ValueError):
        FrameSplitter(max_frame=0)
