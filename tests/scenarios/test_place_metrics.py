"""Per-place metrics of a run and `twin scenario compare` per place and per intervention (issue 21).

The runs here are made by hand on the Bund's 10 m grid: recorded layers with water and people put where the test
says, so every expected number is known exactly (no model in the loop; the model runs are tested in test_runner).
"""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
import xarray as xr

from scenarios.compare import compare
from scenarios.place_metrics import peak_place, place_masks, place_metrics, scenario_places, severity
from scenarios.record import RECORDED
from scenarios.spec import parse_scenario
from twin.district.sources import data_dir

TIMES = np.array([60.0, 120.0, 180.0, 240.0])
START = "2014-12-31T23:00:00+08:00"


def _frames(static: xr.Dataset) -> xr.Dataset:
    """Four recorded minutes of nothing: no water, nobody, free traffic, no level."""
    shape = (TIMES.size, *static["elevation"].shape)
    data = {name: (("time", "y", "x"), np.zeros(shape, dtype)) for name, dtype in RECORDED.items()}
    ds = xr.Dataset(data, coords={"time": TIMES, "y": static["y"], "x": static["x"]})
    ds["traffic_speed"][...] = 40.0
    return ds


def _spec(bund_file, interventions: dict | None = None):
    doc = {"name": "hand-made", "grid": str(bund_file), "start_time": START, "duration": "4min", "step": "60s",
           "interventions": interventions or {}}
    return parse_scenario(doc, data_dir())


@pytest.fixture(scope="module")
def places(bund10, bund_file):
    static, _ = bund10
    spec = _spec(bund_file, {"drainage": {"area": "Yan'an Rd E. Tunnel Puxi portal", "radius": "60m", "factor": 0}})
    return spec, scenario_places(static, data_dir() / "bund", spec)


def _by_key(found, key: str):
    return next(p for p in found if p.key == key)


def test_places_are_named_and_cover_every_kind(places):
    _, found = places
    kinds = {p.kind for p in found}
    assert kinds >= {"scenario place", "water gauge", "underpass", "crowd area", "metro exit", "road", "grid unit"}
    assert len({p.key for p in found}) == len(found), "keys are unique"
    gauge = _by_key(found, "gauge:water-03")
    assert gauge.name == "Yan'an Rd E. Tunnel Puxi portal" and gauge.name_zh and gauge.mask.any()
    assert found[0].key == "scenario:interventions.drainage", "the scenario's own places come first"
    assert all(p.name and not p.name[0].isdigit() for p in found), "every place has a name, never coordinates"


def test_metrics_of_a_place_are_its_peaks_times_minutes_and_people(bund10, places):
    static, _ = bund10
    spec, found = places
    gauge = _by_key(found, "gauge:water-03")
    square = _by_key(found, "area:crowd-bund-05")
    f = _frames(static)
    cells = np.argwhere(gauge.mask)
    r, c = cells[0]
    f["water_depth"][1, r, c] = 0.42  # 23:02
    f["water_depth"][2, r, c] = 0.30
    f["level_flood"][1:3, r, c] = 3  # orange for two recorded minutes
    f["level"][1:3, r, c] = 3
    f["level_traffic"][:, r, c] = 4  # a jam here endangers nobody standing in the water: not what exposes them
    f["crowd_count"][1:3, r, c] = 12.4  # 12.4 people stand in the water
    sr, sc = np.argwhere(square.mask)[0]
    f["crowd_density"][3, sr, sc] = 5.2  # 23:04
    f["level_crowd"][2:4, sr, sc] = 4
    f["crowd_count"][:, sr, sc] = 100.0
    rows = {r["key"]: r for r in place_metrics(f, static, found, spec.start_time, spec.utc_offset_s).rows}
    g = rows["gauge:water-03"]
    assert g["peak_depth_m"] == pytest.approx(0.42) and g["peak_depth_at"] == "23:02" and g["peak_depth_min"] == 2.0
    assert g["minutes_at_or_above"]["flood"] == {"yellow": 2.0, "orange": 2.0, "red": 0.0}
    assert g["top_level"]["flood"] == "orange" and g["people_exposed"] == 12 and isinstance(g["people_exposed"], int)
    s = rows["area:crowd-bund-05"]
    assert s["peak_density"] == pytest.approx(5.2) and s["peak_density_at"] == "23:04"
    assert s["minutes_at_or_above"]["crowd"]["red"] == 2.0 and s["people_peak"] == 100
    assert s["people_exposed"] == 100, "the people in red crowd cells are exposed (two recorded minutes)"
    worst = sorted(rows.values(), key=severity)[0]
    assert worst["top_level"]["crowd"] == "red", "the worst place first: the highest level of any hazard"
    assert peak_place(list(rows.values()), "peak_depth_m")["kind"] == "water gauge", "the gauge before its grid unit"


def _write_run(folder, static, spec, frames, name: str) -> None:
    """What `twin scenario run` leaves for compare: summary.json, scenario.nc and places.nc."""
    found = scenario_places(static, data_dir() / "bund", spec)
    metrics = place_metrics(frames, static, found)
    folder.mkdir()
    frames.to_netcdf(folder / "scenario.nc")
    metrics.series.merge(place_masks(found, static)).to_netcdf(folder / "places.nc")
    summary = {"name": name, "question": "what if?", "peak_depth_m": {"value": float(frames["water_depth"].max())},
               "places": metrics.rows}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_compare_ranks_places_by_effect_and_names_the_interventions(bund10, bund_file, places, tmp_path):
    static, _ = bund10
    spec_b, found = places
    spec_a = _spec(bund_file)
    a, b = _frames(static), _frames(static)
    portal = _by_key(found, "gauge:water-03").mask
    cells = np.argwhere(portal)
    r, c = cells[len(cells) // 2]  # the middle of the portal: inside the pumps' area too
    a["water_depth"][:, r, c] = 0.60  # the failed pump's portal floods in A ...
    b["water_depth"][:, r, c] = 0.10  # ... and far less in B
    square = _by_key(found, "area:crowd-bund-05").mask
    sr, sc = np.argwhere(square)[0]
    b["crowd_density"][:, sr, sc] = 0.3  # a small rise elsewhere: ranked after the water
    _write_run(tmp_path / "a", static, spec_a, a, "pump down")
    _write_run(tmp_path / "b", static, spec_b, b, "pumps")
    text = compare(tmp_path / "a", tmp_path / "b", static, tmp_path / "cmp")
    out = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    first = next(e for e in out["effects"] if "same_as" not in e)
    assert first["changes"][0]["metric"] == "peak water depth" and first["changes"][0]["diff"] == pytest.approx(-0.5)
    assert first["verdict"] == "better"
    effects = [e["effect"] for e in out["effects"]]
    assert effects == sorted(effects, reverse=True), "ranked by effect, largest first"
    density = next(e for e in out["effects"] if e["key"] == "area:crowd-bund-05")
    assert density["verdict"] == "worse" and density["effect"] == pytest.approx(0.6)
    assert out["unchanged_places"] == out["places"] - len(out["effects"]) > 100
    assert [i["field"] for i in out["interventions"]] == ["interventions.drainage"]
    assert out["interventions"][0]["changed"], "the pumps' own area changed"
    assert "largest effects" in out["answer"] and "Yan'an" in text
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.index(html.escape(out["answer"])) < page.index("Headline numbers"), "the answer first"
    assert "interventions.drainage" in page and "diff_water_depth.png" in page


def test_compare_says_plainly_when_nothing_changed(bund10, bund_file, places, tmp_path):
    static, _ = bund10
    spec_b, _ = places
    frames = _frames(static)
    _write_run(tmp_path / "a", static, _spec(bund_file), frames, "as is")
    _write_run(tmp_path / "b", static, spec_b, frames, "with the pump off")
    text = compare(tmp_path / "a", tmp_path / "b", static, tmp_path / "cmp")
    out = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert out["effects"] == []
    assert out["answer"].startswith("with the pump off changed nothing measurable against as is")
    assert out["interventions"][0]["changed"] is False
    assert "no measurable change there" in out["interventions"][0]["text"] and "no measurable change" in text


def test_compare_refuses_a_folder_that_is_not_a_run(bund10, tmp_path):
    static, _ = bund10
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError, match=r"summary\.json is missing"):
        compare(tmp_path / "a", tmp_path / "a", static, tmp_path / "cmp")
