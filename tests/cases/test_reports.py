"""Citizen reports: from an ingest Batch row or an Open311 form, checked, in CGCS2000, ids and privacy."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cases import T0
from twin.cases.model import CaseError
from twin.cases.reports import (
    DEDUPE_RADIUS_M,
    DEDUPE_WINDOW_S,
    REPORT_RADIUS_M,
    CitizenReport,
    from_open311,
    from_record,
    note_of,
)
from twin.district.geo import to_projected, wgs84_to_gcj02

LON, LAT = 121.4905, 31.2397
"""A point on the Bund."""
NOTE = note_of("waterlogging", "隧道口积水约 30 cm / water at the tunnel mouth", "中山东一路 Zhongshan Rd E1",
               ["https://img.example.cn/1.jpg"], "13800000000")


def _metres(lon0, lat0, lon1, lat1):
    x0, y0 = to_projected(lon0, lat0)
    x1, y1 = to_projected(lon1, lat1)
    return math.hypot(x1 - x0, y1 - y0)


@pytest.mark.parametrize("datum", ["WGS84", "CGCS2000", "cgcs-2000", None, ""])
def test_wgs84_and_cgcs2000_positions_are_kept(datum):
    report = from_record("12345", "77", T0, LON, LAT, datum, NOTE)
    assert (report.lon, report.lat) == (LON, LAT)
    assert (report.id, report.source, report.source_id, report.t, report.category) == (
        "R-12345-77", "12345", "77", T0, "waterlogging")
    assert report.media_url == ("https://img.example.cn/1.jpg",) and report.contact == "13800000000"


def test_a_gcj02_position_moves_by_the_known_offset():
    report = from_record("app", "a-1", T0, LON, LAT, "GCJ02", NOTE)
    moved = _metres(LON, LAT, report.lon, report.lat)
    assert 430.0 < moved < 530.0  # GCJ-02 is about 480 m off at the Bund
    assert report.lon < LON and report.lat > LAT  # the true point is west and north of the shifted one
    back = wgs84_to_gcj02(report.lon, report.lat)
    assert back == pytest.approx((LON, LAT), abs=1e-7)


def test_the_report_row_keeps_contact_and_the_public_view_drops_it():
    report = from_record("12345", "77", T0, LON, LAT, "WGS84", NOTE)
    row = json.loads(json.dumps(report.to_row("bund-20250101-0001")))
    assert row["case_id"] == "bund-20250101-0001" and row["body"]["contact"] == "13800000000"
    assert CitizenReport.from_row(row) == report
    assert "contact" not in report.public() and "13800000000" not in json.dumps(report.public(), ensure_ascii=False)
    place = report.place()
    assert (place.key, place.name_zh, place.radius_m) == ("report:R-12345-77", "中山东一路 Zhongshan Rd E1",
                                                          REPORT_RADIUS_M)
    assert (DEDUPE_RADIUS_M, DEDUPE_WINDOW_S) == (100.0, 1800.0)


@pytest.mark.parametrize(("args", "expected"), [
    ({"device": "twitter"}, "unknown report source"),
    ({"ref": "a b"}, "report id"),
    ({"ref": ""}, "report id"),
    ({"t": float("nan")}, "finite time"),
    ({"lon": 200.0}, "out of range"),
    ({"lat": "31.2"}, "lat must be a finite number"),
    ({"datum": "BD09"}, "datum must be one of"),
    ({"note": "not json"}, "JSON object"),
    ({"note": "[1, 2]"}, "JSON object"),
    ({"note": note_of("lost_cat", "meow")}, "unknown category"),
    ({"note": note_of("other", "   ")}, "description must not be empty"),
    ({"note": json.dumps({"category": "other", "description": "x", "phone": "1"})}, "unknown report field"),
    ({"note": note_of("other", "x", media_url=["https://a.cn/1"] * 6)}, "at most 5"),
    ({"note": note_of("other", "x", media_url=["javascript:alert(1)"])}, "media_url: url must be an http(s) URL"),
    ({"note": note_of("other", "x" * 2001)}, "too long"),
])
def test_bad_reports_are_refused_with_a_reason(args, expected):
    call = {"device": "12345", "ref": "77", "t": T0, "lon": LON, "lat": LAT, "datum": "WGS84", "note": NOTE, **args}
    with pytest.raises(CaseError) as err:
        from_record(**call)
    assert err.value.code == "bad_request" and expected in err.value.detail


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=8)), st.one_of(st.floats(), st.integers()),
       st.one_of(st.text(max_size=200), st.binary(max_size=50)))
def test_any_record_gives_a_report_or_a_case_error(ref, datum, lon, note):
    try:
        report = from_record("app", ref, T0, lon, 31.2, datum, note)
    except CaseError as exc:
        assert exc.code == "bad_request"
    else:
        assert math.isfinite(report.lon) and report.id == f"R-app-{ref}"


def test_an_open311_form_becomes_a_report():
    form = {"service_code": "fallen_tree", "lat": "31.2397", "long": "121.4905", "description": "树倒了 / a tree fell",
            "address_string": "外滩 The Bund", "media_url": "https://img.example.cn/t.jpg", "email": "a@b.cn",
            "first_name": "Li"}
    report = from_open311(form, T0, "1001")
    assert (report.id, report.source, report.category, report.lon, report.lat) == (
        "R-open311-1001", "open311", "fallen_tree", 121.4905, 31.2397)
    assert report.media_url == ("https://img.example.cn/t.jpg",) and report.contact == "Li a@b.cn"
    gcj = from_open311({**form, "datum": "GCJ02"}, T0, "1002")
    assert _metres(gcj.lon, gcj.lat, 121.4905, 31.2397) > 400.0
    for bad, expected in (({"lat": "north"}, "lat must be a number"), ({"service_code": None}, "unknown category"),
                          ({"description": 5}, "description must be text")):
        with pytest.raises(CaseError, match=expected):
            from_open311({**form, **bad}, T0, "1003")
