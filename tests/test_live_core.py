"""The live twin core without a broker: batches and ticks in, stored alerts and outbox out."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ingest.batch import Batch
from ingest.registry import load_registry
from twin.alerting.store import Store
from twin.district import geo
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TwinCore

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
CHEN_YI_SQUARE = (121.4855, 31.2405)  # SCIENCE.md 6.3, WGS84


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


@pytest.fixture
def core(bund10, registry):
    ds, _ = bund10
    c = TwinCore(ds, registry, Store.open(":memory:"), CoreConfig(clear_ticks=2))
    yield c
    c.store.close()


def crowd(registry, t, count, ids=None):
    ids = ids or [d.id for d in registry.of_kind("crowd")]
    return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count",
                       value=np.full(len(ids), float(count)))


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


def _run(core, registry, counts, unit_positions=None, start=0):
    events = []
    for k, n in enumerate(counts, start=start):
        t = T0 + 10 * k
        core.on_batch(crowd(registry, t, n))
        for unit, (lon, lat) in (unit_positions or {}).items():
            core.on_batch(position(unit, t, lon, lat))
        events += [(k, e) for e in core.on_tick(t).events]
    return events


def test_crowd_alert_is_raised_routed_acknowledged_and_cancelled(core, registry):
    units = {"unit-police-04": CHEN_YI_SQUARE,            # on the promenade
             "unit-fire-05": (121.5100, 31.2380)}           # Lujiazui, 1.8 km away across the river
    events = _run(core, registry, [300] * 3 + [6000] * 12, units)
    raised = [e for _, e in events if e.kind == "raised" and e.alert.hazard == "crowd"]
    assert len(raised) == 1
    alert = raised[0].alert
    msg = raised[0].message
    assert msg["info"][0]["category"] == "Safety" and msg["msgType"] == "Alert"
    params = {p["valueName"]: p["value"] for p in msg["info"][0]["parameter"]}
    assert "crowd-bund-" in params["devices"] and params["peakDensity"].endswith("person/m2")
    topics = [i.topic for i in core.store.pending()]
    assert f"city/alerts/{alert.identifier}" in topics
    assert "city/units/unit-police-04/alerts" in topics and "city/units/unit-fire-05/alerts" not in topics
    # the unit acknowledges and is seen on scene
    core.on_batch(Batch.build(1, device="unit-police-04", t=T0 + 200, quantity="ack", ref=alert.identifier))
    assert core.store.acks(alert.identifier)[0]["actor"] == "unit-police-04"
    # the crowd disperses: levels step down, and the alert is cancelled only after the clear delay
    events = _run(core, registry, [100] * 80, units, start=15)
    cancels = [(k, e) for k, e in events if e.kind == "cancelled" and e.alert.identifier == alert.identifier]
    assert len(cancels) == 1
    k_cancel, cancel = cancels[0]
    assert cancel.message["msgType"] == "Cancel" and alert.identifier in cancel.message["references"]
    assert k_cancel > 15 + 10, "no cancel before the state machine's clear delay"
    stored = core.store.alerts()
    assert [a["state"] for a in stored if a["identifier"] == alert.identifier] == ["cancelled"]
    retained = [(i.topic, i.payload) for i in core.store.pending() if i.topic == f"city/alerts/{alert.identifier}"]
    assert retained[-1][1] is None and json.loads(retained[-2][1])["msgType"] == "Cancel"
    assert any(i.topic == "city/units/unit-police-04/alerts" and b'"Cancel"' in i.payload
               for i in core.store.pending())


def test_a_unit_moving_into_the_area_gets_the_alert_and_arrives(core, registry):
    events = _run(core, registry, [300] * 2 + [6000] * 8)
    alert = next(e.alert for _, e in events if e.kind == "raised")
    assert not any("units/unit-fire-06" in i.topic for i in core.store.pending())
    core.on_batch(position("unit-fire-06", T0 + 100, 121.4890, 31.2390))  # drives up, about 400 m away
    assert any(i.topic == "city/units/unit-fire-06/alerts" for i in core.store.pending())
    cells = alert.cells
    row, col = np.divmod(cells[len(cells) // 2], core.state.grid.nx)
    lon, lat = core.state.grid.cell_centres_lonlat()
    core.on_batch(position("unit-fire-06", T0 + 160, float(lon[row, col]), float(lat[row, col])))
    report = core.on_tick(T0 + 160)
    assert [(a[0], a[1]) for a in report.arrivals] == [(alert.identifier, "unit-fire-06")]
    expected = 160 - (alert.raised_at - T0)
    assert core.store.arrivals(alert.identifier)[0]["seconds_after_alert"] == pytest.approx(expected)


def test_a_silent_sensor_turns_cells_to_no_data_without_clearing(core, registry):
    _run(core, registry, [300] * 2 + [6000] * 8)
    assert len(core.book.of_hazard("crowd")) == 1
    for k in range(10, 60):  # nothing more arrives: after 180 s the counters are stale
        events = core.on_tick(T0 + 10 * k).events
        assert not [e for e in events if e.kind == "cancelled"]
    assert (core.models.layers["level_crowd"].values == -1).any()
    assert len(core.book.of_hazard("crowd")) == 1
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
                                  value=np.full(len(gauges), 58.1)))  # 5-yr 60-min Shanghai storm, SCIENCE.md 2.2
        first = [e for e in core.on_tick(t).events if e.kind == "raised" and e.alert.hazard == "flood"]
        if first:
            break
    assert first, "a waterlogging alert within 30 minutes of a 5-year storm"
    assert all(under[e.alert.cells].any() for e in first)
    assert first[0].message["info"][0]["event"] == "Urban waterlogging warning"


def test_the_same_inputs_give_the_same_alerts_and_a_restored_core_continues_identically(bund10, registry):
    ds, _ = bund10

    def fresh():
        return TwinCore(ds, registry, Store.open(":memory:"), CoreConfig())

    a, b = fresh(), fresh()
    counts = [300] * 2 + [6000] * 6 + [200] * 20
    ev_a = [e.message for _, e in _run(a, registry, counts[:10])]
    ev_b = [e.message for _, e in _run(b, registry, counts[:10])]
    assert ev_a == ev_b and ev_a
    blob = pickle.dumps(b.snapshot_state())
    c = TwinCore.from_snapshot_state(pickle.loads(blob), b.store)
    rest_a = [e.message for _, e in _run(a, registry, counts[10:], start=10)]
    rest_c = [e.message for _, e in _run(c, registry, counts[10:], start=10)]
    assert rest_a == rest_c


def test_a_flapping_feed_makes_no_duplicate_and_no_ghost_cleared_alerts(core, registry):
    # counts jump between just under and just over the density that raises a level, every tick
    events = _run(core, registry, [300] * 3 + [6000] * 8)
    assert [e.kind for _, e in events if e.alert.hazard == "crowd"].count("raised") == 1
    flapping = [2600 if k % 2 else 3400 for k in range(120)]
    events = _run(core, registry, flapping, start=11)
    crowd = [e for _, e in events if e.alert.hazard == "crowd"]
    assert not [e for e in crowd if e.kind == "raised"], "no second alert for the same crowd"
    assert not [e for e in crowd if e.kind == "cancelled"], "no clear while the crowd is still there"
    assert len(core.book.of_hazard("crowd")) == 1
    assert len(crowd) <= 6, f"updates stay rare while flapping: {[e.alert.level for e in crowd]}"
