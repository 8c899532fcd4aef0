"""``grid.crowd_bands`` in a scenario file: the places' crowd density bands apply in a what-if run as in the live
twin (`twin.district.thresholds`; issue 14), and the scenario's crowd alerts name them (``densityBands``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.tick import CrowdFields
from scenarios.forcing import prepare
from scenarios.runner import ScenarioModels
from scenarios.spec import ScenarioError, load_scenario
from twin.alerting.cap import info_block
from twin.district.sources import data_dir

BUNDLED = data_dir() / "bund" / "crowd-bands.geojson"
STAIR_CELLS = ((117, 161), (117, 162), (118, 162))
"""The Lujiazui Exit 1 stair's cells on the Bund's 10 m grid (tests/test_crowd_bands.py)."""
DISTRICT_CELLS = ((125, 170), (125, 171))
"""Cells well away from the stair (more than two cells: another alert region)."""
SCENARIO = """
name: stair bands
start_time: 2025-12-31T23:00:00+08:00
duration: 1min
step: 10s
grid: {{district: bund, crowd_bands: {bands}}}
"""


def _write(tmp_path, bands: str) -> object:
    path = tmp_path / "stair.yaml"
    path.write_text(SCENARIO.format(bands=bands), encoding="utf-8")
    return path


def test_grid_crowd_bands_applies_in_a_scenario_run(bund10, tmp_path):
    static, _ = bund10
    spec = load_scenario(_write(tmp_path, str(BUNDLED)))
    assert spec.grid.crowd_bands == BUNDLED
    forcing = prepare(spec, static)
    assert [b.name for b in forcing.place_bands] == ["Lujiazui Exit 1 stair", "Waibaidu Bridge"]
    band = forcing.static["crowd_band"].values
    assert sorted(map(tuple, np.argwhere(band == 1).tolist())) == sorted(STAIR_CELLS)
    assert "crowd_band" not in static
    models = ScenarioModels(forcing, spec.start_time, spec.seed, status=spec.status)
    assert models.pipeline.risk_config.place_bands == forcing.place_bands
    # the same 3 person/m2 on the stair and in the district: the crowd the provider hands the tick
    density = np.zeros(band.shape)
    for r, c in STAIR_CELLS + DISTRICT_CELLS:
        density[r, c] = 3.0
    models.fields.crowd = lambda t, dt: CrowdFields(density)
    events = []
    for k in range(3):
        events += [e for e in models.step(10.0 * k, 10.0 * (k + 1)) if e.alert.hazard == "crowd"]
    level = models.layers["level_crowd"].values
    assert [int(level[rc]) for rc in STAIR_CELLS] == [3, 3, 3], "orange on the stair (2.5)"
    assert [int(level[rc]) for rc in DISTRICT_CELLS] == [2, 2], "yellow in the district (2 to 4)"
    raised = {e.alert.level: e for e in events if e.kind == "raised"}
    assert set(raised) == {2, 3}
    params = {lvl: {p["valueName"]: p["value"] for p in info_block(e.message, "en-US")["parameter"]}
              for lvl, e in raised.items()}
    assert params[3]["densityBands"] == (
        "Lujiazui Exit 1 stair (stair): blue 1.11, yellow 1.43, orange 2.5, red 3.5 person/m2")
    assert params[2]["densityBands"] == "district: blue 1.08, yellow 2, orange 4, red 5 person/m2"
    assert raised[3].message["status"] == "Exercise"


def test_without_grid_crowd_bands_every_cell_has_the_districts_bands(bund10, tmp_path):
    static, _ = bund10
    path = tmp_path / "plain.yaml"
    path.write_text(SCENARIO.replace("grid: {{district: bund, crowd_bands: {bands}}}", "grid: bund"), encoding="utf-8")
    spec = load_scenario(path)
    forcing = prepare(spec, static)
    assert spec.grid.crowd_bands is None and forcing.place_bands == () and "crowd_band" not in forcing.static
    models = ScenarioModels(forcing, spec.start_time)
    assert models.pipeline.risk_config.place_bands == ()
    assert models._evidence("crowd", np.array([0, 1]))["densityBands"].startswith("district: ")


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read"),
    ("{oops", "invalid JSON"),
    (json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "s", "kind": "lift", "density_raise": [1, 2, 3, 4],
                                           "density_clear": [0.5, 1, 2, 3]},
         "geometry": {"type": "Polygon", "coordinates": [[[121.49, 31.24], [121.4901, 31.24], [121.4901, 31.2401],
                                                          [121.49, 31.24]]]}}]}), "kind must be one of"),
], ids=["missing", "not JSON", "bad kind"])
def test_a_bad_bands_file_is_a_scenario_problem_under_grid_crowd_bands(tmp_path, content, problem):
    if content is not None:
        (tmp_path / "bands.geojson").write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"grid\.crowd_bands: .*" + problem):
        load_scenario(_write(tmp_path, "bands.geojson"))
