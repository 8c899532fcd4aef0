"""The storm target of issue 16: a 5-year, 60-minute design storm over the Bund with the default drainage raises at
most 30 flood alerts, each naming its place (docs/science/alerts.md, "Grouping at operational units").

Before flood alerts were grouped at operational units the same storm raised 320 flood alerts in two hours (one per
connected set of 10 m cells). The test runs the storm hour only (23:00 to 00:00, no crowd), the scenario machinery
as `twin scenario run` drives it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.forcing import prepare
from scenarios.runner import ScenarioModels, run_models
from scenarios.spec import load_scenario
from twin.alerting.cap import info_block

STORM = Path(__file__).resolve().parents[2] / "data" / "scenarios" / "storm-5yr-pump-down.yaml"
STORM_HOUR = {"start_time": "2014-12-31T23:00:00+08:00", "duration": "60min", "forcing.crowd": None,
              "interventions.drainage": []}
"""The 5-year, 60-minute storm of ``storm-5yr-pump-down.yaml`` from its start, with the default drainage (the
failed pump left out) and without the New Year's Eve crowd."""
TARGET = 30
"""At most this many flood alerts (issue 16)."""


@pytest.fixture(scope="module")
def storm_hour(bund10):
    static, _ = bund10
    spec = load_scenario(STORM, STORM_HOUR)
    models = ScenarioModels(prepare(spec, static), spec.start_time, spec.seed, status=spec.status)
    return run_models(models, duration_s=spec.duration_s, step_s=spec.step_s, every_s=600.0), models


def test_the_storm_raises_at_most_30_flood_alerts_each_naming_its_place(storm_hour):
    result, _ = storm_hour
    assert float(result.frames["water_depth"].max()) > 0.15, "the storm floods the district (yellow depth somewhere)"
    raised = [e for _, e in result.events if e.alert.hazard == "flood" and e.kind == "raised"]
    assert 1 <= len(raised) <= TARGET, f"{len(raised)} flood alerts"
    for event in raised:
        place = event.alert.place
        assert place is not None and place.key.startswith("flood:") and place.name_en and place.name_zh, place
        english, chinese = info_block(event.message, "en-US"), info_block(event.message, "zh-CN")
        assert place.name_en in english["area"][0]["areaDesc"] and place.name_zh in chinese["area"][0]["areaDesc"]
    keys = [e.alert.place.key for e in raised]
    assert any(k.startswith("flood:point:") for k in keys), "a tunnel portal's waterlogging point is alerted"


def test_an_alert_lives_as_long_as_its_unit_is_wet(storm_hour):
    """One unit, one alert at a time: no two active flood alerts share a key."""
    result, models = storm_hour
    active: dict[str, str] = {}
    for _, e in result.events:
        if e.alert.hazard != "flood":
            continue
        key = e.alert.place.key
        if e.kind == "raised":
            assert key not in active, f"a second alert for {key}"
            active[key] = e.alert.identifier
        elif e.kind == "cancelled":
            assert active.pop(key) == e.alert.identifier
        else:
            assert active[key] == e.alert.identifier, "an update stays with the alert of its unit"
    assert sorted(active) == sorted(a.place.key for a in models.book.of_hazard("flood"))
