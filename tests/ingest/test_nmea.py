"""NMEA 0183 decoding: real receiver logs (gpsd, see data/SOURCE.txt), hand-checked fixes, properties."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pynmea2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import decode_beidou, decode_nmea, encode_nmea
from ingest.decoders.nmea import KNOT_KMH, sentence
from ingest.rejection import Reason, Rejection

DATA = Path(__file__).parent / "data"
LOGS = sorted(DATA.glob("*.log"))
TOPIC = "city/beidou/bd-0001"


def sentences(path: Path) -> list[str]:
    """Sentences of a gpsd log (comments and blank lines removed)."""
    return [
        ln.strip()
        for ln in path.read_text(encoding="ascii", errors="replace").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]


def log_date(lines: list[str]) -> float:
    """Noon UTC of the first RMC date in a log [s]."""
    for ln in lines:
        if ln[3:6] == "RMC":
            msg = pynmea2.parse(ln)
            if msg.datestamp:
                return calendar.timegm(msg.datestamp.timetuple()) + 43200.0
    raise AssertionError("no RMC date")


# --- hand-checked -------------------------------------------------------------------------------

BD_GGA = "$GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,156.9,M,8.3,M,,0000,4.9*77"
BD_RMC = "$GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A*76"


def test_shanghai_fix_by_hand():
    b = decode_nmea(f"{BD_GGA}\r\n{BD_RMC}\r\n".encode(), topic=TOPIC, received_at=1424850000.0)
    assert isinstance(b, Batch) and len(b) == 1
    r = next(iter(b.records()))
    # 2015-02-25 07:41:55.799 UTC; 31 deg 14.8770 min N; 121 deg 35.2463 min E
    assert r["t"] == pytest.approx(calendar.timegm((2015, 2, 25, 7, 41, 55)) + 0.799, abs=1e-6)
    assert r["lat"] == pytest.approx(31 + 14.8770 / 60, abs=1e-12)
    assert r["lon"] == pytest.approx(121 + 35.2463 / 60, abs=1e-12)
    assert r["speed_kmh"] == pytest.approx(0.30 * 1.852)
    assert (r["course_deg"], r["hdop"], r["fix"], r["device"]) == (4.94, 1.3, 1, "bd-0001")
    assert (r["quantity"], r["datum"]) == ("position", "WGS84")
    assert r["alt_m"] == 156.9  # GGA field 9, above the geoid (field 11, the separation 8.3 m, is not kept)


def _gns(alt: str = "12.5") -> str:
    return sentence(f"GNGNS,074155.799,3114.8770,N,12135.2463,E,AA,12,0.9,{alt},8.3,,,V")


def test_altitude_from_gga_else_gns():
    day = 1424850000.0
    gns = _gns("12.5")
    assert decode_nmea(gns.encode(), topic=TOPIC, received_at=day).alt_m.tolist() == [12.5]
    both = f"{gns}\r\n{BD_GGA}".encode()  # GGA's altitude wins, whatever the order
    assert decode_nmea(both, topic=TOPIC, received_at=day).alt_m.tolist() == [156.9]
    assert decode_nmea(f"{BD_GGA}\r\n{gns}".encode(), topic=TOPIC, received_at=day).alt_m.tolist() == [156.9]
    no_alt = sentence("GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,,M,,M,,")
    b = decode_nmea(f"{no_alt}\r\n{gns}".encode(), topic=TOPIC, received_at=day)
    assert b.alt_m.tolist() == [12.5]  # a GGA without altitude leaves the GNS one
    for body in ("GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,,M,,M,,",
                 "GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,156.9,F,8.3,M,,"):  # unit not metres
        b = decode_nmea(sentence(body).encode(), topic=TOPIC, received_at=day)
        assert len(b) == 1 and math.isnan(b.alt_m[0])
    rmc_only = decode_nmea(BD_RMC.encode(), topic=TOPIC, received_at=day)
    assert len(rmc_only) == 1 and math.isnan(rmc_only.alt_m[0])


@pytest.mark.parametrize(("alt", "reason"), [("1x5.0", Reason.BAD_SYNTAX), ("nan", Reason.BAD_SYNTAX),
                                             ("-1500.0", Reason.OUT_OF_RANGE), ("25000", Reason.OUT_OF_RANGE)])
def test_bad_altitude_refuses_the_payload(alt, reason):
    gga = sentence(f"GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,{alt},M,8.3,M,,")
    for s in (gga, _gns(alt)):
        r = decode_nmea(s.encode(), topic=TOPIC, received_at=1424850000.0)
        assert isinstance(r, Rejection) and r.reason is reason, (s, r)
        assert r.field.endswith("altitude")


def test_altitude_of_a_no_fix_epoch_is_not_read():
    gga = sentence("GNGGA,074155.799,,,,,0,00,99.9,garbage,M,,M,,")
    b = decode_nmea(gga.encode(), topic=TOPIC, received_at=1424850000.0)
    assert isinstance(b, Batch) and len(b) == 0


def test_gga_without_date_takes_nearest_day():
    # received just after midnight UTC: a fix of 23:59:59 belongs to the previous day
    midnight = calendar.timegm((2024, 7, 1, 0, 0, 0))
    gga = sentence("GBGGA,235959.00,3114.4300,N,12129.1300,E,1,12,0.9,4.0,M,8.3,M,,")
    b = decode_nmea(gga.encode(), topic=TOPIC, received_at=midnight + 2)
    assert b.t.tolist() == [midnight - 1.0]
    assert b.datum.tolist() == ["CGCS2000"]  # BDS talker


def test_beidou_shanghai_log_lands_on_pudong():
    lines = sentences(DATA / "beidou-bd.log")
    b = decode_beidou("\r\n".join(lines).encode(), topic=TOPIC, received_at=log_date(lines))
    assert isinstance(b, Batch) and len(b) >= 5
    assert np.all(np.abs(b.lat - 31.248) < 0.002)
    assert np.all(np.abs(b.lon - 121.587) < 0.002)
    assert b.ignored > 0  # GSV, GSA, $PSRFEPE, no-fix epochs
    days = {dt.datetime.fromtimestamp(t, dt.UTC).date() for t in b.t}
    assert days == {dt.date(2015, 2, 25)}


def test_satellite_and_proprietary_sentences_are_ignored_and_counted():
    lines = [
        "$GPGSV,7,7,25,04,08,012,*41",
        "$BDGSA,A,1,,,,,,,,,,,,,,,,*23",
        "$PSRFEPE,074150.799,V,,,,,*23",
        "$GNGGA,074150.799,,,,,0,00,,,M,0.0,M,,0000,*64",
    ]
    b = decode_nmea("\r\n".join(lines).encode(), topic=TOPIC, received_at=1424850000.0)
    assert isinstance(b, Batch) and len(b) == 0 and b.ignored == 4


# --- real logs, sentence by sentence, against pynmea2 -------------------------------------------


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_every_valid_gga_rmc_of_real_logs_decodes(path):
    lines = sentences(path)
    day = log_date(lines)
    checked = 0
    for ln in lines:
        if ln[3:6] not in ("GGA", "RMC") or ln[1:3] not in ("GN", "GP", "GL", "GA", "GB", "BD"):
            continue
        ref = pynmea2.parse(ln)
        valid = ref.gps_qual > 0 if ln[3:6] == "GGA" else ref.status == "A"
        b = decode_nmea(ln.encode(), topic=TOPIC, received_at=day)
        assert isinstance(b, Batch), (ln, b)
        if not valid:
            assert len(b) == 0
            continue
        assert len(b) == 1, ln
        checked += 1
        assert b.lat[0] == pytest.approx(ref.latitude, abs=1e-9)
        assert b.lon[0] == pytest.approx(ref.longitude, abs=1e-9)
        tod = ref.timestamp
        seconds = tod.hour * 3600 + tod.minute * 60 + tod.second + tod.microsecond / 1e6
        assert b.t[0] % 86400 == pytest.approx(seconds, abs=1e-6)
        if ln[3:6] == "GGA":
            assert b.fix[0] == ref.gps_qual
            if ref.horizontal_dil:
                assert b.hdop[0] == pytest.approx(float(ref.horizontal_dil))
            if ref.altitude is not None and ref.altitude_units == "M":
                assert b.alt_m[0] == pytest.approx(float(ref.altitude))
            else:
                assert math.isnan(b.alt_m[0])
        else:
            want = dt.datetime.combine(ref.datestamp, tod).replace(tzinfo=dt.UTC).timestamp()
            assert b.t[0] == pytest.approx(want, abs=1e-6)
            if ref.spd_over_grnd is not None:
                assert b.speed_kmh[0] == pytest.approx(float(ref.spd_over_grnd) * KNOT_KMH)
    assert checked > 0


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_real_log_as_one_payload_never_rejected(path):
    lines = sentences(path)
    b = decode_nmea("\r\n".join(lines).encode(), topic=TOPIC, received_at=log_date(lines))
    assert isinstance(b, Batch)
    assert len(b) > 0 and np.isfinite(b.lat).all() and np.isfinite(b.t).all()


# --- properties -----------------------------------------------------------------------------------


@st.composite
def fixes(draw, n_max=4):
    n = draw(st.integers(1, n_max))
    t0 = draw(st.integers(946_684_800_00, 4_000_000_000_00)) / 100  # 2000..2096, centiseconds
    ts = [t0 + i for i in range(n)]
    lat = draw(st.lists(st.floats(-89.9, 89.9), min_size=n, max_size=n))
    lon = draw(st.lists(st.floats(-179.9, 179.9), min_size=n, max_size=n))
    speed = draw(st.lists(st.floats(0, 300), min_size=n, max_size=n))
    course = draw(st.lists(st.floats(0, 359.9), min_size=n, max_size=n))
    hdop = draw(st.lists(st.floats(0.5, 50).map(lambda x: round(x, 2)), min_size=n, max_size=n))
    fix = draw(st.lists(st.sampled_from([1, 2, 4, 5]), min_size=n, max_size=n))
    alt = draw(st.lists(st.just(math.nan) | st.floats(-999.9, 19999.9).map(lambda x: round(x, 1)), min_size=n,
                        max_size=n))
    return Batch.build(
        n,
        device="bd-0001",
        t=ts,
        quantity="position",
        lat=lat,
        lon=lon,
        speed_kmh=speed,
        course_deg=course,
        hdop=hdop,
        fix=fix,
        alt_m=alt,
        datum="WGS84",
    )


@settings(max_examples=150, deadline=None)
@given(fixes(), st.sampled_from(["GN", "GP", "GB", "BD"]))
def test_encode_decode_round_trip(batch, talker):
    out = decode_nmea(encode_nmea(batch, talker=talker), topic=TOPIC, received_at=float(batch.t[0]))
    assert isinstance(out, Batch) and len(out) == len(batch)
    np.testing.assert_allclose(out.t, batch.t, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out.lat, batch.lat, atol=1e-9, rtol=0)
    np.testing.assert_allclose(out.lon, batch.lon, atol=1e-9, rtol=0)
    np.testing.assert_allclose(out.speed_kmh, batch.speed_kmh, atol=1e-3, rtol=0)
    np.testing.assert_allclose(out.course_deg, batch.course_deg, atol=1e-3, rtol=0)
    assert out.hdop.tolist() == batch.hdop.tolist() and out.fix.tolist() == batch.fix.tolist()
    np.testing.assert_allclose(out.alt_m, batch.alt_m, atol=1e-9, rtol=0)  # NaN where NaN
    assert out.datum[0] == ("CGCS2000" if talker in ("GB", "BD") else "WGS84")


@settings(max_examples=100, deadline=None)
@given(fixes(n_max=1))
def test_encoder_agrees_with_pynmea2(batch):
    assume(batch.t[0] < 3124224000)  # pynmea2 puts two-digit years >= 69 in the 1900s
    gga, rmc = encode_nmea(batch).decode().split()
    ref_gga, ref_rmc = pynmea2.parse(gga, check=True), pynmea2.parse(rmc, check=True)
    for ref in (ref_gga, ref_rmc):
        assert ref.latitude == pytest.approx(batch.lat[0], abs=1e-9)
        assert ref.longitude == pytest.approx(batch.lon[0], abs=1e-9)
    stamp = dt.datetime.combine(ref_rmc.datestamp, ref_rmc.timestamp).replace(tzinfo=dt.UTC).timestamp()
    assert stamp == pytest.approx(batch.t[0], abs=1e-6)
    assert ref_gga.gps_qual == batch.fix[0]
    assert float(ref_gga.horizontal_dil) == batch.hdop[0]
    if math.isnan(batch.alt_m[0]):
        assert ref_gga.altitude is None
    else:
        assert ref_gga.altitude == pytest.approx(batch.alt_m[0], abs=1e-9) and ref_gga.altitude_units == "M"
    assert float(ref_rmc.spd_over_grnd) * KNOT_KMH == pytest.approx(batch.speed_kmh[0], abs=1e-3)
    assert float(ref_rmc.true_course) == pytest.approx(batch.course_deg[0], abs=1e-3)


@settings(max_examples=400, deadline=None)
@given(fixes(n_max=1), st.data())
def test_flipping_any_character_is_rejected(batch, data):
    line = encode_nmea(batch).decode().split()[data.draw(st.integers(0, 1))]
    i = data.draw(st.integers(0, len(line) - 1))
    new = data.draw(st.characters(codec="latin-1").filter(lambda c: c != line[i]))
    flipped = (line[:i] + new + line[i + 1 :]).encode("latin-1")
    r = decode_nmea(flipped, topic=TOPIC, received_at=float(batch.t[0]))
    assert isinstance(r, Rejection), (line, i, new)
    assert r.reason in (Reason.BAD_CHECKSUM, Reason.BAD_SYNTAX)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200) | st.text("$GNPBDRMCGA,.*0123456789ABCDEFNSEW\r\n", max_size=120).map(str.encode)
)
def test_any_bytes_give_batch_or_rejection(payload):
    for decoder in (decode_nmea, decode_beidou):
        r = decoder(payload, topic=TOPIC, received_at=1.7e9)
        assert isinstance(r, Batch | Rejection)
        if isinstance(r, Rejection):
            assert "internal" not in r.detail


def test_missing_checksum_and_bad_fields():
    body = "GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,156.9,M,8.3,M,,0000"
    assert decode_nmea(f"${body}".encode(), topic=TOPIC, received_at=0).reason is Reason.BAD_CHECKSUM
    bad_lat = sentence(body.replace("3114.8770", "3174.8770"))  # 74 minutes
    assert decode_nmea(bad_lat.encode(), topic=TOPIC, received_at=0).reason is Reason.OUT_OF_RANGE
    short = sentence("GNGGA,074155.799,3114.8770,N")
    assert decode_nmea(short.encode(), topic=TOPIC, received_at=0).reason is Reason.BAD_SCHEMA
    assert math.isnan(decode_nmea(sentence(body).encode(), topic=TOPIC, received_at=1.4e9).speed_kmh[0])
