"""Simulated crowd counters count people per m2 of the walkable ground the twin divides their counts by (issue 14).

A counter that counted over its whole coverage polygon, buildings and water included, made the twin read 4-32 %
above the density the feed meant on the Bund. `scenarios.feeds.sensors.twin_walkable_m2` asks the twin for the
walkable area of each counter, and `Sensors` counts over it, so count / walkable area = the density meant.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from ingest.admission import Admission, batch_of
from ingest.registry import load_registry, registry_from_geojson
from ingest.rejection import Rejection
from ingest.routing import DECODERS
from scenarios.feeds.sensors import Sensors, _area_m2, counter_area_m2, twin_walkable_m2
from scenarios.feeds.simulator import DEFAULT_START
from twin.alerting.store import Store
from twin.district.coverage import coverage_area
from twin.district.dataset import grid_of
from twin.district.geo import to_projected
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TwinCore

REGISTRY = data_dir() / "bund" / "registry.geojson"
REPORT_S = 60.0
PEAK = 4.0


class NoNoise:
    """A random generator without noise: normal() is its mean and uniform() the middle of its range."""

    def normal(self, loc=0.0, scale=1.0):
        return loc

    def uniform(self, low=0.0, high=1.0):
        return (low + high) / 2.0


def _counts(registry, walkable_m2):
    """One report of every counter at the profile's peak, noise-free: {device: count}, the topics and payloads,
    the sensors and the report time."""
    sensors = Sensors(registry, NoNoise(), DEFAULT_START, report_s=REPORT_S, crowd_peak=PEAK,
                      crowd_peak_at=DEFAULT_START + REPORT_S, walkable_m2=walkable_m2)
    t = DEFAULT_START + REPORT_S
    messages = [(topic, payload) for topic, payload in sensors.step(t, REPORT_S, "city/")
                if topic.startswith("city/sensors/crowd/")]
    counts = {}
    for topic, payload in messages:
        b = DECODERS["sensor"](payload, topic=topic, received_at=t)
        counts[str(b.device[0])] = float(b.value[0])
    return counts, messages, sensors, t


@pytest.fixture(scope="module")
def bund(bund10):
    static, _ = bund10
    registry = load_registry(REGISTRY)
    return static, registry, twin_walkable_m2(static, registry)


def test_the_twin_walkable_area_is_the_walkable_layer_under_each_counter(bund):
    """`twin_walkable_m2` agrees with an independent sum of the ``walkable_area`` layer over each counter's
    polygon (exact cell overlaps), and on the Bund it is 3-25 % below the polygon's area (buildings, water)."""
    static, registry, walkable = bund
    grid, layer = grid_of(static), static["walkable_area"].values
    counters = registry.of_kind("crowd")
    assert set(walkable) == {d.id for d in counters}
    for d in counters:
        ring = np.asarray(d.geometry["coordinates"][0], dtype=float)
        poly = shapely.Polygon(np.column_stack(to_projected(ring[:, 0], ring[:, 1], grid.crs)))
        under = float((coverage_area(grid, [poly]) / grid.cell_area * layer).sum())
        assert walkable[d.id] == pytest.approx(under, rel=1e-9), d.id
        assert walkable[d.id] < _area_m2(d.geometry)
    shares = [walkable[d.id] / _area_m2(d.geometry) for d in counters]
    assert min(shares) < 0.8 and max(shares) < 0.97  # the bias the polygon areas gave: 4-32 % too high


def test_a_counters_count_per_twin_walkable_m2_is_the_density_it_means(bund):
    _, registry, walkable = bund
    counts, _, sensors, t = _counts(registry, walkable)
    meant = sensors.crowd_density(t)
    assert len(counts) == len(walkable) == 12
    assert meant["crowd-bund-05"] == pytest.approx(PEAK)  # Chen Yi Square, weight 1
    for device, n in counts.items():
        assert n == round(n) and n > 0
        assert n / walkable[device] == pytest.approx(meant[device], abs=0.5 / walkable[device]), device


def test_the_twin_reads_the_density_the_feed_means(bund):
    """Through the ingest admission step and the twin core: the fused density on the cells each counter covers
    alone is the density the feed meant, to the rounding of the count to whole people."""
    static, registry, walkable = bund
    _, messages, sensors, t = _counts(registry, walkable)
    store = Store.open(":memory:")
    try:
        core = TwinCore(static, registry, store, CoreConfig(tick_s=10.0))
        admission = Admission(registry, prefix=core.config.prefix)
        admitted = [admission.admit_fast(topic, payload, t) for topic, payload in messages]
        core.on_batch(batch_of([r for r in admitted if type(r) is not Rejection]))
        core.on_tick(t)
        density = core.models.layers["crowd_density"].values.ravel()
        cover, ids = core.state.crowd_coverage, core.state.readings["crowd"].ids
    finally:
        store.close()
    meant = sensors.crowd_density(t)
    for s, device in enumerate(ids):
        mine = cover.owner_feature == s
        cells = np.setdiff1d(np.unique(cover.piece_cell[cover.owner_piece[mine]]),
                             cover.piece_cell[cover.owner_piece[~mine]])
        read = density[cells][np.isfinite(density[cells])]  # NaN: a cell with no walkable ground
        assert read.size > 10, device
        # whole people, and the layer's float32
        np.testing.assert_allclose(read, meant[device], atol=0.5 / walkable[device] + 1e-4, err_msg=device)


def test_the_registry_walkable_area_wins_and_the_polygon_is_the_last_resort(bund):
    static, _, walkable = bund
    with open(REGISTRY, encoding="utf-8") as f:
        doc = json.load(f)
    for feature in doc["features"]:
        if feature["properties"]["id"] == "crowd-bund-05":
            feature["properties"]["walkable_area_m2"] = 5000.0
    registry = registry_from_geojson(doc)
    chen_yi, other = registry.get("crowd-bund-05"), registry.get("crowd-bund-01")
    stated = twin_walkable_m2(static, registry)
    assert stated["crowd-bund-05"] == pytest.approx(5000.0), "the twin divides by the registry's walkable area"
    assert stated["crowd-bund-01"] == pytest.approx(walkable["crowd-bund-01"])
    assert counter_area_m2(chen_yi, stated) == pytest.approx(5000.0)
    assert counter_area_m2(chen_yi) == 5000.0, "no twin given: the registry's walkable_area_m2"
    assert counter_area_m2(other) == pytest.approx(_area_m2(other.geometry)), "nothing else: the polygon"
    assert counter_area_m2(other, {"crowd-bund-01": float("nan")}) == pytest.approx(_area_m2(other.geometry))
    counts, _, _, _ = _counts(registry, None)
    assert counts["crowd-bund-05"] == round(PEAK * 5000.0)
