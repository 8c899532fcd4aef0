"""Cells outside the district are no data for a district twin (docs/guides/district-twins.md, `twin.live.models`).

Huangpu's twin of bund4 (the session's build, tests/city/conftest.py) on the Waibaidu Bridge, whose deck spans the
Huangpu-Hongkou border over Suzhou Creek. Its grid's rectangle reaches over the creek into Hongkou: those cells are
outside (``in_district`` 0). The deck is made walkable (a ``--walkable`` override of the bundled bridge polygon, as
an operator would for an event), one crowd counter covers the whole deck, and one water gauge stands on a deck cell
each side of the border, so readings land on outside cells. The same core without the layer (the twin as it was
before: outside cells modelled as if inside) raises levels and alerts there; with it, an outside cell has no level
and is in no alert, and the vital signs leave it out. `Vitals` with ``district_cells`` leaves out the field units,
cases and alerts of outside cells too (a 3 x 4 grid, hand-counted).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import mapping, shape

from ingest.batch import Batch
from ingest.registry import registry_from_geojson
from twin.alerting.store import Store
from twin.city.boundaries import projected
from twin.district.geo import to_lonlat
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig, blank_outside, outside_value
from twin.live.state import district_cells
from twin.live.vitals import TickInputs, Vitals

HUANGPU = "310101"
BANDS_FILE = data_dir() / "bund" / "crowd-bands.geojson"
"""The bundled crowd places, the Waibaidu Bridge deck among them (read before the test points CITYTWIN_DATA at the
city's cache)."""
T0 = 1_767_196_800.0
TICK_S = 2.0
TICKS = 8
"""16 s of twin time: past the 3 s raise delay of every level."""
DENSITY = 6.0
"""The packed deck: red (5 person/m2 and more). [person m-2]"""
DEPTH_IN, DEPTH_OUT = 0.6, 0.9
"""The gauges' water: red (0.5 m) on both sides of the border. [m]"""


def _deck() -> shapely.Geometry:
    bands = json.loads(BANDS_FILE.read_text(encoding="utf-8"))
    return next(shape(f["geometry"]) for f in bands["features"] if f["properties"]["name"] == "Waibaidu Bridge")


def _cell_lonlat(grid: GridSpec, cell: int) -> tuple[float, float]:
    row, col = divmod(int(cell), grid.nx)
    lon, lat = to_lonlat(grid.x[col], grid.y[row], grid.crs)
    return float(lon), float(lat)


def _point(device: str, kind: str, quantity: str, lonlat: tuple[float, float]) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(lonlat)},
            "properties": {"id": device, "kind": kind, "quantities": [quantity], "name": device}}


class Run:
    """Two Huangpu cores fed the same readings: ``masked`` on the district grid, ``unmasked`` on the same grid
    without its ``in_district`` layer."""

    def __init__(self, city, folder) -> None:
        district = city.district(HUANGPU)
        self.static, _ = district.twin()
        inside = self.static["in_district"].values == 1
        from twin.district.dataset import grid_of

        self.grid = grid = grid_of(self.static)
        deck = _deck()
        lon, lat = grid.cell_centres_lonlat()
        on_deck = shapely.intersects_xy(deck, lon, lat)
        self.deck_in = np.flatnonzero((on_deck & inside).ravel())
        self.deck_out = np.flatnonzero((on_deck & ~inside).ravel())
        assert self.deck_in.size >= 3 and self.deck_out.size >= 3, "the deck crosses Huangpu's border in its grid"
        self.outside = np.flatnonzero(~inside.ravel())
        self.cell_in, self.cell_out = int(self.deck_in[0]), int(self.deck_out[0])
        override = folder / "deck-walkable.geojson"
        override.write_text(json.dumps({"type": "FeatureCollection", "features": [{
            "type": "Feature", "geometry": mapping(deck),
            "properties": {"name": "Waibaidu Bridge deck", "walkable_fraction": 1.0}}]}), encoding="utf-8")
        self.deck_m2 = projected(deck).area
        doc = json.loads(district.registry_path.read_text(encoding="utf-8"))
        doc["features"] += [
            {"type": "Feature", "geometry": json.loads(json.dumps(mapping(deck))), "properties": {
                "id": "test-deck", "kind": "crowd", "quantities": ["count"], "coverage": "polygon",
                "name": "外白渡桥 Waibaidu Bridge deck", "walkable_area_m2": round(self.deck_m2, 1)}},
            _point("test-water-in", "water", "depth", _cell_lonlat(grid, self.cell_in)),
            _point("test-water-out", "water", "depth", _cell_lonlat(grid, self.cell_out))]
        self.doc, self.override = doc, override
        self.rain = [d.id for d in registry_from_geojson(doc).of_kind("rain")]
        assert self.rain, "Huangpu has rain gauges: a fresh one keeps the flood levels live"

    def start(self) -> None:
        """The two cores (with ``CITYTWIN_DATA`` at the city's cache: they read the district folder)."""
        config = CoreConfig(district=HUANGPU, sender=f"twin.{HUANGPU}@citytwin", tick_s=TICK_S,
                            live=LiveConfig(walkable_override=str(self.override)))
        self.masked = TwinCore(self.static, registry_from_geojson(self.doc), Store.open(":memory:"), config)
        self.unmasked = TwinCore(self.static.drop_vars("in_district"), registry_from_geojson(self.doc),
                                 Store.open(":memory:"), config)

    def batch(self, t: float) -> Batch:
        ids = ["test-deck", "test-water-in", "test-water-out", *self.rain]
        quantity = ["count", "depth", "depth", *(["rain"] * len(self.rain))]
        value = [DENSITY * self.deck_m2, DEPTH_IN, DEPTH_OUT, *([0.0] * len(self.rain))]
        return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity=np.array(quantity, object),
                           value=np.array(value, float))

    def play(self) -> None:
        for k in range(TICKS):
            t = T0 + TICK_S * k
            for core in (self.masked, self.unmasked):
                assert core.on_batch(self.batch(t)) == []
                core.on_tick(t)


@pytest.fixture(scope="module")
def run(bund4_built, tmp_path_factory):
    city, _ = bund4_built
    r = Run(city, tmp_path_factory.mktemp("outside"))  # reads the city first: its digests read the bundled data
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CITYTWIN_DATA", str(city.cache))  # the district folder: operational units, vital signs' tree
        r.start()
        r.play()
    yield r
    for core in (r.masked, r.unmasked):
        core.store.close()


def _cells_of_alerts(core: TwinCore) -> set[int]:
    return {int(c) for a in core.book.active.values() for c in a.cells}


@pytest.mark.slow  # the session's bund4 build (about 10 s, once), two cores for 8 ticks
def test_without_the_layer_the_outside_deck_cells_raise_alerts(run):
    """The flaw the layer fixes: Huangpu models Hongkou's half of the deck and alerts on it."""
    layers = run.unmasked.models.layers
    assert (layers["level_crowd"].values.ravel()[run.deck_out] == 4).any()
    assert layers["level_flood"].values.ravel()[run.cell_out] == 4
    assert _cells_of_alerts(run.unmasked) & set(run.deck_out.tolist())


@pytest.mark.slow  # the session's bund4 build (about 10 s, once), two cores for 8 ticks
def test_an_outside_cell_has_no_level_and_no_alert_whatever_lands_there(run):
    core = run.masked
    layers, outside = core.models.layers, run.outside
    for name in ("level_crowd", "level_flood", "level_traffic", "level", "level_crowd_forecast", "rain_signal"):
        assert (layers[name].values.ravel()[outside] == -1).all(), name
    for name in ("crowd_density", "water_depth", "traffic_speed", "risk_flood", "updated_water", "rain_1h"):
        assert np.isnan(layers[name].values.ravel()[outside]).all(), name
    assert (layers["level_nodata"].values.ravel()[outside] == 7).all()
    assert not layers["level_changed"].values.ravel()[outside].any()
    for hazard, level in core.models.hazard_levels().items():
        assert (level.ravel()[outside] == -1).all(), hazard
    assert not _cells_of_alerts(core) & set(outside.tolist()), "no alert holds a cell outside the district"
    assert not any(p.cells[np.isin(p.cells, outside)].size for places in core.models.hazard_places().values()
                   for p in places)
    # inside, the same readings raise as before: red crowd on Huangpu's half of the deck, red water at its gauge
    assert (layers["level_crowd"].values.ravel()[run.deck_in] == 4).all()
    assert layers["level_flood"].values.ravel()[run.cell_in] == 4
    alerts = {a.hazard: a for a in core.book.active.values()}
    assert {"crowd", "flood"} <= set(alerts)
    assert run.cell_in in alerts["flood"].cells.tolist()
    keys = {a.place.key for a in core.book.active.values() if a.place is not None}
    assert "flood:point:test-water-in" in keys and "flood:point:test-water-out" not in keys
    # the readings are taken all the same (the gauge is Huangpu's device), only its cell is not Huangpu's
    depth, _ = core.state.readings["water"].latest("depth")
    assert depth[core.state.readings["water"].index["test-water-out"]] == DEPTH_OUT


@pytest.mark.slow  # the session's bund4 build (about 10 s, once), two cores for 8 ticks
def test_the_vital_signs_leave_outside_cells_out(run):
    city_node = run.masked.indicators("city")["nodes"][0]["indicators"]
    before = run.unmasked.indicators("city")["nodes"][0]["indicators"]
    layers, walkable = run.masked.models.layers, run.masked.state.static["walkable_area"].values.ravel()
    density = layers["crowd_density"].values.ravel()
    known = np.isfinite(density)
    assert not known[run.outside].any()
    assert city_node["people"]["detail"]["cells_with_data"] == int(known.sum()) >= run.deck_in.size
    assert city_node["people"]["value"] == round(float(np.sum(density[known] * walkable[known])))
    assert before["people"]["detail"]["cells_with_data"] > city_node["people"]["detail"]["cells_with_data"]
    assert before["people"]["value"] > city_node["people"]["value"]
    # the deepest water and the waterlogged area are Huangpu's gauge's, not the one over the border
    assert city_node["water"]["value"] == pytest.approx(DEPTH_IN) and before["water"]["value"] == pytest.approx(
        DEPTH_OUT)
    cell_m2 = run.grid.cell_area
    assert city_node["water"]["detail"]["waterlogged_m2"] == pytest.approx(cell_m2)
    assert before["water"]["detail"]["waterlogged_m2"] == pytest.approx(2 * cell_m2)
    stored = run.masked.layer_frame("level", T0 + TICK_S * (TICKS - 1))
    assert stored is not None and (stored[0].ravel()[run.outside] == -1).all(), "the timeline's frames too"


# ---------------------------------------------------------------- the parts, without a city
GRID = GridSpec("EPSG:4549", 641000.0, 3459800.0, 100.0, 3, 4)
"""12 cells of 100 m: 0 1 2 3 / 4 5 6 7 / 8 9 10 11."""
INSIDE = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
"""The district's cells: 0, 1, 2, 4, 5, 8 (six of twelve)."""


def test_a_grid_without_the_layer_owns_every_cell_and_blanks_nothing():
    import xarray as xr

    static = xr.Dataset({"elevation": (("y", "x"), np.zeros(GRID.shape))})
    mask, outside = district_cells(static)
    assert mask is None and outside.size == 0
    mask, outside = district_cells(static.assign(in_district=(("y", "x"), INSIDE.astype(np.int8))))
    assert np.array_equal(mask, INSIDE) and outside.tolist() == [3, 6, 7, 9, 10, 11]
    level = xr.Variable(("y", "x"), np.full(GRID.shape, 2, np.int8))
    depth = xr.Variable(("y", "x"), np.full(GRID.shape, 0.3))
    blank_outside({"level_flood": level, "water_depth": depth}, np.zeros(0, np.int64))
    assert (level.values == 2).all() and (depth.values == 0.3).all()
    blank_outside({"level_flood": level, "water_depth": depth}, outside)
    assert np.array_equal(level.values == -1, ~INSIDE) and np.array_equal(np.isnan(depth.values), ~INSIDE)
    assert (outside_value("level_nodata"), outside_value("level_changed"), outside_value("congestion_level")) == (
        7, 0, -1)


def _inputs(t: float, units: list[tuple[int, bool]], alerts: list, cases: list) -> TickInputs:
    n = GRID.size
    return TickInputs(t, np.full(n, 0.1), np.full(n, 50.0), np.zeros(n, np.int8), np.zeros(n), np.zeros(n, np.int8),
                      alerts=alerts, cases=cases, units=units, frames={"level": np.zeros(GRID.shape, np.int8)})


@pytest.mark.parametrize("mask", [None, INSIDE])
def test_vitals_count_only_the_districts_cells_units_cases_and_alerts(tmp_path, mask):
    vitals = Vitals(GRID, Store.open(":memory:"), tmp_path, district_name="demo", district_cells=mask)
    lon, lat = _cell_lonlat(GRID, 9)
    units = [(0, False), (5, True), (3, False), (11, True)]      # two inside (one busy), two outside
    alerts = [(np.array([1, 2]), 2), (np.array([3, 7]), 3)]        # yellow inside, orange outside
    cases = [("c1", *_cell_lonlat(GRID, 4), False), ("c2", lon, lat, True)]  # the overdue one outside
    vitals.tick(_inputs(T0, units, alerts, cases))
    city = vitals.nodes_at("city")["nodes"][0]["indicators"]
    cells = GRID.size if mask is None else int(INSIDE.sum())
    assert city["people"]["value"] == round(cells * 0.1 * 50.0)   # 0.1 person/m2 on 50 m2 a cell
    assert city["people"]["detail"]["cells_with_data"] == cells
    if mask is None:
        assert (city["units"]["value"], city["units"]["detail"]["busy"]) == (4, 2)
        assert (city["alerts"]["value"], city["alerts"]["level"]) == (2, 3)
        assert (city["cases"]["value"], city["cases"]["detail"]["overdue"]) == (2, 1)
    else:
        assert (city["units"]["value"], city["units"]["detail"]["busy"]) == (2, 1)
        assert (city["alerts"]["value"], city["alerts"]["level"]) == (1, 2)
        assert (city["cases"]["value"], city["cases"]["detail"]["overdue"]) == (1, 0)


def test_a_road_segment_over_the_border_keeps_only_the_districts_cells():
    import types

    from twin.alerting.segments import Place
    from twin.live.models import LiveModels

    def own(places, outside):
        fake = types.SimpleNamespace(state=types.SimpleNamespace(outside_cells=np.asarray(outside, np.int64)))
        return LiveModels._own_places(fake, places)

    across = Place(np.array([7, 8]), np.array([2, 3, 6]), 3, "across the border")
    beyond = Place(np.array([9]), np.array([7, 11]), 2, "beyond it")
    mine = Place(np.array([1]), np.array([0, 1]), 1, "at home")
    assert own([across, beyond, mine], []) == [across, beyond, mine]
    kept = own([across, beyond, mine], [3, 6, 7, 9, 10, 11])
    assert [(p.description, p.cells.tolist(), p.links.tolist(), p.level) for p in kept] == [
        ("across the border", [2], [7, 8], 3), ("at home", [0, 1], [1], 1)]
    assert kept[1] is mine
