"""Scenario runs: determinism, conservation, interventions, the NYE 2014 alert, forks, outputs, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from scenarios.forcing import prepare
from scenarios.runner import ScenarioModels, run_models
from scenarios.spec import load_scenario
from tests.support.checkout import checkout_env
from twin.alerting.cap import info_block
from twin.district.dataset import save_twin

SCENARIOS = Path(__file__).resolve().parents[2] / "data" / "scenarios"


def _run(bund10, name: str | Path, run_s: float | None = None, **overrides):
    """Run a scenario file (with ``overrides``) from its start, for its whole duration or its first ``run_s``
    seconds: the scenario is prepared whole either way, so the first ``run_s`` seconds are those of the full run."""
    static, _ = bund10
    spec = load_scenario(SCENARIOS / name, overrides or None)  # an absolute path stays as it is
    forcing = prepare(spec, static)
    models = ScenarioModels(forcing, spec.start_time, spec.seed, status=spec.status)
    duration_s = spec.duration_s if run_s is None else min(run_s, spec.duration_s)
    return run_models(models, duration_s=duration_s, step_s=spec.step_s, every_s=spec.outputs.every_s), models


@pytest.fixture(scope="module")
def storms(bund10):
    """The 5-year storm with a pump down and with extra pumps, 40 minutes of it (no crowd)."""
    short = {"duration": "40min", "forcing.crowd": None}
    return {name: _run(bund10, f"{name}.yaml", **short) for name in ("storm-5yr-pump-down", "storm-5yr-extra-pumps")}


SMALL = """
name: small
seed: 7
start_time: 2014-12-31T23:00:00+08:00
duration: 12min
step: 10s
forcing:
  rain: {design_storm: {return_period: 5, duration: 10min, start: 1min}}
  crowd:
    arrivals:
      - {at: road:East Nanjing Road, radius: 15m, rate: 20/s, from: 0s, until: 8min, to: Chen Yi Square}
    gathering:
      - {at: Chen Yi Square, peak: 5000, peak_time: 6min, rise: 5min, hold: 1min, fall: 4min}
interventions:
  close_exit:
    - {at: Lujiazui exit 1, from: 3min, until: 9min}
"""


def test_a_run_is_deterministic_and_conserves_water_and_people(bund10, tmp_path):
    (tmp_path / "small.yaml").write_text(SMALL)
    a, models = _run(bund10, tmp_path / "small.yaml")
    b, _ = _run(bund10, tmp_path / "small.yaml")
    xr.testing.assert_identical(a.frames, b.frames)
    assert [(t, e.kind, e.alert.hazard, e.alert.cells.tolist()) for t, e in a.events] == \
           [(t, e.kind, e.alert.hazard, e.alert.cells.tolist()) for t, e in b.events]
    assert models.crowd.people_in > 1000, "people arrived"
    assert abs(a.balance["people"]) < 1e-9 and abs(a.balance["water"]) < 1e-9  # in = out + stored, issue 8
    assert all(e.message["status"] == "Exercise" for _, e in a.events)


def test_extra_drainage_lowers_peak_depth_where_it_applies_and_raises_it_nowhere(storms, bund10):
    static, _ = bund10
    (down, _), (pumps, models) = storms["storm-5yr-pump-down"], storms["storm-5yr-extra-pumps"]
    peak_down = down.frames["water_depth"].max("time").values.astype(float)
    peak_pumps = pumps.frames["water_depth"].max("time").values.astype(float)
    assert peak_down.max() > 0.05, "the storm floods something"
    assert np.all(peak_pumps <= peak_down + 1e-6), "more drainage never raises the water anywhere"
    more = models.static["drainage_capacity"].values > static["drainage_capacity"].values
    assert more.any() and peak_pumps[more].max() < peak_down[more].max(), "lower at the pumped portals"


NYE_RUN_S = 4500.0
"""The NYE 2014 test runs the first 75 minutes of the 2-hour scenario (22:30 to 23:45). History (docs/science/crowd.md
1.5): from 23:23 to 23:33 the up and down flows on the stair at Chen Yi Square's south-east corner met and
deadlocked, and at 23:35 people at its bottom fell. The arrivals rise over the evening (bund-nye-2014.yaml: 10
people/s in all at 22:30, 78 from 23:00) and reach the riverside over the signalised crossings of East Zhongshan
No. 1 Road (bund-crossings.geojson). Measured when this was set: nowhere red before 23:04 (East Nanjing Road);
the square and the stair orange from 23:23 and red from 23:38; the promenade red only after midnight. Everything the
test reads is a first time, which the rest of the night cannot move; the prepared scenario is the whole one, so
these 75 minutes are those of the full run."""


@pytest.fixture(scope="module")
def nye(bund10):
    return _run(bund10, "bund-nye-2014.yaml", run_s=NYE_RUN_S)


def _first(times: np.ndarray, hit: np.ndarray) -> float:
    """The first recorded time [s from 22:30] at which ``hit`` holds (inf if never)."""
    return float(times[np.argmax(hit)]) if hit.any() else np.inf


def test_nye_2014_the_square_turns_orange_at_the_deadlock_and_red_at_the_crush_and_nowhere_red_before_23(nye):
    result, models = nye
    f = result.frames
    times = f["time"].values  # [s] from 22:30
    level = f["level_crowd"].values
    red = (level == 4).reshape(len(times), -1).any(axis=1)  # the red level anywhere
    assert _first(times, red) > 1800.0, "nowhere red before 23:00"
    square, stair, promenade = (g.mask for g in models.forcing.gatherings)
    here = square | stair  # Chen Yi Square and its stair to the viewing platform
    orange_here = _first(times, (level[:, here] >= 3).any(axis=1))
    red_here = _first(times, (level[:, here] == 4).any(axis=1))
    assert 53 * 60 <= orange_here <= 65 * 60, "orange at the square between 23:23 and 23:35 (the deadlock)"
    assert 60 * 60 <= red_here <= NYE_RUN_S, "red at the square between 23:30 and 23:45 (the crush at 23:35)"
    extreme = [t for t, e in result.events if e.alert.hazard == "crowd" and e.kind != "cancelled"
               and info_block(e.message)["severity"] == "Extreme" and here.ravel()[e.alert.cells].any()]
    seen = [(t, e.kind, info_block(e.message)["severity"], info_block(e.message)["area"][0]["areaDesc"])
            for t, e in result.events if e.alert.hazard == "crowd" and t >= red_here - 60.0][:12]
    # frames are a minute apart: the alert comes within the minute the recorded red level falls in
    assert extreme and abs(min(extreme) - red_here) <= 60.0, f"a red (Extreme) CAP alert there with it: {seen}"
    assert not (level[:, promenade & ~here] == 4).any(), "the rest of the promenade is not red before midnight"
    assert np.nanmax(f["crowd_density"].values) <= 5.4 + 1e-9  # never above Weidmann's jam density
    assert abs(result.balance["people"]) < 1e-9


def test_outputs_are_written_and_compare_reports_the_pumps(storms, bund10, tmp_path):
    from scenarios.compare import compare
    from scenarios.report import write_outputs

    static, _ = bund10
    for name, (result, models) in storms.items():
        summary = write_outputs(result, models.static, tmp_path / name, name, [(0.0, "start")],
                                spec=models.forcing.spec)
        assert summary["peak_depth_m"]["value"] == pytest.approx(float(result.frames["water_depth"].max()), abs=1e-4)
    out = tmp_path / "storm-5yr-pump-down"
    assert {p.name for p in out.iterdir()} >= {"scenario.nc", "alerts.csv", "alerts.geojson", "summary.json",
                                               "report.html", "peak_depth.png", "peak_density.png", "peak_level.png"}
    with xr.open_dataset(out / "scenario.nc") as ds:
        assert ds["water_depth"].dims == ("time", "y", "x") and ds.sizes["time"] >= 40
    assert "peak water depth" in (out / "report.html").read_text()
    text = compare(out, tmp_path / "storm-5yr-extra-pumps", static, tmp_path / "cmp")
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    row = next(m for m in result["metrics"] if m["metric"] == "peak depth at underpasses [m]")
    assert row["diff"] < 0.0, "the extra pumps lower the underpass peak"
    assert (tmp_path / "cmp" / "diff_water_depth.png").is_file()
    best = next(e for e in result["effects"] if "same_as" not in e)
    assert best["verdict"] == "better" and best["changes"][0]["metric"] == "peak water depth", \
        "the largest effect of the pumps is less water somewhere"
    assert best["name"] in text and "interventions.drainage" in text, "named places and the interventions printed"


def test_a_fork_reads_the_live_twin_and_leaves_it_untouched(bund10, bund_file, tmp_path):
    from scenarios.session import run_spec
    from scenarios.spec import parse_scenario

    static, _ = bund10
    grid = bund_file  # the session's twin file (read only)
    live_dir = tmp_path / "live-state"
    live_dir.mkdir()
    open_ground = (static["building_fraction"].values < 0.5) & (static["water_mask"].values == 0)
    row, col = np.argwhere(open_ground[1:-1, 1:-1] & open_ground[:-2, 1:-1] & open_ground[2:, 1:-1])[500] + 1
    depth = np.zeros(static["elevation"].shape)
    depth[row - 1:row + 2, col] = 0.3  # 3 cells of open ground: 90 m3 of water
    layers = xr.Dataset({"water_depth": (("y", "x"), depth, {"units": "m"}),
                         "crowd_density": (("y", "x"), np.zeros_like(depth), {"units": "person m-2"})},
                        coords={"y": static["y"], "x": static["x"]})
    save_twin(live_dir / "live.nc", layers.assign_attrs(static.attrs))
    (live_dir / "snapshot.pkl").write_bytes(b"the live service's own snapshot")

    def fingerprint():
        return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in live_dir.iterdir()}

    before = fingerprint()
    spec = parse_scenario({"name": "fork", "start": {"snapshot": str(live_dir)}, "grid": str(grid),
                           "start_time": "2025-07-01T18:00:00+08:00", "duration": "1min", "step": "10s"}, tmp_path)
    result, _ = run_spec(spec)
    volume = float(result.frames["water_depth"].isel(time=0).sum()) * 100.0  # 10 m cells [m3]
    assert 85.0 < volume <= 90.0 + 1e-6, "the fork starts with the live twin's water (a little drains in 1 min)"
    assert abs(result.balance["water"]) < 1e-9
    assert fingerprint() == before, "the live twin's files are not touched"


def test_cli_errors_name_the_field_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration: 1h\nforcing:\n  rain:\n    design_storm: {return_period: 0, duration: 30min}\n")
    done = subprocess.run([sys.executable, "-m", "twin.cli", "scenario", "run", str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, env=checkout_env())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "forcing.rain.design_storm.return_period" in done.stderr.strip().splitlines()[-1]


def test_ensemble_on_two_dask_workers_gives_exceedance_maps(bund_file, tmp_path):
    storm = tmp_path / "storm.yaml"
    storm.write_text(f"name: storm\ngrid: {bund_file}\nstart_time: 2025-07-01T18:00:00+08:00\nduration: 20min\n"
                     "forcing:\n  rain:\n    design_storm: {return_period: 2, duration: 15min}\n")
    out = tmp_path / "ens"
    done = subprocess.run([sys.executable, "-m", "twin.cli", "scenario", "ensemble", str(storm), "--vary",
                           "forcing.rain.design_storm.return_period=2,50", "-o", str(out), "--workers", "2"],
                          capture_output=True, text=True, timeout=600, env=checkout_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 members" in done.stdout
    summary = json.loads((out / "ensemble.json").read_text())
    low, high = (m["peak_depth_m"] for m in summary["members"])
    assert high > low, "the 50-year storm floods deeper than the 2-year one"
    with xr.open_dataset(out / "ensemble.nc") as ds:
        p = ds["p_depth_over_0.15m"].values
        assert ds.attrs["members"] == 2 and set(np.unique(p)) <= {0.0, 0.5, 1.0}
        assert (p == 0.5).any(), "cells flooded in one member of two"
        assert np.all(ds["p_depth_over_0.5m"].values <= p), "deeper thresholds are passed no more often"
    places = {row["key"]: row for row in summary["places"]}
    assert set(places) >= {"gauge:water-03", "grid:B4"}, "a probability per named place"
    assert all(0.0 <= row["p_depth_over_0.15m"] <= 1.0 and row["p_depth_over_0.5m"] <= row["p_depth_over_0.15m"]
               for row in places.values())
    assert any(row["p_depth_over_0.15m"] == 0.5 for row in places.values()), "flooded in one member of two"
    assert (out / "ensemble_places.csv").read_text().startswith("key,kind,name")
    page = (out / "ensemble.html").read_text()
    assert "Probability per place" in page and "p_depth_over_0.15m.png" in page and (out / "p_red.png").is_file()
