"""Per-place crowd density bands from a thresholds file (issue 14): the loader (`twin.district.thresholds`), the
``crowd_band`` layer it makes, the bundled example (data/bund/crowd-bands.geojson), the live twin
(`LiveConfig.place_bands_file`, ``densityBands`` in the CAP message) and ``twin run --crowd-bands``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from models.config import MAX_PLACE_BANDS
from tests.support.checkout import checkout_env
from tests.truth.crowd.case import registry_with_counters
from twin.alerting.cap import info_block
from twin.alerting.store import Store
from twin.district.dataset import make_dataset
from twin.district.geo import to_lonlat
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.district.thresholds import (
    MIN_SHARE,
    PlaceBandsError,
    apply_place_bands,
    crowd_band_layer,
    load_place_bands,
    place_bands_from_geojson,
    with_place_bands,
)
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig

BUNDLED = data_dir() / "bund" / "crowd-bands.geojson"
GRID = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 4, 8)
"""A 4 x 8 grid of 10 m cells in Pudong (100 m2 a cell)."""
STAIR_RAISE, STAIR_CLEAR = [1.11, 1.43, 2.5, 3.5], [0.89, 1.14, 2.0, 2.8]
STAIR_TEXT = "Lujiazui Exit 1 stair (stair): blue 1.11, yellow 1.43, orange 2.5, red 3.5 person/m2"
DISTRICT_TEXT = "district: blue 1.08, yellow 2, orange 4, red 5 person/m2"
T0 = 1_767_196_800.0
HYP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def box(col0: float, row0: float, col1: float, row1: float) -> shapely.Polygon:
    """A box in the grid CRS from column and row coordinates (cell edges at whole numbers)."""
    s = GRID.cell_size
    return shapely.box(GRID.x0 + col0 * s, GRID.y0 - row1 * s, GRID.x0 + col1 * s, GRID.y0 - row0 * s)


def lonlat(poly: shapely.Polygon) -> list[list[list[float]]]:
    x, y = np.asarray(poly.exterior.coords).T
    lon, lat = to_lonlat(x, y, GRID.crs)
    return [np.column_stack([lon, lat]).tolist()]


def feature(poly: shapely.Polygon | None = None, **props) -> dict:
    props = {"name": "stair", "kind": "stair", "density_raise": STAIR_RAISE, "density_clear": STAIR_CLEAR,
             "source": "Fruin (1971) [mem]", **props}
    poly = poly if poly is not None else box(0, 0, 1, 1)
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": lonlat(poly)}}


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


# ---------------------------------------------------------------- the loader
def test_a_valid_file_gives_the_places_in_file_order(tmp_path):
    doc = collection(feature(name="a"), feature(box(2, 0, 3, 1), name="b", kind="bridge",
                                                density_raise=[None, "inf", 3, 4], density_clear=[None, "inf", 2, 3]))
    path = tmp_path / "bands.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    places = load_place_bands(path)
    assert [p.bands.name for p in places] == ["a", "b"]
    assert places[0].bands.density_raise == tuple(STAIR_RAISE) and places[0].bands.source == "Fruin (1971) [mem]"
    assert places[1].bands.density_raise == (math.inf, math.inf, 3.0, 4.0) and places[1].bands.kind == "bridge"
    assert load_place_bands(tmp_path / "bands.geojson")[0].geometry.equals(places[0].geometry)
    assert place_bands_from_geojson(collection()) == []


BAD_FEATURES = [
    ({"name": ""}, "name must be a non-empty text"),
    ({"name": None}, "name must be a non-empty text"),
    ({"kind": "tower"}, "kind must be one of stair, ramp, bridge, other (got 'tower')"),
    ({"kind": None}, "kind must be one of"),
    ({"density_raise": [1.11, 1.43, 2.5]}, "density_raise must be a list of four numbers"),
    ({"density_raise": "1.11 1.43 2.5 3.5"}, "density_raise must be a list of four numbers"),
    ({"density_clear": None}, "density_clear must be a list of four numbers"),
    ({"density_raise": [1.11, "high", 2.5, 3.5]}, "density_raise: not a number, null or \"inf\": yellow 'high'"),
    ({"density_raise": [True, 1.43, 2.5, 3.5]}, "density_raise: not a number, null or \"inf\": blue True"),
    ({"density_clear": [0.89, 1.14, 2.6, 2.8]}, "orange: clear 2.6 must be below raise 2.5"),
    ({"density_raise": [1.11, 1.43, 3.6, 3.5]}, "density_raise (1.11, 1.43, 3.6, 3.5) decreases"),
    ({"density_raise": [1.11, 1.43, 2.5, None]}, "red: unused (raise inf) but clear 2.8"),
    ({"density_raise": [None] * 4, "density_clear": [None] * 4}, "no colour is used"),
    ({"density_clear": [-0.1, 1.14, 2.0, 2.8]}, "blue: thresholds must be > 0"),
    ({"density_raise": [1.11, float("nan"), 2.5, 3.5]}, "yellow: thresholds must be > 0"),
    ({"source": ["Fruin"]}, "source must be a text"),
]


@pytest.mark.parametrize("props, problem", BAD_FEATURES, ids=[p for _, p in BAD_FEATURES])
def test_each_bad_property_is_named_under_its_feature(props, problem):
    doc = collection(feature(name="ok"), feature(box(2, 0, 3, 1), **{"name": "the stair", **props}))
    with pytest.raises(PlaceBandsError) as err:
        place_bands_from_geojson(doc, "bands.geojson")
    assert len(err.value.problems) == 1, err.value.problems
    assert err.value.problems[0].startswith("feature 1")
    assert problem in err.value.problems[0]
    text = str(err.value)
    assert text.startswith("bands.geojson: 1 problem(s): feature 1") and "\n" not in text


BAD_GEOMETRY = [
    ({"type": "Point", "coordinates": [121.5, 31.2]}, "geometry must be a Polygon or MultiPolygon (got 'Point')"),
    (None, "geometry must be a Polygon or MultiPolygon (got None)"),
    ({"type": "Polygon", "coordinates": [[[421.5, 31.2], [421.6, 31.2], [421.6, 31.3], [421.5, 31.2]]]},
     "coordinates must be lon/lat in degrees"),
    ({"type": "Polygon", "coordinates": [[[121.5, 31.2], [121.6, 31.2], [121.7, 31.2], [121.5, 31.2]]]},
     "the polygon has no area"),
    ({"type": "Polygon", "coordinates": "nonsense"}, "bad geometry"),
]


@pytest.mark.parametrize("geometry, problem", BAD_GEOMETRY, ids=[p for _, p in BAD_GEOMETRY])
def test_each_bad_geometry_is_named(geometry, problem):
    f = feature()
    f["geometry"] = geometry
    with pytest.raises(PlaceBandsError, match="feature 0 \\(stair\\): " + problem.replace("(", r"\(").replace(
            ")", r"\)")):
        place_bands_from_geojson(collection(f))


def test_every_problem_of_a_file_is_listed_in_one_error():
    doc = collection(feature(name="a", kind="tower"), "not a feature",
                     feature(name="a", density_raise=[1, 2, 3]),
                     {"type": "Feature", "properties": None, "geometry": None})
    with pytest.raises(PlaceBandsError) as err:
        place_bands_from_geojson(doc, "x.geojson")
    problems = err.value.problems
    assert problems == [
        "feature 0 (a): kind must be one of stair, ramp, bridge, other (got 'tower')",
        "feature 1: not a GeoJSON Feature",
        "feature 2 (a): name also used by feature 0 (one feature per place; a place in several parts is a "
        "MultiPolygon)",
        "feature 2 (a): density_raise must be a list of four numbers, blue to red in person/m2, null or \"inf\" for "
        "an unused colour (got [1, 2, 3])",
        "feature 3: name must be a non-empty text (what the alert calls the place)",
        "feature 3: kind must be one of stair, ramp, bridge, other (got None)",
        "feature 3: density_raise must be a list of four numbers, blue to red in person/m2, null or \"inf\" for an "
        "unused colour (got None)",
        "feature 3: density_clear must be a list of four numbers, blue to red in person/m2, null or \"inf\" for an "
        "unused colour (got None)",
        "feature 3: geometry must be a Polygon or MultiPolygon (got None)"]
    assert str(err.value).startswith("x.geojson: 9 problem(s): feature 0 (a): kind")


@pytest.mark.parametrize("doc, problem", [
    ([], "not a GeoJSON FeatureCollection"),
    ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
    ({"type": "FeatureCollection", "features": {"a": 1}}, "features must be a list"),
    (collection(*[feature(box(0, 0, 1, 1), name=f"p{i}") for i in range(MAX_PLACE_BANDS + 1)]),
     f"{MAX_PLACE_BANDS + 1} features: at most {MAX_PLACE_BANDS} places"),
])
def test_a_bad_collection_is_refused(doc, problem):
    with pytest.raises(PlaceBandsError, match=problem):
        place_bands_from_geojson(doc)


def test_a_file_that_is_not_json_or_missing(tmp_path):
    path = tmp_path / "bands.geojson"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(PlaceBandsError, match=r"bands.geojson: 1 problem\(s\): invalid JSON"):
        load_place_bands(path)
    with pytest.raises(OSError):
        load_place_bands(tmp_path / "missing.geojson")


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=4), max_leaves=12)


@given(props=st.dictionaries(st.sampled_from(["name", "kind", "density_raise", "density_clear", "source"]),
                             json_values), raise_=st.lists(st.none() | st.floats(0.1, 9) | st.just("inf"),
                                                          min_size=0, max_size=5))
@HYP
def test_any_properties_load_or_raise_a_place_bands_error(props, raise_):
    """Whatever a file holds, the loader answers with places or a `PlaceBandsError`, never another exception."""
    f = feature(**{"density_raise": raise_, **props})
    try:
        places = place_bands_from_geojson(collection(f))
    except PlaceBandsError as exc:
        assert exc.problems and "\n" not in str(exc)
    else:
        assert len(places) == 1 and places[0].bands.name == f["properties"]["name"].strip()


# ---------------------------------------------------------------- the layer
def test_a_cell_is_a_places_when_at_least_half_of_it_is_inside_later_places_winning():
    static = make_dataset(GRID, {"walkable_area": np.full(GRID.shape, 100.0)})
    doc = collection(
        feature(box(0, 0, 2.6, 1), name="a"),          # cells 0, 1 whole and 60 % of cell 2
        feature(box(3.6, 0, 5, 1), name="b"),          # 40 % of cell 3 (not b's), cell 4 whole
        feature(box(1, 0, 1.5, 1), name="c"),          # exactly half of cell 1: c's, later than a
        feature(box(6.2, 2.2, 6.8, 2.8), name="d"))    # 36 % of one cell: claims none
    places = place_bands_from_geojson(doc)
    layer = crowd_band_layer(GRID, places)
    assert layer.dtype == np.int8 and layer.shape == GRID.shape
    assert layer[0].tolist() == [1, 3, 1, 0, 2, 0, 0, 0] and not layer[1:].any()
    assert MIN_SHARE == 0.5
    out, bands = with_place_bands(static, places, "bands.geojson")
    assert [b.name for b in bands] == ["a", "b", "c", "d"] and "crowd_band" not in static
    attrs = out["crowd_band"].attrs
    assert attrs["units"] == "1" and attrs["long_name"].startswith("crowd density bands of the cell")
    assert "1 a (stair), 2 b (stair), 3 c (stair), 4 d (stair)" in attrs["comment"]
    assert attrs["comment"].endswith("no cell of this grid: d")


def test_the_bundled_file_marks_the_lujiazui_stair(bund10):
    static, _ = bund10
    out, bands = apply_place_bands(static, BUNDLED)
    assert [(b.name, b.kind) for b in bands] == [("Lujiazui Exit 1 stair", "stair"), ("Waibaidu Bridge", "bridge")]
    for b in bands:  # Fruin's stairway bands (docs/science/crowd.md 1.1)
        assert b.density_raise == (1.11, 1.43, 2.5, 3.5) and b.density_clear == (0.89, 1.14, 2.0, 2.8)
        assert "Fruin (1971)" in b.source and "[mem]" in b.source
    layer = out["crowd_band"].values
    # the stair's cells: those of the truth case's counters on it (tests/truth/crowd) and the stair's upper cell
    assert sorted(map(tuple, np.argwhere(layer == 1).tolist())) == [(117, 161), (117, 162), (118, 162)]
    assert (layer == 2).sum() > 10  # the bridge deck
    assert "crowd_band" not in static and apply_place_bands(static, None) == (static, ())


# ---------------------------------------------------------------- the live twin
def _counts(t: float, counts: dict[str, int]) -> Batch:
    ids = list(counts)
    return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count",
                       value=np.array([float(counts[d]) for d in ids]))


def _crowd_events(core: TwinCore, counts: dict[str, int], ticks: int, start: int = 0) -> list:
    events = []
    for k in range(start, start + ticks):
        t = T0 + 2.0 * k
        core.on_batch(_counts(t, counts))
        events += [e for e in core.on_tick(t).events if e.alert.hazard == "crowd"]
    return events


def _params(event_or_alert) -> dict[str, str]:
    """The English parameters of an event's message, or of an alert's last message."""
    message = getattr(event_or_alert, "message", None) or event_or_alert.last
    return {p["valueName"]: p["value"] for p in info_block(message, "en-US")["parameter"]}


STAIR_COUNTS = {"truth-crowd-01": 18, "truth-crowd-03": 10}
"""The truth case's counters on the stair (tests/truth/crowd): 18 on 6.1 m2 and 10 on 3.3 m2, about 3 person/m2."""
STAIR_KEY = "crowd:point:metro-lujiazui-1"
"""The stair's cells' operational unit (`twin.alerting.units`): the metro exit at its top."""
SKYWALK_KEY = "crowd:area:truth-crowd-04"
"""The cells next to it: the skywalk section truth-crowd-04 covers, a named area of the truth case's registry."""


def test_the_live_twin_raises_a_stair_alert_on_the_stairs_bands_and_says_so(bund10):
    static, _ = bund10
    core = TwinCore(static, registry_with_counters(), Store.open(":memory:"),
                    CoreConfig(live=LiveConfig(place_bands_file=str(BUNDLED))))
    try:
        assert [b.name for b in core.models.config.risk.place_bands] == ["Lujiazui Exit 1 stair", "Waibaidu Bridge"]
        nx = core.state.grid.nx
        events = _crowd_events(core, STAIR_COUNTS, 4)
        raised = [e for e in events if e.kind == "raised"]
        assert len(raised) == 1
        level = core.models.layers["level_crowd"].values
        assert level[117, 162] == level[118, 162] == 3, "about 3 person/m2 is orange on the stair (2.5)"
        # the stair's cells are the metro exit's operational unit (20 m around Lujiazui exit 1)
        stair = raised[0].alert
        assert (stair.place.key, stair.place.name_en, stair.level) == (STAIR_KEY, "Lujiazui exit 1", 3)
        assert stair.cells.tolist() == [117 * nx + 162, 118 * nx + 162]
        params = _params(raised[0])
        assert params["densityBands"] == STAIR_TEXT
        assert params["peakDensity"] == "3.03 person/m2"
        assert info_block(raised[0].message, "en-US")["severity"] == "Severe"
        # the same density next to it, in the district's cells (truth-crowd-04), is yellow; those cells are another
        # place (the skywalk section that counter covers), so they get an alert of their own naming the district's
        # bands, and the stair's alert goes on naming the stair's
        events = _crowd_events(core, {**STAIR_COUNTS, "truth-crowd-04": 18}, 4, start=4)
        level = core.models.layers["level_crowd"].values
        assert level[120, 160] == level[120, 161] == 2
        raised = [e for e in events if e.kind == "raised"]
        assert [(e.alert.place.key, e.alert.level) for e in raised] == [(SKYWALK_KEY, 2)]
        assert raised[0].alert.cells.tolist() == [120 * nx + 160, 120 * nx + 161]
        assert _params(raised[0])["densityBands"] == DISTRICT_TEXT
        assert _params(raised[0])["peakDensity"] == "2.95 person/m2"
        assert info_block(raised[0].message, "en-US")["severity"] == "Moderate"
        assert not [e for e in events if e.alert.identifier == stair.identifier], "the stair's alert is unchanged"
        active = {a.place.key: a for a in core.book.of_hazard("crowd")}
        assert sorted(active) == sorted([STAIR_KEY, SKYWALK_KEY])
        assert active[STAIR_KEY].identifier == stair.identifier and active[STAIR_KEY].level == 3
        assert _params(active[STAIR_KEY])["densityBands"] == STAIR_TEXT
        assert (core.models.layers["crowd_band"].values[117:119, 161:163] == [[1, 1], [0, 1]]).all()
    finally:
        core.store.close()
    assert "crowd_band" not in static, "the built twin is not modified"


def test_without_a_bands_file_the_same_crowd_is_yellow_on_the_districts_bands(bund10):
    static, _ = bund10
    core = TwinCore(static, registry_with_counters(), Store.open(":memory:"))
    try:
        raised = [e for e in _crowd_events(core, STAIR_COUNTS, 4) if e.kind == "raised"]
        assert len(raised) == 1 and raised[0].alert.level == 2
        assert _params(raised[0])["densityBands"] == DISTRICT_TEXT
        assert not core.models.layers["crowd_band"].values.any()
    finally:
        core.store.close()


def test_a_bad_bands_file_stops_the_live_twin_naming_the_file(bund10, tmp_path):
    static, _ = bund10
    path = tmp_path / "bands.geojson"
    path.write_text(json.dumps(collection(feature(kind="escalator"))), encoding="utf-8")
    with pytest.raises(PlaceBandsError, match=r"bands.geojson: 1 problem\(s\): feature 0 \(stair\): kind"):
        TwinCore(static, registry_with_counters(), Store.open(":memory:"),
                 CoreConfig(live=LiveConfig(place_bands_file=str(path))))


# ---------------------------------------------------------------- twin run --crowd-bands
def _twin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True, text=True, timeout=120,
                          env=checkout_env())


def test_twin_run_refuses_a_bad_bands_file_in_one_line_with_exit_2(tmp_path):
    bad = tmp_path / "bands.geojson"
    bad.write_text(json.dumps(collection(feature(density_clear=[0.89, 1.14, 2.6, 2.8]), "x")), encoding="utf-8")
    proc = _twin("run", "--crowd-bands", str(bad), "--state", str(tmp_path / "state"), "--duration", "5")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == (f"twin: error: {bad}: 2 problem(s): feature 0 (stair): orange: clear 2.6 must be below "
                        "raise 2.5 (hysteresis); feature 1: not a GeoJSON Feature")
    assert not (tmp_path / "state").exists(), "nothing is built or started"
    proc = _twin("run", "--crowd-bands", str(tmp_path / "missing.geojson"), "--state", str(tmp_path / "state"))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"twin: error: --crowd-bands {tmp_path / 'missing.geojson'} does not exist")
    assert "--crowd-bands FILE" in _twin("run", "--help").stdout
