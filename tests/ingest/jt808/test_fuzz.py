"""Fuzzing of the JT/T 808 frame parser, the stream splitter and the message decoders (issue 20).

atheris is not installed here (``import atheris`` fails), so hypothesis is the fuzzer: arbitrary bytes, escape-heavy
bytes, and valid frames of the independent encoder (tests/support/jt808_encoder.py) mutated in known-bad ways --
wrong check code, flipped bits, truncation, extra bytes, wrong body length, bad or trailing escapes, inserted flags,
BCD nibbles above 9, bad packet fields. Only ``ingest.rejection.Refusal`` may come out of ``parse_frame``, the
``decode_*`` functions and ``jt808_records``; ``FrameSplitter.feed`` never raises, accounts for every byte and holds at
most ``max_frame`` bytes; every bad frame fed is refused with its reason, and the refusals are counted exactly.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.jt808.framing import FrameSplitter
from ingest.jt808.header import parse_frame
from ingest.rejection import Reason, Refusal
from tests.support import jt808_encoder as enc

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SYNTAX, CHECKSUM = Reason.BAD_SYNTAX, Reason.BAD_CHECKSUM
QUIRK_SHIFT = 5
"""Header length difference of 2019 and 2013 [byte]: a frame this much longer or shorter fits the other layout."""

escape_heavy = st.lists(st.sampled_from([0x7E, 0x7D, 0x01, 0x02, 0x00, 0x40, 0xFF]), max_size=600).map(bytes)


def reason_of(call, *args, **kw) -> Reason | None:
    """None when ``call`` returns, the reason when it raises ``Refusal`` (any other exception fails the test)."""
    try:
        call(*args, **kw)
    except Refusal as refusal:
        assert isinstance(refusal.reason, Reason) and refusal.detail
        return refusal.reason
    return None


@st.composite
def valid_frames(draw) -> tuple[bytes, int, int]:
    """(unescaped header + body without the check code, version, body length) of a valid frame."""
    version = draw(st.sampled_from([2013, 2019]))
    phone = draw(st.text("0123456789", min_size=1, max_size=12 if version == 2013 else 20))
    body = draw(st.one_of(st.binary(max_size=300), escape_heavy.map(lambda b: b[:300])))
    packet = draw(st.sampled_from([(0, 0), (1, 1), (3, 2), (9, 9)]))
    content = (
        enc.header(
            draw(st.integers(0, 0xFFFF)), phone, draw(st.integers(0, 0xFFFF)), len(body), version=version, packet=packet
        )
        + body
    )
    return content, version, len(body)


def with_length(content: bytes, length: int) -> bytes:
    """``content`` with the body length of its attributes set to ``length``."""
    attributes = int.from_bytes(content[2:4], "big") & ~0x3FF | length
    return content[:2] + attributes.to_bytes(2, "big") + content[4:]


@st.composite
def bad_frames(draw) -> tuple[bytes, Reason]:
    """(escaped bytes between the flags, without 0x7e, the reason expected) of a frame known to be bad."""
    content, version, length = draw(valid_frames())
    kind = draw(
        st.sampled_from(
            ["check", "flip", "length", "truncate", "extend", "escape", "trailing", "short", "bcd", "packet"]
        )
    )
    if kind == "check":
        return enc.wrap(content, enc.xor(content) ^ draw(st.integers(1, 255)))[1:-1], CHECKSUM
    if kind == "flip":
        at, bit = draw(st.integers(0, len(content) - 1)), draw(st.integers(0, 7))
        flipped = content[:at] + bytes([content[at] ^ 1 << bit]) + content[at + 1 :]
        return enc.wrap(flipped, enc.xor(content))[1:-1], CHECKSUM
    if kind == "length":
        wrong = draw(st.integers(0, 0x3FF).filter(lambda n: abs(n - length) not in (0, QUIRK_SHIFT)))
        return enc.wrap(with_length(content, wrong))[1:-1], SYNTAX
    if kind == "truncate":
        cut = draw(st.integers(1, len(content)).filter(lambda k: not (version == 2019 and k == QUIRK_SHIFT)))
        return enc.wrap(content[:-cut])[1:-1], SYNTAX
    if kind == "extend":
        extra = draw(st.binary(min_size=1, max_size=20).filter(lambda b: version == 2019 or len(b) != QUIRK_SHIFT))
        return enc.wrap(content + extra)[1:-1], SYNTAX
    escaped = enc.wrap(content)[1:-1]
    if kind == "escape":
        at = draw(st.integers(0, len(escaped)))
        after = draw(st.integers(0, 255).filter(lambda b: b not in (1, 2, 0x7E)))
        return escaped[:at] + bytes([0x7D, after]) + escaped[at:], SYNTAX
    if kind == "trailing":
        return escaped + b"\x7d", SYNTAX
    if kind == "short":
        return enc.wrap(draw(st.binary(max_size=11)))[1:-1], SYNTAX
    if kind == "bcd":
        at = draw(st.integers(5 if version == 2019 else 4, 14 if version == 2019 else 9))
        nibble = draw(st.sampled_from([0xA0, 0x0A, 0xF0, 0x0F, 0xFF]))
        return enc.wrap(content[:at] + bytes([content[at] | nibble]) + content[at + 1 :])[1:-1], SYNTAX
    total, index = draw(st.sampled_from([(0, 0), (1, 0), (2, 3), (0, 1)]))
    attributes = int.from_bytes(content[2:4], "big") | enc.SUBPACKAGE_BIT
    head = 17 if version == 2019 else 12
    body = content[head + (4 if content[2] & 0x20 else 0) :]
    packed = content[:2] + attributes.to_bytes(2, "big") + content[4:head] + total.to_bytes(2, "big")
    return enc.wrap(packed + index.to_bytes(2, "big") + body)[1:-1], SYNTAX


# --- the parser on anything ----------------------------------------------------------------------------------


@given(st.one_of(st.binary(max_size=2100), escape_heavy))
@FUZZ
def test_parse_frame_refuses_or_parses_arbitrary_bytes(data):
    reason_of(parse_frame, data)


@given(bad_frames())
@FUZZ
def test_every_bad_frame_is_refused_with_its_reason(bad):
    escaped, expected = bad
    assert reason_of(parse_frame, escaped) == expected


@given(valid_frames(), st.integers(0, 10_000), st.integers(1, 3))
@FUZZ
def test_inserted_flags_split_a_frame_into_refused_pieces(valid, at, flags):
    """A flag inserted in a frame cuts it in two; each piece is refused unless it happens to be a whole valid frame
    (its check code right and its length fitting), which the independent reader then agrees with."""
    content, _, _ = valid
    wire = enc.wrap(content)
    at = 1 + at % (len(wire) - 1)
    stream = wire[:at] + b"\x7e" * flags + wire[at:]
    splitter = FrameSplitter()
    pieces = splitter.feed(stream)
    assert 1 <= len(pieces) <= 2 and b"".join(pieces) == wire[1:-1]
    for piece in pieces:
        if reason_of(parse_frame, piece) is None:
            enc.parse(piece)


# --- the splitter ---------------------------------------------------------------------------------------------


@given(st.lists(st.one_of(st.binary(max_size=400), escape_heavy), max_size=20), st.integers(1, 300))
@FUZZ
def test_splitter_accounts_for_every_byte_within_its_bound(chunks, max_frame):
    splitter = FrameSplitter(max_frame)
    frames = []
    for chunk in chunks:
        out = splitter.feed(chunk)
        assert all(0 < len(f) <= max_frame and 0x7E not in f for f in out)
        assert 0 <= splitter.pending <= max_frame
        frames += out
    fed = b"".join(chunks)
    assert fed.count(0x7E) + sum(map(len, frames)) + splitter.garbage + splitter.pending == len(fed)


def test_splitter_memory_stays_bounded_under_a_flood():
    """Ten megabytes without a flag after an opening flag: held bytes stay under ``max_frame``, one overlong frame is
    counted, and the next frame comes out whole."""
    splitter = FrameSplitter()
    assert splitter.feed(b"\x7e") == []
    for _ in range(160):
        assert splitter.feed(b"\x55" * 65536) == []
        assert splitter.pending <= splitter.max_frame
    wire = enc.frame(0x0002, "13912345678", 1)
    assert splitter.feed(wire) == [wire[1:-1]]
    assert splitter.overlong == 1 and splitter.garbage == 160 * 65536 and splitter.pending == 0


# --- streams of good and bad frames: every bad one counted -------------------------------------------------------


@given(
    st.lists(
        st.one_of(valid_frames().map(lambda v: (enc.wrap(v[0])[1:-1], None)), bad_frames()), min_size=1, max_size=25
    ),
    st.lists(st.integers(0, 50_000), max_size=15),
)
@FUZZ
def test_a_stream_of_good_and_bad_frames_is_counted_exactly(frames, cuts):
    stream = b"".join(b"\x7e" + escaped + b"\x7e" for escaped, _ in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    splitter = FrameSplitter()
    pieces = [f for a, b in itertools.pairwise(points) for f in splitter.feed(stream[a:b])]
    expected = [e for escaped, e in frames if escaped]  # an empty "short" frame is two adjacent flags: skipped
    reasons = [reason_of(parse_frame, piece) for piece in pieces]
    assert reasons == expected
    refused = sum(r is not None for r in reasons)
    assert refused == sum(e is not None for e in expected)
    assert splitter.garbage == 0 and splitter.pending == 0


@pytest.mark.parametrize("version", [2013, 2019])
def test_quirk_shifted_frames_are_not_miscounted(version):
    """A 2019 frame 5 bytes short (or a 2013 one 5 bytes long) fits the other layout: parsed, not refused."""
    content = enc.header(0x0002, "13912345678", 1, 0, version=version)
    shifted = content[:-5] if version == 2019 else content + b"\x00" * 5
    msg = parse_frame(enc.wrap(shifted)[1:-1])
    assert msg.header.version == (2013 if version == 2019 else 2019)


# --- message decoders and the twin's decoder ---------------------------------------------------------------------


def decoders():
    from ingest.jt808 import messages as m
    from ingest.jt808.location import decode_batch_location, decode_location

    return {
        m.TERMINAL_REPLY: m.decode_general_reply,
        m.PLATFORM_REPLY: m.decode_general_reply,
        m.REGISTRATION: m.decode_registration,
        m.REGISTRATION_REPLY: m.decode_registration_reply,
        m.AUTHENTICATION: m.decode_authentication,
        m.TEXT: m.decode_text,
        m.LOCATION: lambda body, header: decode_location(body),
        m.BATCH_LOCATION: lambda body, header: decode_batch_location(body),
    }


@given(
    st.sampled_from([0x0001, 0x8001, 0x0100, 0x8100, 0x0102, 0x8300, 0x0200, 0x0704]),
    st.sampled_from([2013, 2019]),
    st.one_of(st.binary(max_size=400), escape_heavy),
)
@FUZZ
def test_message_decoders_refuse_or_decode_any_body(msg_id, version, body):
    msg = parse_frame(enc.frame(msg_id, "13912345678", 1, body[:1023], version=version)[1:-1])
    reason_of(decoders()[msg_id], msg.body, msg.header)


@st.composite
def hostile_locations(draw) -> bytes:
    """0x0200 bodies close to valid: random basic fields (BCD time with any nibbles), items of any length, cut."""
    basic = draw(st.binary(min_size=22, max_size=22))
    time_bcd = draw(
        st.one_of(st.binary(min_size=6, max_size=6), st.lists(st.integers(0, 0x99), min_size=6, max_size=6).map(bytes))
    )
    items = draw(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=20)), max_size=6))
    tail = b"".join(bytes([i, n]) + v for i, n, v in items)
    body = basic + time_bcd + tail
    return body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


@given(hostile_locations(), st.booleans(), st.integers(0, 1), st.sampled_from([2013, 2019]))
@FUZZ
def test_jt808_records_refuses_or_decodes_hostile_locations(body, batch, kind, version):
    from ingest.decoders.jt808 import jt808_records

    if batch:
        wire = enc.frame(0x0704, "1", 1, enc.batch_body(kind, [body, body[:40]])[:1023], version=version)
    else:
        wire = enc.frame(0x0200, "1", 1, body, version=version)
    reason_of(jt808_records, wire, device="v1", received_at=0.0, terminal="1")


@given(st.one_of(st.binary(max_size=600), escape_heavy, bad_frames().map(lambda b: b"\x7e" + b[0] + b"\x7e")))
@FUZZ
def test_jt808_records_refuses_arbitrary_payloads(payload):
    from ingest.decoders.jt808 import jt808_records

    reason_of(jt808_records, payload, device="v1", received_at=0.0)


@given(st.lists(bad_frames(), min_size=1, max_size=10))
@FUZZ
def test_jt808_records_counts_each_bad_frame(bad):
    """Each bad frame given to the twin's decoder alone is one refusal with the parser's reason."""
    from ingest.decoders.jt808 import jt808_records

    reasons = [
        reason_of(jt808_records, b"\x7e" + escaped + b"\x7e", device="v1", received_at=0.0) for escaped, _ in bad
    ]
    assert reasons == [expected for _, expected in bad]


# --- reassembly under hostile pieces -----------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(1, 6),
            st.integers(1, 6),
            st.integers(0, 1023),
            st.integers(0, 6),
            st.floats(0, 200),
        ),
        max_size=80,
    )
)
@example([(1, 4, 1, 1023, 0, 0.0), (1, 4, 2, 1023, 1, 0.0), (1, 4, 3, 1023, 2, 0.0)])
@FUZZ
def test_reassembler_stays_within_its_bounds(pieces):
    """Pieces of several terminals, any totals, sizes and times: never raises, holds at most ``max_pending`` messages
    and ``max_bytes`` body bytes (documented bounds of ``ingest.jt808.reassembly.Reassembler``). The example: three
    1023-byte pieces of one 4-piece message against ``max_bytes`` of two pieces."""
    from ingest.jt808.framing import MAX_BODY
    from ingest.jt808.reassembly import Reassembler

    assembler = Reassembler(max_pending=3, timeout_s=30.0, max_packets=5, max_bytes=2 * MAX_BODY)
    now = 0.0
    for terminal, total, index, size, serial, step in pieces:
        total, index = max(total, index), min(total, index)
        now += step
        msg = parse_frame(enc.frame(0x0704, str(terminal), serial, bytes(size), packet=(total, index))[1:-1])
        whole = assembler.add(msg, now)
        assert whole is None or whole.header.packet_total == 0
        assert assembler.pending <= 3 and assembler.held_bytes <= 2 * MAX_BODY
