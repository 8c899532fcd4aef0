"""Issue 15 (part): the live twin map-matches the vehicles' Beidou pings to road links and gives link speeds."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from ingest.batch import Batch
from ingest.registry import load_registry
from twin.alerting.store import Store
from twin.district import geo
from twin.district.dataset import grid_of
from twin.district.roads import road_network_from_sources
from twin.live import snapshot
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig

T0 = 1_735_689_600.0
SPEED_MS = 10.0
"""The probes drive at 36 km/h. [m s-1]"""


@pytest.fixture(scope="module")
def network(bund10, bund_sources):
    return road_network_from_sources(bund_sources, grid_of(bund10[0]))


@pytest.fixture(scope="module")
def registry():
    from twin.district.sources import data_dir

    return load_registry(data_dir() / "bund" / "registry.geojson")


def _core(bund10, registry, network) -> TwinCore:
    return TwinCore(bund10[0], registry, Store.open(":memory:"), CoreConfig(tick_s=5.0, live=LiveConfig(
        road_network=network)))


def _long_link(network) -> int:
    """The longest link of East Zhongshan No. 1 Road (中山东一路), not in a tunnel."""
    links = network.links
    mine = links[(links["name"] == "中山东一路") & ~links["tunnel"]]
    return int(mine.loc[mine["length_m"].idxmax(), "link_id"])


def _drive(core: TwinCore, network, link: int, vehicles: list[str], seconds: float, noise_m: float, seed: int = 0,
           from_s: float = 0.0):
    """Vehicles driving the link at 36 km/h one after the other (10 s apart), a fix every 5 s with ``noise_m``
    Gaussian noise; a tick every 5 s; from ``from_s`` to ``seconds`` (the same noise whatever ``from_s``)."""
    rng = np.random.default_rng(seed)
    line = network.links.geometry.iloc[link]
    crs = network.links.crs
    for k in range(int(seconds / 5.0) + 1):
        t = 5.0 * k
        for i, v in enumerate(vehicles):
            along = SPEED_MS * (t - 10.0 * i)
            if not 0.0 <= along <= line.length:
                continue
            p = shapely.line_interpolate_point(line, along)
            q = shapely.line_interpolate_point(line, min(along + 1.0, line.length))
            course = float(np.degrees(np.arctan2(q.x - p.x, q.y - p.y)) % 360.0)
            x, y = p.x + rng.normal(0, noise_m), p.y + rng.normal(0, noise_m)
            if t < from_s:
                continue
            lon, lat = geo.to_lonlat(np.array([x]), np.array([y]), crs)
            core.on_batch(Batch.build(1, device=v, t=T0 + t, quantity="position", lon=float(lon[0]),
                                      lat=float(lat[0]), speed_kmh=SPEED_MS * 3.6, course_deg=course))
        if t >= from_s:
            core.on_tick(T0 + t)


def test_probes_driving_a_road_give_its_link_a_space_mean_speed(bund10, registry, network):
    """Four probes driving the longest link of East Zhongshan No. 1 Road at 36 km/h with 5 m noise: the link's
    space-mean speed is 36 km/h within 2 km/h, from at least 2 vehicles; links nobody drove have no speed."""
    core = _core(bund10, registry, network)
    link = _long_link(network)
    assert network.links["length_m"].iloc[link] > 150.0
    _drive(core, network, link, ["veh-001", "veh-002", "veh-003", "veh-004"], 240.0, 5.0)
    layers = core.models.link_layers
    speed = layers["link_speed"].values
    assert speed[link] == pytest.approx(36.0, abs=2.0)
    assert layers["link_vehicles"].values[link] >= 2
    assert np.isnan(speed).mean() > 0.95, "only the driven links have a speed"
    counts = core.models.links.probes.matcher.counts
    assert counts["unmatched"] == 0 and counts["break_route"] == 0, counts


def test_link_speeds_are_kept_in_snapshots(bund10, registry, network, tmp_path):
    """The link speeds' window and smoothing are part of a snapshot: a restored twin gives the same link speeds."""
    core = _core(bund10, registry, network)
    link = _long_link(network)
    _drive(core, network, link, ["veh-001", "veh-002", "veh-003"], 120.0, 2.0)
    path = snapshot.write(tmp_path, core.save_state(), core.state.grid, (1, 1), T0)
    again = _core(bund10, registry, network)
    again.restore_state(snapshot.read(tmp_path, again.state.grid).state)
    np.testing.assert_array_equal(again.models.links.probes.speeds.ewma, core.models.links.probes.speeds.ewma)
    assert path.exists()


def test_without_a_road_network_the_twin_has_no_link_layers(bund10, registry):
    core = TwinCore(bund10[0], registry, Store.open(":memory:"), CoreConfig(tick_s=5.0))
    core.on_tick(T0)
    assert core.models.links is None and len(core.models.link_layers.data_vars) == 0


def test_the_service_uses_the_road_network_beside_its_twin_file(bund10, network, tmp_path):
    """`twin run` (the live service) reads the links written beside the twin file; without them it runs without."""
    from twin.district.dataset import save_twin
    from twin.district.roads import save_road_network
    from twin.live.service import LiveService, ServiceConfig

    path = save_twin(tmp_path / "bund.nc", bund10[0])
    from twin.district.sources import data_dir

    config = dict(broker="mqtt://127.0.0.1:9", registry=data_dir() / "bund" / "registry.geojson")
    bare = LiveService(ServiceConfig(grid=path, state_dir=tmp_path / "a", **config))
    assert bare.config.core.live.road_network is None
    save_road_network(path, network, grid_of(bund10[0]))
    svc = LiveService(ServiceConfig(grid=path, state_dir=tmp_path / "b", **config))
    assert len(svc.config.core.live.road_network.links) == len(network.links)
    for s in (bare, svc):
        s.raw_log.close()
        s.store.close()


def test_a_silent_fleet_is_not_matched_again_and_a_restore_does_not_count_twice(bund10, registry, network, tmp_path):
    """Vehicles silent for longer than the matcher keeps them: their old pings are not pushed again at every tick;
    after a snapshot restore the pings before it are not pushed again either."""
    core = _core(bund10, registry, network)
    link = _long_link(network)
    _drive(core, network, link, ["veh-001", "veh-002", "veh-003"], 60.0, 2.0)
    fixes = core.models.links.probes.matcher.counts["fixes"]
    snapshot.write(tmp_path, core.save_state(), core.state.grid, (1, 1), T0)
    for k in range(1, 100):  # 500 s of silence
        core.on_tick(T0 + 60.0 + 5.0 * k)
    assert core.models.links.probes.matcher.counts["fixes"] == fixes
    again = _core(bund10, registry, network)
    again.restore_state(snapshot.read(tmp_path, again.state.grid).state)
    again.on_tick(T0 + 65.0)
    assert again.models.links.probes.matcher.counts["fixes"] == fixes


def test_a_restore_mid_drive_continues_every_vehicle_s_chain(bund10, registry, network, tmp_path):
    """The matcher's pending windows are in the snapshot: a twin restored in the middle of a drive gives the same
    traversal pieces and link speeds as one that ran through, and no vehicle starts a new chain."""
    link = _long_link(network)
    vehicles = ["veh-001", "veh-002", "veh-003"]
    through = _core(bund10, registry, network)
    _drive(through, network, link, vehicles, 40.0, 2.0)
    matcher = through.models.links.probes.matcher
    assert any(len(tr.steps) > 1 for tr in matcher.tracks.values()), "fixes are pending at the snapshot"
    snapshot.write(tmp_path, through.save_state(), through.state.grid, (1, 1), T0)
    again = _core(bund10, registry, network)
    again.restore_state(snapshot.read(tmp_path, again.state.grid).state)
    restored = again.models.links.probes.matcher
    assert {v: tr.chain for v, tr in restored.tracks.items()} == {v: tr.chain for v, tr in matcher.tracks.items()}
    for core in (through, again):
        _drive(core, network, link, vehicles, 120.0, 2.0, from_s=45.0)
    a, b = through.models.link_layers, again.models.link_layers
    np.testing.assert_allclose(b["link_speed"].values, a["link_speed"].values, equal_nan=True)
    np.testing.assert_array_equal(b["link_samples"].values, a["link_samples"].values)
    assert again.models.links.probes.matcher.counts == through.models.links.probes.matcher.counts
