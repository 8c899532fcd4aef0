"""The scenario report (issue 21): the answer names places and local times, the alert table is collapsed by place
with counts, counts print as integers, maps carry a scale bar, named places and colour scales that cover the data.

Runs on a synthetic run: a 40 x 60 grid of 10 m cells at the Bund (EPSG:4549), 120 one-minute frames from
2014-12-31 22:30 (UTC+8): water in an underpass rising to 1.94 m at minute 96 (00:06), a crowd red on a square
from minute 50 (23:20) for 40 minutes, and a timeline of alert messages.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from scenarios.metrics import headline
from scenarios.place_metrics import Clock, ScenarioPlace, place_metrics, severity
from scenarios.report import fmt_int, fmt_people
from scenarios.report.alerts import collapse_alerts, open_alerts
from scenarios.report.answer import answer, effects, exposed_series
from scenarios.report.maps import covering_scale, has_scale_bar, peak_map_figures
from scenarios.report.outputs import report_page
from scenarios.report.page import report_html
from scenarios.runner import RunResult
from twin.district import geo
from twin.district.grid import GridSpec

START = 1420036200.0  # 2014-12-31 22:30 in Shanghai
UTC8 = 8 * 3600.0
NY, NX, MINUTES = 40, 60, 120
GRID = GridSpec("EPSG:4549", 641000.0, 3459800.0, 10.0, NY, NX)
PORTAL = (slice(5, 9), slice(5, 9))
SQUARE = (slice(20, 30), slice(30, 45))
ROAD = (slice(35, 37), slice(0, NX))


def _static() -> xr.Dataset:
    shape = (NY, NX)
    road = np.zeros(shape)
    road[ROAD] = 1.0
    building = np.zeros(shape)
    building[10:18, 10:25] = 1.0
    return xr.Dataset({"elevation": (("y", "x"), np.zeros(shape)), "road_fraction": (("y", "x"), road),
                       "building_fraction": (("y", "x"), building),
                       "underpass": (("y", "x"), np.zeros(shape, np.int8))},
                      coords={"y": GRID.y, "x": GRID.x}, attrs=GRID.to_attrs())


def _frames(static: xr.Dataset) -> xr.Dataset:
    t = np.arange(1, MINUTES + 1)
    shape = (MINUTES, NY, NX)
    depth, density = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    depth[:, PORTAL[0], PORTAL[1]] = np.minimum(1.94, np.maximum(0, t - 60) * 1.94 / 36)[:, None, None]
    density[:, SQUARE[0], SQUARE[1]] = np.where((t >= 50) & (t < 90), 5.4, 1.0)[:, None, None]
    speed = np.full(shape, np.nan, np.float32)
    speed[:, ROAD[0], ROAD[1]] = 30.0
    flood = np.digitize(depth, (0.05, 0.15, 0.27, 0.50)).astype(np.int8)
    crowd = np.digitize(density, (1.08, 2.0, 4.0, 5.0)).astype(np.int8)
    traffic = np.zeros(shape, np.int8)
    layers = {"water_depth": depth, "crowd_density": density, "crowd_count": density * 100.0,
              "traffic_speed": speed, "rain_rate": np.zeros(shape, np.float32), "level": np.maximum(flood, crowd),
              "level_flood": flood, "level_crowd": crowd, "level_traffic": traffic}
    return xr.Dataset({k: (("time", "y", "x"), v) for k, v in layers.items()},
                      coords={"time": t * 60.0, "y": static["y"], "x": static["x"]})


def _place(key: str, kind: str, name: str, name_zh: str, cells: tuple[slice, slice]) -> ScenarioPlace:
    mask = np.zeros((NY, NX), bool)
    mask[cells] = True
    rows, cols = np.nonzero(mask)
    lon, lat = geo.to_lonlat(float(GRID.x[int(cols.mean())]), float(GRID.y[int(rows.mean())]), GRID.crs)
    return ScenarioPlace(key, kind, name, name_zh, round(float(lon), 6), round(float(lat), 6), mask)


PLACES = [_place("underpass:portal", "underpass", "Yan'an Rd E. Tunnel Puxi portal", "延安东路隧道浦西口", PORTAL),
          _place("area:square", "crowd area", "Chen Yi Square", "陈毅广场", SQUARE),
          _place("road:nanjing", "road", "East Nanjing Road", "南京东路", ROAD),
          _place("grid:A1", "grid unit", "Grid A1 (Middle Sichuan Road)", "网格A1",
                 (slice(0, NY), slice(0, NX)))]


def _alert_rows() -> list[dict]:
    """Two flood alerts at the portal (one raised, updated twice and cancelled; one raised later), a crowd alert on
    the square."""
    def row(minute: float, kind: str, hazard: str, level: str, alert: str, area: str, n: int = 0) -> dict:
        hh, mm = divmod(22 * 60 + 30 + int(minute), 60)
        suffix = {"raised": "", "updated": f".update{n}", "cancelled": f".cancel{n}"}[kind]
        return {"offset_min": minute, "sent": f"2014-12-31T{hh % 24:02d}:{mm:02d}:00+08:00", "kind": kind,
                "hazard": hazard, "level": level, "identifier": alert + suffix, "area": area}
    portal, square = "Yan'an Rd E. Tunnel Puxi portal; 延安东路隧道浦西口", "Chen Yi Square; 陈毅广场"
    return [row(50, "raised", "crowd", "red", "c1", square),
            row(64, "raised", "flood", "yellow", "f1", portal), row(66, "updated", "flood", "orange", "f1", portal, 1),
            row(70, "updated", "flood", "red", "f1", portal, 2), row(80, "cancelled", "flood", "red", "f1", portal, 3),
            row(90, "cancelled", "crowd", "red", "c1", square, 1), row(95, "raised", "flood", "red", "f2", portal)]


@pytest.fixture(scope="module")
def run():
    """(static, result, rows worst first, series, clock) of the synthetic run."""
    static = _static()
    frames = _frames(static)
    result = RunResult(frames, [], {"water": 0.0, "people": 0.0}, 3.0, MINUTES * 60.0, START)
    metrics = place_metrics(frames, static, PLACES, START, UTC8)
    metrics.rows.sort(key=severity)
    return static, result, metrics.rows, metrics.series, Clock(START, UTC8)


def write_report(out: Path, warnings: tuple[str, ...] = ("forcing.rain: a test warning",)) -> Path:
    """The synthetic run's report (report.html, its charts and maps) in ``out``; returns the page's path (also used
    by the browser test)."""
    static = _static()
    frames = _frames(static)
    result = RunResult(frames, [], {"water": 0.0, "people": 0.0}, 3.0, MINUTES * 60.0, START)
    metrics = place_metrics(frames, static, PLACES, START, UTC8)
    metrics.rows.sort(key=severity)
    summary = {**headline(result, static), "name": "synthetic storm", "warnings": list(warnings),
               "question": "What does the storm do to the tunnel portal and the square?", "places": metrics.rows}
    out.mkdir(parents=True, exist_ok=True)
    page = report_page(result, static, out, "synthetic storm", summary, _alert_rows(), metrics.series,
                       Clock(START, UTC8), [(0.0, "the crowd gathers"), (3600.0, "the storm starts")])
    path = out / "report.html"
    path.write_text(report_html(page), encoding="utf-8")
    return path


def test_the_answer_names_the_worst_places_and_their_local_times(run):
    _, result, rows, series, clock = run
    exposed = exposed_series(result.frames)
    text = " ".join(answer(rows, series, exposed, result.frames["time"].values, clock))
    assert "Water reaches 1.94 m at Yan'an Rd E. Tunnel Puxi portal at 00:06" in text
    assert "The crowd is red at Chen Yi Square from 23:20 for 40 min" in text
    people = round(float(exposed.max()))
    assert people == 150 * 540 and f"at most {people:,} people stand in orange or red" in text
    assert "N 121" not in text and not re.search(r"\d\.\d{3,}", text), "no coordinates, no long decimals"
    assert [r["name"] for r in effects(rows)] == ["Chen Yi Square", "Yan'an Rd E. Tunnel Puxi portal",
                                                  "East Nanjing Road"], "worst first; grid units after named places"


def test_the_alert_table_has_one_row_per_place_with_counts():
    places = collapse_alerts(_alert_rows())
    assert [(p.hazard, p.area.split(";")[0]) for p in places] == [("flood", "Yan'an Rd E. Tunnel Puxi portal"),
                                                                    ("crowd", "Chen Yi Square")]
    flood, crowd = places
    assert (len(flood.alerts), flood.counts["raised"], flood.counts["updated"], flood.counts["cancelled"]) == \
           (2, 2, 2, 1)
    assert (flood.level, flood.first_at, flood.last_at) == ("red", "23:34", "00:05")
    assert (len(crowd.alerts), crowd.counts["raised"], crowd.counts["cancelled"], crowd.first_at) == \
           (1, 1, 1, "23:20")
    opened = open_alerts(_alert_rows(), end_min=120.0)
    at = {float(t): {h: c[k].tolist() for h, c in opened.counts.items()} for k, t in enumerate(opened.times_min)}
    assert at[70.0]["flood"] == [0, 0, 0, 1] and at[70.0]["crowd"] == [0, 0, 0, 1], "one red flood, one red crowd"
    assert at[80.0]["flood"] == [0, 0, 0, 0] and at[95.0]["flood"] == [0, 0, 0, 1] and at[120.0]["crowd"] == [0] * 4


def test_counts_print_as_integers_with_thousands_separators(tmp_path):
    assert (fmt_int(26.0), fmt_people(81228.3), fmt_int(1755), fmt_int(None)) == ("26", "81,228", "1,755", "–")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "26.000" not in page and not re.search(r">\d+\.\d+</td>", page), "no count with decimals in a cell"
    assert "<td class=n>81,000</td>" in page, "people exposed at the square, 150 cells x 540 people, as an integer"
    assert "<td class=n>2</td><td class=n>2</td><td class=n>2</td><td class=n>1</td>" in page, \
        "the portal's flood row: 2 alerts, 2 raised, 2 updates, 1 cancelled"
    assert "陈毅广场" in page and "Chen Yi Square" in page


def test_maps_have_a_scale_bar_named_places_and_a_covering_colour_scale(run):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    static, result, rows, _, _ = run
    figures = peak_map_figures(result.frames, static, rows, plt)
    try:
        assert [f.name for f in figures] == ["peak_depth.png", "peak_density.png", "peak_level.png"]
        assert all(has_scale_bar(f.ax) for f in figures), "every map has a scale bar"
        depth, density, _ = figures
        assert depth.data_max == pytest.approx(1.94, abs=1e-4) and depth.vmax >= depth.data_max and depth.vmax == 2.0
        assert density.vmax >= 5.4 and density.vmax == 6.0
        assert depth.labels.names[0] == "Yan'an Rd E. Tunnel Puxi portal"
        assert "Chen Yi Square" in density.labels.names
        texts = " ".join(t.get_text() for t in depth.ax.texts)
        assert "Yan'an Rd E. Tunnel Puxi portal" in texts and "1.94 m at 00:06" in texts, "the map's key names it"
        assert not depth.ax.get_xticks().size and not depth.ax.get_yticks().size, "no easting/northing ticks"
    finally:
        for f in figures:
            plt.close(f.fig)
    assert (covering_scale(np.array([0.3]), (0.15, 0.27, 0.5)), covering_scale(np.array([0.0]), (2.0, 4.0)),
            covering_scale(np.array([81228.3]))) == (0.3, 2.0, 100000.0)


def _row(key: str, kind: str, name: str, **levels) -> dict:
    top = {"flood": "none", "crowd": "none", "traffic": "none", **levels}
    return {"key": key, "kind": kind, "name": name, "name_zh": "", "peak_depth_m": 0.0, "peak_density": 0.5,
            "peak_density_at": "23:00", "min_traffic_speed_kmh": 3.0, "min_traffic_speed_at": "23:40",
            "minutes_at_or_above": {h: {"yellow": 0.0, "orange": 0.0, "red": 0.0} for h in top},
            "top_level": top, "people_peak": 10, "people_exposed": 0}


def test_a_scenario_that_changes_traffic_is_answered_traffic_first_on_its_own_roads():
    times = np.array([60.0, 120.0, 180.0])
    series = xr.Dataset({"level_traffic": (("place", "time"), np.array([[0, 3, 4], [0, 0, 0]], np.int8)),
                         "level_crowd": (("place", "time"), np.zeros((2, 3), np.int8))},
                        coords={"place": ["scenario:forcing.traffic[0]", "area:a"], "time": times})
    rows = [_row("area:a", "crowd area", "Chen Yi Square", crowd="yellow"),
            _row("scenario:forcing.traffic[0]", "scenario place", "Middle Sichuan Road", traffic="red")]
    clock = Clock(1419_989_400.0, 8 * 3600.0)  # 2014-12-31 09:30 +08:00
    text = " ".join(answer(rows, series, np.zeros(3), times, clock))
    assert text.startswith("Traffic on Middle Sichuan Road, whose demand changes, is red from 09:33, slowest 3 km/h")
    assert text.index("Middle Sichuan Road") < text.index("Chen Yi Square"), "traffic before the crowd"
    rows[1]["key"] = "road:Middle Sichuan Road"  # no traffic change in the scenario: the crowd comes first
    assert " ".join(answer(rows, series, np.zeros(3), times, clock)).startswith("The crowd")
