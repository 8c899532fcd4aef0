"""The base map's labels and legend, the elevated expressway's colour, and building records (issue 18)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from twin.api import labels as labels_mod
from twin.api.labels import line_angle, readable_angle
from twin.api.routes_basemap import BUILDING_CLASSES, ROAD, supersample_factor
from twin.api.routes_buildings import ring_cells
from twin.district import geo
from twin.district.dataset import load_twin
from twin.district.grid import GridSpec
from twin.district.layers import ROAD_CLASSES
from twin.district.sources import data_dir

STATIC = Path(labels_mod.__file__).parent / "static"


def _palette_levels() -> dict[int, tuple[int, int, int]]:
    css = (STATIC / "palette.css").read_text(encoding="utf-8")
    found = re.findall(r"--level-(\d):\s*#([0-9a-fA-F]{6})", css)
    return {int(k): tuple(int(v[i:i + 2], 16) for i in (0, 2, 4)) for k, v in found}


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _river_lines(crs: str):
    """The Huangpu's centre lines from the district's water layer, in the grid CRS (independently of the labels)."""
    doc = json.loads((data_dir() / "bund" / "water.geojson").read_text(encoding="utf-8"))
    lines = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]
             if f["properties"].get("name") == "黄浦江" and f["properties"].get("kind") == "river"]

    def to_grid(xy):
        x, y = geo.to_projected(xy[:, 0], xy[:, 1], crs)
        return np.column_stack([x, y])

    return list(shapely.get_parts(shapely.line_merge(shapely.union_all(
        [shapely.transform(g, to_grid) for g in lines]))))


# ---------------------------------------------------------------- labels
def test_readable_angles_never_read_upside_down():
    assert readable_angle(1.0, 0.0) == 0.0
    assert readable_angle(-1.0, 0.0) == 0.0, "a road drawn west is read west to east"
    assert readable_angle(1.0, 1.0) == 45.0 and readable_angle(-1.0, -1.0) == 45.0
    assert readable_angle(0.0, 1.0) == 90.0 and readable_angle(0.0, -1.0) == 90.0
    assert readable_angle(1.0, -1.0) == -45.0 and readable_angle(-1.0, 1.0) == -45.0
    line = shapely.LineString([(0, 0), (100, 0), (100, 100)])
    assert line_angle(line, 50.0) == 0.0 and line_angle(line, 150.0) == 90.0
    assert line_angle(line, 100.0) == 45.0, "at the corner: the chord from 25 m before to 25 m after"


def test_labels_name_the_bund_roads_river_and_places_from_the_district_folder(api):
    r = api.get("/api/basemap/labels")
    assert r.status_code == 200
    body = r.json()
    assert body["crs"] == "EPSG:4549"
    labels = body["labels"]
    assert 100 < len(labels) <= labels_mod.MAX_LABELS
    grid = api.get("/api/grid").json()
    xmin, ymin, xmax, ymax = grid["bounds"]
    assert all(xmin <= lab["x"] <= xmax and ymin <= lab["y"] <= ymax for lab in labels), "all on the map"
    assert all(-90.0 < lab["angle_deg"] <= 90.0 for lab in labels)
    assert len({lab["id"] for lab in labels}) == len(labels)
    ranks = [lab["rank"] for lab in labels]
    assert ranks == sorted(ranks), "most important first"
    kinds = {lab["kind"] for lab in labels}
    assert {"road", "water", "poi", "metro"} <= kinds

    bund = [lab for lab in labels if lab["name"] == "中山东一路"]
    assert bund, "中山东一路 (the Bund's road) is labelled"
    assert {lab["name_en"] for lab in bund} == {"East Zhongshan No. 1 Road"}
    assert all(lab["kind"] == "road" and lab["rank"] == 2 for lab in bund), "a primary road: a major road"
    assert 1 <= len(bund) <= 4, "its ~1.1 km in the grid: one label per ~400 m, the second carriageway dropped"
    rivers = _river_lines(body["crs"])
    for lab in bund:
        # the road follows the river bank: the same direction as the Huangpu's centre line beside it
        assert abs(lab["angle_deg"]) > 55.0, "the Bund runs roughly north-south"
        p = shapely.Point(lab["x"], lab["y"])
        river = min(rivers, key=p.distance)
        assert p.distance(river) < 400.0, "the road is on the bank, within 400 m of the river's centre line"
        s = river.project(p)
        a, b = river.interpolate(s - 100.0), river.interpolate(s + 100.0)
        along = readable_angle(b.x - a.x, b.y - a.y)
        diff = abs(lab["angle_deg"] - along) % 180.0
        assert min(diff, 180.0 - diff) < 30.0, (lab, along)

    huangpu = [lab for lab in labels if lab["name"] == "黄浦江"]
    assert huangpu and {lab["kind"] for lab in huangpu} == {"water"}
    assert {lab["name_en"] for lab in huangpu} == {"Huangpu River"}
    metro = {lab["name"]: lab for lab in labels if lab["kind"] == "metro"}
    assert {"陆家嘴", "豫园"} <= set(metro) and metro["陆家嘴"]["name_en"] == "Lujiazui"
    assert metro["陆家嘴"]["rank"] == 3
    for lab in labels:
        if lab["kind"] == "road":
            assert lab["length_m"] >= labels_mod.MIN_ROAD_M
        elif lab["kind"] in ("poi", "metro", "place", "district"):
            assert lab["length_m"] is None


def test_a_road_gets_one_label_per_400_m_and_none_near_its_own_name(tmp_path):
    """A hand-made district: a straight 1,000 m road along x (two labels at 250 and 750 m, angle 0), its other
    carriageway 20 m away (no label), a 40 m stub (none) and a diagonal lane of 300 m (one, at 45°)."""
    grid = GridSpec.from_bbox(121.48, 31.23, 121.50, 31.24, 10.0, "EPSG:4549")
    x0, y0 = grid.x0 + 200.0, grid.y0 - 300.0

    def lonlat(points):
        lon, lat = geo.to_lonlat(np.array([p[0] for p in points]), np.array([p[1] for p in points]), grid.crs)
        return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]

    def road(name, points, kind="major_road"):
        return {"type": "Feature", "properties": {"name": name, "name:en": name.upper(), "kind": kind},
                "geometry": {"type": "LineString", "coordinates": lonlat(points)}}

    features = [road("a", [(x0, y0), (x0 + 500, y0)]), road("a", [(x0 + 500, y0), (x0 + 1000, y0)]),
                road("a", [(x0 + 1000, y0 - 20), (x0, y0 - 20)]), road("stub", [(x0, y0 - 200), (x0 + 40, y0 - 200)]),
                road("lane", [(x0, y0 - 500), (x0 + 212.13, y0 - 287.87)], "minor_road"),
                road("ferry", [(x0, y0 - 600), (x0 + 900, y0 - 600)], "ferry")]
    (tmp_path / "roads.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    labels = labels_mod.map_labels(tmp_path, grid)["labels"]
    by_name: dict[str, list] = {}
    for lab in labels:
        by_name.setdefault(lab["name"], []).append(lab)
    assert set(by_name) == {"a", "lane"}, "no label for the 40 m stub nor for a ferry line"
    a = sorted(by_name["a"], key=lambda lab: lab["x"])
    assert len(a) == 2 and [lab["rank"] for lab in a] == [2, 2] and a[0]["name_en"] == "A"
    assert a[0]["x"] == pytest.approx(x0 + 250, abs=1.0) and a[1]["x"] == pytest.approx(x0 + 750, abs=1.0)
    assert all(lab["y"] == pytest.approx(y0, abs=1.0) and lab["angle_deg"] == 0.0 for lab in a)
    assert all(lab["length_m"] == 1000 for lab in a), "the two pieces merged into one line"
    [lane] = by_name["lane"]
    assert lane["rank"] == 4 and lane["angle_deg"] == pytest.approx(45.0, abs=0.2) and lane["length_m"] == 300
    assert [lab["id"] for lab in labels] == ["road:0", "road:1", "road:2"], "numbered most important first"


def test_a_twin_without_a_district_folder_has_no_labels(tmp_path):
    grid = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 10.0, "EPSG:4549")
    assert labels_mod.map_labels(None, grid) == {"crs": "EPSG:4549", "labels": []}
    assert labels_mod.map_labels(tmp_path, grid)["labels"] == []


# ---------------------------------------------------------------- legend and the expressway's colour
def test_the_expressway_is_a_neutral_grey_no_level_colour_and_lighter_than_the_other_roads():
    levels = _palette_levels()
    assert set(levels) == {1, 2, 3, 4}
    express = np.array(ROAD["expressway"], float)
    assert express.max() - express.min() <= 24, "no hue: a grey (max - min channel at most 24 of 255)"
    for rgb in levels.values():
        assert np.linalg.norm(express - np.array(rgb)) > 150, "far from blue, yellow, orange and red"
    for cls in ("arterial", "secondary", "branch"):
        assert express.mean() - np.mean(ROAD[cls]) > 50, f"clearly lighter than the {cls} roads"


def test_the_legend_lists_every_base_map_colour_with_the_expressway(api):
    items = api.get("/api/basemap/legend").json()["items"]
    by_key = {i["key"]: i for i in items}
    assert list(by_key)[:6] == ["ground", "water", "road_expressway", "road_arterial", "road_secondary",
                                "road_branch"]
    express = by_key["road_expressway"]
    assert express == {"key": "road_expressway", "name": "高架快速路", "name_en": "Elevated expressway",
                       "colour": "#b0b6c2", "shape": "line"}
    assert _rgb(express["colour"]) == ROAD["expressway"]
    assert by_key["water"]["colour"] == "#0e304e" and by_key["ground"]["shape"] == "fill"
    buildings = [i for i in items if i["key"].startswith("building_h")]
    assert [i["colour"] for i in buildings] == [c for _, c in BUILDING_CLASSES]
    assert buildings[0]["name_en"] == "Building 0–12 m" and buildings[-1]["name"] == "建筑 ≥ 200 米"
    level_colours = set(_palette_levels().values())
    assert not any(_rgb(i["colour"]) in level_colours for i in items)


def test_the_legend_building_classes_are_those_the_page_draws():
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    drawn = dict(re.findall(r"\.bldg\.h(\d) \{ fill: (#[0-9a-f]{6}); \}", css))
    assert [drawn[str(k)] for k in range(len(BUILDING_CLASSES))] == [c for _, c in BUILDING_CLASSES]
    bins = re.search(r"const HEIGHT_BINS = \[([^\]]*)\]", (STATIC / "map.js").read_text(encoding="utf-8"))
    assert [float(v) for v in bins[1].split(",")] == [lo for lo, _ in BUILDING_CLASSES]


def test_the_base_map_paints_the_expressway_in_its_new_colour(api, bund_file):
    static, _ = load_twin(bund_file)
    grid = GridSpec.from_bbox(*api.get("/api/grid").json()["bounds_lonlat"], 10.0, "EPSG:4549")
    f = supersample_factor(grid)
    cls, frac = static["road_class"].values, static["road_fraction"].values
    express = ROAD_CLASSES.index("expressway")
    # cells deep inside the expressway: the cell and its 8 neighbours fully expressway carriageway
    full = (cls == express) & (frac > 0.95)
    inner = full.copy()
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            inner &= np.roll(np.roll(full, dr, 0), dc, 1)
    rows, cols = np.nonzero(inner)
    assert rows.size > 0, "the Bund has elevated roads (延安高架路)"
    png = np.asarray(Image.open(io.BytesIO(api.get("/api/basemap.png").content)).convert("RGB")).astype(int)
    pixels = png[rows * f + f // 2, cols * f + f // 2]
    assert np.abs(pixels - np.array(ROAD["expressway"])).max() <= 6
    assert not (np.abs(png - np.array((150, 128, 78))).max(axis=-1) <= 6).any(), "the old ochre is gone"


# ---------------------------------------------------------------- buildings
def test_a_building_record_has_its_bim_facts_and_names(api):
    features = api.get("/api/basemap/buildings").json()["features"]
    tower = max(features, key=lambda f: f["properties"]["height"] or 0)
    props = tower["properties"]
    r = api.get(f"/api/buildings/{props['id']}")
    assert r.status_code == 200
    rec = r.json()
    assert rec["id"] == props["id"] and rec["height_m"] == props["height"] == 632.0, "the Shanghai Tower, 632 m"
    assert rec["floors"] == props["floors"] and rec["floors"] > 100
    assert rec["name"] == "上海中心大厦" and rec["name_en"] == "Shanghai Tower"
    assert rec["floor_area_m2"] > 100_000 and rec["occupancy"] > 1000
    assert rec["occupancy"] == pytest.approx(rec["floor_area_m2"] / 20.0, rel=1e-3), \
        "use unknown: 20 m2 of floor area per person (twin.district.bim)"
    lon, lat = rec["centroid"]
    assert abs(lon - 121.5015) < 0.002 and abs(lat - 31.2355) < 0.002, "in Lujiazui"
    footprint = shapely.geometry.shape(tower["geometry"])
    assert rec["cells"] >= footprint.area / 100.0, "at least as many 10 m cells as its footprint fills"
    assert set(rec["risk"]) == {"level", "crowd", "flood", "traffic", "ring_m"} and rec["t"] is not None
    unnamed = next(f["properties"] for f in features if not f["properties"]["name"])
    rec = api.get(f"/api/buildings/{unnamed['id']}").json()
    assert rec["name"] is None and rec["name_en"] is None


def test_ring_cells_are_the_cells_within_30_m():
    grid = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 10.0, "EPSG:4549")
    rows, cols = ring_cells(grid, np.array([10]), np.array([20]))
    offsets = sorted(zip((rows - 10).tolist(), (cols - 20).tolist(), strict=True))
    assert len(offsets) == 29, "a disc of radius 3 cells: 1 + 4*3 on the axes + 16 off them within 30 m"
    assert (3, 0) in offsets and (2, 2) in offsets and (3, 1) not in offsets and (2, 3) not in offsets
    rows, cols = ring_cells(grid, np.array([0]), np.array([0]))
    assert rows.min() == 0 and cols.min() == 0 and len(rows) == 11, "cut at the grid's edge: a quarter disc"


def test_a_building_by_the_crowded_square_shows_the_crowd_in_front_of_it(api, scenario, bund_file):
    svc, _, _ = scenario
    live = svc.core.live_layers()
    level, density = live["level_crowd"].values, live["crowd_density"].values
    _, buildings = load_twin(bund_file)
    red = np.argwhere(level == 4)
    assert len(red), "Chen Yi Square is red"
    # the buildings with a cell whose centre is within 30 m of a red cell (the Bund's buildings face the promenade)
    cells = buildings.cells
    near = np.zeros(len(cells), bool)
    for r, c in red:
        near |= (cells["row"].to_numpy() - r) ** 2 + (cells["col"].to_numpy() - c) ** 2 <= 9
    assert near.any(), "a building faces the square across 中山东一路, 30 m away"
    assert not (level[cells["row"], cells["col"]] == 4).any(), "none stands in the square itself"
    bid = cells["building_id"].to_numpy()[near][0]
    mine = buildings.cells_of(bid)
    rec = api.get(f"/api/buildings/{bid}").json()
    assert rec["risk"]["crowd"]["level"] == 4 and rec["risk"]["level"] == 4 and rec["risk"]["ring_m"] == 30.0
    rows, cols = ring_cells(svc.core.state.grid, mine["row"].to_numpy(), mine["col"].to_numpy())
    assert rec["risk"]["crowd"]["density_max"] == pytest.approx(float(np.nanmax(density[rows, cols])), abs=1e-3)
    assert rec["risk"]["crowd"]["density_max"] > 5.0, "the square's red crowd (5.9 person/m2)"
    assert rec["cells"] == len(mine)
    assert rec["risk"]["flood"]["level"] == int(max(-1, np.nanmax(live["level_flood"].values[rows, cols])))


def test_an_unknown_building_is_404(api):
    for bad in ("123", "nope", "-1"):
        r = api.get(f"/api/buildings/{bad}")
        assert r.status_code == 404 and r.json()["error"] == "unknown_building"


def test_the_new_routes_are_in_the_openapi_description(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/api/basemap/labels", "/api/basemap/legend", "/api/buildings/{identifier}",
                 "/api/alerts/history"):
        assert path in paths, path
