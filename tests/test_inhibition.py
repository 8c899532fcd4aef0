"""Inhibition rules: the packaged defaults, Alertmanager's equal labels, containment in space, bad files."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import shapely

from twin.alerting.inhibition import InhibitionConfigError, Inhibitor, rules_of_yaml
from twin.alerting.labels import AlertLabels, cells_area, labels_of
from twin.district.grid import GridSpec

TUNNEL = shapely.box(0, 0, 400, 300)  # a red flood zone, grid CRS metres


def lab(identifier, level, area, hazard="flood", scope="place", district="bund", place="") -> AlertLabels:
    return AlertLabels(identifier, hazard, level, place or f"flood:point:{identifier}", identifier, (), area,
                       district, scope)


def test_red_suppresses_lower_alerts_of_its_hazard_inside_its_area():
    red = lab("red-zone", 4, TUNNEL)
    inside = lab("portal", 2, shapely.box(50, 50, 80, 80))
    edge = lab("edge", 3, shapely.box(390, 100, 415, 120))  # 15 m outside: within the 20 m buffer
    outside = lab("far", 2, shapely.box(500, 500, 520, 520))
    crowd = lab("crowd-in", 2, shapely.box(60, 60, 70, 70), hazard="crowd")
    other_red = lab("red-too", 4, shapely.box(10, 10, 20, 20))
    no_area = lab("unknown", 1, None)
    got = Inhibitor.default().inhibited([red, inside, edge, outside, crowd, other_red, no_area])
    assert got == {"portal": ("red-zone", "red-covers-lower"), "edge": ("red-zone", "red-covers-lower")}


def test_equal_labels_keep_districts_apart():
    red = lab("red", 4, TUNNEL, district="bund")
    other = lab("lower", 1, shapely.box(10, 10, 20, 20), district="lujiazui")
    assert Inhibitor.default().inhibited([red, other]) == {}


def test_district_rain_signal_suppresses_gauge_rain_alerts_at_its_level_or_below():
    district = lab("rain-district", 2, shapely.box(0, 0, 1000, 1000), hazard="rain", scope="district", place="")
    gauge_low = lab("rain-gauge-1", 2, shapely.box(1500, 0, 1800, 300), hazard="rain", scope="gauge", place="")
    gauge_high = lab("rain-gauge-2", 3, shapely.box(2000, 0, 2300, 300), hazard="rain", scope="gauge", place="")
    got = Inhibitor.default().inhibited([district, gauge_low, gauge_high])
    assert got == {"rain-gauge-1": ("rain-district", "district-rain-signal-covers-gauges")}


def test_rain_scope_is_district_over_half_the_grid_else_gauge():
    grid = GridSpec("EPSG:4549", 0.0, 100.0, 10.0, 10, 10)
    big = SimpleNamespace(identifier="r1", hazard="rain", level=2, place=None, cells=np.arange(60))
    small = SimpleNamespace(identifier="r2", hazard="rain", level=2, place=None, cells=np.arange(10))
    assert labels_of(big, ("rain-01", "rain-02"), cells_area(big.cells, grid), district="bund",
                     cells_total=grid.nx * grid.ny).scope == "district"
    got = labels_of(small, ("rain-03",), cells_area(small.cells, grid), district="bund", cells_total=100)
    assert got.scope == "gauge" and got.get("device") == "rain-03" and got.get("level") == "yellow"
    assert got.area.area == pytest.approx(10 * 100.0) and got.area.bounds == (0.0, 90.0, 100.0, 100.0)
    place = SimpleNamespace(key="flood:point:water-03", name_en="Bund Tunnel north portal", name_zh="外滩隧道北口",
                            description="x")
    flood = SimpleNamespace(identifier="f1", hazard="flood", level=4, place=place, cells=np.arange(3))
    got = labels_of(flood, ("water-03",), None, district="bund")
    assert (got.place, got.place_name, got.place_name_zh, got.scope) == (
        "flood:point:water-03", "Bund Tunnel north portal", "外滩隧道北口", "place")


def test_an_alert_never_inhibits_itself_and_the_highest_source_is_named():
    rules = rules_of_yaml("""
inhibit_rules:
  - name: any-flood
    source_matchers: ['hazard="flood"']
    target_matchers: ['hazard="flood"']
    target_within_source: true
""")
    a = lab("a", 2, TUNNEL)
    b = lab("b", 3, TUNNEL)
    c = lab("c", 1, shapely.box(1, 1, 2, 2))
    got = Inhibitor(rules).inhibited([a, b, c])
    assert got == {"a": ("b", "any-flood"), "b": ("a", "any-flood"), "c": ("b", "any-flood")}


def test_from_file_reads_a_rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("""inhibit_rules:
  - name: orange-crowd-quiets-forecast
    source_matchers: ['hazard="crowd"', 'level=~"orange|red"']
    target_matchers: ['hazard="crowd_forecast"']
    equal: [place]
    source_level_at_least: 3
""", encoding="utf-8")
    inh = Inhibitor.from_file(path)
    crowd = lab("crowd", 3, None, hazard="crowd", place="crowd:area:chen-yi-square")
    forecast = lab("fc", 4, None, hazard="crowd_forecast", place="crowd:area:chen-yi-square")
    elsewhere = lab("fc2", 4, None, hazard="crowd_forecast", place="crowd:area:bund-promenade")
    assert inh.inhibited([crowd, forecast, elsewhere]) == {"fc": ("crowd", "orange-crowd-quiets-forecast")}


RULE = """inhibit_rules:
  - name: r
    source_matchers: ['level="red"']
    target_matchers: ['level="blue"']
"""


@pytest.mark.parametrize(("text", "message"), [
    ("inhibit_rules: [", "line 1, column 17: not valid YAML"),
    ("rules: []", "expected a mapping with a list 'inhibit_rules:'"),
    ("inhibit_rules: []\nextra: 1", "unknown top-level key(s) extra"),
    (RULE.replace("level=\"blue\"", "colour=\"blue\""), "line 4: rule 1 ('r'), field 'target_matchers': unknown label"),
    (RULE.replace("['level=\"red\"']", "[]"), "line 3: rule 1 ('r'), field 'source_matchers': must be a non-empty"),
    (RULE.replace("level=\"red\"", "level=~\"(\""), "field 'source_matchers': bad regular expression"),
    (RULE + "    equal: [colour]\n", "line 5: rule 1 ('r'), field 'equal': unknown label 'colour'"),
    (RULE + "    buffer_m: 10\n", "field 'buffer_m': only means something with target_within_source"),
    (RULE + "    target_within_source: yes please\n", "field 'target_within_source': must be true or false"),
    (RULE + "    target_within_source: true\n    buffer_m: -1\n", "line 6: rule 1 ('r'), field 'buffer_m'"),
    (RULE + "    source_level_at_least: 9\n", "field 'source_level_at_least': must be a level from 0 to 4"),
    (RULE + "    sauce_matchers: []\n", "line 5: rule 1 ('r'), field 'sauce_matchers': unknown field"),
    (RULE + RULE.split("\n", 1)[1], "line 5: rule 2: the name 'r' is used twice"),
    ("inhibit_rules:\n  - just a string\n", "line 2: rule 1, field '': a rule must be a mapping"),
])
def test_a_bad_rules_file_names_the_line_and_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InhibitionConfigError, match=re.escape(message)) as info:
        Inhibitor.from_file(path)
    assert str(info.value).startswith(str(path))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InhibitionConfigError, match="cannot read the inhibition rules"):
        Inhibitor.from_file(tmp_path / "nope.yaml")


def test_an_observed_crowd_alert_covers_the_forecast_of_its_place_up_to_its_level():
    def crowd(ident, hazard, level, place):
        return AlertLabels(ident, hazard, level, place, place, (), None, district="bund")

    observed = crowd("obs", "crowd", 3, "crowd:area:chen-yi")
    same = crowd("fc-same", "crowd_forecast", 3, "crowd:area:chen-yi")
    worse = crowd("fc-worse", "crowd_forecast", 4, "crowd:area:chen-yi")
    elsewhere = crowd("fc-else", "crowd_forecast", 2, "crowd:area:promenade")
    got = Inhibitor.default().inhibited([observed, same, worse, elsewhere])
    assert got == {"fc-same": ("obs", "observed-crowd-covers-forecast")}
