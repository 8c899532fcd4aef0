"""The SUMO traffic truth case of issue 15 (tests/truth/traffic) is consistent on its own (no SUMO needed).

The case: the People's Square drive network simulated with SUMO in two runs, free flow and gridlock, with
SUMO's edgeData per edge and 5 minutes as the truth and an NMEA probe feed (see tests/truth/traffic/README.md).
These tests check the kept files: every probe sentence has a valid checksum and decodes with the project's own
NMEA decoder (ingest/decoders/nmea.py) to one position per epoch with a fix and none without; epochs without a
fix carry no position and happen only at tunnels; the edgeData intervals are 300 s; the free-flow run is much
faster than the gridlock run (figures measured when the case was generated). The twin comparison test (probes
through ingest -> twin, link speeds against edgeData) is not here: see the README.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import shapely

from ingest.decoders.nmea import checksum, nmea_records
from ingest.registry import registry_from_geojson
from tests.truth.traffic import case

RUNS = case.RUNS


def _speeds(run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SUMO speed [km/h], speed limit [km/h] and sampled seconds of the run's edge-intervals with a speed."""
    edges = case.edges()
    rows = [w for w in case.edgedata(run) if not math.isnan(w.speed_m_s)]
    sp = np.array([w.speed_kmh for w in rows])
    lim = np.array([edges[w.edge]["properties"]["speed_limit_kmh"] for w in rows])
    ss = np.array([w.sampled_seconds for w in rows])
    return sp, lim, ss


def _local_m(lon, lat):
    """Local metres around People's Square (equirectangular; enough for 100 m checks)."""
    lon0, lat0 = 121.4737, 31.2304
    k = 111_320.0
    return (np.asarray(lon) - lon0) * k * math.cos(math.radians(lat0)), (np.asarray(lat) - lat0) * k


def test_the_files_are_small_and_the_summary_matches_them():
    files = [*case.HERE.glob("*.gz"), case.PROBES, case.SUMMARY]
    assert sum(f.stat().st_size for f in files) < 3_000_000
    s = case.summary()
    assert s["edges"] == len(case.edges())
    for run in RUNS:
        r = s["runs"][run]
        assert r["edge_intervals"] == len(case.edgedata(run))
        assert r["probes"] == len(case.probes(run))
        assert r["sentences"] == sum(1 for _ in case.probe_rows(run))


def test_edges_have_geometry_osm_ways_and_limits():
    edges = case.edges()
    for ft in edges.values():
        p = ft["properties"]
        coords = np.asarray(ft["geometry"]["coordinates"])
        assert ft["geometry"]["type"] == "LineString" and len(coords) >= 2
        assert (coords[:, 0] > 121.45).all() and (coords[:, 0] < 121.50).all()
        assert (coords[:, 1] > 31.21).all() and (coords[:, 1] < 31.25).all()
        assert p["osm_way_ids"] and all(w.isdigit() for w in p["osm_way_ids"])
        assert 5 <= p["speed_limit_kmh"] <= 120 and p["length_m"] > 0 and p["lanes"] >= 1
    tunnels = [ft for ft in edges.values() if ft["properties"]["tunnel"]]
    assert len(tunnels) == case.summary()["tunnel_edges"] >= 10


def test_edgedata_intervals_are_five_minutes_of_the_measured_half_hour():
    edges = case.edges()
    for run in RUNS:
        rows = case.edgedata(run)
        assert {(w.begin_s, w.end_s) for w in rows} == {
            (b, b + case.INTERVAL_S) for b in range(case.WARMUP_S, case.WARMUP_S + case.MEASURE_S, case.INTERVAL_S)
        }
        assert len({(w.edge, w.begin_s) for w in rows}) == len(rows)
        for w in rows:
            assert w.edge in edges and w.sampled_seconds >= 0 and w.entered >= 0 and w.left >= 0
            assert w.probe_traversals >= 0
            # SUMO keeps a few gridlock edge-intervals with only teleported vehicles: no time, no speed
            assert math.isnan(w.speed_m_s) == (w.sampled_seconds == 0)
            if not math.isnan(w.speed_m_s):
                # SUMO's drivers choose up to about 1.2 x the limit (speedFactor normal(1, 0.1))
                assert 0 <= w.speed_kmh <= 1.3 * edges[w.edge]["properties"]["speed_limit_kmh"] + 1
            if w.probe_traversals:
                assert w.probe_speed_m_s > 0


def test_free_flow_is_near_the_limits_and_gridlock_much_slower():
    """Figures measured at generation (seed 15, SUMO 1.28.0); see README.md."""
    ff_sp, ff_lim, ff_ss = _speeds("freeflow")
    gl_sp, gl_lim, gl_ss = _speeds("gridlock")
    ff_rel, gl_rel = ff_sp / ff_lim, gl_sp / gl_lim
    assert np.median(ff_rel) >= 0.6 and np.median(gl_rel) <= 0.35
    assert np.mean(ff_rel >= 0.7) >= 0.45 and np.mean(gl_rel >= 0.7) <= 0.32
    assert np.mean(ff_rel < 0.3) <= 0.3 and np.mean(gl_rel < 0.3) >= 0.45
    # vehicle-seconds weighted (where the vehicles are): free flow several times faster
    assert np.sum(ff_sp * ff_ss) / ff_ss.sum() >= 3 * np.sum(gl_sp * gl_ss) / gl_ss.sum()
    for run in RUNS:
        n3 = [w for w in case.edgedata(run) if w.probe_traversals >= case.MIN_TRAVERSALS]
        assert len(n3) == case.summary()["runs"][run]["edge_intervals_with_3_probe_traversals"] >= 50


@pytest.mark.parametrize("run", RUNS)
def test_every_probe_sentence_decodes_with_the_projects_nmea_decoder(run):
    probes = {p["device"]: p for p in case.probes(run)}
    registry_from_geojson({"type": "FeatureCollection", "features": case.registry_features(run)})
    assert {p["period_s"] for p in probes.values()} == {5, 10}
    assert abs(sum(p["period_s"] == 5 for p in probes.values()) - len(probes) / 2) <= 1
    assert {p["talker"] for p in probes.values()} == {"GB", "BD", "GN"}
    tunnel_lines = [
        shapely.LineString(np.column_stack(_local_m(*np.asarray(ft["geometry"]["coordinates"]).T)))
        for ft in case.edges().values()
        if ft["properties"]["tunnel"]
    ]
    tunnels = shapely.union_all(tunnel_lines)
    fixes = nofix = 0
    gaps: list[tuple[str, int]] = []
    for t, topic, payload in case.payloads(run):
        device = topic.rsplit("/", 1)[1]
        p = probes[device]
        assert topic == f"city/beidou/{device}"
        sentences = payload.decode("ascii").split("\r\n")[:-1]
        kinds = {s[3:6] for s in sentences}
        assert kinds == set(p["sentences"].split("+"))
        for s in sentences:
            body, cs = s[1:].rsplit("*", 1)
            assert s[0] == "$" and len(s) <= 82 and int(cs, 16) == checksum(body) and cs == cs.upper()
            assert body[:2] == p["talker"]
        (t - p["phase_s"]) % p["period_s"] == 0 or pytest.fail(f"{device} at {t} off its period")
        batch = nmea_records(payload, device=device, received_at=t + 0.5)
        rmc = next(s for s in sentences if s[3:6] == "RMC").split(",")
        if rmc[2] == "A":
            fixes += 1
            assert len(batch) == 1
            rec = next(iter(batch.records()))
            assert rec["t"] == t and rec["device"] == device
            assert rec["datum"] == ("WGS84" if p["talker"] == "GN" else "CGCS2000")
            assert 121.45 < rec["lon"] < 121.50 and 31.21 < rec["lat"] < 31.25
            assert 0 <= rec["speed_kmh"] < 130 and 0 <= rec["course_deg"] < 360
        else:
            nofix += 1
            assert len(batch) == 0 and batch.ignored >= 1
            for s in sentences:  # no position in any sentence of a no-fix epoch
                f = s.split("*")[0].split(",")
                pos = f[3:7] if s[3:6] == "RMC" else f[2:6]
                assert pos == ["", "", "", ""], s
            assert rmc[7] == "" and rmc[8] == ""
            gga = [s for s in sentences if s[3:6] == "GGA"]
            assert all(s.split(",")[6] == "0" for s in gga)
            gaps.append((device, t))
    s = case.summary()["runs"][run]
    assert fixes == s["fixes"] and nofix == s["tunnel_epochs_without_fix"] > 0
    # a no-fix epoch is at a tunnel: the probe's fix nearest in time to it (before, or after when the
    # vehicle departed in the tunnel) is within 150 m of a tunnel edge (a 10 s probe at 50 km/h covers 140 m)
    fixes_of = _fixes(run, {d for d, _ in gaps})
    near = []
    for device, t in gaps:
        _, lon, lat = min(fixes_of[device], key=lambda f: abs(f[0] - t))
        x, y = _local_m(lon, lat)
        near.append(shapely.distance(shapely.Point(float(x), float(y)), tunnels))
    assert max(near) <= 150.0


def _fixes(run: str, devices: set[str]) -> dict[str, list[tuple[int, float, float]]]:
    """The fixes ``(t, lon, lat)`` of ``devices``."""
    out: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for t, topic, payload in case.payloads(run):
        device = topic.rsplit("/", 1)[1]
        if device in devices:
            for rec in nmea_records(payload, device=device, received_at=t + 0.5).records():
                out[device].append((t, rec["lon"], rec["lat"]))
    return out
