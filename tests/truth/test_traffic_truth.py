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

* the level half (slow, same replays: the module-scoped ``compared`` fixture, so each run is fed once): every
  joined, evaluated link (GB/T class 1-4) in every 5-minute interval, SUMO's GB/T 33171 level from its edges'
  space-mean speed and the link's class against the twin's ``link_warning``, taken as **the highest warning over the
  window's ticks** (begin < t <= end, 60 ticks of 5 s). `test_no_orange_or_red_where_sumo_flows_freely` (issue
  target 1: no orange or red on link-windows SUMO has smooth or basically smooth; both runs; met in gridlock, an
  expected failure in free flow, see `FREE_MISS`),
  `test_flagged_link_windows_are_truly_congested` (target 3: >= 90 % of the link-windows flagged orange or red are
  at GB/T level >= 3, moderate, i.e. truly at least yellow; a flag where SUMO had no traffic counts as false;
  gridlock, as the issue puts it; free flow held to 80 %, see the test)
  and `test_gridlock_flags_sumos_severe_link_windows` (target 2: >= 80 % of SUMO's severe link-windows with
  >= 3 probe traversals flagged orange or red, gridlock run; xfail, see `SEVERE_MISS`: even exact probe traversals
  are severe on only 77.6 % of them), with `test_gridlock_flags_the_severe_link_windows_the_probes_saw` (the same
  target over the severe link-windows on which the probes' exact traversals are severe too).

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
"""... and its MAE that of the perfect probes on the same link-windows by at most this (measured: +0.7 km/h in
free flow, +0.1 km/h in gridlock, with the fixes' altitude in the matcher; +0.6 and +0.2 without it; the rest is
the matcher: surface roads under elevated ones, one-vehicle windows). [km/h]"""


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


# ----------------------------------------------------------------------------------------- the level half
ISSUE_SEVERE_FLAGGED = 0.80
"""Issue 15, gridlock demand: at least this share of SUMO's severe link-windows flagged orange or red."""
ISSUE_FLAGGED_TRUE = 0.90
"""... and at least this share of the flagged link-windows truly at least yellow (SUMO GB/T level >= 3)."""
SEVERE_MISS = (
    "issue 15 target 2 not met (measured seed 15, max warning over the window: 63 of 85 = 74.1 % of SUMO's severe "
    "gridlock link-windows flagged orange or red, against 60.0 % with a 120 s raise delay for orange and 22.1 % "
    "before the stop-line rule). Exact probe traversals themselves are severe on only 66 of the 85 (77.6 %, "
    "`severe_floor`): on the other 19 the probes drove the link at GB/T level < 4 (9 of them smooth) while vehicles "
    "queued in other lanes or stuck and teleported make SUMO's edge speed severe. Of the twin's 22 misses, 14 are "
    "such; the other 8 are links whose window speed turns severe only in the window's last 30 s, or stays moderate.")
FREE_MISS = (
    "issue 15 target 1 not met in full in the free-flow run (measured seed 15): 1 of 1,066 free-flowing link-windows "
    "is orange or red (0 of the 97 with >= 3 probe traversals): a 34 m residential link where two probes waited 30-"
    "45 s to turn onto a main road turned red in the interval before, when SUMO had no vehicle on it, and the level "
    "is held through the silence after (hold_s 600 s) into an interval SUMO has free. The gridlock run has 0 of "
    "1,167 since silences longer than 60 s outside tunnels give no link pieces (it had 1, a teleported probe).")


@pytest.fixture(scope="module")
def levels(compared, twin):
    """The run's `twin_case.LevelComparison` (from the replay the speed half made) and the flags it cannot judge."""
    fed, c = compared
    _, network, join = twin
    lc = tc.compare_levels(c.run, fed, join, network)
    elsewhere = tc.flagged_elsewhere(fed, join, network)
    print(f"\n{lc.line('max')}; flagged on links with no SUMO edge {elsewhere}\n{lc.line('end')}")
    assert fed.warning.shape == (case.MEASURE_S // int(tc.TICK_S), len(network.links))
    assert set(lc.begin_s.tolist()) == set(range(case.WARMUP_S, case.WARMUP_S + case.MEASURE_S, case.INTERVAL_S))
    return lc


@pytest.mark.slow
def test_no_orange_or_red_where_probes_saw_sumo_flow_freely(levels):
    """Target 1 where the twin had probes: no free-flowing link-window with >= 3 probe traversals is orange or red
    (measured 0 / 97 and 0 / 101), and at most 0.3 % of all free-flowing link-windows are (measured 1 / 1,066 and
    0 / 1,167; see FREE_MISS)."""
    f = levels.figures("max")
    assert f["free"] >= 500 and f["free_sampled"] >= 50, f
    assert f["free_sampled_flagged"] == 0, f"{levels.line('max')}\n{f}"
    assert f["free_flagged"] <= 0.003 * f["free"], f"{levels.line('max')}\n{f}"


@pytest.mark.slow
def test_no_orange_or_red_where_sumo_flows_freely(levels, request):
    """Target 1 in full: met in gridlock (0 / 1,167); an expected failure in free flow (see FREE_MISS)."""
    if levels.run == "freeflow":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=FREE_MISS))
    f = levels.figures("max")
    assert f["free_flagged"] == 0, f"{levels.line('max')}\n{f}"


@pytest.mark.slow
def test_flagged_link_windows_are_truly_congested(levels):
    """Gridlock (the issue's demand for this target): >= 90 % of the flagged link-windows at SUMO level >= 3 in the
    same interval (measured 304 / 309 = 98.4 % with orange raised after 30 s; 217 / 219 = 99.1 % after 120 s). Free
    flow (not an issue target) flags 58 link-windows, 55 of them truly at least yellow (94.8 %; 57 counting the
    interval before, as the twin's 5-minute window reaches back into it): held to 80 %."""
    f = levels.figures("max")
    if levels.run == "gridlock":
        assert f["flagged"] >= 50, f"gridlock raises orange or red: {f}"
        assert f["flagged_true"] >= ISSUE_FLAGGED_TRUE * f["flagged"], f"{levels.line('max')}\n{f}"
    else:
        assert f["flagged_true"] >= 0.8 * f["flagged"], f"{levels.line('max')}\n{f}"


@pytest.mark.slow
def test_gridlock_flags_the_severe_link_windows_the_probes_saw(levels):
    """Target 2 where the probes could see it: of SUMO's severe gridlock link-windows (>= 3 probe traversals) on
    which the probes' exact traversals are severe too (66 of 85), at least 80 % flagged orange or red (measured
    58 / 66 = 87.9 %)."""
    if levels.run != "gridlock":
        pytest.skip("target 2 is at gridlock demand")
    f = levels.figures("max")
    assert f["severe_floor"] >= 50, f
    assert f["severe_floor_flagged"] >= ISSUE_SEVERE_FLAGGED * f["severe_floor"], f"{levels.line('max')}\n{f}"


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason=SEVERE_MISS)
def test_gridlock_flags_sumos_severe_link_windows(levels):
    if levels.run != "gridlock":
        pytest.skip("target 2 is at gridlock demand")
    f = levels.figures("max")
    assert f["severe"] >= 50, f
    assert f["severe_flagged"] >= ISSUE_SEVERE_FLAGGED * f["severe"], f"{levels.line('max')}\n{f}"
