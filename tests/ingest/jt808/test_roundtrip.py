"""Round trips between the codec (``ingest.jt808``, ``ingest.decoders.jt808``) and the independent encoder written
from the standard (tests/support/jt808_encoder.py), both directions, JT/T 808-2013 and -2019: random field values
-> independent encoder -> codec -> the same values, and codec encoders -> independent reader -> the same values.
Payloads full of 0x7e/0x7d bytes; sub-packaged messages reassembled from shuffled pieces."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest.jt808.framing import FrameSplitter
from ingest.jt808.header import build_frame, parse_frame
from tests.support import jt808_encoder as enc

ROUND = settings(max_examples=150, deadline=None)
PHONE_DIGITS = {2013: 12, 2019: 20}

versions = st.sampled_from([2013, 2019])
serials = st.integers(0, 0xFFFF)
msg_ids = st.integers(0, 0xFFFF)
nasty_bytes = st.lists(st.sampled_from([0x7E, 0x7D, 0x01, 0x02, 0x00]), max_size=1023).map(bytes)
bodies = st.one_of(st.binary(max_size=1023), nasty_bytes)


def phones(version: int) -> st.SearchStrategy[str]:
    """Phone numbers of 1 to 12 (2013) or 20 (2019) digits, leading zeros included."""
    return st.text("0123456789", min_size=1, max_size=PHONE_DIGITS[version])


@st.composite
def headers(draw) -> dict:
    """Keyword arguments of a frame: version, phone, serial, msg id, protocol version, RSA bit."""
    version = draw(versions)
    return {
        "version": version,
        "phone": draw(phones(version)),
        "serial": draw(serials),
        "msg_id": draw(msg_ids),
        "protocol_version": draw(st.integers(0, 255)) if version == 2019 else 1,
        "rsa": draw(st.booleans()),
    }


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- framing and header ---------------------------------------------------------------------------------------


@given(headers(), bodies, st.lists(st.integers(0, 5000), max_size=8))
@ROUND
def test_independent_frame_parses_to_the_same_header(h, body, cuts):
    wire = enc.frame(
        h["msg_id"],
        h["phone"],
        h["serial"],
        body,
        version=h["version"],
        protocol_version=h["protocol_version"],
        rsa=h["rsa"],
    )
    splitter = FrameSplitter()
    frames = [f for piece in chunks(wire, cuts) for f in splitter.feed(piece)]
    assert frames == [wire[1:-1]] and splitter.garbage == 0
    msg = parse_frame(frames[0])
    head = msg.header
    assert msg.body == body
    assert (head.msg_id, head.serial, head.version, head.body_length) == (
        h["msg_id"],
        h["serial"],
        h["version"],
        len(body),
    )
    assert head.phone == h["phone"].zfill(PHONE_DIGITS[h["version"]])
    assert head.terminal == (h["phone"].lstrip("0") or "0")
    assert head.protocol_version == (h["protocol_version"] if h["version"] == 2019 else 0)
    assert head.encrypted == h["rsa"] and (head.packet_total, head.packet_index) == (0, 0)


@given(headers(), bodies, st.integers(1, 0xFFFF), st.integers(1, 0xFFFF))
@ROUND
def test_project_frames_are_the_standard_bytes(h, body, total, index):
    packet = (max(total, index), min(total, index))
    kw = {"version": h["version"], "protocol_version": h["protocol_version"]}
    ours = build_frame(h["msg_id"], h["phone"], h["serial"], body, packet=packet, **kw)
    assert ours == enc.frame(h["msg_id"], h["phone"], h["serial"], body, packet=packet, **kw)
    got = enc.parse(ours)
    assert (got.msg_id, got.serial, got.version, got.body) == (h["msg_id"], h["serial"], h["version"], body)
    assert (got.packet_total, got.packet_index) == packet
    assert got.phone == h["phone"].zfill(PHONE_DIGITS[h["version"]])
    plain = build_frame(h["msg_id"], h["phone"], h["serial"], body, **kw)
    assert plain == enc.frame(h["msg_id"], h["phone"], h["serial"], body, **kw)


@given(
    headers(),
    st.lists(bodies, min_size=1, max_size=6),
    st.binary(max_size=40).filter(lambda b: b"\x7e" not in b),
    st.lists(st.integers(0, 20000), max_size=12),
)
@ROUND
def test_a_stream_of_frames_splits_back(h, body_list, junk, cuts):
    wires = [
        enc.frame(h["msg_id"], h["phone"], (h["serial"] + i) & 0xFFFF, b, version=h["version"])
        for i, b in enumerate(body_list)
    ]
    stream = junk + b"".join(wires)
    splitter = FrameSplitter()
    frames = [f for piece in chunks(stream, cuts) for f in splitter.feed(piece)]
    assert splitter.garbage == len(junk) and splitter.overlong == 0 and splitter.pending == 0
    assert [parse_frame(f).body for f in frames] == body_list


@pytest.mark.parametrize("version", [2013, 2019])
def test_vendor_quirk_version_bit_disagrees_with_phone_length(version):
    """A 2019 version bit with a 6-byte phone (and a 2013 frame with a 10-byte phone) parse by the layout that fits."""
    quirk = enc.quirk_2019_bit_short_phone if version == 2013 else enc.quirk_2013_bit_long_phone
    for body in (b"", bytes(range(40)), b"\x7e\x7d" * 30):
        msg = parse_frame(quirk(0x0200, "13912345678", 77, body)[1:-1])
        assert msg.body == body and msg.header.serial == 77 and msg.header.msg_id == 0x0200
        assert msg.header.terminal == "13912345678" and msg.header.version == version


# --- location 0x0200, batch 0x0704 ---------------------------------------------------------------------------

KNOWN_ITEMS = {enc.ITEM_MILEAGE: 4, enc.ITEM_FUEL: 2, enc.ITEM_SIGNAL: 1, enc.ITEM_SATELLITES: 1}
TIMES = st.integers(946_656_000, 4_102_415_999)  # 2000-01-01 00:00 to 2099-12-31 23:59:59, Beijing time


@st.composite
def extra_items(draw) -> tuple[tuple[int, bytes], ...]:
    """Unknown items, and known ids with lengths that are not theirs (vendor quirk: kept raw)."""
    item_id = st.integers(0, 255)
    pairs = draw(
        st.lists(st.tuples(item_id, st.one_of(st.binary(max_size=12), nasty_bytes.map(lambda b: b[:30]))), max_size=5)
    )
    return tuple((i, v) for i, v in pairs if KNOWN_ITEMS.get(i) != len(v))


@st.composite
def fixes(draw, fixed: bool | None = None) -> enc.Fix:
    """A location as sent: status bits random except bit 5 (encrypted lat/lon) clear, known items in id order,
    then extra items. ``fixed`` forces status bit 1."""
    status = draw(st.integers(0, 0xFFFFFFFF)) & ~(1 << 5)
    if fixed is not None:
        status = status | enc.STATUS_FIXED if fixed else status & ~enc.STATUS_FIXED
    items = []
    for make, top in (
        (enc.mileage_item, 0xFFFFFFFF),
        (enc.fuel_item, 0xFFFF),
        (enc.signal_item, 255),
        (enc.satellites_item, 255),
    ):
        if draw(st.booleans()):
            items.append(make(draw(st.integers(0, top))))
    return enc.Fix(
        alarm=draw(st.integers(0, 0xFFFFFFFF)),
        status=status,
        lat_e6=draw(st.integers(0, 90_000_000)),
        lon_e6=draw(st.integers(0, 180_000_000)),
        altitude_m=draw(st.integers(0, 0xFFFF - 1000)),
        speed_dkmh=draw(st.integers(0, 0xFFFF)),
        direction_deg=draw(st.integers(0, 359)),
        time=draw(TIMES),
        items=(*items, *draw(extra_items())),
    )


def assert_location_matches(loc, fix: enc.Fix) -> None:
    """The codec's ``Location`` says what the independent ``Fix`` says."""
    items = dict(i for i in fix.items if KNOWN_ITEMS.get(i[0]) == len(i[1]))
    sign_lat = -1 if fix.status & enc.STATUS_SOUTH else 1
    sign_lon = -1 if fix.status & enc.STATUS_WEST else 1
    assert (loc.alarm, loc.status, loc.altitude_m, loc.direction_deg) == (
        fix.alarm,
        fix.status,
        fix.altitude_m,
        fix.direction_deg,
    )
    assert loc.lat == pytest.approx(sign_lat * fix.lat_e6 / 1e6, abs=1e-12)
    assert loc.lon == pytest.approx(sign_lon * fix.lon_e6 / 1e6, abs=1e-12)
    assert loc.speed_kmh == pytest.approx(fix.speed_dkmh / 10) and loc.time == fix.time
    assert loc.fixed == bool(fix.status & enc.STATUS_FIXED)
    assert loc.gnss == {name for name, bit in enc.GNSS_BITS.items() if fix.status & bit}
    assert loc.datum == ("CGCS2000" if loc.gnss == {"BDS"} else "WGS84")
    mileage = items.get(enc.ITEM_MILEAGE)
    fuel = items.get(enc.ITEM_FUEL)
    assert loc.mileage_km == (None if mileage is None else pytest.approx(int.from_bytes(mileage, "big") / 10))
    assert loc.fuel_l == (None if fuel is None else pytest.approx(int.from_bytes(fuel, "big") / 10))
    assert loc.signal == (items[enc.ITEM_SIGNAL][0] if enc.ITEM_SIGNAL in items else None)
    assert loc.satellites == (items[enc.ITEM_SATELLITES][0] if enc.ITEM_SATELLITES in items else None)
    assert loc.extra == tuple(i for i in fix.items if KNOWN_ITEMS.get(i[0]) != len(i[1]))


@given(fixes())
@ROUND
def test_location_round_trip_both_ways(fix):
    from ingest.jt808.location import decode_location, encode_location

    body = enc.location_body(fix)
    loc = decode_location(body)
    assert_location_matches(loc, fix)
    assert encode_location(loc) == body
    assert enc.read_location(encode_location(loc)) == fix


@given(st.sampled_from([0, 1]), st.lists(fixes(), max_size=8))
@settings(max_examples=80, deadline=None)
def test_batch_round_trip_both_ways(kind, fix_list):
    from ingest.jt808.location import decode_batch_location, encode_batch_location

    body = enc.batch_body(kind, [enc.location_body(f) for f in fix_list])
    got_kind, locs = decode_batch_location(body)
    assert got_kind == kind and len(locs) == len(fix_list)
    for loc, fix in zip(locs, fix_list, strict=True):
        assert_location_matches(loc, fix)
    assert encode_batch_location(kind, locs) == body
    assert enc.read_batch(body) == (kind, [enc.location_body(f) for f in fix_list])


def test_location_vendor_quirks():
    """Known items of unexpected lengths are kept raw; an altitude WORD above 0xFC17 reads as below sea level."""
    from ingest.jt808.location import decode_location

    fix = enc.Fix(0, enc.STATUS_FIXED, 31_000_000, 121_000_000, 0xFFFF, 0, 0, 1_704_135_845)
    odd = [(0x01, b"\x00\x10"), (0x30, b""), (0x31, b"\x01\x02"), (0x02, b"\x00\x00\x00\x05"), (0xE1, b"\x7e" * 9)]
    loc = decode_location(enc.quirk_odd_items(fix, odd))
    assert loc.extra == tuple(odd) and loc.mileage_km is None and loc.signal is None and loc.satellites is None
    assert loc.altitude_m == -1 and loc.lat == 31.0


# --- records of the twin's decoder ---------------------------------------------------------------------------


@given(
    versions, st.text("0123456789", min_size=1, max_size=12), st.lists(fixes(), min_size=1, max_size=6), st.booleans()
)
@ROUND
def test_jt808_records_of_independent_frames(version, phone, fix_list, batch):
    import orjson

    from ingest.decoders.jt808 import jt808_records

    bodies = [enc.location_body(f) for f in fix_list]
    if batch or len(fix_list) > 1:
        wire = enc.frame(0x0704, phone, 5, enc.batch_body(1, bodies), version=version)
    else:
        wire = enc.frame(0x0200, phone, 5, bodies[0], version=version)
    recs = jt808_records(wire, device="v1", received_at=0.0, terminal="000" + phone)
    fixed = [f for f in fix_list if f.status & enc.STATUS_FIXED]
    assert len(recs) == len(fixed) and recs.ignored == len(fix_list) - len(fixed)
    for row, fix in zip(recs.records(), fixed, strict=True):
        assert row["device"] == "v1" and row["quantity"] == "position" and row["t"] == fix.time and row["fix"] == 1
        assert abs(row["lat"]) == pytest.approx(fix.lat_e6 / 1e6) and abs(row["lon"]) == pytest.approx(fix.lon_e6 / 1e6)
        assert (row["lat"] < 0) == bool(fix.status & enc.STATUS_SOUTH and fix.lat_e6)
        assert row["speed_kmh"] == pytest.approx(fix.speed_dkmh / 10)
        assert (row["course_deg"], row["alt_m"]) == (fix.direction_deg, fix.altitude_m)
        gnss = {name for name, bit in enc.GNSS_BITS.items() if fix.status & bit}
        assert row["datum"] == ("CGCS2000" if gnss == {"BDS"} else "WGS84")
        note = orjson.loads(row["note"])
        assert (note["alarm"], note["status"]) == (fix.alarm, fix.status)
        raw = [[i, v.hex()] for i, v in fix.items if KNOWN_ITEMS.get(i) != len(v)]
        assert note.get("extra", []) == raw


@given(versions, st.text("0123456789", min_size=1, max_size=12), st.lists(fixes(fixed=True), min_size=1, max_size=6))
@example(2013, "1", [enc.Fix(0, enc.STATUS_FIXED, 0, 0, 0, 0, 0, 946_656_000)])  # fixed, no constellation bit
@settings(max_examples=80, deadline=None)
def test_records_encode_back_to_the_standard_frame(version, phone, fix_list):
    """``encode_jt808`` of the records of a frame, read by the independent reader, is that frame's body again."""
    from ingest.decoders.jt808 import encode_jt808, jt808_records

    bodies = [enc.location_body(f) for f in fix_list]
    msg_id, body = (0x0200, bodies[0]) if len(bodies) == 1 else (0x0704, enc.batch_body(1, bodies))
    recs = jt808_records(enc.frame(msg_id, phone, 5, body, version=version), device="v1", received_at=0.0)
    back = enc.parse(encode_jt808(recs, phone=phone, serial=9, version=version))
    assert (back.msg_id, back.serial, back.phone) == (msg_id, 9, phone.zfill(PHONE_DIGITS[version]))
    assert back.body == body


def test_jt808_records_refuses_other_terminals_and_messages():
    from ingest.decoders.jt808 import jt808_records
    from ingest.rejection import Reason, Refusal

    fix = enc.Fix(0, enc.STATUS_FIXED, 31_000_000, 121_000_000, 5, 0, 0, 1_704_135_845)
    wire = enc.frame(0x0200, "13912345678", 1, enc.location_body(fix))
    with pytest.raises(Refusal) as other:
        jt808_records(wire, device="v1", received_at=0.0, terminal="13912345679")
    assert other.value.reason == Reason.IDENTITY_MISMATCH
    with pytest.raises(Refusal) as heartbeat:
        jt808_records(enc.frame(0x0002, "13912345678", 1), device="v1", received_at=0.0)
    assert heartbeat.value.reason == Reason.BAD_SCHEMA


# --- sub-packages ----------------------------------------------------------------------------------------------


@given(
    versions,
    st.lists(fixes(), min_size=1, max_size=60),
    st.integers(64, 1023),
    st.randoms(use_true_random=False),
    st.integers(0, 0xFFFF),
)
@settings(max_examples=60, deadline=None)
def test_subpackaged_batch_reassembles_from_shuffled_pieces(version, fix_list, piece, rnd, serial):
    from ingest.jt808.location import decode_batch_location
    from ingest.jt808.reassembly import Reassembler

    body = enc.batch_body(0, [enc.location_body(f) for f in fix_list])
    frames = enc.subpackages(0x0704, "13912345678", serial, body, piece, version=version)
    rnd.shuffle(frames)
    splitter, assembler = FrameSplitter(), Reassembler()
    results = [assembler.add(parse_frame(f), 0.0) for f in splitter.feed(b"".join(frames))]
    assert [r is not None for r in results] == [False] * (len(frames) - 1) + [True]
    whole = results[-1]
    assert whole.body == body and (whole.header.packet_total, whole.header.packet_index) == (0, 0)
    assert whole.header.msg_id == 0x0704 and whole.header.terminal == "13912345678"
    assert whole.header.body_length == len(body) and whole.header.serial == serial
    _, locs = decode_batch_location(whole.body)
    for loc, fix in zip(locs, fix_list, strict=True):
        assert_location_matches(loc, fix)
    assert assembler.pending == 0 and assembler.held_bytes == 0


# --- link-level messages -------------------------------------------------------------------------------------

gbk_text = st.text(st.characters(codec="gbk", exclude_characters="\x00 "), max_size=6)


def text_fitting(size: int) -> st.SearchStrategy[str]:
    """GBK text without NUL or edge spaces of at most ``size`` bytes."""
    return gbk_text.filter(lambda s: len(s.encode("gbk")) <= size and s == s.strip())


@st.composite
def registrations(draw, edition: int) -> dict:
    maker_n, model_n, id_n = enc.REGISTRATION_LENGTHS[edition]
    plate_max = 10 if edition == 2011 else 20
    return {
        "province": draw(st.integers(0, 0xFFFF)),
        "city": draw(st.integers(0, 0xFFFF)),
        "maker": draw(text_fitting(maker_n)),
        "model": draw(text_fitting(model_n)),
        "terminal_id": draw(text_fitting(id_n)),
        "plate_colour": draw(st.integers(0, 255)),
        "plate": draw(text_fitting(plate_max)),
    }


def header_of(version: int, msg_id: int = 0x0100):
    return parse_frame(enc.frame(msg_id, "13912345678", 1, version=version)[1:-1]).header


@pytest.mark.parametrize(("edition", "version"), [(2011, 2013), (2013, 2013), (2019, 2019), (2013, 2019)])
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_registration_round_trip_both_ways(edition, version, data):
    """2011/2013/2019 field lengths; (2013, 2019) is the vendor quirk of a 2019 header with 2013 lengths."""
    from ingest.jt808.messages import Registration, decode_registration, encode_registration

    fields = data.draw(registrations(edition))
    reg = decode_registration(enc.registration_body(**fields, edition=edition), header_of(version))
    assert reg == Registration(**fields, layout=edition)
    assert enc.read_registration(encode_registration(reg), edition) == fields


@given(versions, text_fitting(40).filter(lambda s: s[:1] >= " "), st.text("0123456789", max_size=15), text_fitting(20))
@ROUND
def test_authentication_round_trip_both_ways(version, code, imei, software):
    from ingest.jt808.messages import Authentication, decode_authentication, encode_authentication

    expected = Authentication(code, imei, software) if version == 2019 else Authentication(code)
    body = enc.authentication_body(code, version=version, imei=imei, software_version=software)
    assert decode_authentication(body, header_of(version, 0x0102)) == expected
    assert enc.read_authentication(encode_authentication(expected, version), version) == {
        k: v for k, v in vars(expected).items() if version == 2019 or k == "auth_code"
    }


@given(serials, msg_ids, st.integers(0, 255))
@ROUND
def test_general_replies_both_ways(reply_serial, reply_id, result):
    from ingest.jt808.messages import GeneralReply, decode_general_reply, encode_general_reply

    assert decode_general_reply(enc.general_reply_body(reply_serial, reply_id, result)) == GeneralReply(
        reply_serial, reply_id, result
    )
    assert enc.read_general_reply(encode_general_reply(GeneralReply(reply_serial, reply_id, result))) == (
        reply_serial,
        reply_id,
        result,
    )


@given(serials, st.integers(0, 4), text_fitting(60))
@ROUND
def test_registration_reply_both_ways(reply_serial, result, code):
    from ingest.jt808.messages import RegistrationReply, decode_registration_reply, encode_registration_reply

    expected = RegistrationReply(reply_serial, result, code if result == 0 else "")
    body = encode_registration_reply(RegistrationReply(reply_serial, result, code))
    assert enc.read_registration_reply(body) == (reply_serial, result, expected.auth_code)
    assert decode_registration_reply(enc.registration_reply_body(reply_serial, result, code)) == expected


@given(versions, st.integers(0, 255), st.integers(0, 255), text_fitting(400))
@ROUND
def test_text_both_ways(version, flags, text_type, text):
    from ingest.jt808.messages import TextMessage, decode_text, encode_text

    sent = TextMessage(flags, text, text_type if version == 2019 else 1)
    assert enc.read_text(encode_text(sent, version), version) == (sent.flags, sent.text_type, text)
    body = enc.text_body(flags, text, version=version, text_type=sent.text_type)
    assert decode_text(body, header_of(version, 0x8300)) == sent


@pytest.mark.parametrize("version", [2013, 2019])
def test_platform_frames_read_by_the_independent_reader(version):
    """A whole 0x8001/0x8100/0x8300 frame of the codec, read by the independent reader (as the gateway tests do)."""
    from ingest.jt808.messages import (
        GeneralReply,
        RegistrationReply,
        TextMessage,
        encode_general_reply,
        encode_registration_reply,
        encode_text,
    )

    reply = enc.parse(
        build_frame(0x8001, "13912345678", 3, encode_general_reply(GeneralReply(0x7E7D, 0x0200, 0)), version=version)
    )
    assert (reply.msg_id, reply.serial, reply.version) == (0x8001, 3, version)
    assert enc.read_general_reply(reply.body) == (0x7E7D, 0x0200, 0)
    reg = enc.parse(
        build_frame(
            0x8100, "13912345678", 4, encode_registration_reply(RegistrationReply(9, 0, "鉴权码")), version=version
        )
    )
    assert enc.read_registration_reply(reg.body) == (9, 0, "鉴权码")
    text = enc.parse(
        build_frame(0x8300, "13912345678", 5, encode_text(TextMessage(8, "红色预警：暴雨"), version), version=version)
    )
    assert enc.read_text(text.body, version) == (8, 1, "红色预警：暴雨")
