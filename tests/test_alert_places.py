"""Traffic alerts on road-segment places (twin.alerting.lifecycle with twin.alerting.segments and compose)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.test_road_segments import GRID, NORTH, SOUTH, _network, warning
from twin.alerting import cap
from twin.alerting.cap import info_block
from twin.alerting.compose import ComposeContext, issue
from twin.alerting.lifecycle import AlertBook

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
CTX = ComposeContext(GRID, "twin.bund@citytwin", "bund")


@pytest.fixture(scope="module")
def network():
    return _network()


def places(network, hot: dict, speed_kmh: float = 12.0):
    net, seg = network
    n = len(net.links)
    return seg.places(warning(net, hot), np.full(n, speed_kmh), np.full(n, 5.0), np.full(n, 2.0))


def params(message: dict) -> dict[str, str]:
    return {p["valueName"]: p["value"] for p in info_block(message)["parameter"]}


def tick(book: AlertBook, t: float, traffic: list) -> list:
    return issue(book.tick(t, {}, places={"traffic": traffic}), CTX)


def test_a_new_place_raises_one_alert_described_by_the_place(network):
    book = AlertBook("bund")
    (north,) = places(network, dict.fromkeys(NORTH[2:], 2))
    events = tick(book, T0, [north])
    assert [(e.kind, e.alert.hazard, e.alert.level) for e in events] == [("raised", "traffic", 2)]
    alert, msg = events[0].alert, events[0].message
    assert alert.place is north and alert.cells.tolist() == north.cells.tolist()
    assert msg["msgType"] == "Alert"
    area = info_block(msg)["area"]
    assert len(area) == 1
    assert area[0]["areaDesc"] == north.description
    assert area[0]["areaDesc"].startswith("Jia Road (甲路) northbound, Yi Road to Bing Road")
    assert area[0]["polygon"] == [cap.polygon_text(r) for r in north.rings]
    p = params(msg)
    assert p["segmentSpeed"] == "12.0 km/h" and p["samples"] == "10" and p["roadName"] == "Jia Road"
    assert p["warningLevel"] == "yellow" and p["lengthM"] == "400"
    assert info_block(msg)["headline"] == "Yellow traffic congestion warning, Jia Road northbound, Yi Road to Bing Road"


def test_the_same_links_next_tick_make_no_message_and_a_level_change_an_update(network):
    book = AlertBook("bund")
    tick(book, T0, places(network, dict.fromkeys(NORTH[2:], 2)))
    assert tick(book, T0 + 10, places(network, dict.fromkeys(NORTH[2:], 2), speed_kmh=11.0)) == []
    worse = places(network, {NORTH[2]: 2, NORTH[3]: 3})
    events = tick(book, T0 + 20, worse)
    assert [(e.kind, e.alert.level) for e in events] == [("updated", 3)]
    assert events[0].message["msgType"] == "Update"
    assert events[0].message["references"].split(",")[1] == events[0].alert.messages[0]["identifier"]
    assert len(book.active) == 1


def test_a_segment_that_grows_along_the_road_keeps_its_alert(network):
    book = AlertBook("bund")
    (first,) = tick(book, T0, places(network, {NORTH[2]: 2}))
    events = tick(book, T0 + 10, places(network, {NORTH[1]: 2, NORTH[2]: 2, NORTH[3]: 2}))
    assert [e.kind for e in events] == ["updated"]  # the area more than doubled: an Update, same alert
    assert events[0].alert.identifier == first.alert.identifier
    area = info_block(events[0].message)["area"][0]
    assert area["areaDesc"] == events[0].alert.place.description
    assert area["areaDesc"] == "Jia Road (甲路) northbound, Ding Road to Bing Road; 甲路北向（丁路至丙路）"
    assert area["polygon"] == [cap.polygon_text(r) for r in events[0].alert.place.rings]


def test_the_opposite_direction_raises_its_own_alert(network):
    book = AlertBook("bund")
    (north,) = places(network, dict.fromkeys(NORTH[2:], 2))
    (south,) = places(network, dict.fromkeys(SOUTH[2:], 3))
    assert np.intersect1d(north.cells, south.cells).size > 0  # they share cells, not links
    (raised,) = tick(book, T0, [north])
    events = tick(book, T0 + 10, [north, south])
    assert [(e.kind, e.alert.level) for e in events] == [("raised", 3)]
    assert events[0].alert.identifier != raised.alert.identifier
    assert info_block(events[0].message)["area"][0]["areaDesc"] == south.description
    assert "southbound" in south.description
    assert {a.place.description for a in book.active.values()} == {north.description, south.description}


def test_a_vanished_place_is_cancelled_after_clear_s(network):
    book = AlertBook("bund", clear_s=30.0)
    (north,) = places(network, dict.fromkeys(NORTH[2:], 2))
    (raised,) = tick(book, T0, [north])
    assert tick(book, T0 + 10, []) == []  # gone for 0 s
    assert tick(book, T0 + 30, []) == []  # gone for 20 s
    events = tick(book, T0 + 40, [])  # gone for 30 s
    assert [e.kind for e in events] == ["cancelled"] and events[0].alert is raised.alert
    msg = events[0].message
    assert msg["msgType"] == "Cancel" and info_block(msg)["area"][0]["areaDesc"] == north.description
    assert book.active == {}


def test_a_place_back_within_clear_s_keeps_its_alert(network):
    book = AlertBook("bund", clear_s=30.0)
    tick(book, T0, places(network, dict.fromkeys(NORTH[2:], 2)))
    tick(book, T0 + 10, [])
    assert tick(book, T0 + 20, places(network, dict.fromkeys(NORTH[2:], 2))) == []
    assert tick(book, T0 + 45, []) == []  # the clear wait starts again
    assert len(book.active) == 1


def test_places_replace_the_level_grid_of_their_hazard(network):
    book = AlertBook("bund")
    grid = np.full(GRID.shape, 4, np.int8)  # a red grid that would raise a region alert on its own
    events = issue(book.tick(T0, {"traffic": grid}, places={"traffic": []}), CTX)
    assert events == [] and book.active == {}


def test_save_and_restore_keep_the_place(network):
    book = AlertBook("bund", clear_s=30.0)
    (north,) = places(network, dict.fromkeys(NORTH[2:], 2))
    (raised,) = tick(book, T0, [north])
    saved = copy.deepcopy(book.save_state())
    back = AlertBook("bund", clear_s=30.0)
    back.restore_state(saved)
    alert = back.active[raised.alert.identifier]
    assert alert.place is not None and alert.place.description == north.description
    np.testing.assert_array_equal(alert.place.links, north.links)
    assert alert.place.evidence == north.evidence
    assert (alert.place.name_en, alert.place.name_zh) == (north.name_en, north.name_zh) != ("", "")
    for mine, theirs in zip(alert.place.rings, north.rings, strict=True):
        np.testing.assert_allclose(mine, theirs)
    # the same links next tick: carried, no message; then a level change composes the same area
    assert tick(back, T0 + 10, places(network, dict.fromkeys(NORTH[2:], 2))) == []
    (upd,) = tick(back, T0 + 20, places(network, dict.fromkeys(NORTH[2:], 3)))
    assert upd.alert.identifier == raised.alert.identifier and upd.kind == "updated"
    assert info_block(upd.message)["area"][0]["areaDesc"] == north.description
    assert upd.message["references"].split(",")[1] == raised.alert.identifier
    # a restored alert whose place vanished cancels with its place's area
    back2 = AlertBook("bund", clear_s=0.0)
    back2.restore_state(saved)
    (gone,) = tick(back2, T0 + 10, [])
    assert gone.kind == "cancelled"
    area = info_block(gone.message)["area"][0]
    assert area["areaDesc"] == north.description
    assert area["polygon"] == [cap.polygon_text(r) for r in north.rings]


def test_a_segment_split_in_two_stays_one_alert_with_both_areas(network):
    book = AlertBook("bund")
    (raised,) = tick(book, T0, places(network, dict.fromkeys(NORTH[1:], 2)))
    parts = places(network, {NORTH[1]: 2, NORTH[3]: 2})  # the middle link cleared
    assert len(parts) == 2
    events = tick(book, T0 + 10, parts)
    assert [(e.kind, e.alert.identifier) for e in events] == [("updated", raised.alert.identifier)]
    area = info_block(events[0].message)["area"][0]
    assert area["areaDesc"] == f"{parts[0].description} | {parts[1].description}"
    assert area["polygon"] == [cap.polygon_text(r) for p in parts for r in p.rings]
    np.testing.assert_array_equal(events[0].alert.place.links, np.union1d(parts[0].links, parts[1].links))
