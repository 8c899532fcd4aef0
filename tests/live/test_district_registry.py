"""A district twin's registry (twin.live.district_registry, twin.live.district_twin; docs/guides/devices.md).

A district twin holds only its district's sensors (by their ``district`` property, else by its grid and
``in_district`` cells) and every vehicle and unit; it applies the ``registry`` records of its partition in stream
order, drops another worker's copy of a step it has applied, and its snapshot keeps the registry (version and changed
devices) so that a restored twin has the same registry and sensor rows. Hypothesis: any interleaving of two workers'
records of the same changes (cut into steps differently, some sent twice) leaves the registry the changes give in
order, and so does a twin restored from a snapshot taken half-way.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.registry import Device, Registry, load_registry
from ingest.registry_db import RegistryStore
from ingest.stream import BATCH, KIND, REGISTRY, MemoryStream, encode_batch, tick_headers, tick_msg_id
from ingest.stream.registry import RegistryStep, registry_steps
from twin.district.dataset import grid_of
from twin.district.sources import data_dir
from twin.live.district_registry import DistrictRegistry, district_devices
from twin.live.district_twin import DistrictConfig, DistrictTwin, district_core_config

T0 = 1_735_689_600.0
BUND_POINT = (121.4855, 31.2405)
FAR_POINT = (121.30, 31.10)
PART = "310101"


@pytest.fixture(scope="module")
def bund_registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


def sensor(dev_id: str, kind: str = "rain", point=BUND_POINT, version: int = 0, added: int = 0, status="active",
           **props) -> Device:
    quantities = {"rain": ("rain",), "crowd": ("count",), "water": ("depth",)}[kind]
    return Device(dev_id, kind, quantities, dev_id, geometry={"type": "Point", "coordinates": list(point)},
                  properties={"id": dev_id, "kind": kind, "quantities": list(quantities), "name": dev_id, **props},
                  status=status, version=version, added=added)


def unit(dev_id: str, version: int = 0, added: int = 0, status: str = "active") -> Device:
    return Device(dev_id, "unit", ("position",), dev_id, "police", None,
                  {"id": dev_id, "kind": "unit", "quantities": ["position"], "name": dev_id, "unit_type": "police"},
                  status, version, added)


# ---------------------------------------------------------------- what a twin holds
def test_a_district_twin_holds_its_districts_sensors_and_every_mover(bund10, bund_registry):
    static = bund10[0]
    extra = [sensor("rain-far", point=FAR_POINT), sensor("rain-theirs", district="310109"),
             sensor("rain-ours-far", point=FAR_POINT, district=PART), unit("unit-elsewhere")]
    everything = Registry({**bund_registry.devices, **{d.id: d for d in extra}}, {}, 7)
    mine = district_devices(everything, PART, static)
    assert set(mine.devices) == set(bund_registry.devices) | {"rain-ours-far", "unit-elsewhere"}
    assert mine.version == 7
    # a grid with district cells: a sensor on a cell outside them belongs to the neighbour
    inside = np.ones(static["elevation"].shape, np.int8)
    r, c = grid_of(static).cell_of_lonlat(np.array([BUND_POINT[0]]), np.array([BUND_POINT[1]]))
    inside[int(r[0]), int(c[0])] = 0
    masked = static.assign(in_district=(("y", "x"), inside))
    held = district_devices(Registry({d.id: d for d in [extra[0], sensor("rain-here")]}), PART, masked)
    assert set(held.devices) == set(), "the square's cell is not the district's, the far gauge is off the grid"


# ---------------------------------------------------------------- records in stream order, snapshots
def make_twin(static, registry, stream, folder, **more) -> DistrictTwin:
    config = DistrictConfig(PART, core=district_core_config(PART, tick_s=60.0), dedupe_keys=10_000, **more)
    return DistrictTwin(static, registry, stream, folder, config)


def publish_step(stream, step: RegistryStep, partition: str = PART) -> None:
    data, msg_id, headers = step.message(partition)
    stream.publish(partition, data, msg_id, headers)
    stream.flush(5.0)


def test_a_registry_record_is_applied_in_its_place_and_the_snapshot_keeps_it(bund10, bund_registry, tmp_path):
    static, stream = bund10[0], MemoryStream()
    crowd = bund_registry.of_kind("crowd")[0]
    step = RegistryStep(40, 42, (sensor("rain-x", version=41, added=41),
                                 replace(crowd, status="retired", version=42)))
    publish_step(stream, step)
    rain = Batch.build(2, device=np.array(["rain-x", crowd.id], dtype=object), t=T0, quantity=["rain", "count"],
                       value=[12.0, 300.0])
    stream.publish(PART, encode_batch(rain), "w1:1:a", {KIND: BATCH})
    stream.publish(PART, b"", tick_msg_id(PART, T0), tick_headers(T0))
    publish_step(stream, RegistryStep(0, 42, step.devices))  # another worker's copy of the same changes: stale
    publish_step(stream, RegistryStep(42, 43, ()))  # a step that changed nothing of this district
    stream.publish(PART, b"not json", "registry:bad", {KIND: REGISTRY})
    stream.flush(5.0)
    twin = make_twin(static, bund_registry, stream, tmp_path / "a")
    twin.catch_up(30)
    assert twin.registry.version == 43 and "rain-x" in twin.registry and crowd.id in twin.registry.retired
    assert "rain-x" in twin.core.devices_seen and twin.counts.bad_records == {"bad_registry": 1}
    status = twin.status()
    assert status["registry_version"] == 43
    assert (status["registry"]["records"], status["registry"]["stale"], status["registry"]["changes"]) == (2, 1, 2)
    rows = {k: twin.core.state.readings[k].ids for k in ("rain", "crowd")}
    assert rows["rain"][-1] == "rain-x" and crowd.id in rows["crowd"], "a new gauge is appended, a retired row kept"
    assert twin.stop()
    again = make_twin(static, bund_registry, stream, tmp_path / "a")
    assert again.restored and again.registry.version == 43 and crowd.id in again.registry.retired
    assert {k: again.core.state.readings[k].ids for k in ("rain", "crowd")} == rows
    assert again.status(poll_stream=False)["registry"]["records"] == 2
    again.close()


def test_a_twin_reads_its_base_from_the_registry_database_and_fills_gaps_from_it(bund10, bund_registry, tmp_path):
    static, stream = bund10[0], MemoryStream()
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    store = RegistryStore.open(url)
    store.import_devices([*bund_registry.devices.values(), sensor("rain-far", point=FAR_POINT)])
    base = store.version()
    twin = make_twin(static, None, stream, tmp_path / "db", registry_db=url)
    assert set(twin.registry.devices) == set(bund_registry.devices) and twin.registry.version == base
    gauge = store.add(sensor("rain-gap"))  # a change no worker published
    moved = store.add(sensor("rain-y"))
    publish_step(stream, RegistryStep(moved.version - 1, moved.version, (moved.device,)))
    twin.catch_up(30)
    assert {"rain-gap", "rain-y"} <= set(twin.registry.devices) and twin.registry.version == moved.version
    assert twin.status()["registry"]["gaps"] == 1 and gauge.version < moved.version
    twin.close()
    store.close()


def test_a_device_added_at_run_time_reaches_the_district_twin_before_its_readings(bund10, bund_registry, tmp_path):
    from ingest.decoders.senml import encode_senml
    from ingest.districts import DistrictRaster, DistrictRouter
    from ingest.pipeline import IngestConfig
    from ingest.rawlog import RawLog
    from ingest.validation import Limits
    from ingest.worker import IngestWorker, WorkerConfig, movers_of, registry_at_checkpoint, static_districts
    from tests.ingest.fakes import FakeSource

    static, stream = bund10[0], MemoryStream()
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    store = RegistryStore.open(url)
    store.import_devices(list(bund_registry.devices.values()))
    raster = DistrictRaster((PART,), np.zeros((1, 1), np.int16), 121.40, 31.20, 0.2, 0.1)  # the Bund and around
    registry = registry_at_checkpoint(tmp_path / "w1" / "rawlog", store)
    router = DistrictRouter(raster, static_districts(registry, raster)[0], movers_of(registry))
    source, raw = FakeSource(), RawLog(tmp_path / "w1" / "rawlog", fsync=False)
    worker = IngestWorker(source, raw, registry, stream, router, WorkerConfig("w1", ingest=IngestConfig(
        limits=Limits(rate_per_s=0, max_age_s=1e9, max_future_s=1e9))), store)
    worker.recover()
    twin = make_twin(static, None, stream, tmp_path / "t", registry_db=url)
    store.add(sensor("rain-new"))
    worker.queue_registry_changes()
    source.put("city/sensors/rain/rain-new", encode_senml(Batch.build(1, device="rain-new", t=T0, quantity="rain",
                                                                      value=30.0)), received_at=T0)
    assert worker.ingestor.run_once(poll_s=0.0) == 2
    twin.catch_up(30)
    assert "rain-new" in twin.registry and "rain-new" in twin.core.devices_seen and not twin.counts.refused
    assert twin.registry.version == store.version() and twin.status()["registry"]["changes"] == 1
    twin.close()
    raw.close()
    store.close()


# ---------------------------------------------------------------- any interleaving
class FakeCore:
    """The part of a TwinCore a DistrictRegistry uses."""

    def __init__(self, registry: Registry) -> None:
        self.state = type("S", (), {"registry": registry})()

    def apply_devices(self, devices, version):
        self.state.registry.apply(devices, version)


OPS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "u"]), st.sampled_from(["add", "move", "retire"])),
               min_size=1, max_size=12)


def history(ops) -> list[Device]:
    """The registry database's changes of a list of operations (versions 1, 2, ...)."""
    out = []
    for v, (dev, op) in enumerate(ops, start=1):
        if dev == "u":
            out.append(unit("u", v, v, "retired" if op == "retire" else "active"))
        else:
            point = (BUND_POINT[0] + 0.001 * v, BUND_POINT[1]) if op == "move" else BUND_POINT
            out.append(sensor(dev, point=point, version=v, added=v, status="retired" if op == "retire" else "active"))
    return out


def cut(changes: list[Device], cuts: list[int]) -> list[RegistryStep]:
    """A worker's records of the changes: version steps at ``cuts``, each cut again by size."""
    n = len(changes)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    out = []
    for a, b in itertools.pairwise(bounds):
        out += registry_steps(a, b, changes[a:b], 1500)
    return out


def state_of(registry: Registry) -> dict:
    return {d.id: (d.status, d.version, tuple(d.geometry["coordinates"]) if d.geometry else None)
            for d in (*registry.devices.values(), *registry.retired.values())}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=OPS, cuts_a=st.lists(st.integers(0, 20), max_size=4), cuts_b=st.lists(st.integers(0, 20), max_size=4),
       order=st.lists(st.booleans(), max_size=40), again=st.lists(st.integers(0, 30), max_size=3),
       half=st.integers(0, 40))
def test_any_interleaving_of_two_workers_records_gives_the_registry_of_the_changes_in_order(
        bund10, ops, cuts_a, cuts_b, order, again, half):
    static = bund10[0]
    changes = history(ops)
    expected = Registry({})
    expected.apply(changes, len(changes))
    a, b = cut(changes, cuts_a), cut(changes, cuts_b)
    records, flips = [], iter(order)
    while a or b:
        take_a = a and (not b or next(flips, True))
        records.append((a if take_a else b).pop(0))
    records += [records[i % len(records)] for i in again]  # redeliveries
    book, registry = DistrictRegistry(PART, static), Registry({})
    core = FakeCore(registry)
    for i, step in enumerate(records):
        if i == half % (len(records) + 1):  # a twin restored from a snapshot taken here goes on
            saved = book.save_state(registry)
            book, registry = DistrictRegistry(PART, static), Registry({})
            book.restore(registry, saved)
            core = FakeCore(registry)
        book.apply(core, step)
    assert state_of(registry) == state_of(expected) and registry.version == len(changes)
    assert sorted(d.added for d in registry.known()) == sorted({d.added for d in registry.known()}), "rows distinct"
