"""The Huangpu in the live twin (issue 22): river-level gauges drive the river, outfalls close above their invert,
pump stations put their discharge in, and hostile readings are refused (docs/contract/mqtt.md 3.1).

The first tests drive the live models directly with batches (what the ingest hands the core); the last one goes the
whole way through a private Mosquitto, publishing SenML as a gauge and a pump station would.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import shapely

from ingest.batch import Batch
from ingest.registry import load_registry, registry_from_geojson
from tests.live.conftest import REGISTRY, wait_for
from tests.support.waits import TickWatch
from twin.district import geo
from twin.district.cim import RIVER_M
from twin.district.dataset import grid_of
from twin.district.river import load_river_works
from twin.live.models import LiveConfig, LiveModels
from twin.live.state import TwinState

T0 = 1_780_000_000.0
OUTSIDE = (121.70, 31.10)
"""A point far east of the Bund's grid."""


def _centre(grid, cell: int) -> tuple[float, float]:
    p = shapely.centroid(grid.cell_polygons()[cell])
    lon, lat = geo.to_lonlat(p.x, p.y, grid.crs)
    return round(float(lon), 7), round(float(lat), 7)


def _cells(static) -> dict[str, int]:
    """A street cell on land away from the river, a building (a wall of the flood model), each as a flat index."""
    works = load_river_works(static)
    water = static["water_mask"].values.astype(bool) | works.river
    building = static["building_fraction"].values >= 0.5
    z = static["elevation"].values
    ny, nx = z.shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    middle = (abs(rows - ny // 2) < ny // 4) & (abs(cols - nx // 3) < nx // 6)
    land = np.flatnonzero((~water & ~building & middle & (z >= 3.5)).ravel())
    wall = np.flatnonzero((building & middle).ravel())
    return {"land": int(land[land.size // 2]), "wall": int(wall[wall.size // 2])}


def _extra_devices(static) -> list[dict]:
    """Test devices beside the Bund's: a pump onto a street, one on a building, one outside the grid, a second level
    gauge whose zero is 1.6 m above the Wusong zero."""
    grid, cells = grid_of(static), _cells(static)

    def point(lonlat):
        return {"type": "Point", "coordinates": list(lonlat)}

    return [
        {"type": "Feature", "geometry": point(_centre(grid, cells["land"])),
         "properties": {"id": "pump-street", "kind": "pump", "name": "temporary pump onto a street"}},
        {"type": "Feature", "geometry": point(_centre(grid, cells["wall"])),
         "properties": {"id": "pump-roof", "kind": "pump", "name": "a pump placed on a building by mistake"}},
        {"type": "Feature", "geometry": point(OUTSIDE),
         "properties": {"id": "pump-away", "kind": "pump", "name": "a pump far outside the grid"}},
        {"type": "Feature", "geometry": point((121.4905, 31.2396)),
         "properties": {"id": "level-85", "kind": "level", "name": "a gauge on the 1985 datum",
                        "datum_offset_m": 1.6}},
    ]


def _registry_doc(static) -> dict:
    doc = json.loads((REGISTRY).read_text(encoding="utf-8"))
    doc["features"] = doc["features"] + _extra_devices(static)
    return doc


def _reading(device: str, quantity: str, value: float, t: float) -> Batch:
    return Batch.build(1, device=device, t=t, quantity=quantity, value=value)


@pytest.fixture(scope="module")
def river_twin(bund10):
    static, _ = bund10
    return static, registry_from_geojson(_registry_doc(static)), _cells(static)


def test_the_river_follows_the_gauge_and_the_outfalls_close_above_their_invert(river_twin):
    static, registry, _ = river_twin
    state = TwinState(static, registry)
    live = LiveModels(state, LiveConfig())
    works = live.observed.river.works
    gravity = ~works.outfall_pumped
    assert gravity.any() and (works.outfall_invert[gravity] == 2.5).all()  # data/bund/outfalls.geojson

    state.apply(_reading("level-01", "level", 3.2, T0))
    layers = live.step(T0 + 1.0, 1.0)
    river = works.river
    level = layers["river_level"].values
    assert np.allclose(level[river], 3.2) and np.isnan(level[~river]).all()
    assert live.river.source == "gauge" and live.river.device == "level-01"
    flood = live.pipeline.flood
    assert not flood.outfalls_open[gravity].any(), "tide-locked: the river is above the gravity outfalls' invert"
    assert flood.outfalls_open[works.outfall_pumped].all(), "pumped outfalls always drain"

    state.apply(_reading("level-01", "level", 2.2, T0 + 2.0))
    layers = live.step(T0 + 3.0, 2.0)
    assert np.allclose(layers["river_level"].values[river], 2.2)
    assert flood.outfalls_open.all(), "below every invert, every outfall drains again"

    # the newest reading of any gauge wins, and a gauge on another datum is converted by its registry offset
    state.apply(_reading("level-85", "level", 2.0, T0 + 4.0))
    layers = live.step(T0 + 5.0, 2.0)
    assert np.allclose(layers["river_level"].values[river], 3.6) and live.river.device == "level-85"

    # above Huangpu Park's warning level (4.80 m, data/bund/river.yaml) the river warning is blue on the river, and
    # the gauge is its evidence though it stands on the bank
    state.apply(_reading("level-01", "level", 4.9, T0 + 6.0))
    live.step(T0 + 7.0, 2.0)
    on_river = live.hazard_levels()["river"][river]
    assert (on_river == 1).all(), np.unique(on_river)
    assert state.reporting_devices("level", np.flatnonzero(river.ravel())[:3], T0 + 7.0, 600.0) == ["level-01",
                                                                                                  "level-85"]


def test_a_silent_gauge_is_held_then_the_river_falls_back_and_says_so(river_twin, caplog):
    static, registry, _ = river_twin
    state = TwinState(static, registry)
    cfg = LiveConfig()
    observed = LiveModels(state, cfg).observed
    assert observed.river.level(T0).source == "fallback"  # nothing heard yet
    caplog.clear()
    state.apply(_reading("level-01", "level", 4.1, T0))
    stale, hold = cfg.stale_s["level"], cfg.river_hold_s
    with caplog.at_level(logging.INFO, logger="twin.live.river"):
        seen = [observed.river.level(T0 + dt) for dt in (10.0, stale, stale + 1.0, stale + hold,
                                                         stale + hold + 1.0, stale + hold + 60.0)]
    assert [s.source for s in seen] == ["gauge", "gauge", "held", "held", "fallback", "fallback"]
    assert [s.level_m for s in seen] == [4.1, 4.1, 4.1, 4.1, RIVER_M, RIVER_M]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines  # one line per change of source, not one a tick
    assert "holding its last level 4.10 m" in lines[1] and "fallback level 2.00 m" in lines[2]


def test_a_pump_puts_its_discharge_in_at_its_cell_and_misplaced_pumps_are_refused(river_twin, caplog):
    static, registry, cells = river_twin
    state = TwinState(static, registry)
    live = LiveModels(state, LiveConfig())
    q = 2.0  # [m3 s-1]
    with caplog.at_level(logging.WARNING, logger="twin.live.river"):
        for k in range(5):
            t = T0 + 2.0 * k
            for d in ("pump-street", "pump-roof", "pump-01"):
                assert state.apply(_reading(d, "discharge", q, t)).rejected == []
            live.step(t + 2.0, 2.0)
    flood = live.pipeline.flood
    assert flood.inflow_volumes["pump-street"] == pytest.approx(q * 10.0, rel=1e-9), "exact in volume"
    assert live.layers["water_depth"].values.ravel()[cells["land"]] > 0.05, "water on the street at the pump"
    assert "pump-roof" not in flood.inflow_volumes
    assert "wall cell" in live.observed.river.pump_problems["pump-roof"]
    assert sum("pump-roof" in r.getMessage() for r in caplog.records) == 1, "logged once, not every tick"
    # the Bund's own pump station discharges into the river: its water goes to the river, not onto the quay
    assert live.observed.river.works.river.ravel()[live.observed.river.pump_place("pump-01", flood)[0]].all()

    away = state.apply(_reading("pump-away", "discharge", q, T0 + 20.0)).rejected
    assert [(r.device, r.reason) for r in away] == [("pump-away", "outside_grid")]
    assert "outside the twin's grid" in away[0].detail
    live.step(T0 + 22.0, 2.0)  # no crash, and no water from it
    assert "pump-away" not in flood.inflow_volumes


def test_a_silent_pump_puts_no_water_in(river_twin):
    static, registry, _ = river_twin
    state = TwinState(static, registry)
    cfg = LiveConfig()
    live = LiveModels(state, cfg)
    state.apply(_reading("pump-street", "discharge", 1.0, T0))
    assert [i.name for i in live.observed.river.pump_inflows(T0 + 1.0, live.pipeline.flood)] == ["pump-street"]
    assert live.observed.river.pump_inflows(T0 + cfg.stale_s["pump"] + 1.0, live.pipeline.flood) == []


def test_without_river_works_the_river_is_an_outlet_and_pumps_still_pump(river_twin):
    static, registry, _ = river_twin
    state = TwinState(static, registry)
    live = LiveModels(state, LiveConfig(river_works=False))
    state.apply(_reading("pump-street", "discharge", 1.0, T0))
    live.step(T0 + 2.0, 2.0)
    assert live.river.source == "off" and np.isnan(live.layers["river_level"].values).all()
    assert live.pipeline.flood.inflow_volumes["pump-street"] == pytest.approx(2.0, rel=1e-9)


def test_a_snapshot_from_before_the_river_kinds_restores(river_twin):
    static, registry, _ = river_twin
    state = TwinState(static, registry)
    saved = state.save_state()
    for kind in ("level", "pump"):
        del saved["readings"][kind]
    TwinState(static, registry).restore_state(saved)  # no KeyError: the kinds start empty


@pytest.mark.slow
@pytest.mark.broker
def test_levels_and_pumps_over_mqtt_drive_the_river_and_bad_ones_are_dead_lettered(broker, observer, bund_file,
                                                                                    bund10, tmp_path):
    from twin.live.core import CoreConfig
    from twin.live.service import LiveService, ServiceConfig

    static, _ = bund10
    registry = tmp_path / "registry.geojson"
    registry.write_text(json.dumps(_registry_doc(static)), encoding="utf-8")
    assert load_registry(registry).get("pump-street") is not None
    land = _cells(static)["land"]
    cfg = ServiceConfig(broker=broker.url, grid=bund_file, registry=registry, state_dir=tmp_path / "state",
                        tick_s=0.2, client_id="twin-river", snapshot_every_s=5.0, core=CoreConfig(tick_s=0.2))
    svc = LiveService(cfg)
    assert svc.start(10)
    ticks = TickWatch(svc)
    river = load_river_works(static).river

    def river_at(value: float) -> bool:
        layers = svc.core.live_layers()
        return "river_level" in layers and bool(np.allclose(layers["river_level"].values[river], value))

    def send(kind: str, device: str, quantity: str, value: float, unit: str) -> None:
        rec = [{"bn": f"urn:dev:{device}:", "n": quantity, "u": unit, "v": value, "t": 0}]  # t 0: now
        assert observer.publish(f"city/sensors/{kind}/{device}", json.dumps(rec).encode())

    try:
        ticks.next(1, 10, "a first tick")
        send("level", "level-01", "level", 412, "cm")  # 4.12 m Wusong, in centimetres
        wait_for(lambda: river_at(4.12), 10, "the river at the gauge's 4.12 m")
        flood = svc.core.models.pipeline.flood
        works = svc.core.models.observed.river.works
        assert not flood.outfalls_open[~works.outfall_pumped].any()
        send("level", "level-01", "level", 2.3, "m")
        wait_for(lambda: river_at(2.3), 10, "the river falling to 2.3 m")
        wait_for(lambda: flood.outfalls_open.all(), 5, "the gravity outfalls open below their invert")
        assert svc.core.status()["river"]["source"] == "gauge"

        send("pump", "pump-street", "discharge", 3000, "l/s")  # 3 m3/s onto a street
        wait_for(lambda: svc.core.live_layers()["water_depth"].values.ravel()[land] > 0.01, 10,
                 "water on the street at the pump")

        send("level", "level-01", "level", 25.0, "m")  # not a tide: a depth sent as a level, or a wrong datum
        send("pump", "pump-away", "discharge", 1.0, "m3/s")
        letters = wait_for(lambda: len(observer.json_on("city/deadletter")) >= 2 and observer.json_on(
            "city/deadletter"), 10, "two dead letters")
        reasons = {m["topic"].split("/")[-1]: (m["reason"], m["detail"]) for m in letters}
        assert reasons["level-01"][0] == "out_of_range" and "level 25.0 outside" in reasons["level-01"][1]
        assert reasons["pump-away"][0] == "outside_grid" and "outside the twin's grid" in reasons["pump-away"][1]
        assert river_at(2.3), "the refused level changed nothing"
    finally:
        svc.stop()
