"""The device registry changing under a live twin, without a restart (docs/guides/devices.md).

- The state's per-sensor tables follow added, moved and retired devices as a state built afresh from the new
  registry has them (cells, loop pairs, the crowd coverage cut again only around the changed counters, the
  counters' properties, the entity table); a retired sensor keeps its row, inert.
- A core whose registry changed ticks with the new sensors (their readings reach the layers, the retired one's do
  not, the vital signs count the sensors as a fresh core does), and a core restored from its snapshot onto the
  registry at the snapshot's version continues identically.
- The raw log replays registry changes at their place: a service that restarts without a snapshot judges every
  message as the first run did.
- Through a real Mosquitto and the HTTP API: a device unknown at start is dead-lettered ``unknown_device``, is
  registered with ``POST /api/devices``, and its next message is admitted and shows in the twin; after ``DELETE``
  its messages are dead letters ``retired_device``; a change written to the database by another process (``twin
  devices``) is picked up by the running twin.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from ingest.registry import device_from_feature
from ingest.registry_db import RegistryStore
from ingest.transport.client import InboundMessage
from tests.live.conftest import REGISTRY, Observer, wait_for
from tests.support.waits import TickWatch
from twin.alerting.store import Store
from twin.district.coverage import shared_coverage
from twin.district.grid import GridSpec
from twin.live.core import CoreConfig, TwinCore
from twin.live.query import LiveQuery
from twin.live.service import LiveService, ServiceConfig, TwinClock
from twin.live.state import TwinState, splice_coverage

T0 = 1_735_689_600.0
TOKEN = "registry-e2e-token-0123456789"
NEW_GAUGE = (121.4890, 31.2380)
"""Where the new rain gauge stands (near Chen Yi Square): its cell is the tests' evidence."""


def _feature(dev_id: str, kind: str, geometry: dict | None, **props) -> dict:
    quantities = {"crowd": ["count"], "rain": ["rain"], "water": ["depth"], "traffic": ["speed", "flow", "occ"]}
    return {"type": "Feature", "geometry": geometry,
            "properties": {"id": dev_id, "kind": kind, "quantities": quantities.get(kind, ["position"]),
                           "name": dev_id, **props}}


def _point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def _device(feature: dict):
    problems: list[str] = []
    device = device_from_feature(feature, "test", problems)
    assert problems == []
    return device


def _bund_store() -> RegistryStore:
    store = RegistryStore.open(":memory:")
    assert store.import_file(REGISTRY).added == 84
    return store


def _change_the_registry(store: RegistryStore) -> None:
    """Add a rain gauge, a loop detector paired with loop-01, a crowd counter over Chen Yi Square's and a unit; move a
    water gauge; retire the Bank of China promenade's counter (it overlaps the square's), a rain gauge and a
    vehicle."""
    square = store.device("crowd-bund-05").geometry["coordinates"][0]
    shifted = [[lon + 0.0001, lat + 0.0002] for lon, lat in square]
    store.add(_device(_feature("rain-new-01", "rain", _point(*NEW_GAUGE))))
    store.add(_device(_feature("loop-new-01", "traffic", _point(121.48555, 31.2410), downstream="loop-01",
                               road="East Zhongshan No. 1 Road")))
    store.add(_device(_feature("crowd-new-01", "crowd", {"type": "Polygon", "coordinates": [shifted]},
                               walkable_area_m2=900, count_rel_error=0.1)))
    store.add(_device(_feature("unit-medical-11", "unit", None, unit_type="medical")))
    store.update(_device(_feature("water-03", "water", _point(121.4870, 31.2360))))
    for dev_id in ("crowd-bund-04", "rain-02", "veh-001"):
        store.retire(dev_id)


def _pieces(state: TwinState) -> dict[tuple[int, int], float]:
    """{(counter row, cell): area covered [m2]} of a state's crowd coverage (the pieces' order aside)."""
    c = state.crowd_coverage
    out: dict[tuple[int, int], float] = {}
    for f, p in zip(c.owner_feature.tolist(), c.owner_piece.tolist(), strict=True):
        key = (f, int(c.piece_cell[p]))
        out[key] = out.get(key, 0.0) + float(c.piece_area[p])
    return out


def test_the_state_follows_registry_changes_as_a_state_built_afresh(bund10):
    static = bund10[0]
    store = _bund_store()
    live = TwinState(static, store.registry())
    _change_the_registry(store)
    changes = store.changes_since(84)
    kinds = live.apply_devices(live.registry.apply([c.device for c in changes], store.version()))
    assert kinds == {"rain", "traffic", "crowd", "water", "unit", "vehicle"}
    fresh = TwinState(static, store.registry())
    for kind, readings in fresh.readings.items():
        assert live.readings[kind].ids == readings.ids, kind
        assert set(live.readings[kind].index) == set(readings.index), kind
    assert live.readings["rain"].ids[-1] == "rain-new-01" and "rain-02" not in live.readings["rain"].index
    for kind, cells in fresh.sensor_cells.items():
        np.testing.assert_array_equal(live.sensor_cells[kind], cells, err_msg=kind)
    rain = live.readings["rain"]
    assert live.sensor_cells["rain"][rain.ids.index("rain-02")] == -1, "a retired gauge is nowhere"
    np.testing.assert_array_equal(live.loop_downstream, fresh.loop_downstream)
    assert live.loop_downstream[-1] == live.readings["traffic"].index["loop-01"]
    assert _pieces(live).keys() == _pieces(fresh).keys()
    np.testing.assert_allclose([_pieces(live)[k] for k in sorted(_pieces(fresh))],
                               [_pieces(fresh)[k] for k in sorted(_pieces(fresh))], rtol=1e-9)
    crowd = live.readings["crowd"].ids
    assert not (live.cover[0] == crowd.index("crowd-bund-04")).any(), "a retired counter covers nothing"
    for name in ("crowd_walkable_m2", "crowd_rel_error"):
        np.testing.assert_array_equal(getattr(live, name), getattr(fresh, name), err_msg=name)
    assert live.crowd_walkable_m2[-1] == 900.0
    assert set(live.entities.entities) == set(fresh.entities.entities)
    assert "veh-001" not in live.entities.entities and live.entities.entities["unit-medical-11"].unit_type == "medical"


def _squares(draw_boxes: list[tuple[float, float, float]]) -> np.ndarray:
    return np.array([shapely.box(x, y, x + s, y + s) for x, y, s in draw_boxes], dtype=object)


BOX = st.tuples(st.floats(0, 80), st.floats(0, 80), st.floats(2, 30))


@settings(max_examples=30, deadline=None)
@given(st.lists(BOX, min_size=1, max_size=8), st.data())
def test_cutting_again_around_changed_counters_covers_what_a_full_cut_covers(boxes, data):
    grid = GridSpec("EPSG:4549", 0.0, 100.0, 10.0, 10, 10)
    polys = _squares(boxes)
    cover = shared_coverage(grid, polys)
    changed = sorted(set(data.draw(st.lists(st.integers(0, len(boxes) - 1), min_size=1, max_size=3))))
    before = [polys[i] for i in changed]
    after = polys.copy()
    for i in changed:
        after[i] = data.draw(st.one_of(st.just(shapely.Polygon()), BOX.map(lambda b: _squares([b])[0])))
    spliced = splice_coverage(grid, cover, after, np.array(changed), before)
    full = shared_coverage(grid, after)
    np.testing.assert_allclose(spliced.feature_area(len(after)), full.feature_area(len(after)), atol=1e-6)
    per_cell = [np.bincount(c.piece_cell, weights=c.piece_area, minlength=grid.size) for c in (spliced, full)]
    np.testing.assert_allclose(per_cell[0], per_cell[1], atol=1e-6)


def _readings(t: float) -> Batch:
    devices = ["rain-new-01", "rain-02", "water-03", "crowd-new-01", "crowd-bund-04", "loop-new-01", "loop-new-01",
               "loop-new-01"]
    quantities = ["rain", "rain", "depth", "count", "count", "speed", "flow", "occ"]
    values = [42.0, 99.0, 0.31, 500.0, 500.0, 12.0, 600.0, 30.0]
    return Batch.build(len(devices), device=np.array(devices, dtype=object), t=t, quantity=quantities, value=values)


def _cell(core: TwinCore, lon: float, lat: float) -> int:
    row, col = core.state.grid.cell_of_lonlat(lon, lat)
    return int(core.state.grid.flat_index(row, col))


def _city_sensors(core: TwinCore) -> dict:
    return core.indicators("city")["nodes"][0]["indicators"]["sensors"]


def test_a_changed_core_ticks_with_its_new_sensors_and_its_snapshot_continues_identically(bund10):
    static = bund10[0]
    store = _bund_store()
    core = TwinCore(static, store.registry(), Store.open(":memory:"), CoreConfig())
    core.on_tick(T0)
    _change_the_registry(store)
    core.apply_devices([c.device for c in store.changes_since(84)], store.version())
    refused = core.on_batch(_readings(T0 + 5))
    assert refused == []
    core.on_tick(T0 + 10)
    layers = core.live_layers()
    assert layers["rain_rate"].values.max() == 42.0, "the new gauge is the only fresh one: the retired one is no data"
    assert layers["water_depth"].values.ravel()[_cell(core, 121.4870, 31.2360)] == pytest.approx(0.31)
    counters = core.state.readings["crowd"]
    assert np.isfinite(counters.latest("count")[0][counters.index["crowd-new-01"]])
    assert np.isnan(counters.latest("count")[0][counters.ids.index("crowd-bund-04")]), "a retired counter reads none"
    fresh = TwinCore(static, store.registry(), Store.open(":memory:"), CoreConfig())
    fresh.on_tick(T0)
    fresh.on_batch(_readings(T0 + 5))
    fresh.on_tick(T0 + 10)
    assert _city_sensors(core) == _city_sensors(fresh), "the vital signs count the sensors as a fresh core does"
    snap = core.save_state()
    assert snap["core"]["registry_version"] == store.version()
    restored = TwinCore(static, store.registry(at=snap["core"]["registry_version"]), Store.open(":memory:"),
                        CoreConfig())
    restored.restore_state(snap)
    for c in (core, restored):
        c.on_batch(_readings(T0 + 15))
        c.on_tick(T0 + 20)
    a, b = core.live_layers(), restored.live_layers()
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values.astype(float), b[name].values.astype(float), rtol=1e-9,
                                   equal_nan=True, err_msg=name)


# ---------------------------------------------------------------- the raw log replays registry changes
def _message(svc: LiveService, topic: str, payload: bytes, t: float) -> None:
    """One message through the service's ingest loop and raw log, as the broker would hand it (QoS 0: no ack)."""
    svc.transport.queue.put(InboundMessage(topic, payload, 0, 0, False, False, t, 0))
    while svc.ingestor.run_once(0.0):
        pass


def _rain(device: str, t: float, value: float = 42.0) -> bytes:
    return encode_senml(Batch.build(1, device=device, t=t, quantity="rain", value=value))


def _service(bund_file, state_dir, broker: str = "mqtt://127.0.0.1:9", clock: TwinClock | None = None,
             **config) -> LiveService:
    return LiveService(ServiceConfig(broker=broker, grid=bund_file, registry=REGISTRY, state_dir=state_dir,
                                     core=CoreConfig(tick_s=10.0), clock=clock or TwinClock(start=T0), **config))


def test_a_restart_without_snapshot_replays_the_registry_changes_at_their_place(bund_file, tmp_path):
    first = _service(bund_file, tmp_path / "state")
    new = _feature("rain-new-01", "rain", _point(*NEW_GAUGE))
    _message(first, "city/sensors/rain/rain-new-01", _rain("rain-new-01", T0), T0)
    first.add_device(new)
    _message(first, "city/sensors/rain/rain-new-01", _rain("rain-new-01", T0 + 1), T0 + 1)
    first.retire_device("rain-01")
    _message(first, "city/sensors/rain/rain-01", _rain("rain-01", T0 + 2), T0 + 2)
    rejected = first.ingestor.metrics.snapshot()["rejected"]
    assert (rejected["unknown_device"], rejected["retired_device"]) == (1, 1)
    assert first.ingestor.metrics.snapshot()["accepted"] == 1
    readings = first.core.state.readings["rain"]
    value = readings.latest("rain")[0][readings.index["rain-new-01"]]
    first.raw_log.close()
    first.store.close()
    first.registry_store.close()
    second = _service(bund_file, tmp_path / "state")  # no snapshot: the whole log is replayed
    try:
        assert not second.restored and second.replayed == 5, "three messages and two registry records"
        again = second.ingestor.metrics.snapshot()["rejected"]
        assert (again["unknown_device"], again["retired_device"]) == (1, 1), "each message judged as it was first"
        r = second.core.state.readings["rain"]
        assert r.latest("rain")[0][r.index["rain-new-01"]] == value == 42.0
        assert second.registry.version == 86 and "rain-01" in second.registry.retired
    finally:
        second.raw_log.close()
        second.store.close()
        second.registry_store.close()


# ---------------------------------------------------------------- through the broker and the HTTP API
def _http(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _dead(observer: Observer, device: str) -> list[str]:
    return [d["reason"] for d in observer.json_on("city/deadletter") if d["topic"].endswith(f"/{device}")]


@pytest.mark.slow
def test_devices_added_and_retired_over_http_change_what_the_running_twin_admits(broker, observer, bund_file,
                                                                                 tmp_path):
    from twin.api import serve

    svc = _service(bund_file, tmp_path / "state", broker=broker.url, client_id="twin-registry", tick_s=0.2,
                   registry_poll_s=0.2, clock=TwinClock())
    assert svc.start(10)
    http = serve(svc, port=0, token=TOKEN)
    port = int(http.url.rsplit(":", 1)[1])
    query = LiveQuery(svc)
    try:
        gauge = "rain-new-01"
        observer.publish(f"city/sensors/rain/{gauge}", _rain(gauge, observer_time()))
        wait_for(lambda: _dead(observer, gauge) == ["unknown_device"], 20, "the unknown gauge's dead letter")
        code, body = _http(port, "POST", "/api/devices", _feature(gauge, "rain", _point(*NEW_GAUGE)))
        assert code == 201 and body["registry"]["status"] == "active", body
        assert svc.registry.get(gauge) is not None, "applied before the answer"
        with TickWatch(svc) as ticks:
            observer.publish(f"city/sensors/rain/{gauge}", _rain(gauge, observer_time(), 37.0))
            ticks.until(lambda _r: query.live_layers()[0]["rain_rate"].values.max() == 37.0, 20,
                        "the new gauge's rain in the twin's layers")
        code, body = _http(port, "DELETE", f"/api/devices/{gauge}")
        assert code == 200 and body["registry"]["status"] == "retired", body
        observer.publish(f"city/sensors/rain/{gauge}", _rain(gauge, observer_time()))
        wait_for(lambda: _dead(observer, gauge) == ["unknown_device", "retired_device"], 20,
                 "the retired gauge's dead letter")
        other = RegistryStore.open(svc.registry_store.url)  # another process's change (twin devices)
        later = other.add(_device(_feature("water-new-01", "water", _point(121.4870, 31.2362))))
        other.close()
        wait_for(lambda: svc.registry.version >= later.version, 20, "the running twin picking the change up")
        assert svc.registry.get("water-new-01") is not None
        assert svc.status()["rejected"]["retired_device"] == 1
    finally:
        http.stop()
        svc.stop()


def observer_time() -> float:
    """Now, for a record time (the broker feeds run on the wall clock)."""
    import time

    return round(time.time(), 3)
