"""The synthetic district generator: seeded, at its stated densities, and consumable by the unchanged twin builder."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from ingest.registry import registry_from_geojson
from twin.city.areas import square
from twin.city.boundaries import area_km2, projected
from twin.district.build import twin_from_sources
from twin.district.dataset import grid_of
from twin.district.layers import LAYERS
from twin.district.roads import road_network_from_sources
from twin.district.synthetic import DEVICE_KINDS, PROFILES, synthetic_district

CENTRES = {"central": (121.4365, 31.1885), "suburban": (121.2270, 31.0320)}
"""Xujiahui (Xuhui) and Songjiang new town: where each profile's test tiles lie."""


def _json(district) -> tuple[str, ...]:
    return tuple(district.layers[name].to_json() for name in sorted(district.layers))


def test_the_same_seed_gives_the_same_district_and_another_seed_another():
    area = square(CENTRES["central"], (1000.0, 1000.0))
    a, b, c = (synthetic_district(area, seed) for seed in (3, 3, 4))
    assert _json(a) == _json(b) and a.registry == b.registry and a.stats == b.stats
    assert _json(a) != _json(c) and a.registry != c.registry


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_2_km_tile_has_the_profiles_densities(profile):
    prof = PROFILES[profile]
    area = square(CENTRES[profile], (2000.0, 2000.0))
    for seed in range(4):
        d = synthetic_district(area, seed, profile)
        s = d.stats
        assert math.isclose(s["land_km2"], area_km2(area) - area_km2(shapely.union_all(
            d.layers["water"].geometry.to_numpy())), rel_tol=1e-6)
        lo, hi = prof.road_range
        assert lo <= s["road_km_per_km2"] <= hi, (seed, s)
        lo, hi = prof.coverage_range
        assert lo <= s["building_coverage"] <= hi, (seed, s)
        footprint = projected(shapely.union_all(d.layers["buildings"].geometry.to_numpy())).area
        assert math.isclose(footprint / (s["land_km2"] * 1e6), s["building_coverage"], rel_tol=1e-3)
        for kind in DEVICE_KINDS:  # stochastic rounding of density x land, at least one of each
            n = round(s[f"{kind}_per_km2"] * s["land_km2"])
            expected = prof.devices[kind] * s["land_km2"]
            assert n == max(1, math.floor(expected)) or n == max(1, math.ceil(expected)), (kind, n, expected)


def test_storeys_and_heights_follow_the_building_types():
    d = synthetic_district(square(CENTRES["central"], (1000.0, 1000.0)), 2)
    b = d.layers["buildings"]
    assert b["floors"].between(1, 40).all() and (b["height"] > 0).all()
    assert set(b["kind_detail"]) <= {"residential", "office", "retail", "school", "hospital", "industrial"}
    assert len(b) == d.stats["buildings"] and b["id"].is_unique


def test_a_tile_builds_a_valid_twin_and_road_network():
    area = square(CENTRES["central"], (1000.0, 1000.0))
    d = synthetic_district(area, 5, prefix="310104")
    sources = d.sources("310104")
    ds, buildings = twin_from_sources(sources, 20.0, bbox=tuple(area.bounds), name="310104")
    assert len(buildings.table) == len(d.layers["buildings"])
    for name, var in ds.data_vars.items():
        if name == "crs":
            continue
        values = var.values.astype(float)
        assert var.dtype == np.dtype(LAYERS[name].dtype) and np.isfinite(values).all(), name
    for name in ("building_fraction", "road_fraction", "water_fraction", "runoff_coefficient", "vulnerability"):
        assert float(ds[name].min()) >= 0.0 and float(ds[name].max()) <= 1.0 + 1e-9, name
    assert 0.05 < float(ds["building_fraction"].mean()) < 0.5
    assert 0.05 < float(ds["road_fraction"].mean()) < 0.5
    assert (ds["road_class"].values > 0).any() and (ds["vulnerability"].values > 0.5).any()
    net = road_network_from_sources(sources, grid_of(ds))
    graph = net.graph()
    biggest = max(nx.weakly_connected_components(graph), key=len)
    assert len(net.links) > 20 and len(biggest) >= 0.9 * graph.number_of_nodes()


def test_the_registry_is_valid_and_lies_in_the_tile():
    area = square(CENTRES["suburban"], (2000.0, 2000.0))
    d = synthetic_district(area, 1, "suburban", prefix="310117")
    registry = registry_from_geojson(d.registry)
    assert {dev.kind for dev in registry.devices.values()} == {"crowd", "rain", "water", "traffic", "unit"}
    assert {dev.unit_type for dev in registry.of_kind("unit")} == {"police", "fire", "medical"}
    assert all(dev.id.startswith("310117-") for dev in registry.devices.values())
    grown = shapely.buffer(projected(area), 1.0)
    for feat in d.registry["features"]:
        assert grown.contains(projected(shape(feat["geometry"]))), feat["properties"]["id"]


def test_an_unknown_profile_or_an_empty_area_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'rural'"):
        synthetic_district(square(CENTRES["central"], (500.0, 500.0)), 1, "rural")
    with pytest.raises(ValueError, match="smaller than 1 ha"):
        synthetic_district(square(CENTRES["central"], (50.0, 50.0)), 1)
