"""Alert merging across district borders (twin.city.merge) and the routing of city alerts to units in other
districts (twin.city.units).

Property tests feed random sets of district CAP alerts (boxes on a 20 m lattice, so two areas either touch or lie
20 m or more apart, well clear of the 10 m tolerance and the 1 m of a 5-decimal CAP point) and check the city
alerts against a brute-force grouping. The hand-built case puts two flood alerts on either side of the
Huangpu-Hongkou border at Waibaidu Bridge, from the bundled district boundaries.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.alerting import cap
from twin.city.boundaries import lonlat, projected, read_boundaries
from twin.city.merge import (
    CITY_PREFIX,
    AlertMerger,
    CityContext,
    RejectedError,
    alert_key,
    group_alerts,
    members_of,
)
from twin.city.units import UnitFix, UnitRouter, units_to_notify

T0 = 1767190921.0  # 2025-12-31T14:22:01Z
ORIGIN = projected(shapely.Point(121.4880, 31.2446))  # Waibaidu Bridge
LATTICE_M = 20.0
NAMES = {"310101": ("Huangpu", "黄浦区"), "310109": ("Hongkou", "虹口区"), "310110": ("Yangpu", "杨浦区")}
CONTEXT = CityContext(district_names=NAMES)
HEADLINES = {"flood": ("{colour} waterlogging warning, {place}", "{place}积水{colour}预警"),
             "crowd": ("{colour} crowd density warning, {place}", "{place}人群密度{colour}预警")}


def district_message(district: str, hazard: str, seq: int, area_m: shapely.Geometry, level: int = 3,
                     raised: float = T0, kind: str = "Alert", n: int = 0, place: tuple[str, str] | None = None,
                     sent: float | None = None) -> dict:
    """A district twin's CAP message as docs/contract/cap.md describes it (both info blocks, polygon, parameters)."""
    key = f"citytwin.{district}.{hazard}.{dt.datetime.fromtimestamp(raised, dt.UTC):%Y%m%dT%H%M%SZ}.{seq:05d}"
    identifier = key if kind == "Alert" else f"{key}.{kind.lower()}{n}"
    polygons = [cap.polygon_text(list(lonlat(p).exterior.coords)) for p in shapely.get_parts(area_m)]
    place_en, place_zh = place or (f"point {seq}", f"{seq}号点")
    infos = []
    for language in cap.LANGUAGES:
        en = language == "en-US"
        template = HEADLINES[hazard][0 if en else 1]
        colour = cap.LEVEL_COLOUR[level].capitalize() if en else cap.LEVEL_COLOUR_ZH[level]
        infos.append({
            "language": language, "category": "Met" if hazard == "flood" else "Safety",
            "event": {"flood": ("Urban waterlogging warning", "城市积水内涝预警"),
                      "crowd": ("Crowd density warning", "人群密度预警")}[hazard][0 if en else 1],
            "responseType": "AllClear" if kind == "Cancel" else "Avoid",
            "urgency": "Past" if kind == "Cancel" else cap.LEVEL_URGENCY[level],
            "severity": cap.LEVEL_SEVERITY[level], "certainty": "Observed",
            "onset": cap.cap_time(raised), "expires": cap.cap_time(raised + 6 * 3600),
            "senderName": f"twin {district}",
            "headline": ("Cleared: " if en else "解除：") * (kind == "Cancel")
            + template.format(colour=colour, place=place_en if en else place_zh),
            "description": "test", "instruction": "keep clear" if en else "远离",
            "parameter": cap.name_values([("warningLevel", cap.LEVEL_COLOUR[level]), ("hazard", hazard)]),
            "area": [{"areaDesc": f"{district}: {place_en}", "polygon": polygons}]})
    return {"identifier": identifier, "sender": f"twin.{district}@citytwin",
            "sent": cap.cap_time(raised if sent is None else sent), "status": "Actual", "msgType": kind,
            "scope": "Public", **({"references": f"twin.{district}@citytwin,{key},{cap.cap_time(raised)}"}
                                  if kind != "Alert" else {}), "info": infos}


def box(i: int, j: int, w: int = 1, h: int = 1) -> shapely.Geometry:
    """A box of w x h lattice cells at lattice position (i, j) from the origin [m, projected]."""
    x, y = ORIGIN.x + i * LATTICE_M, ORIGIN.y + j * LATTICE_M
    return shapely.box(x, y, x + w * LATTICE_M, y + h * LATTICE_M)


# ---------------------------------------------------------------- strategies and checks
@st.composite
def alert_sets(draw, max_size: int = 9):
    """Distinct district alerts: (district, hazard, seq, box, level, raise time)."""
    n = draw(st.integers(1, max_size))
    out = []
    for seq in range(1, n + 1):
        i, j = draw(st.integers(0, 6)), draw(st.integers(0, 3))
        w, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        out.append((draw(st.sampled_from(sorted(NAMES))), draw(st.sampled_from(["flood", "crowd"])), seq,
                    box(i, j, w, h), draw(st.integers(1, 4)), T0 + draw(st.integers(0, 300))))
    return out


def messages_of(specs) -> list[dict]:
    return [district_message(d, hz, seq, area, level, raised) for d, hz, seq, area, level, raised in specs]


def oracle_groups(specs) -> set[frozenset[str]]:
    """Brute force: link same hazard, different district, touching or overlapping boxes; connected components."""
    keys = [alert_key(m["identifier"]) for m in messages_of(specs)]
    parent = list(range(len(specs)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(len(specs)):
        for b in range(a + 1, len(specs)):
            (da, ha, *_), (db, hb, *_) = specs[a], specs[b]
            if ha == hb and da != db and specs[a][3].intersects(specs[b][3]):
                parent[root(b)] = root(a)
    groups: dict[int, set[str]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(root(i), set()).add(k)
    return {frozenset(g) for g in groups.values()}


def feed(merger: AlertMerger, messages, t0: float = T0 + 1000) -> list:
    out = []
    for k, m in enumerate(messages):
        out += merger.accept(m, t0 + k)
    return out


def city_groups(merger: AlertMerger) -> dict[str, frozenset[str]]:
    return {c.identifier: frozenset(c.refs) for c in merger.city_alerts()}


def latest(updates) -> dict[str, dict]:
    """The last message of each city alert in a stream of updates."""
    last = {}
    for u in updates:
        last[u.identifier] = u.message
    return last


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- properties
@FAST
@given(alert_sets())
def test_city_alerts_partition_the_district_alerts_as_the_brute_force_grouping_does(specs):
    merger = AlertMerger(CONTEXT)
    updates = feed(merger, messages_of(specs))
    groups = city_groups(merger)
    members = [k for g in groups.values() for k in g]
    assert Counter(members) == Counter(list(merger.active))  # every member in exactly one city alert
    assert set(groups.values()) == oracle_groups(specs)
    last = latest(updates)
    active = {i for i, m in last.items() if m["msgType"] != "Cancel"}
    assert active == set(groups)  # the messages tell the same story as the state
    for identifier, keys in groups.items():
        assert {merger.active[k].hazard for k in keys} == {last[identifier]["info"][0]["parameter"][1]["value"]}
        assert set(members_of(last[identifier])) >= keys


@FAST
@given(alert_sets())
def test_different_hazards_are_never_merged_and_every_message_is_valid_cap(specs):
    merger = AlertMerger(CONTEXT)
    updates = feed(merger, messages_of(specs))
    for keys in city_groups(merger).values():
        assert len({merger.active[k].hazard for k in keys}) == 1
    for u in updates:
        assert cap.problems(u.message) == [], u.message["identifier"]
        assert [i["language"] for i in u.message["info"]] == ["zh-CN", "en-US"]


@FAST
@given(st.sampled_from([("310101", "310109"), ("310109", "310110"), ("310101", "310110")]),
       st.integers(0, 5), st.integers(0, 3), st.sampled_from(["right", "up", "corner", "overlap"]),
       st.sampled_from(["flood", "crowd"]), st.integers(1, 4), st.integers(1, 4))
def test_touching_alerts_across_a_border_are_one_city_alert_with_the_union_and_the_highest_level(
        districts, i, j, where, hazard, level_a, level_b):
    other = {"right": box(i + 1, j), "up": box(i, j + 1), "corner": box(i + 1, j + 1), "overlap": box(i, j, 2, 1)}
    a, b = box(i, j), other[where]
    merger = AlertMerger(CONTEXT)
    last = latest(feed(merger, [district_message(districts[0], hazard, 1, a, level_a),
                                district_message(districts[1], hazard, 2, b, level_b, raised=T0 + 5)]))
    assert len(merger.cities) == 1
    (identifier, message), = last.items()
    params = {p["valueName"]: p["value"] for p in message["info"][1]["parameter"]}
    assert params["warningLevel"] == cap.LEVEL_COLOUR[max(level_a, level_b)]
    assert int(params["areaM2"]) == pytest.approx(shapely.union(a, b).area, rel=0.03)
    assert params["districts"].split() == sorted(districts)
    first = f"citytwin.{districts[0]}.{hazard}.20251231T142201Z.00001"  # raised first
    assert identifier == f"citytwin.city.{districts[0]}.{hazard}.20251231T142201Z.00001"
    assert members_of(message) == [first, f"citytwin.{districts[1]}.{hazard}.20251231T142206Z.00002"]


@FAST
@given(alert_sets(), st.randoms(use_true_random=False))
def test_cancelling_every_member_cancels_every_city_alert_once(specs, rnd):
    merger = AlertMerger(CONTEXT)
    messages = messages_of(specs)
    updates = feed(merger, messages)
    cancels = [district_message(d, hz, seq, area, level, raised, kind="Cancel", n=1)
               for d, hz, seq, area, level, raised in specs]
    rnd.shuffle(cancels)
    updates += feed(merger, cancels, T0 + 5000)
    assert merger.cities == {} and merger.active == {}
    first = Counter(u.identifier for u in updates if u.message["msgType"] == "Alert")
    ended = Counter(u.identifier for u in updates if u.message["msgType"] == "Cancel")
    assert first == ended and set(first.values()) == {1}
    assert all(latest(updates)[i]["msgType"] == "Cancel" for i in first)


@FAST
@given(alert_sets(), st.randoms(use_true_random=False))
def test_identifiers_do_not_depend_on_the_order_of_arrival(specs, rnd):
    messages = messages_of(specs)
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    one, two = AlertMerger(CONTEXT), AlertMerger(CONTEXT)
    feed(one, messages)
    feed(two, shuffled)
    assert city_groups(one) == city_groups(two)


# ---------------------------------------------------------------- behaviour in detail
def test_a_member_update_updates_the_city_alert_and_joining_groups_keep_the_earliest():
    merger = AlertMerger(CONTEXT)
    a = district_message("310101", "flood", 1, box(0, 0), 2)
    far = district_message("310110", "flood", 2, box(4, 0), 3, raised=T0 - 60)  # raised earlier, not touching
    firsts = latest(feed(merger, [a, far]))
    assert len(merger.cities) == 2
    bridge = district_message("310109", "flood", 3, box(1, 0, 3, 1), 4, raised=T0 + 60)  # touches both
    out = merger.accept(bridge, T0 + 2000)
    survivor = CITY_PREFIX + alert_key(far["identifier"]).removeprefix("citytwin.")
    absorbed = CITY_PREFIX + alert_key(a["identifier"]).removeprefix("citytwin.")
    assert [(u.identifier, u.message["msgType"]) for u in out] == [(survivor, "Update"), (absorbed, "Cancel")]
    assert out[0].message["identifier"] == f"{survivor}.update1"
    assert cap.reference(firsts[absorbed]) in out[0].message["references"].split()  # what it absorbed
    assert out[1].message["info"][1]["description"] == f"merged into {survivor}"
    assert out[1].message["identifier"] == f"{absorbed}.cancel1"
    assert set(merger.cities) == {survivor}
    # a member's own update (a new identifier) gives the city alert an Update that references it
    update = district_message("310101", "flood", 1, box(0, 0), 3, kind="Update", n=1, sent=T0 + 100)
    out = merger.accept(update, T0 + 2001)
    assert [u.message["identifier"] for u in out] == [f"{survivor}.update2"]
    assert cap.reference(update) in out[0].message["references"].split()
    assert cap.reference(bridge) in out[0].message["references"].split()


def test_a_split_keeps_the_identifier_with_the_earliest_member_and_makes_a_new_alert_of_the_rest():
    merger = AlertMerger(CONTEXT)
    a = district_message("310101", "flood", 1, box(0, 0), raised=T0)
    bridge = district_message("310109", "flood", 2, box(1, 0), raised=T0 + 10)
    c = district_message("310101", "flood", 3, box(2, 0), raised=T0 + 20)
    feed(merger, [a, bridge, c])
    (cid, keys), = city_groups(merger).items()
    assert len(keys) == 3
    out = merger.accept(district_message("310109", "flood", 2, box(1, 0), raised=T0 + 10, kind="Cancel", n=1),
                        T0 + 3000)
    assert [(u.identifier, u.message["msgType"]) for u in out] == [
        (cid, "Update"), (CITY_PREFIX + alert_key(c["identifier"]).removeprefix("citytwin."), "Alert")]
    assert city_groups(merger) == {cid: {alert_key(a["identifier"])},
                                   out[1].identifier: {alert_key(c["identifier"])}}


def test_bad_messages_are_refused_with_a_reason_and_counted():
    merger = AlertMerger(CONTEXT)
    good = district_message("310101", "flood", 1, box(0, 0))
    no_district = {**good, "identifier": "alert-7", "sender": "someone@example"}
    bad_polygon = json.loads(json.dumps(good))
    for info in bad_polygon["info"]:
        info["area"][0]["polygon"] = ["31.2,121.4 31.3"]
    cases = {b"{not json": "not_json", b"[1, 2]": "not_cap", json.dumps({**good, "msgType": "Ack"}): "not_cap",
             json.dumps({**good, "info": []}): "not_cap", json.dumps(no_district): "no_district",
             json.dumps(bad_polygon): "bad_area"}
    for payload, reason in cases.items():
        with pytest.raises(RejectedError) as caught:
            merger.accept(payload, T0)
        assert caught.value.reason == reason
    assert merger.rejected == Counter(cases.values())
    assert merger.cities == {} and merger.accept(json.dumps(good).encode(), T0) != []


def test_a_restarted_merger_keeps_backed_city_alerts_and_cancels_the_others():
    first = AlertMerger(CONTEXT)
    a, b = district_message("310101", "flood", 1, box(0, 0)), district_message("310109", "flood", 2, box(1, 0))
    lone = district_message("310110", "crowd", 3, box(5, 3))
    retained = latest(feed(first, [a, b, lone]))
    # the tier restarts; meanwhile the lone crowd alert was cancelled (its retained message is gone)
    second = AlertMerger(CONTEXT, hold=True)
    for message in retained.values():
        assert second.adopt(message, T0 + 3000) == []
    assert second.accept(a, T0 + 3000) == [] and second.accept(b, T0 + 3000) == []
    out = second.release(T0 + 3001)
    lone_city = CITY_PREFIX + alert_key(lone["identifier"]).removeprefix("citytwin.")
    assert [(u.identifier, u.message["msgType"]) for u in out] == [(lone_city, "Cancel")]
    assert out[0].message["identifier"] == f"{lone_city}.cancel1"
    assert set(second.cities) == set(first.cities) - {lone_city}
    cid = CITY_PREFIX + alert_key(a["identifier"]).removeprefix("citytwin.")
    assert retained[cid]["identifier"] == f"{cid}.update1"
    nxt = second.accept(district_message("310109", "flood", 2, box(1, 0), 4, kind="Update", n=1), T0 + 3002)
    assert [u.message["identifier"] for u in nxt] == [f"{cid}.update2"]  # the count goes on across the restart


def test_group_alerts_links_only_across_districts():
    merger = AlertMerger(CONTEXT)
    feed(merger, [district_message("310101", "flood", 1, box(0, 0)), district_message("310101", "flood", 2,
                                                                                       box(1, 0))])
    assert len(group_alerts(merger.active.values())) == 2  # one district's own split is kept


# ---------------------------------------------------------------- the hand-built case: Waibaidu Bridge
@pytest.fixture(scope="module")
def bridge_areas():
    """Two 60 m x 60 m flood areas at the Huangpu-Hongkou border over Suzhou Creek, each cut to its district."""
    bounds = read_boundaries()
    huangpu, hongkou = projected(bounds["310101"].geometry), projected(bounds["310109"].geometry)
    border = shapely.intersection(huangpu.boundary, hongkou.boundary.buffer(0.5))
    bridge = projected(shapely.Point(121.4880, 31.2446))
    at = shapely.shortest_line(bridge, border).coords[-1]
    square = shapely.Point(at).buffer(30.0, cap_style="square")
    return shapely.intersection(square, huangpu), shapely.intersection(square, hongkou), square


def test_two_flood_alerts_either_side_of_suzhou_creek_at_waibaidu_bridge_are_one_city_alert(bridge_areas):
    south, north, square = bridge_areas
    assert south.area > 600 and north.area > 600  # both sides hold a real part of the square
    merger = AlertMerger(CONTEXT)
    huangpu = district_message("310101", "flood", 3, south, 3, place=("Waibaidu Bridge south", "外白渡桥南"))
    hongkou = district_message("310109", "flood", 8, north, 4, raised=T0 + 40,
                               place=("Waibaidu Bridge north", "外白渡桥北"))
    last = latest(feed(merger, [huangpu, hongkou]))
    assert len(merger.cities) == 1
    (identifier, message), = last.items()
    assert identifier == "citytwin.city.310101.flood.20251231T142201Z.00003"
    assert message["msgType"] == "Update" and cap.problems(message) == []
    en, zh = cap.info_block(message, "en-US"), cap.info_block(message, "zh-CN")
    assert en["headline"] == ("Red waterlogging warning, Waibaidu Bridge south (Huangpu) and Waibaidu Bridge "
                              "north (Hongkou)")
    assert zh["headline"] == "外白渡桥南（黄浦区）、外白渡桥北（虹口区）积水红色预警"
    assert en["severity"] == "Extreme" and en["instruction"] == "keep clear"
    refs = message["references"].split()
    assert cap.reference(huangpu) in refs and cap.reference(hongkou) in refs
    area = shapely.union_all([projected(shapely.Polygon([(lon, lat) for lat, lon in
                                                         (map(float, p.split(",")) for p in text.split())]))
                              for text in en["area"][0]["polygon"]])
    union = shapely.union(south, north)
    assert shapely.symmetric_difference(area, union).area < 0.03 * union.area
    assert union.area == pytest.approx(square.area, rel=0.02)  # the two halves make the square: no gap between


# ---------------------------------------------------------------- units across districts
def fix(unit: str, at: shapely.Point, district: str) -> UnitFix:
    return UnitFix(unit, at.x, at.y, T0, district)


def test_units_near_an_alert_in_another_district_are_routed_and_the_own_districts_are_left_to_it():
    a, b = box(0, 0), box(1, 0)  # Huangpu part, Hongkou part
    area = shapely.union(a, b)
    by_district = {"310101": a, "310109": b}
    p = shapely.Point
    fixes = [fix("hk-near-huangpu-part", p(ORIGIN.x - 300, ORIGIN.y), "310109"),  # 300 m from a, 320 m from b
             fix("hk-near-own-part", p(ORIGIN.x + 60, ORIGIN.y + 100), "310109"),
             fix("pudong", p(ORIGIN.x + 150, ORIGIN.y - 150), "310115"),
             fix("hp-own", p(ORIGIN.x, ORIGIN.y - 50), "310101"),
             fix("far", p(ORIGIN.x + 3000, ORIGIN.y), "310115"),
             fix("outside-every-district", p(ORIGIN.x, ORIGIN.y + 100), "")]
    assert units_to_notify(fixes, area, by_district, 250.0) == ["outside-every-district", "pudong"]
    assert units_to_notify(fixes, area, by_district, 600.0) == ["outside-every-district", "pudong"]
    assert units_to_notify(fixes, area, {"310101": a}, 310.0) == ["hk-near-huangpu-part", "hk-near-own-part",
                                                                 "outside-every-district", "pudong"]


def test_the_router_follows_units_across_districts_until_the_cancel():
    districts = {"east": "310115", "west": "310109"}

    def locate(lon, lat):
        x = projected(shapely.Point(lon, lat)).x
        return districts["east" if x > ORIGIN.x + 100 else "west"]

    router = UnitRouter(locate, units={"u1", "u2"}, buffer_m=200.0)
    a = box(0, 0)
    far_east = lonlat(shapely.Point(ORIGIN.x + 1000, ORIGIN.y))
    near_east = lonlat(shapely.Point(ORIGIN.x + 150, ORIGIN.y))
    assert router.on_fix("u1", far_east.x, far_east.y, T0) == []
    assert router.on_fix("stranger", near_east.x, near_east.y, T0) == [] and router.refused["unknown_unit"] == 1
    message = {"identifier": "citytwin.city.x", "scope": "Public", "msgType": "Alert"}
    assert router.on_city("citytwin.city.x", message, a, {"310109": a}, False) == []  # u1 is 1 km away
    moved = router.on_fix("u1", near_east.x, near_east.y, T0 + 10)
    assert [(d.unit, d.message["scope"]) for d in moved] == [("u1", "Restricted")]
    assert router.on_fix("u1", near_east.x, near_east.y, T0 + 20) == []  # once
    gone = router.on_fix("u1", far_east.x, far_east.y, T0 + 30)
    assert gone == []
    cancel = router.on_city("citytwin.city.x", {**message, "msgType": "Cancel"}, a, {"310109": a}, True)
    assert [(d.unit, d.message["msgType"]) for d in cancel] == [("u1", "Cancel")]  # wherever it is now
    assert router.on_fix("u1", near_east.x, near_east.y, T0 + 5) == [] and router.refused["stale"] == 1
