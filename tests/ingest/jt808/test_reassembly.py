"""Sub-package reassembly: any order, duplicates, expiry, bounds; re-framing long batches for the twin."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.decoders.jt808 import jt808_records
from ingest.jt808.framing import MAX_BODY, FrameSplitter
from ingest.jt808.header import Message, build_frame, parse_frame
from ingest.jt808.location import BATCH_BLIND_AREA, Location, decode_batch_location, encode_batch_location
from ingest.jt808.reassembly import Reassembler, frame_payload
from ingest.rejection import Reason, Refusal

PHONE = "13912345678"


def pieces(body: bytes, n: int, *, first_serial: int = 100, phone: str = PHONE, msg_id: int = 0x0704) -> list[Message]:
    """``body`` cut into ``n`` sub-package messages with consecutive serials."""
    size = -(-len(body) // n)
    out = []
    for i in range(n):
        wire = build_frame(
            msg_id, phone, (first_serial + i) & 0xFFFF, body[i * size : (i + 1) * size], packet=(n, i + 1)
        )
        out.append(parse_frame(wire[1:-1]))
    return out


@given(st.binary(min_size=1, max_size=3000), st.integers(1, 8), st.randoms(), st.integers(0, 0xFFFF))
def test_any_order_joins(body, n, rnd, first_serial):
    parts = pieces(body, n, first_serial=first_serial)
    rnd.shuffle(parts)
    r = Reassembler()
    results = [r.add(p, 0.0) for p in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    whole = results[-1]
    assert whole is not None and whole.body == body
    h = whole.header
    assert (h.packet_total, h.packet_index, h.serial, h.body_length, h.msg_id) == (
        0,
        0,
        first_serial,
        len(body),
        0x0704,
    )
    assert (r.completed, r.pending, r.held_bytes) == (1, 0, 0)


def test_not_subpackaged_passes_through():
    msg = parse_frame(build_frame(0x0200, PHONE, 1, b"x")[1:-1])
    assert Reassembler().add(msg, 0.0) is msg


def test_duplicates_ignored():
    a, b, c = pieces(b"abcdefghi", 3)
    r = Reassembler()
    assert r.add(b, 0.0) is None
    assert r.add(b, 0.1) is None
    assert r.add(a, 0.2) is None
    whole = r.add(c, 0.3)
    assert whole is not None and whole.body == b"abcdefghi" and r.duplicates == 1


def test_interleaved_terminals_and_messages():
    one = pieces(b"AAAABBBB", 2, phone="111")
    two = pieces(b"CCCCDDDD", 2, phone="222")
    three = pieces(b"EEEEFFFF", 2, phone="111", first_serial=102)
    r = Reassembler()
    got = [r.add(m, 0.0) for m in (one[0], two[1], three[1], two[0], three[0], one[1])]
    assert [m.body if m else None for m in got] == [None, None, None, b"CCCCDDDD", b"EEEEFFFF", b"AAAABBBB"]


def test_expiry():
    a, b = pieces(b"abcd", 2)
    r = Reassembler(timeout_s=10.0)
    assert r.add(a, 0.0) is None
    r.expire(5.0)
    assert r.pending == 1
    assert r.add(b, 10.5) is None  # too late: the first piece was dropped, this one starts anew
    assert (r.expired, r.pending, r.held_bytes) == (1, 1, 2)
    r.expire(21.0)
    assert (r.expired, r.pending, r.held_bytes) == (2, 0, 0)


def test_bounded_pending_evicts_oldest():
    r = Reassembler(max_pending=2)
    firsts = [pieces(b"xy", 2, first_serial=s)[0] for s in (10, 20, 30)]
    for m in firsts:
        assert r.add(m, 0.0) is None
    assert (r.pending, r.evicted) == (2, 1)
    late = pieces(b"xy", 2, first_serial=10)[1]  # its first piece was evicted
    assert r.add(late, 0.0) is None
    last = pieces(b"xy", 2, first_serial=30)[1]
    whole = r.add(last, 0.0)
    assert whole is not None and whole.body == b"xy"


def test_bounded_bytes_and_oversize():
    r = Reassembler(max_bytes=MAX_BODY * 2)
    big = bytes(MAX_BODY)
    for s in (0, 10, 20):
        r.add(pieces(big + big, 2, first_serial=s)[0], 0.0)
    assert r.held_bytes <= MAX_BODY * 2 and r.evicted == 1
    small = Reassembler(max_packets=4)
    assert small.add(pieces(b"abcde", 5)[0], 0.0) is None
    assert (small.oversize, small.pending) == (1, 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        Reassembler(max_pending=0)
    with pytest.raises(ValueError):
        Reassembler(timeout_s=0)


def _loc(k: int) -> Location:
    return Location(lat=30 + k / 1000, lon=120.0, time=1.7e9 + k, fixed=True, gnss=frozenset({"BDS"}), satellites=9)


def test_long_batch_reframed_for_the_twin():
    locs = [_loc(k) for k in range(60)]  # 60 items of 2 + 31 bytes: 1,983 bytes, two frames
    body = encode_batch_location(BATCH_BLIND_AREA, locs)
    assert len(body) > MAX_BODY
    r = Reassembler()
    whole = None
    for m in pieces(body, 3, first_serial=65535):
        whole = r.add(m, 0.0)
    assert whole is not None and whole.header.serial == 65535
    payload = frame_payload(whole)
    frames = FrameSplitter().feed(payload)
    assert len(frames) == 2
    parsed = [parse_frame(f) for f in frames]
    assert [m.header.serial for m in parsed] == [65535, 0]
    assert all(m.header.body_length <= MAX_BODY for m in parsed)
    kinds_items = [decode_batch_location(m.body) for m in parsed]
    assert {k for k, _ in kinds_items} == {BATCH_BLIND_AREA}
    assert [x for _, items in kinds_items for x in items] == locs
    batch = jt808_records(payload, device="bus-1", received_at=0.0, terminal=PHONE)
    assert batch.t.tolist() == [1.7e9 + k for k in range(60)]


def test_short_message_reframed_as_is():
    wire = build_frame(0x0200, PHONE, 5, encode_batch_location(0, [_loc(1)])[5:], version=2019, protocol_version=3)
    msg = parse_frame(wire[1:-1])
    assert frame_payload(msg) == wire


def test_other_long_message_too_large():
    msg = parse_frame(build_frame(0x0900, PHONE, 1, b"")[1:-1])
    long = Message(msg.header, bytes(MAX_BODY + 1))
    with pytest.raises(Refusal) as err:
        frame_payload(long)
    assert err.value.reason == Reason.TOO_LARGE
