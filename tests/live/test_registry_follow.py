"""Ingest workers follow the registry database at run time (ingest.worker, ingest.registry_follow,
ingest.stream.registry; docs/guides/devices.md).

A worker on a fake transport, a ``MemoryStream`` and an SQLite registry database: a device added to the database
after the worker started is admitted from its next message, one retired after start is refused as
``retired_device``, without a restart; each change reaches every district's partition as a ``registry`` record
before the batches admitted by it; a moved device is retired in its old district and added in its new one; a
worker recovered from its raw log publishes the same records under the same ids.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.districts import DistrictRouter
from ingest.pipeline import IngestConfig
from ingest.rawlog import LOG_START, RawLog
from ingest.registry import Device, device_from_feature, registry_from_geojson
from ingest.registry_db import RegistryStore
from ingest.stream import REGISTRY, MemoryStream, Record, decode_batch
from ingest.stream.registry import (
    RegistryRecordError,
    RegistryStep,
    parse_registry,
    registry_msg_id,
    registry_steps,
)
from ingest.worker import Checkpoint, IngestWorker, WorkerConfig, movers_of, registry_at_checkpoint, static_districts
from tests.ingest.conftest import feature
from tests.ingest.fakes import FakeSource
from tests.live.test_ingest_worker import A_POINT, B_POINT, OPEN, T0, crowd, position, raster, registry_doc
from tests.support.waits import wait_until


def device(dev_id: str, kind: str = "crowd", point: tuple[float, float] | None = A_POINT, **props) -> Device:
    quantities = ["position"] if kind in ("vehicle", "unit") else ["count"]
    geometry = None if point is None else {"type": "Point", "coordinates": list(point)}
    problems: list[str] = []
    got = device_from_feature(feature(dev_id, kind, quantities, geometry, **props), dev_id, problems)
    assert not problems, problems
    return got


def filled_store(folder: Path) -> RegistryStore:
    store = RegistryStore.open(f"sqlite:///{folder / 'registry.db'}")
    store.import_devices(list(registry_from_geojson(registry_doc(4)).devices.values()))
    return store


class Rig:
    """A worker following ``store``, its raw log in ``state``, publishing to ``stream``."""

    def __init__(self, state: Path, stream: MemoryStream, store: RegistryStore) -> None:
        registry = registry_at_checkpoint(state / "rawlog", store)
        static, _ = static_districts(registry, raster())
        router = DistrictRouter(raster(), static, movers_of(registry))
        self.source = FakeSource()
        self.log = RawLog(state / "rawlog", fsync=False)
        self.worker = IngestWorker(self.source, self.log, registry, stream, router,
                                   WorkerConfig("w1", publish_timeout_s=1.0, ingest=IngestConfig(limits=OPEN)), store)

    def group(self, messages: list[tuple[str, bytes]], controls: int = 0) -> None:
        for topic, payload in messages:
            self.source.put(topic, payload, received_at=T0)
        assert self.worker.ingestor.run_once(poll_s=0.0) == len(messages) + controls

    def dead_letters(self) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.source.published if t == "city/deadletter"]


def kinds_and_devices(stream: MemoryStream, partition: str) -> list[tuple[str, list[str]]]:
    """Each record of a partition: its kind and the devices it carries."""
    out = []
    for r in stream.records(partition):
        if r.kind == REGISTRY:
            out.append((REGISTRY, [f"{d.id}:{d.status}" for d in parse_registry(r).devices]))
        else:
            out.append((r.kind, decode_batch(r.data).device.tolist()))
    return out


def test_a_device_added_or_retired_after_start_is_admitted_or_refused_without_a_restart(tmp_path):
    store, stream = filled_store(tmp_path), MemoryStream()
    rig = Rig(tmp_path, stream, store)
    rig.worker.recover()
    base = store.version()
    rig.group([crowd("s99", 1, T0), crowd("s0", 2, T0)])
    assert [d["reason"] for d in rig.dead_letters()] == ["unknown_device"]
    added = store.add(device("s99", point=A_POINT))
    store.retire("s0")
    assert rig.worker.queue_registry_changes() == base + 2
    rig.group([crowd("s99", 3, T0 + 1), crowd("s0", 4, T0 + 1)], controls=1)
    assert [d["reason"] for d in rig.dead_letters()] == ["unknown_device", "retired_device"]
    assert kinds_and_devices(stream, "A") == [("batch", ["s0"]), (REGISTRY, ["s99:active", "s0:retired"]),
                                              ("batch", ["s99"])]
    assert kinds_and_devices(stream, "B") == [(REGISTRY, [])], "every district hears of every version step"
    (step,) = [parse_registry(r) for r in stream.records("A") if r.kind == REGISTRY]
    assert (step.start, step.to, step.devices[0].added) == (base, base + 2, added.version)
    status = rig.worker.status()["stream"]
    assert (status["registry_version"], status["registry_changes"], status["registry_records"]) == (base + 2, 2, 2)
    assert rig.worker.ingestor.metrics.snapshot()["rejected"]["retired_device"] == 1
    rig.log.close()


def test_a_moved_sensor_is_retired_in_its_old_district_and_added_in_its_new_one(tmp_path):
    store, stream = filled_store(tmp_path), MemoryStream()
    rig = Rig(tmp_path, stream, store)
    rig.worker.recover()
    store.update(device("s0", point=B_POINT))  # s0 was in A
    store.add(device("v9", "vehicle", None))
    rig.worker.queue_registry_changes()
    rig.group([crowd("s0", 5, T0), position("v9", *A_POINT, T0)], controls=1)
    assert kinds_and_devices(stream, "A") == [(REGISTRY, ["s0:retired", "v9:active"]), ("batch", ["v9"])]
    assert kinds_and_devices(stream, "B") == [(REGISTRY, ["s0:active", "v9:active"]), ("batch", ["s0"])]
    rig.log.close()


def test_a_recovered_worker_replays_the_registry_changes_in_their_places_under_the_same_ids(tmp_path):
    store, stream = filled_store(tmp_path), MemoryStream()
    rig = Rig(tmp_path, stream, store)
    rig.worker.recover()
    start = rig.worker.checkpoint
    store.add(device("s99"))
    rig.worker.queue_registry_changes()
    rig.group([crowd("s99", 1, T0), crowd("s0", 2, T0)], controls=1)
    store.retire("s99")
    rig.worker.queue_registry_changes()
    rig.group([crowd("s99", 3, T0 + 1), crowd("s2", 4, T0 + 1)], controls=1)
    first = {p: kinds_and_devices(stream, p) for p in "AB"}
    # a crash with everything in flight since the start: recovery publishes it all again
    Checkpoint(start.epoch, LOG_START, rig.log.position, LOG_START, start.registry).save(rig.worker.checkpoint_path)
    rig.log.close()
    store.add(device("s77"))  # a change made while the worker was down is not in its raw log
    again = Rig(tmp_path, stream, store)
    assert again.worker.registry.version == start.registry, "read as it was at the checkpoint"
    assert again.worker.recover() == 6
    assert {p: kinds_and_devices(stream, p) for p in "AB"} == first, "the same records, stored once"
    assert again.worker.metrics.registry_records == 0 and again.worker.metrics.batches_duplicate == 2
    assert "s99" in again.worker.registry.retired and "s77" not in again.worker.registry.devices
    again.worker.queue_registry_changes()  # then it catches up with the database
    again.group([crowd("s77", 5, T0 + 2)], controls=1)
    assert kinds_and_devices(stream, "A")[-1] == ("batch", ["s77"])
    again.log.close()


def test_the_watcher_thread_finds_a_change_made_by_another_process(tmp_path):
    store, stream = filled_store(tmp_path), MemoryStream()
    rig = Rig(tmp_path, stream, store)
    rig.worker.config = WorkerConfig("w1", registry_poll_s=0.05, ingest=rig.worker.config.ingest)
    rig.worker.recover()
    rig.worker.start()
    try:
        other = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
        change = other.add(device("s99"))
        other.close()
        wait_until(lambda: rig.worker.registry.version >= change.version, 10.0, "the worker applied the change")
        rig.source.put(*crowd("s99", 1, T0), received_at=T0)
        wait_until(lambda: kinds_and_devices(stream, "A")[-1:] == [("batch", ["s99"])], 10.0, "s99 published")
    finally:
        assert rig.worker.stop(5.0)
        rig.log.close()


# ---------------------------------------------------------------- the record format
def test_a_large_step_is_cut_into_contiguous_records_the_stream_takes():
    devices = [Device(f"d{v}", "crowd", ("count",), f"名称 {v}" * 20,
                      geometry={"type": "Point", "coordinates": [121.0, 31.0]},
                      properties={"id": f"d{v}", "kind": "crowd", "name": f"名称 {v}" * 20}, version=v, added=v)
               for v in range(11, 211)]
    steps = registry_steps(10, 215, devices, 8_000)
    assert len(steps) > 3 and steps[0].start == 10 and steps[-1].to == 215
    assert all(a.to == b.start for a, b in itertools.pairwise(steps))
    for step in steps:
        data, msg_id, headers = step.message("A")
        assert len(data) <= 8_000 - 512 and msg_id == registry_msg_id("A", step.start, step.to)
        back = parse_registry(Record(1, data, headers))
        assert back.devices == step.devices and (back.start, back.to) == (step.start, step.to)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=80), st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["from", "to", "devices"]), st.one_of(st.integers(-3, 5), st.lists(st.integers(), max_size=2),
                                                         st.text(max_size=3), st.none())))))
def test_a_bad_registry_record_is_refused_with_a_reason(data):
    try:
        got = parse_registry(Record(1, data, {"Twin-Kind": REGISTRY}))
    except RegistryRecordError as exc:
        assert str(exc)
    else:
        assert isinstance(got, RegistryStep) and got.start < got.to


# ---------------------------------------------------------------- twin ingest-worker --registry-db
def test_the_command_fills_an_empty_registry_database_and_then_takes_it_as_the_truth(tmp_path):
    import argparse

    import pytest

    from twin.cli.worker import WorkerUsageError, open_registry

    path = tmp_path / "devices.geojson"
    path.write_text(json.dumps(registry_doc(4)), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    args = argparse.Namespace(registry=path, registry_db=url, state=tmp_path / "w1", worker_id="w1")
    registry, store = open_registry(args)
    assert len(registry) == 8 and registry.version == store.version() == 8
    store.add(device("s99"))
    store.close()
    registry, store = open_registry(argparse.Namespace(registry=None, registry_db=url, state=tmp_path / "w1",
                                                       worker_id="w1"))
    assert "s99" in registry and registry.version == 9
    store.close()
    for bad in (argparse.Namespace(registry=None, registry_db=None, state=tmp_path, worker_id="w1"),
                argparse.Namespace(registry=None, registry_db=f"sqlite:///{tmp_path / 'empty.db'}", state=tmp_path,
                                   worker_id="w1")):
        with pytest.raises(WorkerUsageError, match="--registry"):
            open_registry(bad)
