"""The Huangpu in scenarios (``forcing.river``): the tide, the surge and series, the flood wall's sections as places,
crest changes (``interventions.flood_wall``), and the bundled compound scenario (typhoon-spring-tide.yaml), whose
report shows water coming over the wall where it is lowest and nowhere else."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenarios.forcing import prepare
from scenarios.place_metrics import Clock, place_metrics, scenario_places
from scenarios.report.answer import answer, exposed_series
from scenarios.runner import ScenarioModels, run_models
from scenarios.spec import ScenarioError, load_scenario, parse_scenario
from scenarios.timeline import river_peak
from twin.district.sources import data_dir

COMPOUND = data_dir() / "scenarios" / "typhoon-spring-tide.yaml"
CUT_DOWN = {"start_time": "2024-09-17T23:00:00+08:00", "duration": "40min", "step": "30s", "forcing.crowd": None}
"""The compound scenario from 23:00 for 40 minutes (the river passes the lowest crest at about 23:05 and peaks at
23:43), without its crowd: the flood wall's story in a test's time."""
LOW = ("suzhou-mouth-south", "suzhou-mouth-north")
"""The flood wall's lowest sections (5.6 m, data/bund/flood-wall.geojson)."""


@pytest.fixture(scope="module")
def static(bund10):
    return bund10[0]


def doc(**extra):
    return {"duration": "2h", "start_time": "2024-09-17T22:30:00+08:00", **extra}


# ---------------------------------------------------------------- the river level
def test_the_tide_is_harmonic_and_the_surge_a_cos2_pulse():
    spec = parse_scenario(doc(forcing={"river": {"tide": {"high": 4.7, "low": 1.3, "period": "12h25min",
                                                           "high_at": "23:45"},
                                                  "surge": {"peak": 1.0, "at": "23:00", "duration": "8h"}}}))
    river = spec.forcing.river
    tide, surge = river.tide, river.surge
    assert tide.level(75 * 60) == pytest.approx(4.7) and tide.level(75 * 60 + 44700 / 2) == pytest.approx(1.3)
    assert surge.level(30 * 60) == pytest.approx(1.0)
    assert surge.level(30 * 60 + 2 * 3600) == pytest.approx(0.5), "half its height a quarter of its duration away"
    assert surge.level(30 * 60 + 4 * 3600) == 0.0 and surge.level(30 * 60 + 5 * 3600) == 0.0
    assert river.level(0.0) == pytest.approx(tide.level(0.0) + surge.level(0.0))


def test_a_river_series_from_a_csv_file(tmp_path):
    (tmp_path / "huangpu.csv").write_text("time,level_m\n2024-09-17T22:00:00+08:00,4.0\n23:00,5.0\n90min,4.5\n")
    (tmp_path / "s.yaml").write_text("duration: 2h\nstart_time: 2024-09-17T22:30:00+08:00\n"
                                     "forcing: {river: {series: huangpu.csv}}\n")
    river = load_scenario(tmp_path / "s.yaml").forcing.river
    assert river.series.times == (-1800.0, 1800.0, 5400.0)
    assert river.level(0.0) == pytest.approx(4.5) and river.level(3600.0) == pytest.approx(4.75)
    assert river.level(7200.0) == 4.5, "the last value held"


def test_river_mistakes_are_one_line_errors_naming_their_field(tmp_path):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc(forcing={"river": {"tide": {"high": 4800, "low": 1.3, "high_at": "23:45"},
                                              "series": "x.csv"}},
                           interventions={"flood_wall": {"section": "bund", "crest": 7.5}}))
    assert err.value.problems == [
        "forcing.river: give either 'series' (a CSV file of time, level or [[time, m], ...]) or 'tide'"]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc(forcing={"river": {"tide": {"high": 4800, "low": 1.3, "high_at": "23:45"}}},
                           interventions={"flood_wall": [{"section": "bund", "crest": "6.9m"}]}))
    assert err.value.problems == [
        "forcing.river.tide.high: must be between -5 and 12 m above the Wusong datum (got 4800); a wrong datum or "
        "unit?",
        "interventions.flood_wall[0].crest: expected a river level in metres (Wusong datum) (got '6.9m')"]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc(interventions={"flood_wall": {"section": "bund", "crest": 7.5}}))
    assert err.value.problems == ["interventions.flood_wall: changes the flood wall, which only stands in a run with "
                                  "a river level: add forcing.river"]


def test_a_crest_change_raises_the_faces_of_its_section_only(static):
    river = {"tide": {"high": 4.7, "low": 1.3, "high_at": "23:45"}}
    base = prepare(parse_scenario(doc(forcing={"river": river})), static).river
    raised = prepare(parse_scenario(doc(forcing={"river": river}, interventions={"flood_wall": [
        {"section": "Suzhou Creek mouth (Huangpu Park side)", "crest": 6.9}]})), static).river
    k = [s.id for s in base.sections].index("suzhou-mouth-south")
    on_x, on_y = base.works.section_x == k, base.works.section_y == k
    assert on_x.any() or on_y.any()
    assert np.all(raised.works.crest_x[on_x] == 6.9) and np.all(raised.works.crest_y[on_y] == 6.9)
    assert np.all(base.works.crest_x[on_x] == 5.6)
    same = np.isfinite(base.works.crest_x) & ~on_x
    assert np.array_equal(raised.works.crest_x[same], base.works.crest_x[same])
    section = raised.sections[k]
    assert (section.crest_m, section.crest_was_m, section.changed_by) == (6.9, 5.6, "interventions.flood_wall[0]")
    with pytest.raises(ScenarioError) as err:
        prepare(parse_scenario(doc(forcing={"river": river}, interventions={"flood_wall": [
            {"section": "Zhongshan wall", "crest": 6.9}]})), static)
    assert err.value.problems[0].startswith("interventions.flood_wall[0].section: no flood-wall section "
                                            "'Zhongshan wall'; sections: south-bund (South Bund and Shiliupu), ")


# ---------------------------------------------------------------- the compound scenario
def _run(static, overrides):
    spec = load_scenario(COMPOUND, overrides)
    forcing = prepare(spec, static)
    models = ScenarioModels(forcing, spec.start_time, spec.seed, status=spec.status)
    result = run_models(models, duration_s=spec.duration_s, step_s=spec.step_s, every_s=spec.outputs.every_s)
    return spec, forcing, models, result


@pytest.fixture(scope="module")
def compound(static):
    return _run(static, CUT_DOWN)


def test_the_compound_scenario_is_documented_and_peaks_between_the_crests():
    spec = load_scenario(COMPOUND)
    _, peak = river_peak(spec.forcing.river, spec.duration_s)
    assert 5.6 < peak < 6.9, "above the lowest crest, below the others (data/bund/flood-wall.geojson)"
    assert peak == pytest.approx(5.75, abs=0.01)
    text = COMPOUND.read_text(encoding="utf-8")
    assert "DB31/T 1043" in text and "三碰头" in text and "[mem]" in text and "[design]" in text


def test_water_comes_over_the_wall_where_it_is_lowest_and_nowhere_else(compound):
    spec, forcing, models, result = compound
    wall = result.wall
    volume = dict(zip(wall["section"].values.tolist(), wall["volume"].values[:, -1], strict=True))
    crest = dict(zip(wall["section"].values.tolist(), wall["crest_m"].values, strict=True))
    lowest = min(crest.values())
    assert {s for s, c in crest.items() if c == lowest} == set(LOW)
    for sid, v in volume.items():
        if sid in LOW:
            assert v > 100.0, f"{sid}: water over the 5.6 m wall"
        else:
            assert v == 0.0, f"{sid}: no water over a 6.9 m wall"
    # not before the river passes the crest (at the end of the step it passes it at the earliest)
    times = wall["time"].values
    level = wall["river_level"].values
    over = wall["discharge"].sel(section=list(LOW)).values.max(axis=0) > 1e-4
    first_over = times[np.argmax(over)]
    first_above = times[np.argmax(level > lowest)]
    assert first_above <= first_over <= first_above + 2 * spec.step_s
    assert abs(result.balance["water"]) < 1e-9
    depth = models.flood.h.ravel()
    behind = np.concatenate([s.cells for s in forcing.river.sections if s.id in LOW])
    assert depth[behind].max() > 0.01, "the water lands behind the low wall"


def test_the_river_itself_is_not_waterlogging(compound):
    """River cells hold metres of water at the river level; that is the river hazard's, never a flood alert."""
    _spec, forcing, models, _result = compound
    river = forcing.river.works.river
    layers = models.layers
    assert np.isfinite(layers["river_level"].values[river]).all()
    assert (models.flood.h[river] > 1.0).any(), "the model holds the river's water"
    assert (layers["water_depth"].values[river] == 0.0).all()
    assert (layers["flow_hazard"].values[river] == 0.0).all()
    assert (layers["level_flood"].values[river] <= 0).all(), "no flood level on the river"
    assert (layers["river_signal"].values[river] >= 1).all(), "the river's own warning is on"


def test_the_report_names_the_lowest_section(compound, tmp_path):
    spec, forcing, _, result = compound
    places = scenario_places(forcing.static, data_dir() / "bund", spec, result.wall)
    clock = Clock(spec.start_time, spec.utc_offset_s)
    metrics = place_metrics(result.frames, forcing.static, places, spec.start_time, spec.utc_offset_s, result.wall)
    rows = {r["key"]: r for r in metrics.rows}
    low = rows["wall:suzhou-mouth-south"]
    assert low["kind"] == "flood wall" and low["crest_m"] == 5.6
    assert low["overtopping_volume_m3"] > 100 and low["overtopping_peak_m3s"] > 0.1
    assert low["overtopping_first_at"] in {"23:05", "23:06", "23:07"}
    assert rows["wall:bund"]["overtopping_volume_m3"] == 0.0 and rows["wall:bund"]["overtopping_first_at"] is None
    assert low["river_peak_m"] == pytest.approx(5.75, abs=0.02)
    frames = result.frames
    said = answer(metrics.rows, metrics.series, exposed_series(frames), frames["time"].values.astype(float), clock)
    first = said[0]
    assert first.startswith("Water comes over the flood wall at Suzhou Creek mouth"), first
    assert "(crest 5.60 m) from 23:0" in first and "m³/s" in first and "m³" in first
    assert "The Bund" not in first.split("hold")[0], "only the low sections are said to let water over"
    from scenarios.report import write_outputs

    out = tmp_path / "run"
    summary = write_outputs(result, forcing.static, out, spec.name, forcing.timeline(), spec=spec)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "The flood wall (防汛墙)" in html and "Water comes over the flood wall at Suzhou Creek mouth" in html
    assert (out / "chart_river.png").is_file() and (out / "wall.nc").is_file()
    walls = [p for p in summary["places"] if p["kind"] == "flood wall"]
    assert walls[0]["key"] in {f"wall:{s}" for s in LOW}, "the wall that lets water over comes first"


def test_raising_the_low_sections_keeps_the_water_out(static):
    raise_ = {**CUT_DOWN, "duration": "20min",
              "interventions": {"flood_wall": [{"section": s, "crest": 6.9} for s in LOW]}}
    spec, forcing, _, result = _run(static, raise_)
    assert float(result.wall["volume"].values[:, -1].max()) == 0.0
    assert math.isclose(float(result.wall["crest_m"].min()), 6.9)
    places = scenario_places(forcing.static, data_dir() / "bund", spec, result.wall)
    metrics = place_metrics(result.frames, forcing.static, places, spec.start_time, spec.utc_offset_s, result.wall)
    rows = {r["key"]: r for r in metrics.rows}
    assert (rows["wall:suzhou-mouth-south"]["crest_m"], rows["wall:suzhou-mouth-south"]["crest_was_m"]) == (6.9, 5.6)
    frames = result.frames
    said = answer(metrics.rows, metrics.series, exposed_series(frames), frames["time"].values.astype(float),
                  Clock(spec.start_time, spec.utc_offset_s))
    assert said[0].startswith("No water comes over the flood wall: the Huangpu peaks at 5.69 m (Wusong) at 23:20, "
                              "1.21 m below its lowest crest (6.90 m at "), said[0]
