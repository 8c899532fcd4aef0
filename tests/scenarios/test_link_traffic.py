"""Scenario traffic on road links (issue 15): BPR and queues per link, closures detoured, alerts on road segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from scenarios.forcing import prepare
from scenarios.runner import ScenarioModels, run_models
from scenarios.session import cached_twin, road_network
from scenarios.spec import parse_scenario
from scenarios.traffic import LinkQueues, RoadConfig
from twin.alerting.cap import info_block
from twin.district.dataset import load_twin

# ---------------------------------------------------------------- a small network by hand
# nodes 0..3; link 0 (0->1, 200 m, 2 lanes, 50 km/h) is the main road and link 5 its reverse, on cells 0 (120 m)
# and 1 (80 m); the short way round is 0->2->1 (links 1, 2: 150 m each, 1 lane), the long one 0->3->1 (links 3, 4).
U = np.array([0, 0, 2, 0, 3, 1])
V = np.array([1, 2, 1, 3, 1, 0])
LENGTH = np.array([200.0, 150.0, 150.0, 400.0, 400.0, 200.0])
LANES = np.array([2, 1, 1, 1, 1, 2])
FREE = np.array([50.0, 40.0, 40.0, 40.0, 40.0, 50.0])
CELLS = (np.array([0, 0, 1, 2, 3, 4, 5, 5]), np.array([0, 1, 2, 3, 4, 5, 0, 1]),
         np.array([120.0, 80.0, 150.0, 150.0, 400.0, 400.0, 120.0, 80.0]))
N_CELLS = 6


def queues(**config) -> LinkQueues:
    return LinkQueues(U, V, LENGTH, LANES, FREE, CELLS, RoadConfig(**config))


def closed(*cells: int) -> np.ndarray:
    mask = np.zeros(N_CELLS, bool)
    mask[list(cells)] = True
    return mask


def test_speed_is_the_bpr_value_below_capacity_and_the_demand_factor_is_length_weighted():
    q = queues()
    speed = q.step(10.0, 1.0)
    # V/C 0.6: 50 / (1 + 0.15 x 0.6^4) = 50 / 1.01944 km/h
    assert speed[0] == pytest.approx(49.04654, abs=1e-4) and speed[1] == pytest.approx(39.23723, abs=1e-4)
    factor = np.ones(N_CELLS)
    factor[0] = 1.75  # link 0: (120 x 1.75 + 80 x 1) / 200 = 1.45 -> V/C 0.87
    speed = q.step(10.0, factor)
    assert q.vc[0] == pytest.approx(0.87) and q.vc[5] == pytest.approx(0.87) and q.vc[1] == pytest.approx(0.6)
    assert speed[0] == pytest.approx(50.0 / (1.0 + 0.15 * 0.87 ** 4), rel=1e-12)  # 46.3039 km/h
    assert q.queued_vehicles == 0.0


def test_above_capacity_a_queue_forms_and_slows_the_link_then_drains():
    q = queues()
    speed = q.step(60.0, 2.5)  # V/C 1.5 on every link
    # link 0: C = 2 x 900 / 3600 = 0.5 veh/s, V = 0.75 veh/s: 15 vehicles queue in 60 s
    assert q.queue[0] == pytest.approx(15.0)
    crossing = 200.0 / (50.0 / 1.15 / 3.6) + 15.0 / 0.5  # BPR time at V/C 1 (16.56 s) + discharge 30 s
    assert speed[0] == pytest.approx(200.0 / crossing * 3.6, rel=1e-12)
    assert speed[0] == pytest.approx(15.464, abs=1e-3)
    q.step(60.0, 1.0)  # V/C 0.6: drains at 0.2 veh/s
    assert q.queue[0] == pytest.approx(3.0)


def test_a_closed_link_carries_nothing_and_its_demand_takes_the_shortest_detour():
    q = queues()
    q.step(10.0, 1.0, closed(1))  # 80 m of link 0's 200 m: less than half, still open
    assert not q.closed.any()
    speed = q.step(10.0, 1.0, closed(0))  # 120 m of 200 m: closed, and its reverse too
    assert q.closed.tolist() == [True, False, False, False, False, True]
    assert np.isnan(speed[0]) and np.isnan(speed[5])
    assert q.detour_of(0).tolist() == [1, 2], "0->2->1 (300 m), not 0->3->1 (800 m)"
    # link 0's 0.3 veh/s on 1-lane links of 0.25 veh/s: their V/C rises by 1.2, from 0.6 to 1.8
    assert q.vc[1] == pytest.approx(1.8) and q.vc[2] == pytest.approx(1.8)
    assert q.vc[3] == pytest.approx(0.6) and q.vc[4] == pytest.approx(0.6)
    assert q.queue[1] == pytest.approx(0.8 * 0.25 * 10.0), "the detour queues at 0.2 veh/s"
    # link 5 (1->0) has no way round (no open link leaves node 1): its 0.3 veh/s are lost
    assert q.unserved_veh_h == pytest.approx(1080.0)
    q.step(10.0, 1.0)  # reopened: back to V/C 0.6 everywhere, nothing lost
    assert not q.closed.any() and q.vc == pytest.approx(np.full(6, 0.6)) and q.unserved_veh_h == 0.0


def test_a_closure_without_a_detour_counts_its_demand_as_unserved():
    q = queues()
    for _ in range(2):
        speed = q.step(10.0, 1.0, closed(3))  # link 2 (2->1): node 2 has no other way out
    assert np.isnan(speed[2]) and q.detour_of(2).size == 0
    assert q.unserved_veh_h == pytest.approx(0.6 * 0.25 * 3600.0)  # 540 veh/h
    assert q.unserved_veh == pytest.approx(0.15 * 20.0)  # 3 vehicles in 20 s
    assert q.vc[[0, 1, 3, 4, 5]] == pytest.approx(np.full(5, 0.6)), "nothing else is loaded"


def test_a_closed_stretch_of_road_is_detoured_once_from_its_ends():
    # main road 0->1->2 (two closed links of 100 m, node 1 has no other link), parallel 0->3->2 open
    q = LinkQueues(np.array([0, 1, 0, 3]), np.array([1, 2, 3, 2]), np.array([100.0, 100.0, 150.0, 150.0]),
                   np.array([1, 1, 1, 1]), np.full(4, 40.0),
                   (np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), np.array([100.0, 100.0, 150.0, 150.0])))
    q.step(10.0, 1.0, np.array([True, True, False, False]))
    assert q.detour_of(0).tolist() == [2, 3] and q.detour_of(1).tolist() == [2, 3]
    assert q.vc[2] == pytest.approx(1.2) and q.vc[3] == pytest.approx(1.2), "one movement, not two"
    assert q.unserved_veh_h == 0.0


# ---------------------------------------------------------------- a scenario on the Bund's links
SURGE = {"name": "surge", "start_time": "2025-07-01T18:00:00+08:00", "duration": "4min", "step": "10s",
         "forcing": {"traffic": [{"road": "Middle Sichuan Road", "factor": 3.0, "until": "1h"}]},
         "interventions": {"close_road": [{"road": "East Zhongshan No. 1 Road", "until": "1h"}]}}
"""Windows end after the run: the traffic of a step is forced at its end (a window is [from, until))."""


@pytest.fixture(scope="module")
def bund_twin():
    path = cached_twin("bund", 10.0)
    static, _ = load_twin(path)
    return path, static


@pytest.fixture(scope="module")
def link_run(bund_twin):
    """The surge on Middle Sichuan Road with East Zhongshan No. 1 Road closed, on the Bund's road links."""
    path, static = bund_twin
    spec = parse_scenario({**SURGE, "grid": str(path)}, Path(path).parent)
    network = road_network(path)
    models = ScenarioModels(prepare(spec, static), spec.start_time, spec.seed, status=spec.status,
                            road_network=network)
    result = run_models(models, duration_s=spec.duration_s, step_s=spec.step_s)
    return result, models, network


def _info(event) -> tuple[str, dict[str, str]]:
    info = info_block(event.message)
    return info["area"][0]["areaDesc"], {p["valueName"]: p["value"] for p in info["parameter"]}


def test_a_demand_surge_raises_traffic_alerts_on_named_road_segments(link_run):
    result, models, _ = link_run
    raised = [e for _, e in result.events if e.alert.hazard == "traffic" and e.kind == "raised"]
    assert raised, "the surge (V/C 1.8) raises traffic alerts"
    roads = set()
    for e in raised:
        area, params = _info(e)
        assert "cells around" not in area and area.startswith(f"{params['roadName']} ("), area  # road (路名) ...
        speed, free = (float(params[k].removesuffix(" km/h")) for k in ("segmentSpeed", "freeFlowSpeed"))
        assert speed < 0.5 * free, params  # yellow or worse: GB/T 33171 moderate congestion at most
        assert e.alert.place is not None and info_block(e.message)["area"][0]["polygon"]
        roads.add(params["roadName"])
    assert "Middle Sichuan Road" in roads, roads
    layers = models.link_layers
    assert set(layers.sizes) == {"link"} and {"link_speed", "link_warning", "link_vc"} <= set(layers.data_vars)


def test_the_closed_road_carries_nothing_and_its_traffic_loads_other_links(link_run):
    _, models, network = link_run
    names = network.links["name_en"].fillna("").to_numpy()
    lay = models.link_layers
    closure = names == "East Zhongshan No. 1 Road"
    assert lay["link_closed"].values[closure].all() and np.isnan(lay["link_speed"].values[closure]).all()
    vc = lay["link_vc"].values
    loaded = (lay["link_closed"].values == 0) & (vc > 0.6 + 1e-9) & (names != "Middle Sichuan Road")
    assert loaded.sum() >= 10, "detours load cross streets and parallel roads"
    assert models.fields.links.unserved_veh_h >= 0.0
    speed = models.layers["traffic_speed"].values
    assert np.isfinite(speed).any() and np.nanmax(speed) <= 80.0, "the grid's speed is painted from the links"


def test_without_a_road_network_traffic_stays_on_road_cells(bund_twin):
    path, static = bund_twin
    doc = {**SURGE, "grid": str(path), "duration": "2min", "interventions": {}}
    spec = parse_scenario(doc, Path(path).parent)
    models = ScenarioModels(prepare(spec, static), spec.start_time, spec.seed, status=spec.status)
    result = run_models(models, duration_s=spec.duration_s, step_s=spec.step_s)
    assert models.fields.links is None and models.link_layers.sizes == {}
    raised = [e for _, e in result.events if e.alert.hazard == "traffic" and e.kind == "raised"]
    assert raised and all(e.alert.place is None and "cells around" in _info(e)[0] for e in raised)


def test_a_twin_whose_roads_cannot_be_built_falls_back_with_one_line(bund_twin, tmp_path, capsys):
    path, _ = bund_twin
    with xr.open_dataset(path) as ds:
        attrs = {**ds.attrs, "district": "nowhere"}
    custom = tmp_path / "custom.nc"
    xr.Dataset(attrs=attrs).to_netcdf(custom)
    assert road_network(custom) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: no road network") and "Traceback" not in err
