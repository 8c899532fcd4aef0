"""A planner's input mistakes are caught before anything runs, and "what if, starting now" (issue 21).

- ``-o`` onto an existing file: refused in one line, before running;
- a non-empty output folder: refused unless ``--force``;
- ``until`` earlier on the clock than ``from``: an error unless the next day is written out (``"00:10 +1d"``);
- a return period or a duration outside the design-storm formula's range: a warning, said before the run;
- ``twin scenario run FILE --from-live STATE_DIR``: the run starts from the live twin's water at its time.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import quantities as q
from scenarios import session
from scenarios.spec import ScenarioError, parse_scenario
from twin.cli.main import main
from twin.district.dataset import save_twin

START = "2014-12-31T23:00:00+08:00"


@pytest.fixture
def never_run(monkeypatch):
    """Fail the test if the scenario would run."""
    def run_file(*args, **kwargs):
        raise AssertionError("the scenario ran although its output was refused")

    monkeypatch.setattr(session, "run_file", run_file)


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\nstart_time: {START}\nduration: 10min\n")
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_output_that_is_a_file_is_refused_before_running(scenario_file, tmp_path, never_run, capsys):
    target = tmp_path / "report.html"
    target.write_text("an earlier report")
    assert main(["scenario", "run", str(scenario_file), "-o", str(target), "-q"]) == 2
    assert "is a file" in _error(capsys)
    assert target.read_text() == "an earlier report"


def test_a_non_empty_output_folder_needs_force(scenario_file, tmp_path, never_run, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["scenario", "run", str(scenario_file), "-o", str(out), "-q"]) == 2
    assert "not empty (1 entry)" in _error(capsys) and "--force" in capsys.readouterr().err + "--force"
    ran = []
    monkeypatch.setattr(session, "run_file", lambda *a, **k: ran.append(a) or _summary())
    assert main(["scenario", "run", str(scenario_file), "-o", str(out), "-q", "--force"]) == 0
    assert ran, "with --force it runs"


def _summary() -> dict:
    return {"name": "s", "simulated_min": 10, "wall_s": 1, "peak_depth_m": {"value": 0.0},
            "peak_density": {"value": 0.0}, "alerts": {}, "places": []}


def _window(until: str, since: str = "23:50"):
    doc = {"name": "w", "start_time": START, "duration": "3h",
           "interventions": {"tide_locked": {"from": since, "until": until}}}
    return parse_scenario(doc).interventions.tide_locked[0]


def test_until_earlier_on_the_clock_than_from_is_an_error_unless_the_next_day_is_written():
    with pytest.raises(ScenarioError) as caught:
        _window("00:10")
    assert caught.value.problems == ["interventions.tide_locked.until: 00:10 is earlier on the clock than the "
                                     "window's start (23:50); write '00:10 +1d' if it ends the next day"]
    assert _window("00:10 +1d").end_s == 70 * 60.0, "00:10 the next day is 70 min after 23:00"
    assert _window("00:10+1day").end_s == 70 * 60.0
    assert _window("23:55").end_s == 55 * 60.0, "later the same evening is fine"
    with pytest.raises(ScenarioError, match="must be after 'from'"):
        _window("23:40")


def test_a_storm_outside_the_formula_range_is_a_warning_said_before_the_run(bund_file, tmp_path):
    doc = {"name": "big", "grid": str(bund_file), "start_time": START, "duration": "1min", "step": "30s",
           "forcing": {"rain": {"design_storm": {"return_period": 500, "duration": "240min"}}}}
    spec = parse_scenario(doc, tmp_path)
    assert [w.split(":")[0] for w in spec.warnings] == ["forcing.rain.design_storm.return_period",
                                                        "forcing.rain.design_storm.duration"]
    assert "500-year storm is outside the 1-100 years" in spec.warnings[0]
    heard = []
    session.run_spec(spec, say=heard.append)
    assert heard == [list(spec.warnings)]
    assert parse_scenario({**doc, "forcing": {"rain": {"design_storm": {"return_period": 50, "duration": "60min"}}}},
                          tmp_path).warnings == ()


def test_from_live_starts_now_from_the_live_twins_water(bund10, bund_file, tmp_path, capsys):
    static, _ = bund10
    state = tmp_path / "state"
    state.mkdir()
    open_ground = (static["building_fraction"].values < 0.5) & (static["water_mask"].values == 0)
    row, col = np.argwhere(open_ground[1:-1, 1:-1] & open_ground[:-2, 1:-1] & open_ground[2:, 1:-1])[500] + 1
    depth = np.zeros(static["elevation"].shape)
    depth[row - 1:row + 2, col] = 0.3  # 90 m3 on 3 cells of open ground (as test_runner's fork)
    layers = xr.Dataset({"water_depth": (("y", "x"), depth), "crowd_density": (("y", "x"), np.zeros_like(depth))},
                        coords={"y": static["y"], "x": static["x"]})
    now = 1_780_000_000.0
    save_twin(state / "live.nc", layers.assign_attrs({**static.attrs, "snapshot_time": now}))
    (state / "snapshot.pkl").write_bytes(b"the live service's own")
    scenario = tmp_path / "next-hour.yaml"
    scenario.write_text(f"name: next-hour\ngrid: {bund_file}\nstart_time: {START}\nduration: 2min\nstep: 30s\n")
    out = tmp_path / "out"
    assert main(["scenario", "run", str(scenario), "--from-live", str(state), "-o", str(out), "-q"]) == 0
    with xr.open_dataset(out / "scenario.nc") as ds:
        assert ds.attrs["start_time"] == now, "the run starts at the live twin's time, not the file's"
        volume = float(ds["water_depth"].isel(time=0).sum()) * 100.0  # 10 m cells [m3]
        assert 85.0 < volume <= 90.0 + 1e-6, "the live twin's water (a little drains in the first minute)"
    assert math.isclose(json.loads((out / "summary.json").read_text())["simulated_min"], 2.0)
    assert main(["scenario", "run", str(scenario), "--from-live", str(tmp_path), "-o", str(tmp_path / "o2"),
                 "-q"]) == 2
    assert "no live.nc there" in capsys.readouterr().err


@settings(max_examples=60, deadline=None)
@given(start_min=st.integers(0, 24 * 60 - 1), clock_min=st.integers(0, 24 * 60 - 1), days=st.integers(1, 3))
def test_a_written_out_next_day_is_the_bare_clock_time_on_that_day(start_min, clock_min, days):
    start = dt.datetime(2014, 12, 31, start_min // 60, start_min % 60, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    clock = f"{clock_min // 60:02d}:{clock_min % 60:02d}"
    bare, later = q.parse_time(clock, start), q.parse_time(f"{clock} +{days}d", start)
    assert 0 <= bare < 86400, "a bare clock time is its first occurrence at or after the start"
    same_day = clock_min >= start_min
    assert later - bare == 86400.0 * (days - (0 if same_day else 1)), "+Nd counts days from the start's day"
    assert q.clock_of(clock) == clock_min * 60.0 and q.clock_of(f"{clock} +{days}d") is None
