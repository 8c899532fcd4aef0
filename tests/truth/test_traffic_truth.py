"""Road-link speeds against an independent traffic simulation (issue 15, "Validation against SUMO, in the
project"): the SUMO truth case of tests/truth/traffic (People's Square, free flow and gridlock) fed through the
real ingest -> twin path.

* `test_the_bare_twin_and_the_join_cover_the_truth` (fast): the bare People's Square twin is a valid static twin
  for `TwinCore`, its road links come from the OSM file SUMO ran on, and every SUMO edge-window the comparison
  uses (>= 3 probe traversals) is joined to a twin link (tests/truth/traffic/twin_case.py has the join's rule);
* `test_the_twins_link_speeds_match_sumo` (slow, per run): each run's NMEA payloads through
  `ingest.admission.Admission` into `TwinCore` with the road network, a tick every 5 s of SUMO time; at the end of
  every 5-minute edgeData interval the twin's ``link_speed_window`` against SUMO's space-mean speed of the link's
  edges (sampled-seconds weighted: total distance / total time), over the link-windows with >= 3 probe
  traversals.

The "perfect probe" floor is the generator's (summary.json): probes' exact traversal speeds against edgeData on
the same edge-windows, MAE 3.1 / 5.3 km/h and bias +0.9 / +2.8 km/h in free flow / gridlock. It is not zero
because edgeData also counts vehicles queued on an edge at the window's end, departing, arriving or teleported
there. Assertions: >= 90 % of the link-windows estimated; MAE <= floor + 2 km/h and |bias| <= |floor bias| + 2
km/h; MAE within 1 km/h of the perfect probes on the same link-windows; and the issue's targets (MAE <= 5 km/h,
|bias| <= 2 km/h) where the floor itself meets them, which is free flow (in gridlock the floor is already at
5.3 / +2.8 km/h). Figures (seed 15): tests/truth/traffic/README.md. Print them with
``nice -n 19 python -m pytest -s tests/truth/test_traffic_truth.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingest.registry import Registry
from tests.truth.traffic import case
from tests.truth.traffic import twin_case as tc
from twin.alerting.store import Store
from twin.district.dataset import grid_of
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig

ISSUE_MAE_KMH = 5.0
ISSUE_BIAS_KMH = 2.0
ISSUE_SHARE = 0.90
"""Issue 15's targets over link-windows with >= 3 probe traversals."""
FLOOR_MARGIN_KMH = 2.0
"""The twin's MAE and |bias| may exceed the perfect-probe floor by at most this much. [km/h]"""
PROBE_MARGIN_KMH = 1.0
"""... and its MAE that of the perfect probes on the same link-windows by at most this (measured: +0.6 km/h in
free flow, +0.2 km/h in gridlock; the rest is the matcher: surface roads under elevated ones, one-vehicle
windows). [km/h]"""


@pytest.fixture(scope="module")
def twin():
    """(static dataset, road network, join) of the bare People's Square twin."""
    ds, network = tc.static_twin()
    return ds, network, tc.join_links_to_edges(network)


def test_the_bare_twin_and_the_join_cover_the_truth(twin):
    ds, network, join = twin
    grid = grid_of(ds)
    w, s, e, n = tc.edges_bbox()
    gw, gs, ge, gn = grid.bounds_lonlat
    assert gw < w and gs < s and ge > e and gn > n, "the grid covers every SUMO edge"
    assert grid.cell_size == tc.CELL_M and grid.size < 5_000
    assert 1_000 <= len(network.links) <= 2_000 and network.summary()["tunnel_links"] >= 5
    assert (ds["road_class"].values > 0).mean() > 0.3, "the links give the cells their road class"
    for run in case.RUNS:
        reg = tc.registry(run)
        assert isinstance(reg, Registry) and len(reg.of_kind("vehicle")) == len(case.probes(run))
    core = TwinCore(ds, tc.registry("freeflow"), Store.open(":memory:"),
                    CoreConfig(tick_s=tc.TICK_S, live=LiveConfig(road_network=network)))
    try:
        core.on_tick(float(case.T0))
        assert core.models.link_layers["link_speed_window"].size == len(network.links)
    finally:
        core.store.close()

    for run in case.RUNS:  # every edge-window the comparison looks at has a link
        used = {w.edge for w in case.edgedata(run) if w.probe_traversals >= case.MIN_TRAVERSALS}
        missing = sorted(used - set(join.edge_link))
        assert not missing, f"{run}: edges with probe traversals joined to no twin link: {missing}"
    # joined edges run along their link: they cover most of it, and SUMO's lengths (which stop at the junction
    # areas, larger where SUMO joined junction clusters) add up to somewhat less than the link's
    cover = np.array([join.cover[k] for k in join.edges])
    assert np.median(cover) >= 0.95, np.percentile(cover, [5, 50, 95])
    edges = case.edges()
    ratio = np.array([sum(edges[eid]["properties"]["length_m"] * share for eid, share in es.items())
                      / network.links["length_m"].iloc[k] for k, es in join.edges.items()])
    assert 0.8 <= np.median(ratio) <= 1.05, np.percentile(ratio, [5, 50, 95])


@pytest.fixture(scope="module", params=case.RUNS)
def compared(request, twin):
    ds, network, join = twin
    fed = tc.feed(request.param, ds, network)
    return fed, tc.compare(request.param, fed, join)


@pytest.mark.slow
def test_the_twins_link_speeds_match_sumo(compared):
    fed, c = compared
    run = c.run
    floor = case.summary()["runs"][run]["probe_vs_sumo_speed_kmh_on_those"]
    report = (f"{c.line()}; generator's floor MAE {floor['mae']:.2f} bias {floor['bias']:+.2f}; "
              f"{fed.messages} messages, {fed.records} fixes, wall {fed.wall_s:.0f} s")
    print(f"\n{report}")
    assert not fed.rejected and fed.outside_grid == 0, (fed.rejected, fed.outside_grid)
    assert fed.records == case.summary()["runs"][run]["fixes"], "every fix reached the twin"
    assert sorted(fed.layers) == list(range(case.WARMUP_S + case.INTERVAL_S,
                                            case.WARMUP_S + case.MEASURE_S + 1, case.INTERVAL_S))
    n_edge_windows = case.summary()["runs"][run]["edge_intervals_with_3_probe_traversals"]
    assert c.n >= 0.95 * n_edge_windows, report

    problems = []
    if c.share_estimated < ISSUE_SHARE:
        problems.append(f"estimated {c.share_estimated:.1%} < {ISSUE_SHARE:.0%}")
    if c.mae > floor["mae"] + FLOOR_MARGIN_KMH:
        problems.append(f"MAE {c.mae:.2f} > floor {floor['mae']:.2f} + {FLOOR_MARGIN_KMH}")
    if abs(c.bias) > abs(floor["bias"]) + FLOOR_MARGIN_KMH:
        problems.append(f"|bias| {abs(c.bias):.2f} > |floor| {abs(floor['bias']):.2f} + {FLOOR_MARGIN_KMH}")
    if c.mae > c.floor_mae + PROBE_MARGIN_KMH:
        problems.append(f"MAE {c.mae:.2f} > perfect probes' {c.floor_mae:.2f} + {PROBE_MARGIN_KMH} on the same "
                        "link-windows")
    floor_meets = floor["mae"] <= ISSUE_MAE_KMH and abs(floor["bias"]) <= ISSUE_BIAS_KMH
    assert floor_meets == (run == "freeflow"), "the issue's targets are within the floor's reach in free flow only"
    if floor_meets:
        if c.mae > ISSUE_MAE_KMH:
            problems.append(f"MAE {c.mae:.2f} > issue target {ISSUE_MAE_KMH}")
        if abs(c.bias) > ISSUE_BIAS_KMH:
            problems.append(f"|bias| {abs(c.bias):.2f} > issue target {ISSUE_BIAS_KMH}")
    assert not problems, f"{report}\n" + "\n".join(problems)
