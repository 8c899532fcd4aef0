"""Snapshots: an explicit, versioned file (JSON + .npy in a zip, no pickle) from which a fresh core goes on
exactly as the one that wrote it; old, newer, foreign and damaged snapshots are refused with a clear reason."""

from __future__ import annotations

import copy
import json
import pickle
import zipfile

import numpy as np
import pytest
import xarray as xr

from ingest.batch import Batch
from ingest.registry import load_registry
from twin.alerting.cap import info_block
from twin.alerting.store import Store
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.live import snapshot
from twin.live.core import CoreConfig, TwinCore

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
CHEN_YI_SQUARE = (121.4855, 31.2405)
TICK_S = 60.0


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


def _batches(registry, k: int) -> list[Batch]:
    """Tick k of a story with every sensor kind: a crowd swelling to red, a 100 mm/h storm, loops slowing to a
    jam (half falling silent later), probe vehicles and two field units."""
    t = T0 + TICK_S * k

    def many(ids, quantity, values):
        return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity=quantity, value=values)

    crowd = [d.id for d in registry.of_kind("crowd")]
    gauges = [d.id for d in registry.of_kind("rain")]
    loops = [d.id for d in registry.of_kind("traffic")]
    loops = loops if k < 14 else loops[:4]
    speed = float(np.interp(k, [2, 8, 14, 18], [45.0, 8.0, 8.0, 45.0]))
    out = [many(crowd, "count", np.full(len(crowd), 300 + 5700 * np.sin(np.pi * k / 24) ** 2)),
           many(gauges, "rain", np.full(len(gauges), 100.0 if 2 <= k < 12 else 0.0)),
           many(loops * 3, np.array(["speed"] * len(loops) + ["flow"] * len(loops) + ["occ"] * len(loops),
                                    dtype=object),
                np.concatenate([np.full(len(loops), speed), np.full(len(loops), 40 * speed),
                                np.full(len(loops), 90 - 1.5 * speed)]))]
    for j, v in enumerate([d.id for d in registry.of_kind("vehicle")][:4]):
        out.append(Batch.build(1, device=v, t=t - j, quantity="position", lon=121.4870 + 0.0002 * j, lat=31.2390,
                               datum="CGCS2000", speed_kmh=12.0))
    out.append(Batch.build(1, device="unit-police-04", t=t, quantity="position", lon=CHEN_YI_SQUARE[0] + 0.0001 * k,
                           lat=CHEN_YI_SQUARE[1], datum="CGCS2000", speed_kmh=4.0))
    return out


def _run(core: TwinCore, registry, ticks: range) -> list[dict]:
    messages = []
    for k in ticks:
        for b in _batches(registry, k):
            core.on_batch(b)
        messages += [e.message for e in core.on_tick(T0 + TICK_S * k).events]
        if k == 9 and core.book.active:  # an operator acknowledges the oldest alert
            ev = core.acknowledge(sorted(core.book.active)[0], "Li Wei", None, "stewards sent", now=T0 + TICK_S * k)
            messages.append(ev.message)
    return messages


@pytest.fixture(scope="module")
def run_and_restore(bund10, registry, tmp_path_factory):
    """A core run 12 ticks, snapshotted to a file, restored into a fresh core; both then run 12 more."""
    ds, _ = bund10
    folder = tmp_path_factory.mktemp("state")

    def fresh():
        return TwinCore(ds, registry, Store.open(":memory:"), CoreConfig(clear_s=TICK_S))

    a = fresh()
    first = _run(a, registry, range(12))
    path = snapshot.write(folder, a.save_state(), a.state.grid, (3, 1234), 1.7e9)
    snap = snapshot.read(folder, a.state.grid)
    b = fresh()
    b.restore_state(snap.state)
    rest_a, rest_b = _run(a, registry, range(12, 24)), _run(b, registry, range(12, 24))
    return a, b, first, rest_a, rest_b, snap, path


def test_a_restored_core_goes_on_exactly_as_the_original(run_and_restore):
    a, b, first, rest_a, rest_b, snap, _ = run_and_restore
    assert {info_block(m, "en-US")["parameter"][1]["value"] for m in first} >= {"crowd", "flood", "traffic"}, \
        "the story raises alerts of several hazards before the snapshot"
    assert any(m["identifier"].endswith(".ack1") for m in first), "and an operator acknowledged one"
    assert rest_a and rest_a == rest_b, "the same CAP messages after the restore"
    xr.testing.assert_identical(a.models.layers, b.models.layers)
    assert a.book.sequence == b.book.sequence and sorted(a.book.active) == sorted(b.book.active)
    assert json.dumps(a.state.entities.save_state()) == json.dumps(b.state.entities.save_state())
    assert snap.position == (3, 1234) and snap.written_at == 1.7e9


def test_the_file_is_json_and_numpy_arrays_without_pickle(run_and_restore, bund10, registry):
    *_, snap, path = run_and_restore
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["schema"] == "citytwin.snapshot" and manifest["version"] == snapshot.VERSION
        assert set(manifest["state"]) == {"core", "book", "router", "output", "twin_state", "models", "cases"}
        assert all(n == "manifest.json" or n.endswith(".npy") for n in names)
        assert "state/models/components/flood/h.npy" in names
        for name in names[1:]:  # every array loads without pickle
            with z.open(name) as f:
                np.load(f, allow_pickle=False)
    # the alert output (issue 16): values, delivery (storm control, suppressed alerts) and storm summaries, as
    # plain JSON; a core restored from the file holds exactly that
    output = manifest["state"]["output"]
    assert set(output) == {"values", "delivery", "summaries"} and set(output["delivery"]) == {"storm", "suppressed"}
    assert _plain(output), "JSON values only, no array stand-ins or other objects"
    restored = TwinCore(bund10[0], registry, Store.open(":memory:"), CoreConfig(clear_s=TICK_S))
    restored.restore_state(snap.state)
    valued = sorted(v["identifier"] for v in output["values"]["alerts"])
    assert valued and valued == sorted(restored.book.active), "a value for every alert active at the snapshot"
    assert output["delivery"]["storm"]["raised"], "storm control remembers the alerts raised in its window"
    assert json.loads(json.dumps(restored.output.save_state())) == output
    restored.store.close()


def _plain(value) -> bool:
    """Only JSON scalars, lists and dicts, and no ``{"$array": ...}`` stand-in for a .npy file."""
    if isinstance(value, dict):
        return set(value) != {"$array"} and all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_an_old_pickle_snapshot_is_refused_with_what_to_do(tmp_path, bund10):
    grid = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 50.0)
    (tmp_path / "snapshot.pkl").write_bytes(pickle.dumps({"version": 1}))
    assert snapshot.exists(tmp_path)
    with pytest.raises(snapshot.SnapshotError, match=r"version-1 snapshot .*Move it out of .*replaying the raw log"):
        snapshot.read(tmp_path, grid)


def test_a_newer_a_foreign_and_a_damaged_snapshot_are_refused(tmp_path):
    grid = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 50.0)
    snapshot.write(tmp_path, {"core": {"x": np.arange(3)}}, grid, (0, 0), 0.0)
    assert snapshot.read(tmp_path, grid).state["core"]["x"].tolist() == [0, 1, 2]
    other = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 25.0)
    with pytest.raises(snapshot.SnapshotError, match=r"another grid: .*cell_size 50\.0 \(twin: 25\.0\)"):
        snapshot.read(tmp_path, other)
    path = tmp_path / snapshot.FILE
    with zipfile.ZipFile(path) as z:
        manifest, array = json.loads(z.read("manifest.json")), z.read("state/core/x.npy")
    manifest["version"] = snapshot.VERSION + 1
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr("state/core/x.npy", array)
    with pytest.raises(snapshot.SnapshotError, match="newer than this citytwin reads"):
        snapshot.read(tmp_path, grid)
    path.write_bytes(b"not a zip")
    with pytest.raises(snapshot.SnapshotError, match="is damaged"):
        snapshot.read(tmp_path, grid)


def test_state_that_is_not_plain_data_is_refused_when_written(tmp_path):
    grid = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, 50.0)
    with pytest.raises(TypeError, match="is not plain data"):
        snapshot.write(tmp_path, {"core": {"f": object()}}, grid, (0, 0), 0.0)
    with pytest.raises(TypeError, match="object array"):
        snapshot.write(tmp_path, {"core": {"a": np.array([{}], dtype=object)}}, grid, (0, 0), 0.0)
    assert not (tmp_path / snapshot.FILE).exists()


def test_every_component_of_the_tick_says_what_evolves(bund10, registry):
    """A component whose update changes an attribute it does not list in `state_vars` would lose that change in
    a snapshot: run the story and compare each component's attributes with and without what it lists."""
    ds, _ = bund10
    core = TwinCore(ds, registry, Store.open(":memory:"), CoreConfig())
    before = {n: copy.deepcopy(vars(c)) for n, c in core.models.components().items()}
    _run(core, registry, range(6))
    for name, component in core.models.components().items():
        changed = {k for k, v in vars(component).items()
                   if k in before[name] and not _same(v, before[name][k])}
        scratch = {"h_new", "qx_new", "qy_new", "f"}  # the flood kernel's work arrays, overwritten every sub-step
        scratch |= set(getattr(component, "provider_set", ()))  # set again by the provider after a restore
        assert changed - set(component.state_vars) - scratch == set(), f"{name} evolves {changed} unlisted"


def _same(a, b) -> bool:
    if hasattr(a, "identical"):
        return a.identical(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b) or (a != a and b != b)
    except (ValueError, TypeError):
        return a is b
