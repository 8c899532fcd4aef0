"""The live twin core without a broker: batches and ticks in, stored alerts and outbox out."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ingest.batch import Batch
from ingest.registry import load_registry, registry_from_geojson
from twin.alerting.cap import info_block
from twin.alerting.store import Store
from twin.district import geo
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveModels
from twin.live.state import TwinState

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
CHEN_YI_SQUARE = (121.4855, 31.2405)  # docs/science/spatial.md 6.3, WGS84


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


@pytest.fixture
def core(bund10, registry):
    ds, _ = bund10
    c = TwinCore(ds, registry, Store.open(":memory:"), CoreConfig(clear_s=20.0))
    yield c
    c.store.close()


SQUARE = "crowd-bund-05"  # the counter of Chen Yi Square, 6796 m2 walkable
SQUARE_KEY = "crowd:area:crowd-bund-05"
NEIGHBOUR_KEY = "crowd:area:crowd-bund-04"  # the Bank of China promenade: the square's counter covers part of it
QUIET = 300  # every other counter's count: at most 0.09 person/m2, no level anywhere


def crowd(registry, t, count, ids=None, only=None):
    """Every counter (or ``ids``) reporting ``count``; with ``only``, that counter alone, the others `QUIET`."""
    ids = ids or [d.id for d in registry.of_kind("crowd")]
    values = [float(count) if only is None or d == only else float(QUIET) for d in ids]
    return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count", value=np.array(values))


def position(unit, t, lon, lat, datum="CGCS2000"):
    return Batch.build(1, device=unit, t=t, quantity="position", lon=lon, lat=lat, datum=datum, speed_kmh=4.0)


def test_gcj02_positions_are_converted_and_outside_ones_rejected(core):
    lon, lat = geo.wgs84_to_gcj02(*CHEN_YI_SQUARE)
    assert core.on_batch(position("unit-police-04", T0, lon, lat, "GCJ02")) == []
    u = core.state.entities.entities["unit-police-04"]
    x, y = geo.to_projected(*CHEN_YI_SQUARE)
    assert np.hypot(u.x - x, u.y - y) < 0.01, "GCJ-02 inverted to CGCS2000 to 1 cm"
    rejected = core.on_batch(position("unit-police-04", T0 + 1, 121.60, 31.30))
    assert [r.reason for r in rejected] == ["outside_grid"] and "outside" in rejected[0].detail
    assert core.outside_grid == 1 and core.state.entities.entities["unit-police-04"].t == T0


def _run(core, registry, counts, unit_positions=None, start=0, only=None):
    events = []
    for k, n in enumerate(counts, start=start):
        t = T0 + 10 * k
        core.on_batch(crowd(registry, t, n, only=only))
        for unit, (lon, lat) in (unit_positions or {}).items():
            core.on_batch(position(unit, t, lon, lat))
        events += [(k, e) for e in core.on_tick(t).events]
    return events


def test_crowd_alert_is_raised_routed_acknowledged_and_cancelled(core, registry):
    units = {"unit-police-04": CHEN_YI_SQUARE,            # on the promenade
             "unit-fire-05": (121.5100, 31.2380)}           # Lujiazui, 1.8 km away across the river
    # 40000 people on the square's 6796 m2 walkable is 5.9 person/m2, red; one alert per place the crowd is in
    events = _run(core, registry, [300] * 3 + [40000] * 12, units, only=SQUARE)
    raised = [e for _, e in events if e.kind == "raised" and e.alert.hazard == "crowd"]
    assert sorted(e.alert.place.key for e in raised) == [NEIGHBOUR_KEY, SQUARE_KEY]
    square = next(e for e in raised if e.alert.place.key == SQUARE_KEY)
    alert = square.alert
    msg = square.message
    assert alert.level == 4 and alert.place.name_en == "Chen Yi Square"
    assert info_block(msg, "en-US")["category"] == "Safety" and msg["msgType"] == "Alert"
    assert "Chen Yi Square" in info_block(msg, "en-US")["headline"]
    params = {p["valueName"]: p["value"] for p in info_block(msg, "en-US")["parameter"]}
    assert SQUARE in params["devices"].split() and params["peakDensity"] == "5.89 person/m2"
    sent = {(i.topic, json.loads(i.payload)["identifier"]) for i in core.store.pending()
            if i.payload and (i.topic.startswith("city/alerts/") or i.topic.endswith("/alerts"))}
    assert (f"city/alerts/{alert.identifier}", alert.identifier) in sent
    assert ("city/units/unit-police-04/alerts", alert.identifier) in sent
    assert "city/units/unit-fire-05/alerts" not in {i.topic for i in core.store.pending()}
    # the unit acknowledges and is seen on scene
    core.on_batch(Batch.build(1, device="unit-police-04", t=T0 + 200, quantity="ack", ref=alert.identifier))
    assert core.store.acks(alert.identifier)[0]["actor"] == "unit-police-04"
    # a unit may acknowledge only an alert it was sent: the others are refused, stored nowhere
    refused = core.on_batch(_acks(["unit-fire-05", "unit-police-04", "unit-police-04"], T0 + 201,
                                  [alert.identifier, f"{alert.identifier}.update1", "citytwin.bund.crowd.nothing"]))
    assert [(r.reason, r.device, r.alert) for r in refused] == [
        ("not_sent", "unit-fire-05", alert.identifier),
        ("unknown_alert", "unit-police-04", f"{alert.identifier}.update1"),
        ("unknown_alert", "unit-police-04", "citytwin.bund.crowd.nothing")]
    assert "never sent" in refused[0].detail and [r.row for r in refused] == [0, 1, 2]
    assert (refused[1].alert, refused[1].status, refused[1].t, refused[1].is_ack) == (
        f"{alert.identifier}.update1", "ack", T0 + 201, True)
    assert [a["actor"] for a in core.store.acks(alert.identifier)] == ["unit-police-04"]
    assert core.store.acks(f"{alert.identifier}.update1") == [] and core.refused_acks == {"not_sent": 1,
                                                                                          "unknown_alert": 2}
    # the crowd disperses: levels step down, and the alert is cancelled only after the clear delay
    events = _run(core, registry, [100] * 80, units, start=15, only=SQUARE)
    cancels = [(k, e) for k, e in events if e.kind == "cancelled" and e.alert.identifier == alert.identifier]
    assert len(cancels) == 1
    k_cancel, cancel = cancels[0]
    assert cancel.message["msgType"] == "Cancel" and alert.identifier in cancel.message["references"]
    assert k_cancel >= 15 + 4 + 2, "no cancel before four one-step clear delays (10 s each) and the 20 s clear_s"
    stored = core.store.alerts()
    assert [a["state"] for a in stored if a["identifier"] == alert.identifier] == ["cancelled"]
    retained = [(i.topic, i.payload) for i in core.store.pending() if i.topic == f"city/alerts/{alert.identifier}"]
    assert retained[-1][1] is None and json.loads(retained[-2][1])["msgType"] == "Cancel"
    assert any(i.topic == "city/units/unit-police-04/alerts" and b'"Cancel"' in i.payload
               for i in core.store.pending())
    # after the Cancel, the unit that had the alert may still report it resolved; the other still may not
    refused = core.on_batch(_acks(["unit-police-04", "unit-fire-05"], T0 + 1000, [alert.identifier] * 2, "resolved"))
    assert [(r.reason, r.device, r.status) for r in refused] == [("not_sent", "unit-fire-05", "resolved")]
    assert [(a["actor"], a["status"]) for a in core.store.acks(alert.identifier)] == [("unit-police-04", "ack"),
                                                                                     ("unit-police-04", "resolved")]


def _acks(units, t, alerts, status="ack"):
    return Batch.build(len(units), device=np.array(units, dtype=object), t=t, quantity=status,
                       ref=np.array(alerts, dtype=object))


def test_acks_of_alerts_that_do_not_exist_cost_no_memory(core, registry):
    """Issue 13: every unique alert id of an ack was stored. Refused acks leave nothing behind in the twin."""
    _run(core, registry, [300] * 3 + [20000] * 8, {"unit-police-04": CHEN_YI_SQUARE})
    before = core.save_state()
    ids = [f"citytwin.bund.crowd.{k:0200d}" for k in range(2000)]
    refused = core.on_batch(_acks(["unit-police-04"] * len(ids), T0 + 120, ids))
    assert len(refused) == len(ids) and {r.reason for r in refused} == {"unknown_alert"}
    assert all(core.store.acks(i) == [] for i in ids[::97])
    after = core.save_state()
    assert after["router"] == before["router"] and after["book"] == before["book"], "nothing kept per alert id"
    assert core.refused_acks == {"unknown_alert": len(ids)}, "counted"


def test_a_unit_moving_into_the_area_gets_the_alert_and_arrives(core, registry):
    events = _run(core, registry, [300] * 2 + [40000] * 8, only=SQUARE)
    alert = next(e.alert for _, e in events if e.kind == "raised" and e.alert.place.key == SQUARE_KEY)
    assert not any("units/unit-fire-06" in i.topic for i in core.store.pending())
    core.on_batch(position("unit-fire-06", T0 + 100, 121.4890, 31.2390))  # drives up, about 400 m away
    assert alert.identifier in {json.loads(i.payload)["identifier"] for i in core.store.pending()
                                if i.topic == "city/units/unit-fire-06/alerts"}
    cells = alert.cells
    row, col = np.divmod(cells[len(cells) // 2], core.state.grid.nx)
    lon, lat = core.state.grid.cell_centres_lonlat()
    core.on_batch(position("unit-fire-06", T0 + 160, float(lon[row, col]), float(lat[row, col])))
    report = core.on_tick(T0 + 160)
    assert [(a[0], a[1]) for a in report.arrivals] == [(alert.identifier, "unit-fire-06")]
    expected = 160 - (alert.raised_at - T0)
    assert core.store.arrivals(alert.identifier)[0]["seconds_after_alert"] == pytest.approx(expected)


def test_a_silent_sensor_turns_cells_to_no_data_without_clearing(core, registry):
    _run(core, registry, [300] * 2 + [40000] * 8, only=SQUARE)
    active = core.book.of_hazard("crowd")
    assert sorted(a.place.key for a in active) == [NEIGHBOUR_KEY, SQUARE_KEY]
    active = [a.identifier for a in active]
    for k in range(10, 60):  # nothing more arrives: after 180 s the counters are stale
        events = core.on_tick(T0 + 10 * k).events
        assert not [e for e in events if e.kind == "cancelled" and e.alert.hazard == "crowd"]
        if T0 + 10 * k > T0 + 90 + 180:  # the forecast, cancelled once the density stopped rising, stays so
            assert not [e for e in events if e.alert.hazard == "crowd_forecast"]
    layers = core.models.layers
    silent = (layers["level_nodata"].values & 1) == 1
    assert silent.any(), "the silent counters' cells are flagged no data"
    assert (layers["level_crowd"].values[silent] > 0).any(), "and keep their held level"
    assert [a.identifier for a in core.book.of_hazard("crowd")] == active, "the same alert per place, still active"
    updated = core.models.layers["updated_crowd"].values
    assert np.nanmax(updated) == T0 + 90, "the cells know when their counters last reported"
    assert np.isnan(updated).mean() > 0.9, "cells no counter covers have never been updated"


def test_a_five_year_storm_floods_the_underpasses_first(core, registry):
    gauges = [d.id for d in registry.of_kind("rain")]
    under = core.state.static["underpass"].values.ravel() == 1
    first = []
    for k in range(30):
        t = T0 + 60 * k
        core.on_batch(Batch.build(len(gauges), device=np.array(gauges, dtype=object), t=t, quantity="rain",
                                  value=np.full(len(gauges), 58.1)))  # 5-yr 60-min storm, docs/science/flood.md 2.2
        first = [e for e in core.on_tick(t).events if e.kind == "raised" and e.alert.hazard == "flood"]
        if first:
            break
    assert first, "a waterlogging alert within 30 minutes of a 5-year storm"
    assert all(under[e.alert.cells].any() for e in first)
    assert info_block(first[0].message, "en-US")["event"] == "Urban waterlogging warning"


def test_the_same_inputs_give_the_same_alerts_and_a_restored_core_continues_identically(bund10, registry):
    ds, _ = bund10

    def fresh():
        return TwinCore(ds, registry, Store.open(":memory:"), CoreConfig())

    a, b = fresh(), fresh()
    counts = [300] * 2 + [20000] * 6 + [200] * 20
    ev_a = [e.message for _, e in _run(a, registry, counts[:10])]
    ev_b = [e.message for _, e in _run(b, registry, counts[:10])]
    assert ev_a == ev_b and ev_a
    c = fresh()
    c.restore_state(b.save_state())
    rest_a = [e.message for _, e in _run(a, registry, counts[10:], start=10)]
    rest_c = [e.message for _, e in _run(c, registry, counts[10:], start=10)]
    assert rest_a == rest_c


def test_a_flapping_feed_makes_no_duplicate_and_no_ghost_cleared_alerts(core, registry):
    # the square's count jumps between just under and just over the density that raises blue (1.08 person/m2):
    # 6800 and 7600 on its 6796 m2 walkable are 1.00 and 1.12, every tick
    events = _run(core, registry, [300] * 3 + [40000] * 8, only=SQUARE)
    raised = [e.alert for _, e in events if e.alert.hazard == "crowd" and e.kind == "raised"]
    assert sorted(a.place.key for a in raised) == [NEIGHBOUR_KEY, SQUARE_KEY], "one alert per place"
    flapping = [6800 if k % 2 else 7600 for k in range(120)]
    events = _run(core, registry, flapping, start=11, only=SQUARE)
    crowd = [e for _, e in events if e.alert.hazard == "crowd"]
    assert not [e for e in crowd if e.kind == "raised"], "no second alert for the same crowd"
    assert not [e for e in crowd if e.kind == "cancelled"], "no clear while the crowd is still there"
    assert sorted(a.identifier for a in core.book.of_hazard("crowd")) == sorted(a.identifier for a in raised)
    for key in (SQUARE_KEY, NEIGHBOUR_KEY):
        levels = [e.alert.level for e in crowd if e.alert.place.key == key]
        assert len(levels) <= 6, f"updates stay rare while flapping at {key}: {levels}"
    square = next(a for a in core.book.of_hazard("crowd") if a.place.key == SQUARE_KEY)
    assert square.level == 1, "stepped down from red to blue, and held there"


# ---------------------------------------------------------------- the live tick's models (issue 12)
def _synthetic_storm_jam_and_crowd(static, registry):
    """40 minutes of every sensor kind at 60 s ticks on `LiveModels` alone: a crowd that swells and
    disperses, a 100 mm/h storm of 22 minutes, loop detectors slowing to a jam (speed, flow, occupancy)
    with half of them falling silent after 28 min, and probe vehicles crawling through one road cell.
    Returns the models and the hazard levels of every tick, (ticks, 4 hazards, ny, nx) int8."""
    state = TwinState(static, registry)
    live = LiveModels(state)
    loops = [d.id for d in registry.of_kind("traffic")]
    gauges = [d.id for d in registry.of_kind("rain")]
    vehicles = [d.id for d in registry.of_kind("vehicle")][:5]
    road = np.flatnonzero(static["road_class"].values.ravel() > 0)
    far = road[np.argmax(np.min(np.abs(road[:, None] - state.sensor_cells["traffic"][None, :]), axis=1))]
    lon, lat = state.grid.cell_centres_lonlat()
    ping_lon, ping_lat = float(lon.ravel()[far]), float(lat.ravel()[far])
    out = []
    for k in range(40):
        t = T0 + 60.0 * k
        state.apply(crowd(registry, t, 300 + 5700 * np.sin(np.pi * k / 40) ** 2))
        state.apply(Batch.build(len(gauges), device=np.array(gauges, dtype=object), t=t, quantity="rain",
                                value=np.full(len(gauges), 100.0 if 3 <= k < 25 else 0.0)))
        speed = float(np.interp(k, [5, 15, 25, 32], [45.0, 8.0, 8.0, 45.0]))
        ids = loops if k < 28 else loops[:4]
        n = len(ids)
        state.apply(Batch.build(3 * n, device=np.array(ids * 3, dtype=object), t=t,
                                quantity=np.array(["speed"] * n + ["flow"] * n + ["occ"] * n, dtype=object),
                                value=np.concatenate([np.full(n, speed), np.full(n, 40.0 * speed),
                                                      np.full(n, 90.0 - 1.5 * speed)])))
        for j, v in enumerate(vehicles):
            state.apply(Batch.build(1, device=v, t=t - j, quantity="position", lon=ping_lon, lat=ping_lat,
                                    datum="CGCS2000", speed_kmh=12.0))
        live.step(t, 60.0)
        levels = live.hazard_levels()
        out.append(np.stack([levels[h] for h in ("crowd", "flood", "traffic", "rain")]).astype(np.int8))
    return live, np.stack(out)


# Recorded before issue 12 (loop speeds written into the speed layer by hand, no LoopDetectors or
# Congestion in the tick): per hazard (crowd, flood, traffic, rain) the number of cell-ticks at each
# level -1..4, and a digest of every level of every tick.
# recorded again for issue 14: crowd levels from the observed density only (no trend), fused by walkable area;
# flood levels held through no data and never capped or raised by exposure
# recorded again for issue 22: the flood model's equal sub-steps with theta per second move 321 flood cell-ticks
# of 4.36 M from none to blue, 2 from orange to red (the other hazards are as they were)
STORM_JAM_CROWD_LEVEL_COUNTS = [[4326200, 22898, 9942, 0, 0, 0], [0, 4281656, 75481, 450, 647, 806],
                                [770121, 3588681, 24, 58, 68, 88], [0, 2506448, 1852592, 0, 0, 0]]
STORM_JAM_CROWD_LEVEL_SHA256 = "0fe6a86dc75f2a7743633130d372181edbf03d6743ac2e5ff36d805c7ec2cf97"


@pytest.fixture(scope="module")
def storm_jam_and_crowd(bund10, registry):
    return _synthetic_storm_jam_and_crowd(bund10[0], registry)


def test_the_tick_components_leave_the_hazard_levels_as_they_were(storm_jam_and_crowd):
    """Running `LoopDetectors` and `Congestion` in the tick (and `stale_mask` for freshness) changes no hazard
    level handed to the alerts: every level of every tick as recorded before."""
    _, levels = storm_jam_and_crowd
    counts = [[int((levels[:, h] == lv).sum()) for lv in range(-1, 5)] for h in range(4)]
    assert counts == STORM_JAM_CROWD_LEVEL_COUNTS
    assert hashlib.sha256(levels.tobytes()).hexdigest() == STORM_JAM_CROWD_LEVEL_SHA256


def test_loop_flow_occupancy_and_congestion_are_live_layers(storm_jam_and_crowd, registry):
    live, _ = storm_jam_and_crowd
    layers, state = live.layers, live.state
    cells = state.sensor_cells["traffic"]
    fresh, silent = cells[:4], cells[4:]  # the last four detectors fell silent 12 minutes before the end
    speed = float(np.interp(39, [5, 15, 25, 32], [45.0, 8.0, 8.0, 45.0]))
    for name, units, value in (("traffic_flow", "h-1", 40.0 * speed), ("traffic_occupancy", "%", 90.0 - 1.5 * speed),
                               ("traffic_speed", "km h-1", speed)):
        assert layers[name].attrs["units"] == units and layers[name].attrs["long_name"]
        np.testing.assert_allclose(layers[name].values.ravel()[fresh], value)
    assert np.isnan(layers["traffic_flow"].values.ravel()[silent]).all(), "a stale detector is no data"
    assert np.isnan(layers["traffic_flow"].values).sum() == layers["traffic_flow"].size - 4
    level = layers["congestion_level"].values.ravel()
    road = state.static["road_class"].values.ravel() > 0
    assert (level[~road] == -1).all() and (level[fresh] == 0).all()  # 45 km/h on an arterial is smooth
    assert (level[silent] == -1).all()
    assert np.isfinite(layers["tpi_like"].values.ravel()[fresh]).all()
    # the Bund registry pairs no detectors and there is no speed profile: no incident test ran anywhere
    assert (layers["traffic_incident"].values == -1).all()


def test_paired_loop_detectors_run_the_california_algorithm_per_reading(bund10):
    """A registry ``downstream`` pairs loop-01 with loop-02: occupancy piling up at loop-01 while loop-02 empties
    raises a traffic incident at loop-01's cell, counted in 1-min readings, not in 20 s ticks."""
    doc = json.loads((data_dir() / "bund" / "registry.geojson").read_text(encoding="utf-8"))
    for f in doc["features"]:
        if f["properties"]["id"] == "loop-01":
            f["properties"]["downstream"] = "loop-02"
    state = TwinState(bund10[0], registry_from_geojson(doc))
    live = LiveModels(state)
    up, dn = state.readings["traffic"].index["loop-01"], state.readings["traffic"].index["loop-02"]
    assert state.loop_downstream[up] == dn and (np.delete(state.loop_downstream, up) == -1).all()
    cell = state.sensor_cells["traffic"][up]
    seen = []
    for k, (occ_up, occ_dn) in enumerate([(10.0, 10.0), (10.0, 10.0), (30.0, 5.0), (35.0, 4.0)]):
        t = T0 + 60.0 * k
        state.apply(Batch.build(2, device=np.array(["loop-01", "loop-02"], dtype=object), t=t, quantity="occ",
                                value=np.array([occ_up, occ_dn])))
        for tick in range(3):
            live.step(t + 20.0 * tick, 20.0)
            seen.append(int(live.layers["traffic_incident"].values.ravel()[cell]))
    assert seen == [0] * 9 + [1] * 3
    assert (np.delete(live.layers["traffic_incident"].values.ravel(), cell) == -1).all()
