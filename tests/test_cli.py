"""The ``twin`` command line as a user runs it: real processes (running this checkout's code, see
``tests.support.checkout``), exit codes, one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.support.checkout import REPO, checkout_env
from twin.cli.main import build_parser, main

TWIN = [sys.executable, "-m", "twin.cli"]


def run(*args, timeout=300, cwd=None):
    return subprocess.run([*TWIN, *args], capture_output=True, text=True, timeout=timeout, env=checkout_env(),
                          cwd=cwd)


def test_child_processes_import_this_checkout(tmp_path):
    """Run from elsewhere, with another PYTHONPATH already set, a child still imports this checkout's twin."""
    env = checkout_env({**os.environ, "PYTHONPATH": str(tmp_path / "elsewhere")})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(tmp_path / "elsewhere")]
    proc = subprocess.run([sys.executable, "-c", "import twin; print(twin.__file__)"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve().is_relative_to(REPO), proc.stdout


@pytest.fixture(scope="module")
def bund20(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "bund20.nc"
    proc = run("grid", "build", "--district", "bund", "--cell", "20", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_help_on_every_command():
    commands = [[], ["grid"], ["grid", "build"], ["grid", "info"], ["run"], ["simulate"], ["demo"], ["devices"],
                ["replay"], ["city"], ["city", "build"], ["ingest-worker"], ["district"], ["city-tier"]]
    proc = run("--help")  # once through the console entry point, in a process of its own
    assert proc.returncode == 0 and "usage: twin" in proc.stdout, proc.stderr
    for args in commands:  # every command's help from the same parser, in this process (each child took ~1.3 s)
        out = io.StringIO()
        with pytest.raises(SystemExit) as ended, contextlib.redirect_stdout(out):
            build_parser().parse_args([*args, "--help"])
        assert ended.value.code == 0 and out.getvalue().startswith("usage: twin"), (args, out.getvalue()[:200])


def test_grid_build_writes_netcdf_and_buildings(bund20):
    assert bund20.is_file() and bund20.stat().st_size > 10_000
    assert bund20.with_name("bund20.buildings.parquet").is_file()


def test_grid_info_prints_the_summary(bund20):
    proc = run("grid", "info", str(bund20))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "CRS EPSG:4549, cell 20 m, shape 139 x 196" in out
    for name, units in (("elevation", "m"), ("walkable_area", "m2"), ("free_flow_speed", "km h-1")):
        assert any(line.split()[0] == name and f" {units} " in line for line in out.splitlines())
    assert "Shanghai Tower: cell" in out and "building_height 632 m" in out and "Beidou N51H" in out
    assert "OpenStreetMap contributors" in out


def test_a_source_folder_with_floors(tmp_path):
    shutil.copy(DATA / "suzhou_buildings_floors_300.geojson", tmp_path / "buildings.geojson")
    out = tmp_path / "suzhou.nc"
    proc = run("grid", "build", "--source", str(tmp_path), "--cell", "25", "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    info = run("grid", "info", str(out)).stdout
    assert "buildings: 300" in info and "Shanghai Tower" not in info


BAD_INPUT = [
    (["grid", "build", "--cell", "0", "--out", "x.nc"], "must be a positive"),
    (["grid", "build", "--cell", "inf", "--out", "x.nc"], "must be a positive"),
    (["grid", "build", "--out", "."], "is a directory"),
    (["grid", "build", "--crs", "EPSG:3857", "--out", "x.nc"], "distorts areas"),
    (["grid", "build", "--bbox=121.0,31.0,121.01,31.01", "--out", "x.nc"], "no buildings inside the grid"),
    (["grid", "build", "--bbox=120,30,122,32", "--cell", "1", "--out", "x.nc"], "too large"),
    (["grid", "build", "--dem", "/nonexistent.asc", "--out", "x.nc"], "does not exist"),
    (["grid", "build", "--bbox", "1,2,3", "--out", "x.nc"], "four numbers"),
    (["grid", "build", "--crs", "EPSG:4326", "--out", "x.nc", "-q"], "projected"),
    (["grid", "build", "--crs", "EPSG:999999", "--out", "x.nc", "-q"], "unknown CRS"),
    (["grid", "build", "--source", "/nonexistent/district", "--out", "x.nc", "-q"], "does not exist"),
    (["grid", "build", "--district", "atlantis", "--out", "x.nc", "-q"], "no bundled district"),
    (["grid", "build", "--bbox", "121.5,31.3,121.4,31.2", "--out", "x.nc", "-q"], "west < east"),
    (["grid", "info", "/nonexistent.nc"], "no twin file"),
]


def run_in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``twin *args`` run from ``cwd`` in this process, through the console script's own ``main``: its exit code and
    what it printed, as `run` gives them (an exception it lets out fails the test with its traceback)."""
    out, err = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse's refusals
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory) -> list[subprocess.CompletedProcess]:
    """Every ``BAD_INPUT`` command (each in a folder of its own), in order: the first in a process of its own, as a
    user runs it, the others in this process (each child took 2-3 s of Python start-up for a one-line refusal)."""
    first, *others = BAD_INPUT
    return [run(*first[0], timeout=120, cwd=tmp_path_factory.mktemp("bad-input")),
            *(run_in_process(args, tmp_path_factory.mktemp("bad-input")) for args, _ in others)]


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[m for _, m in BAD_INPUT])
def test_bad_input_ends_with_one_line_and_exit_2(case, bad_input_runs):
    # no -q: the progress bar must be gone before the error line
    message, proc = BAD_INPUT[case][1], bad_input_runs[case]
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1].split("\r")[-1]
    assert last.startswith(("twin: error:", "twin grid build: error:")), proc.stderr
    assert message in last and "Traceback" not in proc.stderr


def test_bad_dem_and_points_only_buildings_exit_2(tmp_path, shared_dem):
    shutil.copy(DATA / "suzhou_buildings_floors_300.geojson", tmp_path / "buildings.geojson")
    shutil.copy(shared_dem, tmp_path / "dem.asc")
    proc = run("grid", "build", "--source", str(tmp_path), "--dem-crs", "nonsense", "--out", str(tmp_path / "x.nc"))
    assert proc.returncode == 2 and "unusable CRS" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "dem.asc").write_text("ncols 2\nnrows 2\ncellsize 1\n1 2\n3 4\n")
    proc = run("grid", "build", "--source", str(tmp_path), "--dem-crs", "EPSG:4326", "--out", str(tmp_path / "x.nc"))
    assert proc.returncode == 2 and "ESRI ASCII" in proc.stderr
    pts = tmp_path / "pts"
    pts.mkdir()
    (pts / "buildings.geojson").write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
        '"geometry":{"type":"Point","coordinates":[121.49,31.24]}}]}')
    proc = run("grid", "build", "--source", str(pts), "--out", str(tmp_path / "x.nc"))
    assert proc.returncode == 2 and "no Polygon" in proc.stderr


def test_credit_comes_from_the_data(tmp_path, bund_sources):
    assert "OpenStreetMap" in bund_sources.credit()
    shutil.copy(DATA / "suzhou_buildings_floors_300.geojson", tmp_path / "buildings.geojson")
    from twin.district.sources import read_district

    assert read_district(tmp_path).credit() == ""
    (tmp_path / "CREDIT.txt").write_text("Suzhou footprints: pybdshadow, BSD-3-Clause\n")
    assert read_district(tmp_path).credit() == "Suzhou footprints: pybdshadow, BSD-3-Clause"


def test_unreadable_inputs_exit_2(tmp_path):
    (tmp_path / "buildings.geojson").write_text("{not json")
    proc = run("grid", "build", "--source", str(tmp_path), "--out", str(tmp_path / "x.nc"), "-q")
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file")
    proc = run("grid", "info", str(junk))
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr


def test_run_refuses_http_beyond_loopback_without_a_token(bund20, tmp_path):
    proc = run("run", "--grid", str(bund20), "--state", str(tmp_path / "state"), "--http", "0",
               "--http-host", "0.0.0.0", "--duration", "5", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("twin: error: refusing to serve the API on 0.0.0.0")
