"""The live core's alert output (issue 16; twin/live/alert_output.py): values refreshed every tick and the Updates
they cause, storm control with its summary alert, and the restricted copy on the unit topics.

An evening crowd on the whole Bund (every counter of the registry at the same count) raises one crowd alert per
named place at once, and as many forecasts: more than storm control lets go to the units in a minute.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.batch import Batch
from tests import test_live_core
from tests.test_cap_profile import parse as cap_tools_parse
from twin.alerting import cap
from twin.alerting.store import Store
from twin.live.alert_output import OutputConfig
from twin.live.core import CoreConfig, TwinCore

T0 = 1_735_689_600.0
CHEN_YI_SQUARE = (121.4855, 31.2405)
MAX_NEW = 10
registry = test_live_core.registry
"""The fixture: the Bund's device registry (tests/test_live_core.py)."""


@pytest.fixture
def core(bund10, registry):
    ds, _ = bund10
    c = TwinCore(ds, registry, Store.open(":memory:"),
                 CoreConfig(clear_s=20.0, output=OutputConfig(storm_max_new_per_min=MAX_NEW)))
    yield c
    c.store.close()


def _tick(core, registry, t, count, unit=True):
    ids = [d.id for d in registry.of_kind("crowd")]
    core.on_batch(Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count",
                              value=np.full(len(ids), float(count))))
    if unit:
        core.on_batch(Batch.build(1, device="unit-police-04", t=t, quantity="position", lon=CHEN_YI_SQUARE[0],
                                  lat=CHEN_YI_SQUARE[1], datum="CGCS2000", speed_kmh=4.0))
    return core.on_tick(t)


def _outbox(core):
    out = []
    for item in core.store.pending(100_000):  # the alerts' messages (the case loop's are not CAP)
        if item.topic.startswith("city/alerts/") or item.topic.endswith("/alerts"):
            out.append((item.topic, json.loads(item.payload) if item.payload else None))
    return out


def test_an_alert_storm_goes_to_units_as_one_summary_per_hazard(core, registry):
    for k in range(3):
        _tick(core, registry, T0 + 10 * k, 300)
    raised = [e for k in range(3, 9) for e in _tick(core, registry, T0 + 10 * k, 40_000).events if e.kind == "raised"]
    assert len(raised) > MAX_NEW, "the whole Bund at once: more alerts than storm control lets through"
    live = core.alert_live()
    held = {i for i, v in live.items() if (v["suppressed"] or {}).get("by") == "storm"}
    outbox = _outbox(core)
    sent_alone = {m["identifier"] for topic, m in outbox if m and topic.startswith("city/units/")
                  and m["msgType"] == "Alert"}
    assert held and 0 < len(sent_alone) <= MAX_NEW, (len(raised), len(held), len(sent_alone))
    summaries = [m for topic, m in outbox if m and ".storm-" in m["identifier"] and topic.startswith("city/alerts/")]
    assert summaries, "a storm summary on city/alerts/"
    first = summaries[0]
    assert cap.problems(first) == [] and cap_tools_parse(first).identifier == first["identifier"]
    zh, en = cap.info_block(first, "zh-CN"), cap.info_block(first, "en-US")
    assert zh["headline"].startswith("告警风暴") and en["headline"].startswith("Alert storm")
    members = {p["value"] for p in en["parameter"] if p["valueName"] == "member"}
    assert members and members <= held | {e.alert.identifier for e in raised}
    # held alerts are recorded and published, but none of their messages went to a unit
    unit_ids = {m["identifier"] for topic, m in outbox if m and topic.startswith("city/units/")}
    public = {m["identifier"] for topic, m in outbox if m and topic.startswith("city/alerts/")}
    assert held <= public and not (held & unit_ids)
    assert not any(".storm-" in i for i in unit_ids), "a summary goes to no unit"
    # what goes to units is the restricted copy
    for topic, m in outbox:
        if m and topic.startswith("city/units/"):
            assert m["scope"] == "Restricted" and m["restriction"] and cap.problems(m) == []


def test_values_are_refreshed_every_tick_and_a_step_makes_an_update(core, registry):
    for k in range(3):
        _tick(core, registry, T0 + 10 * k, 300)
    for k in range(3, 8):
        _tick(core, registry, T0 + 10 * k, 20_000)
    square = next(i for i, a in core.book.active.items()
                  if a.hazard == "crowd" and a.place is not None and a.place.key == "crowd:area:crowd-bund-05")
    before = core.alert_live()[square]
    density = core.live_layers()["crowd_density"].values.ravel()[core.book.active[square].cells]
    assert before["value"] == pytest.approx(np.nanmax(density)) and before["unit"] == "person/m2"
    assert before["value"] >= 20_000 / 6796 - 1e-9, "at least the square's own counter's density"
    n_messages = len(core.book.active[square].messages)
    events = [e for k in range(8, 10) for e in _tick(core, registry, T0 + 10 * k, 23_500).events
              if e.alert.identifier == square]
    after = core.alert_live()[square]
    assert after["value"] == pytest.approx(before["value"] * 23_500 / 20_000, rel=0.01)
    assert after["value"] - before["value"] >= 0.5 and after["trend_word"] == "rising"
    assert after["peak"] == pytest.approx(after["value"]) and len(after["history"]) >= 1
    assert events and all(e.kind == "updated" for e in events), "the value moved 0.5 person/m2: an Update"
    assert len(core.book.active[square].messages) > n_messages
    params = {p["valueName"]: p["value"] for p in cap.info_block(core.book.active[square].last)["parameter"]}
    assert params["value"] == f"{after['value']:.2f} person/m2" and params["trend"].startswith("rising")


def test_an_alert_over_the_whole_district_says_so_instead_of_a_centre_point():
    from twin.alerting.compose import default_description
    from twin.district.grid import GridSpec

    grid = GridSpec(crs="EPSG:4549", x0=640000.0, y0=3460000.0, nx=20, ny=10, cell_size=10.0)
    everything = np.arange(grid.size)
    assert default_description(grid, "bund", everything) == "bund: the whole district (全区, 200 cells)"
    assert default_description(grid, "bund", everything[:179]).startswith("bund: 179 cells around 31.")
