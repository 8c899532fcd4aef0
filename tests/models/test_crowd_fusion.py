"""Crowd density from counters (issue 14, docs/science/crowd.md 1.4): a counter's count spread over its coverage by
walkable area, its variance following the count, slivers weighing what their area weighs, the registry's
``walkable_area_m2``, the walkable override file, and alerts naming only counters that reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.registry import RegistryError, registry_from_geojson
from models import CrowdFusion
from scenarios.forcing import prepare
from scenarios.spec import ScenarioError, parse_scenario
from twin.district.coverage import shared_coverage
from twin.district.dataset import make_dataset
from twin.district.geo import to_lonlat
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.district.walkable import (
    WalkableOverrideError,
    apply_walkable_overrides,
    load_walkable_overrides,
    walkable_overrides_from_geojson,
)
from twin.live.models import LiveConfig, LiveModels
from twin.live.state import TwinState

GRID = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 6, 12)
"""A 6 x 12 grid of 10 m cells on the Bund (100 m2 a cell)."""
T0 = 1_735_689_600.0
REL_ERROR = 0.15
HYP = settings(max_examples=60, deadline=None)
COUNTER = "crowd-bund-05"
"""Chen Yi Square's counter in the bundled registry."""


def box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A box in the grid CRS from column and row coordinates (cell edges at whole numbers)."""
    s = GRID.cell_size
    return shapely.box(GRID.x0 + col0 * s, GRID.y0 - row1 * s, GRID.x0 + col1 * s, GRID.y0 - row0 * s)


def fuse(polys, counts, walkable=None, rel_error=REL_ERROR, sensor_area=None):
    """(density, sigma, coverage) of counters with coverage ``polys`` on `GRID`, through `shared_coverage` and
    `CrowdFusion` as the live twin builds them."""
    cover = shared_coverage(GRID, np.array(polys, dtype=object))
    n = len(polys)
    walkable = np.full(GRID.shape, GRID.cell_area) if walkable is None else np.asarray(walkable, float)
    ds = xr.Dataset({
        "sensor_count": ("sensor", np.asarray(counts, float), {"units": "person"}),
        "sensor_rel_error": ("sensor", np.broadcast_to(np.asarray(rel_error, float), (n,)).copy(), {"units": "1"}),
        "sensor_walkable_area": ("sensor", np.full(n, np.nan) if sensor_area is None else np.asarray(sensor_area),
                                 {"units": "m2"}),
        "piece_cell": ("piece", cover.piece_cell),
        "piece_fraction": ("piece", cover.piece_area / GRID.cell_area),
        "cover_piece": ("cover", cover.owner_piece), "cover_sensor": ("cover", cover.owner_feature),
        "walkable_area": (("y", "x"), walkable, {"units": "m2"})})
    out = CrowdFusion(ds).update(ds)
    return out["crowd_density"].values.ravel(), out["crowd_density_sigma"].values.ravel(), cover


def covered_walkable(cover, walkable, sensor: int) -> np.ndarray:
    """Walkable area of each cell inside one counter's coverage (layer area x covered fraction). [m2]"""
    mine = cover.owner_piece[cover.owner_feature == sensor]
    area = cover.piece_area[mine] / GRID.cell_area * np.asarray(walkable, float).ravel()[cover.piece_cell[mine]]
    return np.bincount(cover.piece_cell[mine], weights=area, minlength=GRID.size)


# ---------------------------------------------------------------- a counter alone
@HYP
@given(count=st.floats(0, 5000), col0=st.floats(0, 5), row0=st.floats(0, 3), width=st.floats(0.3, 6),
       height=st.floats(0.3, 3), seed=st.integers(0, 2**32 - 1))
def test_a_lone_counter_gives_count_over_walkable_area_and_conserves_people(count, col0, row0, width, height, seed):
    walkable = np.random.default_rng(seed).uniform(5.0, 100.0, GRID.shape)
    rho, _, cover = fuse([box(col0, row0, col0 + width, row0 + height)], [count], walkable)
    area = covered_walkable(cover, walkable, 0)
    inside = area > 0
    assert inside.any() and np.isnan(rho[~inside]).all()
    np.testing.assert_allclose(rho[inside], count / area.sum(), rtol=1e-12, atol=1e-15)
    assert (rho[inside] * area[inside]).sum() == pytest.approx(count, rel=1e-12, abs=1e-9)


@HYP
@given(count=st.floats(0, 1e5), rel_error=st.floats(0, 0.5), width=st.floats(0.5, 8))
def test_the_variance_follows_the_count(count, rel_error, width):
    rho, sigma, _ = fuse([box(1, 1, 1 + width, 3)], [count], rel_error=rel_error)
    walkable = width * 2 * GRID.cell_area
    expected = np.sqrt(max(1.0, count + (rel_error * count) ** 2)) / walkable  # docs/science/crowd.md 1.4
    covered = ~np.isnan(rho)
    np.testing.assert_allclose(sigma[covered], expected, rtol=1e-9)  # the box's area from its geometry


def test_more_people_mean_more_variance_in_person_terms():
    """Poisson: 400 people counted with no device error give sd 20 people; with 15 % error sqrt(400 + 60^2)."""
    _, exact, _ = fuse([box(0, 0, 4, 1)], [400.0], rel_error=0.0)
    _, camera, _ = fuse([box(0, 0, 4, 1)], [400.0], rel_error=0.15)
    assert exact[0] * 400.0 == pytest.approx(20.0)
    assert camera[0] * 400.0 == pytest.approx(np.sqrt(400 + 60.0**2))


# ---------------------------------------------------------------- overlaps and slivers
SLIVER = 1e-5
"""Share of a cell covered by the neighbouring counter: 1e-3 m2 of a 100 m2 cell."""
PLAZA_AREA = 8 * 6 * 100.0 + 6 * SLIVER * 100.0
"""The neighbour (``box(4 - SLIVER, 0, 12, 6)``): 48 cells and a sliver of each of the 6 cells of column 3. [m2]"""


@HYP
@given(queue=st.floats(50, 3000), neighbour=st.floats(0, 3000), rel_a=st.floats(0, 0.3), rel_b=st.floats(0, 0.3))
def test_a_sliver_of_overlap_barely_moves_the_neighbours_cells(queue, neighbour, rel_a, rel_b):
    """A queue counter over 4 cells; a big neighbour reaches 1e-5 of a cell into its last cell."""
    a = box(0, 0, 4, 1)
    b = box(4 - SLIVER, 0, 12, 6)
    rho, _, cover = fuse([a, b], [queue, neighbour], rel_error=[rel_a, rel_b])
    shared = np.unique(cover.piece_cell[cover.owner_piece[cover.owner_feature == 1]])
    assert 3 in shared, "the sliver is in the queue's last cell"
    queue_density = queue / 400.0
    change = np.abs(rho[:4] - queue_density) / queue_density
    assert change.max() <= 1e-4
    assert change[:3].max() <= 1e-12, "cells the neighbour does not reach are the queue's alone"
    assert rho[GRID.size - 1] == pytest.approx(neighbour / PLAZA_AREA, rel=1e-9)


@pytest.mark.parametrize("plaza", [0.0, 48.0])
def test_a_queue_beside_a_quiet_plaza_is_read_at_its_own_density(plaza):
    """The case of docs/science/crowd.md 1.4: a queue at 3 person/m2 beside an empty plaza (or one at 0.01
    person/m2) reaching 1e-5 of a cell into it. The weighting before issue 14 (covered fraction / var(rho_s))
    read the shared cell at 0.06 (or 2.02) person/m2; it now stays within 1e-5 of 3."""
    rho, _, _ = fuse([box(0, 0, 4, 1), box(4 - SLIVER, 0, 12, 6)], [1200.0, plaza])
    assert abs(rho[3] - 3.0) / 3.0 <= 2 * SLIVER
    np.testing.assert_allclose(rho[:3], 3.0, rtol=1e-12)


def test_counters_covering_the_same_piece_combine_by_inverse_variance_weighted_by_area():
    """A covers cells 0-1, B covers the right half of cell 1 and cells 2-3: cell 1 is half "A only" and half
    "A and B", and the half they share is their inverse-variance mean."""
    a, b = box(0, 0, 2, 1), box(1.5, 0, 4, 1)
    n_a, n_b = 200.0, 1000.0
    rho, sigma, _ = fuse([a, b], [n_a, n_b])
    rho_a, rho_b = n_a / 200.0, n_b / 250.0
    var_a = (n_a + (REL_ERROR * n_a) ** 2) / 200.0**2
    var_b = (n_b + (REL_ERROR * n_b) ** 2) / 250.0**2
    u_a = (1 / var_a) / (1 / var_a + 1 / var_b)
    shared = u_a * rho_a + (1 - u_a) * rho_b
    assert rho[0] == pytest.approx(rho_a)
    assert rho[1] == pytest.approx(0.5 * rho_a + 0.5 * shared)
    assert rho[2] == pytest.approx(rho_b) and rho[3] == pytest.approx(rho_b)
    b_a, b_b = 0.5 + 0.5 * u_a, 0.5 * (1 - u_a)  # rho_1 = b_a rho_a + b_b rho_b
    assert sigma[1] == pytest.approx(np.sqrt(b_a**2 * var_a + b_b**2 * var_b))


def test_a_silent_counter_leaves_the_shared_piece_to_the_other():
    a, b = box(0, 0, 2, 1), box(1.5, 0, 4, 1)
    rho, _, _ = fuse([a, b], [200.0, np.nan])
    np.testing.assert_allclose(rho[:2], 1.0)
    assert np.isnan(rho[2:4]).all()


# ---------------------------------------------------------------- the counter's own walkable area
@HYP
@given(count=st.floats(0, 5000), stated=st.floats(10, 5000), width=st.floats(0.5, 8))
def test_a_stated_walkable_area_divides_the_count(count, stated, width):
    walkable = np.random.default_rng(int(width * 1000)).uniform(5.0, 100.0, GRID.shape)
    rho, sigma, cover = fuse([box(0.2, 0.5, 0.2 + width, 4)], [count], walkable, sensor_area=[stated])
    area = covered_walkable(cover, walkable, 0)
    inside = area > 0
    np.testing.assert_allclose(rho[inside], count / stated, rtol=1e-12, atol=1e-15)
    scaled = area * stated / area.sum()  # the layer under the counter, scaled to sum to the stated area
    assert (rho[inside] * scaled[inside]).sum() == pytest.approx(count, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(sigma[inside], np.sqrt(max(1.0, count + (REL_ERROR * count) ** 2)) / stated,
                               rtol=1e-12)


def _bund_registry(**props) -> tuple[dict, object]:
    doc = json.loads((data_dir() / "bund" / "registry.geojson").read_text(encoding="utf-8"))
    for feature in doc["features"]:
        if feature["properties"]["id"] == COUNTER:
            feature["properties"].update(props)
    return doc, registry_from_geojson(doc)


def _live_density(static, registry, counts: dict[str, float], config: LiveConfig | None = None,
                  ages: dict[str, float] | None = None) -> tuple[TwinState, np.ndarray]:
    state = TwinState(static, registry)
    live = LiveModels(state, config)
    ids = list(counts)
    t = [T0 - (ages or {}).get(d, 0.0) for d in ids]
    state.apply(Batch.build(len(ids), device=np.array(ids, dtype=object), t=np.array(t), quantity="count",
                            value=np.array([counts[d] for d in ids])))
    return state, live.step(T0 + 1.0, 1.0)["crowd_density"].values.ravel()


def _counter_cells(state: TwinState, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Cells of a counter and the layer walkable area of each inside its coverage. [m2]"""
    cover = state.crowd_coverage
    s = state.readings["crowd"].index[device]
    mine = cover.owner_piece[cover.owner_feature == s]
    walkable = state.static["walkable_area"].values.ravel()
    area = np.bincount(cover.piece_cell[mine], weights=cover.piece_area[mine] / state.grid.cell_area
                       * walkable[cover.piece_cell[mine]], minlength=state.grid.size)
    return np.flatnonzero(area > 0), area


def test_the_registry_walkable_area_is_honoured_by_the_live_twin(bund10):
    static, _ = bund10
    _, registry = _bund_registry(walkable_area_m2=2500.0, count_rel_error=0.05)
    state, rho = _live_density(static, registry, {COUNTER: 5000.0})
    cells, _ = _counter_cells(state, COUNTER)
    assert cells.size > 20
    np.testing.assert_allclose(rho[cells], 2.0, rtol=1e-12)
    assert state.crowd_rel_error[state.readings["crowd"].index[COUNTER]] == 0.05
    _, plain = _live_density(static, _bund_registry()[1], {COUNTER: 5000.0})
    _, area = _counter_cells(state, COUNTER)
    np.testing.assert_allclose(plain[cells], 5000.0 / area.sum(), rtol=1e-12)


@pytest.mark.parametrize("props", [{"walkable_area_m2": -5}, {"walkable_area_m2": "800"}, {"walkable_area_m2": 0},
                                   {"count_rel_error": 1.5}, {"count_rel_error": True}])
def test_bad_crowd_properties_are_refused(props):
    with pytest.raises(RegistryError, match=next(iter(props))):
        _bund_registry(**props)


def test_only_crowd_counters_state_a_walkable_area():
    doc, _ = _bund_registry()
    gauge = next(f for f in doc["features"] if f["properties"]["kind"] == "rain")
    gauge["properties"]["walkable_area_m2"] = 100.0
    with pytest.raises(RegistryError, match="only crowd counters"):
        registry_from_geojson(doc)


# ---------------------------------------------------------------- the walkable override file
def _lonlat_polygon(poly: shapely.Polygon) -> list[list[float]]:
    x, y = np.asarray(poly.exterior.coords).T
    lon, lat = to_lonlat(x, y, GRID.crs)
    return np.column_stack([lon, lat]).tolist()


def _override_doc(*polygons: tuple[shapely.Polygon, float]) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"barrier {i}", "walkable_fraction": f},
         "geometry": {"type": "Polygon", "coordinates": [_lonlat_polygon(p)]}} for i, (p, f) in enumerate(polygons)]}


def test_override_polygons_set_the_walkable_share_later_ones_winning():
    walkable = np.full(GRID.shape, 60.0)
    static = make_dataset(GRID, {"walkable_area": walkable})
    overrides = walkable_overrides_from_geojson(_override_doc(
        (box(-0.5, -0.5, 1.5, 1), 0.0),   # a flood wall over cell 0 and half of cell 1
        (box(3, -0.5, 4, 1), 0.0),        # cell 3 closed ...
        (box(3, -0.5, 3.5, 1), 1.0)))     # ... but its west half opened again, later
    out = apply_walkable_overrides(static, overrides, "barriers.geojson")["walkable_area"].values
    assert out[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert out[0, 1] == pytest.approx(30.0, rel=1e-6)
    assert out[0, 3] == pytest.approx(50.0, rel=1e-6)  # half of 100 m2 of ground, all walkable
    assert out[0, 2] == pytest.approx(60.0, rel=1e-9) and out[1, 0] == pytest.approx(60.0, rel=1e-9)
    assert (static["walkable_area"].values == 60.0).all(), "the input twin is not modified"
    assert "barriers.geojson" in apply_walkable_overrides(static, overrides, "barriers.geojson")[
        "walkable_area"].attrs["comment"]


def test_the_override_changes_the_density_the_fusion_reads():
    walkable = np.full(GRID.shape, 80.0)
    counter = box(0, 0, 4, 1)
    before, _, _ = fuse([counter], [320.0], walkable)
    static = make_dataset(GRID, {"walkable_area": walkable})
    barrier = walkable_overrides_from_geojson(_override_doc((box(-0.5, -0.5, 2.5, 1.5), 0.0)))  # cells 0, 1, half 2
    after_layer = apply_walkable_overrides(static, barrier)["walkable_area"].values
    after, _, _ = fuse([counter], [320.0], after_layer)
    np.testing.assert_allclose(before[:4], 1.0)
    assert np.isnan(after[:2]).all(), "no walkable ground left: no data, never zero"
    np.testing.assert_allclose(after[2:4], 320.0 / (40.0 + 80.0), rtol=1e-6)


@pytest.mark.parametrize("feature, problem", [
    ({"walkable_fraction": 1.5}, "walkable_fraction"), ({"walkable_fraction": "0"}, "walkable_fraction"),
    ({}, "walkable_fraction")])
def test_bad_override_files_are_refused(feature, problem):
    doc = _override_doc((box(0, 0, 1, 1), 0.0))
    doc["features"][0]["properties"] = feature
    with pytest.raises(WalkableOverrideError, match=problem):
        walkable_overrides_from_geojson(doc)


@pytest.mark.parametrize("geometry, problem", [
    ("not a geometry", "Polygon or MultiPolygon"), ({"type": "Point", "coordinates": [121.49, 31.24]}, "Polygon"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1e6, 0], [1e6, 1e6], [0, 0]]]}, "lon/lat"),
    ({"type": "Polygon", "coordinates": "garbage"}, "bad geometry")])
def test_a_broken_override_geometry_is_one_line_of_the_error_never_a_crash(geometry, problem):
    doc = _override_doc((box(0, 0, 1, 1), 0.0))
    doc["features"][0]["geometry"] = geometry
    with pytest.raises(WalkableOverrideError, match=problem):
        walkable_overrides_from_geojson(doc)


def test_the_live_twin_and_a_scenario_use_the_same_override(bund10, tmp_path):
    static, _ = bund10
    built = static["walkable_area"].values.copy()
    _, registry = _bund_registry()
    ring = np.asarray(registry.get(COUNTER).geometry["coordinates"][0])
    west, east = ring[:, 0].min(), ring[:, 0].max()
    south, north = ring[:, 1].min(), ring[:, 1].max()
    half = [[west - 1e-3, south - 1e-3], [(west + east) / 2, south - 1e-3], [(west + east) / 2, north + 1e-3],
            [west - 1e-3, north + 1e-3], [west - 1e-3, south - 1e-3]]
    path = tmp_path / "barriers.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "event fence", "walkable_fraction": 0},
         "geometry": {"type": "Polygon", "coordinates": [half]}}]}), encoding="utf-8")
    plain_state, plain = _live_density(static, registry, {COUNTER: 3000.0})
    state, rho = _live_density(static, registry, {COUNTER: 3000.0}, LiveConfig(walkable_override=str(path)))
    assert np.array_equal(static["walkable_area"].values, built), "the built twin is not modified"
    layer = state.static["walkable_area"].values
    assert layer.sum() < built.sum() and (layer <= built + 1e-9).all()
    cells, area = _counter_cells(state, COUNTER)
    plain_cells, plain_area = _counter_cells(plain_state, COUNTER)
    assert 0 < area.sum() < plain_area.sum() and cells.size < plain_cells.size
    np.testing.assert_allclose(rho[cells], 3000.0 / area.sum(), rtol=1e-12)
    assert rho[cells].min() > np.nanmax(plain[plain_cells])
    spec = parse_scenario({"duration": "1h", "start_time": "2014-12-31T22:30:00+08:00",
                           "grid": {"district": "bund", "walkable": path.name}}, base_dir=tmp_path)
    assert spec.grid.walkable == path
    np.testing.assert_array_equal(prepare(spec, static).static["walkable_area"].values, layer)


def test_a_scenario_names_a_bad_override_file(tmp_path):
    (tmp_path / "bad.geojson").write_text(json.dumps(_override_doc((box(0, 0, 1, 1), 2.0))), encoding="utf-8")
    for name in ("bad.geojson", "missing.geojson"):
        with pytest.raises(ScenarioError, match=r"grid\.walkable"):
            parse_scenario({"duration": "1h", "start_time": "2014-12-31T22:30:00+08:00",
                            "grid": {"district": "bund", "walkable": name}}, base_dir=tmp_path)


def test_an_override_file_round_trips(tmp_path):
    path = tmp_path / "o.geojson"
    path.write_text(json.dumps(_override_doc((box(0, 0, 1, 1), 0.25))), encoding="utf-8")
    [override] = load_walkable_overrides(path)
    assert override.fraction == 0.25 and override.name == "barrier 0"


# ---------------------------------------------------------------- devices an alert may name
def test_alerts_name_only_counters_that_reported_within_the_staleness_window(bund10):
    static, _ = bund10
    _, registry = _bund_registry()
    stale_s = LiveConfig().stale_s["crowd"]
    state, _ = _live_density(static, registry, {COUNTER: 3000.0, "crowd-bund-06": 800.0},
                             ages={"crowd-bund-06": stale_s + 60.0})
    cells = np.concatenate([_counter_cells(state, d)[0] for d in (COUNTER, "crowd-bund-06", "crowd-bund-07")])
    assert state.reporting_devices("crowd", cells, T0 + 1.0, stale_s) == [COUNTER]
    assert state.reporting_devices("crowd", cells, T0 + stale_s + 1.0, stale_s) == []
