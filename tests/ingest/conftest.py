"""Fixtures for the ingest tests: a private Mosquitto, unique topic prefixes, a small registry."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ingest.registry import Registry, registry_from_geojson
from tests.support.mqtt import PrivateBroker, mosquitto_available

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]

needs_mosquitto = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A private Mosquitto with deploy/mosquitto.conf limits, shared by a module (unique prefixes per test)."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    b = PrivateBroker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path):
    """A private Mosquitto for one test (tests that restart it)."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    b = PrivateBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}/"


def feature(dev_id: str, kind: str, quantities: list[str], geometry: dict | None = None, **props) -> dict:
    """A registry feature."""
    geometry = (
        geometry
        if geometry is not None or kind in ("vehicle", "unit")
        else {"type": "Point", "coordinates": [121.4855, 31.2405]}
    )
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"id": dev_id, "kind": kind, "quantities": quantities, "name": dev_id, **props},
    }


def small_registry_doc() -> dict:
    """Crowd c0..c9, rain r0, water w0, traffic t0, vehicles v0..v9, unit u0 (police)."""
    feats = [feature(f"c{i}", "crowd", ["count"]) for i in range(10)]
    feats += [
        feature("r0", "rain", ["rain"]),
        feature("w0", "water", ["depth"]),
        feature("t0", "traffic", ["speed", "flow", "occ"]),
        feature("t1", "traffic", ["speed"]),
    ]
    feats += [feature(f"v{i}", "vehicle", ["position"]) for i in range(10)]
    feats += [feature("u0", "unit", ["position"], unit_type="police")]
    return {"type": "FeatureCollection", "features": feats}


@pytest.fixture
def registry() -> Registry:
    """A small registry (see ``small_registry_doc``)."""
    return registry_from_geojson(small_registry_doc())
