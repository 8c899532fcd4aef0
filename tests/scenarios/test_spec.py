"""Scenario files: loading, units, named places, and validation that names every wrong field at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from scenarios import quantities as q
from scenarios.places import gazetteer
from scenarios.spec import ScenarioError, load_scenario, parse_scenario, read_yaml
from twin.district.sources import data_dir

EXAMPLES = sorted((data_dir() / "scenarios").glob("*.yaml"))
START = dt.datetime(2014, 12, 31, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def problems_of(text: str, tmp_path: Path, name: str = "s.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    return err.value.problems


def test_the_examples_are_bundled():
    names = {p.name for p in EXAMPLES}
    assert {"bund-nye-2014.yaml", "storm-5yr-pump-down.yaml", "storm-5yr-extra-pumps.yaml",
            "metro-exit-closed.yaml", "road-closed.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path):
    spec = load_scenario(path)
    assert spec.name == path.stem
    assert spec.status == "Exercise" and spec.start == "baseline"
    assert spec.duration_s > 0 and spec.step_s == 10.0
    assert spec.forcing.gatherings, "every example has the New Year's Eve crowd"


def test_new_years_eve_covers_22_30_to_00_30():
    spec = load_scenario(data_dir() / "scenarios" / "bund-nye-2014.yaml")
    assert spec.start_time == START.timestamp()
    assert spec.start_time + spec.duration_s == dt.datetime(2015, 1, 1, 0, 30, tzinfo=START.tzinfo).timestamp()
    chen_yi = spec.forcing.gatherings[0]
    assert chen_yi.at.label == "Chen Yi Square" and chen_yi.peak_time_s == 5400.0  # midnight
    stair = spec.forcing.gatherings[1]
    assert stair.peak_time_s == 3900.0  # 23:35, the time of the crush (docs/science/crowd.md 1.5)


def test_variants_extend_the_new_years_eve_crowd():
    nye = load_scenario(data_dir() / "scenarios" / "bund-nye-2014.yaml")
    down = load_scenario(data_dir() / "scenarios" / "storm-5yr-pump-down.yaml")
    extra = load_scenario(data_dir() / "scenarios" / "storm-5yr-extra-pumps.yaml")
    assert down.forcing.gatherings == nye.forcing.gatherings
    storm = down.forcing.rain[0].storm
    assert (storm.return_period_yr, storm.duration_min, storm.peak_ratio, storm.start_s) == (5.0, 60.0, 0.4, 1800.0)
    assert extra.forcing.rain == down.forcing.rain
    assert down.interventions.drainage[0].factor == 0.0
    assert extra.interventions.drainage[0].capacity_mm_h == 120.0 and len(extra.interventions.drainage) == 1


def test_overrides_change_fields_before_the_checks():
    path = data_dir() / "scenarios" / "storm-5yr-pump-down.yaml"
    spec = load_scenario(path, overrides={"forcing.rain.design_storm.return_period": 10, "seed": 7,
                                          "forcing.crowd.gathering.0.peak": 1000})
    assert spec.forcing.rain[0].storm.return_period_yr == 10.0 and spec.seed == 7
    assert spec.forcing.gatherings[0].peak == 1000.0
    with pytest.raises(ScenarioError, match=r"forcing.rain.design_storm.return_period: must be >= 1 \(got 0\)"):
        load_scenario(path, overrides={"forcing.rain.design_storm.return_period": 0})


# ---------------------------------------------------------------- validation
WRONG = """
name: wrong
seed: -1
start_time: 2014-12-31T22:30:00+08:00
step: 10 parsecs
status: Actual
forcng: {}
forcing:
  rain:
    design_storm: {return_period: 0, duration: 60}
  crowd:
    arrivals:
      - at: Chen Yi Sq
        rate: fast
    gathering:
      - at: {polygon: [[121.48, 31.24], [121.49, 31.24]]}
        peak: -5
        peak_time: "23:35"
interventions:
  close_road:
    - road: Zhongshan East 1st Road
      from: "23:30"
      until: "23:00"
  drainage:
    - area: [31.24, 121.48]
      capacity: 10
      factor: 0
outputs:
  layers: [depth, wetness]
"""


def test_every_problem_is_listed_at_once_under_its_field(tmp_path):
    problems = problems_of(WRONG, tmp_path)
    expected = [
        "duration: required",
        "seed: must be a whole number >= 0",
        "step: unknown time unit 'parsecs'",
        "status: must be one of Exercise, Test, Draft (a scenario never raises real alerts)",
        "forcng: unknown field",
        "forcing.rain.design_storm.return_period: must be >= 1 (got 0)",
        "forcing.rain.design_storm.duration: write the unit, e.g. 60min",
        "forcing.crowd.arrivals[0].to: required",
        "forcing.crowd.arrivals[0].at: unknown place 'Chen Yi Sq'",
        "forcing.crowd.arrivals[0].rate: expected people per second",
        "forcing.crowd.gathering[0].at.polygon: expected a ring of at least 3",
        "forcing.crowd.gathering[0].peak: must be >= 0 (got -5)",
        "interventions.close_road[0].road: unknown road 'Zhongshan East 1st Road'",
        "interventions.close_road[0].until: must be after 'from'",
        "interventions.drainage[0]: give either 'capacity' (mm/h) or 'factor'",
        "interventions.drainage[0].area: [lon, lat] out of range",
        "outputs.layers[1]: unknown layer 'wetness'",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), f"missing {text!r} in:\n" + "\n".join(problems)
    assert len(problems) == len(expected), "\n".join(problems)


def test_unknown_names_suggest_the_close_ones(tmp_path):
    problems = problems_of(WRONG, tmp_path)
    assert any("did you mean 'Chen Yi Square'" in p for p in problems)
    assert any("did you mean 'East Zhongshan No. 1 Road'" in p for p in problems)


def test_times_must_fall_inside_the_run(tmp_path):
    problems = problems_of("""
duration: 1h
forcing:
  rain: {series: [[0, 10], [2h, 0]]}
  crowd:
    gathering: {at: Chen Yi Square, peak: 100, peak_time: "23:00"}
  traffic:
    - {road: East Nanjing Road, factor: 2, from: 90min}
""", tmp_path)
    assert "forcing.crowd.gathering.peak_time: a clock time (23:00) needs start_time" in problems
    assert any(p.startswith("forcing.traffic[0].from: is +1h30min, after the end") for p in problems)
    assert len(problems) == 2, problems


def test_snapshot_grid_and_shape_errors(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "live.nc").write_bytes(b"")
    problems = problems_of("""
duration: 1h
start: {snapshot: state}
grid: {district: atlantis, cell: 0}
interventions:
  - close_exit: {at: [121.49, 31.24], radius: -3m}
  - tide_locked: true
  - drain: {}
""", tmp_path)
    for text in ("start.snapshot:", "grid.district: no bundled district 'atlantis'", "grid.cell: must be > 0",
                 "interventions[0].close_exit.radius: must not be negative", "interventions[2]: must be a mapping"):
        assert any(p.startswith(text) for p in problems), problems
    assert any("no snapshot.pkl" in p for p in problems)


def test_a_file_that_is_not_a_mapping_or_not_yaml(tmp_path):
    assert problems_of("- just\n- a list\n", tmp_path)[0].startswith("the file must be a mapping")
    assert problems_of("name: [unclosed\n", tmp_path)[0].startswith("line 2, column 1: not valid YAML")
    assert problems_of("name: x\n", tmp_path, "empty.yaml") == ["duration: required"]


def test_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f'name: !!python/object/apply:os.system ["touch {marker}"]\nduration: 1h\n'
    problems = problems_of(text, tmp_path)
    assert problems == ["line 1: tag !!python/object/apply:os.system is not allowed: scenario files are plain "
                        "YAML, loaded safely (no Python objects)"]
    assert not marker.exists()
    with pytest.raises(ScenarioError, match="not allowed"):
        read_yaml("x: !!python/name:os.system\n")


def test_clock_times_stay_text_not_base_60_numbers():
    doc = read_yaml("a: 23:35\nb: 1:30:00\nc: 90\nd: 2014-12-31T22:30:00+08:00\n")
    assert doc["a"] == "23:35" and doc["b"] == "1:30:00" and doc["c"] == 90
    assert doc["d"] == START


def test_extends_merges_and_refuses_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text("duration: 1h\nseed: 3\noutputs: {every: 2min}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nseed: 4\noutputs: {layers: [depth]}\n")
    spec = load_scenario(tmp_path / "child.yaml")
    assert (spec.seed, spec.duration_s, spec.outputs.every_s, spec.outputs.layers) == (4, 3600.0, 120.0, ("depth",))
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nduration: 1h\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ScenarioError, match="extends itself"):
        load_scenario(tmp_path / "a.yaml")


def test_sections_as_lists_of_one_kind_entries():
    spec = parse_scenario({"duration": "2h", "interventions": [
        {"tide_locked": {"from": "30min", "until": "1h"}},
        {"close_exit": {"at": "metro:Lujiazui exit 1", "from": 600}},
        {"one_way": {"area": "Chen Yi Square", "bearing": 90}}]})
    assert spec.interventions.tide_locked[0].start_s == 1800.0
    assert spec.interventions.close_exit[0].window.start_s == 600.0
    assert spec.interventions.close_exit[0].window.end_s == 7200.0
    assert spec.interventions.one_way[0].bearing_deg == 90.0
    assert spec.outputs.variables == ("water_depth", "crowd_density", "level_crowd", "level_flood",
                                      "level_traffic", "level")


# ---------------------------------------------------------------- units
@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("30min", 1800.0), ("6h", 21600.0), ("1h30min", 5400.0), ("1.5 h", 5400.0), (45, 45.0),
    ("2 minutes", 120.0), (0, 0.0), ("250ms", 0.25)])
def test_durations(text, seconds):
    assert q.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-5s", "5 parsecs", "h", True, "10s garbage", [1], -1])
def test_bad_durations_say_what_is_expected(bad):
    with pytest.raises(ValueError, match=r"duration|unit|negative"):
        q.parse_duration(bad)


def test_times_offsets_clocks_and_iso():
    assert q.parse_time("45min", START) == 2700.0
    assert q.parse_time("23:35", START) == 3900.0
    assert q.parse_time("00:30", START) == 7200.0  # the next day
    assert q.parse_time("2014-12-31T23:35:00+08:00", START) == 3900.0
    assert q.parse_time("2014-12-31T15:35:00Z", START) == 3900.0
    assert q.parse_time(START + dt.timedelta(minutes=5), START) == 300.0
    with pytest.raises(ValueError, match="before start_time"):
        q.parse_time("2014-12-31T22:00:00+08:00", START)
    with pytest.raises(ValueError, match="needs a zone"):
        q.parse_time("2014-12-31T23:00:00", START)
    with pytest.raises(ValueError, match="not a time"):
        q.parse_time(dt.date(2014, 12, 31), START)


def test_lengths_and_rates():
    assert q.parse_length("30m") == 30.0 and q.parse_length("0.5km") == 500.0 and q.parse_length(12) == 12.0
    assert q.parse_person_rate("1200/min") == 20.0 and q.parse_person_rate("36000/h") == 10.0
    assert q.parse_person_rate(2.5) == 2.5
    with pytest.raises(ValueError, match="unit"):
        q.parse_length("3 furlongs")
    with pytest.raises(ValueError, match="people per second"):
        q.parse_person_rate("lots")


# ---------------------------------------------------------------- named places
def test_named_places_of_the_bund():
    places = gazetteer(data_dir() / "bund")
    square = places.lookup("Chen Yi Square")
    assert square.parts[0].geometry.geom_type == "Polygon"
    assert places.lookup("crowd-bund-05") == square and places.lookup("陈毅广场") == square
    assert places.lookup("registry:chen yi square") == square
    assert len(places.metro_entrances()) == 16
    assert places.lookup("metro:Lujiazui exit 1").label == "Lujiazui exit 1"
    assert places.lookup("陆家嘴 1号口").label == "Lujiazui exit 1"
    road = places.lookup("road:East Zhongshan No. 1 Road")
    assert road.label == "East Zhongshan No. 1 Road" and all(p.buffer_m == 10.5 for p in road.parts)
    assert places.lookup("中山东一路", ("road",)) == road
    assert any(p.underground for p in places.lookup("Bund Tunnel").parts)
    with pytest.raises(KeyError, match="did you mean 'Lujiazui exit 1'"):
        places.lookup("metro:Lujiazui exit 11")


def test_a_place_given_by_coordinates_is_named_after_the_named_place_it_is_in_or_near():
    doc = {"name": "named", "duration": "1h", "forcing": {"crowd": {"gathering": [
        {"at": [121.4860, 31.2400], "radius": "10m", "peak": 100, "peak_time": "30min"},
        {"polygon": [[121.4860, 31.2400], [121.4862, 31.2400], [121.4862, 31.2402]], "peak": 10, "peak_time": "30min"},
    ]}}}
    spec = parse_scenario(doc, data_dir())
    labels = [g.at.label for g in spec.forcing.gatherings]
    assert labels == ["near Chen Yi Square (10 m around 121.48600 E 31.24000 N)", "near Chen Yi Square (a polygon)"]


def test_an_entry_names_its_place_for_the_reports():
    doc = {"name": "named", "duration": "1h", "forcing": {"crowd": {"gathering": [
        {"at": [121.4860, 31.2400], "radius": "10m", "name": "the 2014 stair", "peak": 100, "peak_time": "30min"}]}}}
    assert parse_scenario(doc, data_dir()).forcing.gatherings[0].at.label == "the 2014 stair"
    doc["forcing"]["crowd"]["gathering"][0]["name"] = ""
    with pytest.raises(ScenarioError, match=r"gathering\[0\]\.name: must be a name of 1 to 80 characters"):
        parse_scenario(doc, data_dir())
