"""Alert lifecycle: regions carried by overlap, never duplicated; CAP 1.2 JSON and XML checked."""

from __future__ import annotations

import numpy as np
import pytest
from xsdata.formats.dataclass.parsers import XmlParser

from twin.alerting import cap
from twin.alerting.cap import info_block
from twin.alerting.compose import ComposeContext, acknowledged_by, issue
from twin.alerting.lifecycle import AlertBook
from twin.district.grid import GridSpec

GRID = GridSpec.from_bbox(121.484, 31.236, 121.492, 31.244, 20.0)
T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z


class Book:
    """The lifecycle with every event composed into CAP, as the core and the scenario runner use it."""

    def __init__(self, clear_s: float = 0.0, status: str = "Actual", **context) -> None:
        self.lifecycle = AlertBook("bund", clear_s=clear_s)
        self.context = ComposeContext(GRID, "twin.bund@citytwin", "bund", status, **context)

    @property
    def active(self):
        return self.lifecycle.active

    def tick(self, t, levels):
        return issue(self.lifecycle.tick(t, levels), self.context)

    def acknowledge(self, ident, operator, t, note=""):
        event = self.lifecycle.acknowledge(ident, operator, t, note)
        return issue([event], self.context)[0] if event else None


def book(**kw):
    return Book(**kw)


def levels(*boxes, shape=GRID.shape):
    a = np.zeros(shape, dtype=np.int8)
    for r0, r1, c0, c1, v in boxes:
        a[r0:r1, c0:c1] = v
    return a


def kinds(events):
    return [(e.kind, e.alert.hazard, e.alert.level) for e in events]


def test_raise_grow_escalate_shrink_clear():
    b = book()
    ev = b.tick(T0, {"crowd": levels((5, 8, 5, 8, 2))})
    assert kinds(ev) == [("raised", "crowd", 2)]
    ident = ev[0].alert.identifier
    assert b.tick(T0 + 1, {"crowd": levels((5, 8, 5, 8, 2))}) == []  # unchanged: no message
    ev = b.tick(T0 + 2, {"crowd": levels((4, 9, 4, 9, 2))})  # grows 9 -> 25 cells
    assert kinds(ev) == [("updated", "crowd", 2)] and ev[0].alert.identifier == ident
    ev = b.tick(T0 + 3, {"crowd": levels((4, 9, 4, 9, 2), (6, 7, 6, 7, 4))})
    assert kinds(ev) == [("updated", "crowd", 4)]
    assert info_block(ev[0].message)["severity"] == "Extreme"
    ev = b.tick(T0 + 4, {"crowd": levels()})
    assert kinds(ev) == [("cancelled", "crowd", 4)]
    assert ev[0].message["msgType"] == "Cancel" and ident in ev[0].message["references"]
    assert not b.active


def test_clear_waits_for_the_clear_delay():
    b = book(clear_s=2.0)
    b.tick(T0, {"flood": levels((1, 3, 1, 3, 3))})
    assert b.tick(T0 + 1, {"flood": levels()}) == []
    assert b.tick(T0 + 2, {"flood": levels()}) == []
    assert kinds(b.tick(T0 + 3, {"flood": levels()})) == [("cancelled", "flood", 3)]


@pytest.mark.parametrize("tick_s", [1.0, 2.5, 10.0])
def test_the_clear_delay_is_in_seconds_whatever_the_tick(tick_s):
    """The Cancel comes at the first tick at least clear_s after the first tick without cells."""
    b = book(clear_s=20.0)
    b.tick(T0, {"flood": levels((1, 3, 1, 3, 3))})
    k, cancelled = 1, []
    while not cancelled:
        cancelled = b.tick(T0 + k * tick_s, {"flood": levels()})
        k += 1
    first_empty = T0 + tick_s
    assert cancelled[0].t - first_empty >= 20.0 - 1e-9
    assert cancelled[0].t - first_empty < 20.0 + tick_s


def test_a_negative_clear_delay_is_refused():
    with pytest.raises(ValueError, match="clear_s"):
        AlertBook("bund", clear_s=-1.0)


def test_a_moving_region_keeps_its_alert():
    b = book()
    b.tick(T0, {"crowd": levels((5, 8, 5, 8, 2))})
    idents = set()
    for k in range(1, 10):  # moves one cell east per tick, always overlapping the last position
        for e in b.tick(T0 + k, {"crowd": levels((5, 8, 5 + k, 8 + k, 2))}):
            assert e.kind == "updated"
            idents.add(e.alert.identifier)
    assert len(b.active) == 1 and len(idents) <= 1


def test_split_keeps_one_alert_with_two_polygons_and_merge_cancels_the_absorbed():
    b = book()
    b.tick(T0, {"crowd": levels((5, 8, 5, 16, 2))})
    ev = b.tick(T0 + 1, {"crowd": levels((5, 8, 5, 8, 2), (5, 8, 13, 16, 2))})
    assert len(b.active) == 1
    assert [e.kind for e in ev] == ["updated"] and len(info_block(ev[0].message)["area"][0]["polygon"]) == 2
    # two separate alerts, then their regions merge
    b2 = book()
    b2.tick(T0, {"flood": levels((2, 4, 2, 4, 2), (2, 4, 10, 12, 3))})
    assert len(b2.active) == 2
    ev = b2.tick(T0 + 1, {"flood": levels((2, 4, 2, 12, 3))})
    assert sorted(e.kind for e in ev) == ["cancelled", "updated"]
    cancel = next(e for e in ev if e.kind == "cancelled")
    update = next(e for e in ev if e.kind == "updated")
    assert "merged into " + update.alert.identifier in info_block(cancel.message)["description"]
    assert cancel.alert.identifier in update.message["references"]
    assert len(b2.active) == 1


def test_cells_close_together_are_one_alert():
    b = book()
    # a diagonal line of single cells (a ramp drawn cell by cell) and a pair two cells apart
    a = levels()
    for k in range(6):
        a[10 + k, 10 + k] = 2
    a[2, 2] = a[2, 5] = 1
    ev = b.tick(T0, {"flood": a})
    assert sorted(e.alert.cells.size for e in ev) == [2, 6]


def test_no_data_neither_raises_nor_clears():
    b = book()
    b.tick(T0, {"crowd": levels((5, 8, 5, 8, 3))})
    stale = levels((5, 8, 5, 8, -1))
    stale[stale == 0] = -1
    assert b.tick(T0 + 1, {"crowd": stale}) == []
    assert len(b.active) == 1
    fresh_empty = levels()
    assert kinds(b.tick(T0 + 2, {"crowd": fresh_empty})) == [("cancelled", "crowd", 3)]
    assert b.tick(T0 + 3, {"crowd": np.full(GRID.shape, -1, np.int8)}) == []


def test_hazards_are_tracked_separately():
    b = book()
    ev = b.tick(T0, {"crowd": levels((5, 8, 5, 8, 2)), "flood": levels((5, 8, 5, 8, 1))})
    assert sorted(kinds(ev)) == [("raised", "crowd", 2), ("raised", "flood", 1)]
    ids = [e.alert.identifier for e in ev]
    assert len(set(ids)) == 2


@pytest.fixture(scope="module")
def messages():
    b = book(evidence=lambda h, c: {"peakDensity": "4.6", "devices": "bund-crowd-01"}, model_version="0.1.0")
    out = [e.message for e in b.tick(T0, {"crowd": levels((5, 8, 5, 8, 2))})]
    out += [e.message for e in b.tick(T0 + 60, {"crowd": levels((5, 9, 5, 9, 3))})]
    out += [e.message for e in b.tick(T0 + 120, {"crowd": levels()})]
    return out


def test_cap_json_follows_the_contract(messages):
    alert, update, cancel = messages
    assert [m["msgType"] for m in messages] == ["Alert", "Update", "Cancel"]
    for m in messages:
        assert cap.problems(m) == [], cap.problems(m)
        info = info_block(m)
        params = {p["valueName"]: p["value"] for p in info["parameter"]}
        assert info["category"] == "Safety" and info["certainty"] == "Observed"
        assert params["peakDensity"] == "4.6" and params["modelVersion"] == "0.1.0"
        geo = info["area"][0]["geocode"]
        assert geo and all(g["valueName"] == "BeidouGridCode" and g["value"].startswith("N51H") for g in geo)
    assert alert["sent"] == "2025-01-01T08:00:00+08:00" and "references" not in alert
    assert {p["valueName"]: p["value"] for p in info_block(update)["parameter"]}["warningLevel"] == "orange"
    assert info_block(update)["severity"] == "Severe"
    assert update["references"] == cap.reference(alert)
    assert cancel["references"] == cap.reference(update)


def test_polygon_is_a_closed_wgs84_ring_around_the_cells(messages):
    poly = info_block(messages[0])["area"][0]["polygon"][0]
    pairs = [tuple(map(float, p.split(","))) for p in poly.split()]
    assert pairs[0] == pairs[-1] and len(pairs) >= 5
    lats, lons = zip(*pairs, strict=True)
    w, s, e, n = GRID.bounds_lonlat
    assert s <= min(lats) < max(lats) <= n and w <= min(lons) < max(lons) <= e
    # 3 x 3 cells of 20 m: about 60 m across
    assert (max(lats) - min(lats)) * 111_000 == pytest.approx(60, abs=2)


def test_cap_xml_parses_with_an_independent_cap_library(messages):
    from cap_tools.models import Alert as CapAlert

    for m in messages:
        xml = cap.to_xml(m)
        assert 'xmlns="urn:oasis:names:tc:emergency:cap:1.2"' in xml
        parsed = XmlParser().from_string(xml, CapAlert)
        assert parsed.identifier == m["identifier"] and parsed.msg_type.value == m["msgType"]
        info = parsed.infos[0]
        assert info.severity.value == info_block(m)["severity"]
        assert info.areas[0].polygons == info_block(m)["area"][0]["polygon"]
        assert dict(info.parameters_to_dict())["warningLevel"] == \
            {p["valueName"]: p["value"] for p in info_block(m)["parameter"]}["warningLevel"]
        if m["msgType"] != "Alert":
            refs = [f"{r.sender},{r.identifier},{r.sent}" for r in parsed.references_to_list()]
            assert refs == m["references"].split()


def test_cap_checker_catches_broken_messages(messages):
    bad = dict(messages[1])
    del bad["references"]
    assert "a Update message must carry references" in cap.problems(bad)
    bad = {**messages[0], "sent": "2025-01-01T00:00:00Z", "status": "Live"}
    assert any("not a CAP dateTime" in p for p in cap.problems(bad))
    assert any("status 'Live'" in p for p in cap.problems(bad))
    info = dict(info_block(messages[0]))
    info["area"] = [{"areaDesc": "x", "polygon": ["31.2,121.4 31.3,121.4 31.3,121.5"]}]
    problems = cap.problems({**messages[0], "info": [info]})
    assert any("at least 4" in p for p in problems) and any("not closed" in p for p in problems)


def test_geocodes_coarsen_to_the_parents_of_the_cells_codes():
    from twin.alerting.regions import geocodes
    from twin.district import geo
    from twin.district.grid import GridSpec

    grid = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 200, 200)
    cells = np.arange(40 * 200, 80 * 200)  # 40 rows: thousands of level-7 codes, coarsened
    got = geocodes(grid, cells, limit=20)
    row, col = np.divmod(cells, grid.nx)
    lon, lat = geo.to_lonlat(grid.x[col], grid.y[row], grid.crs)
    fine = set(geo.beidou_encode_many(lon, lat, grid.beidou_level))
    level = grid.beidou_level
    while len(fine) > 20:
        level -= 1
        fine = {geo.beidou_parent(c, level) for c in fine}
    assert got == sorted(fine) and 0 < len(got) <= 20


def test_the_lifecycle_knows_nothing_of_cap():
    events = AlertBook("bund").tick(T0, {"crowd": levels((5, 8, 5, 8, 2))})
    assert [e.kind for e in events] == ["raised"] and events[0].message is None and events[0].alert.messages == []


def test_acknowledgements_are_updates_of_their_own_and_every_later_message_lists_the_operators():
    b = book()
    ident = b.tick(T0, {"crowd": levels((5, 8, 5, 8, 2))})[0].alert.identifier
    first = b.acknowledge(ident, "Li Wei", T0 + 60, "stewards sent")
    assert first.kind == "acknowledged" and b.acknowledge(ident, "Li Wei", T0 + 61) is None
    m = first.message
    assert m["identifier"] == f"{ident}.ack1" and m["msgType"] == "Update" and cap.problems(m) == []
    assert m["note"] == "Acknowledged by operator Li Wei at 2025-01-01T08:01:00+08:00: stewards sent"
    assert m["references"] == cap.reference(first.alert.messages[0]) and acknowledged_by(m) == ["Li Wei"]
    assert acknowledged_by(first.alert.messages[0]) == [], "a composed message is never rewritten"
    second = b.acknowledge(ident, "Zhao Min", T0 + 90)
    assert second.message["identifier"] == f"{ident}.ack2" and acknowledged_by(second.message) == ["Li Wei", "Zhao Min"]
    update = b.tick(T0 + 120, {"crowd": levels((5, 8, 5, 8, 4))})[0].message
    cancel = b.tick(T0 + 180, {"crowd": levels()})[0].message
    for later in (update, cancel):
        assert acknowledged_by(later) == ["Li Wei", "Zhao Min"] and "note" not in later
    assert update["identifier"] == f"{ident}.update3" and cancel["identifier"] == f"{ident}.cancel4"
    assert cancel["references"] == cap.reference(update)
    from cap_tools.models import Alert as CapAlert

    parsed = XmlParser().from_string(cap.to_xml(second.message), CapAlert)
    assert parsed.note == second.message["note"] and parsed.msg_type.value == "Update"
    assert [p.value.value for p in parsed.infos[0].parameters if p.value_name.value == "acknowledgedBy"] == \
        ["Li Wei", "Zhao Min"]


def test_an_acknowledgement_needs_an_active_alert():
    with pytest.raises(KeyError):
        AlertBook("bund").acknowledge("citytwin.bund.crowd.x", "Li Wei", T0)


def test_scenarios_compose_exercise_messages():
    b = book(status="Exercise")
    ev = b.tick(T0, {"flood": levels((1, 3, 1, 3, 3))}) + b.tick(T0 + 60, {"flood": levels()})
    assert [e.message["status"] for e in ev] == ["Exercise", "Exercise"] and all(cap.problems(e.message) == []
                                                                                 for e in ev)
