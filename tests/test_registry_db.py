"""The device registry in its database (ingest/registry_db.py) on SQLite and on the machine's PostgreSQL.

- Import validation (hypothesis): any registry, written as GeoJSON or as CSV, imports to the same devices; one bad
  row refuses the whole import with problems naming that row and nothing written, or, with ``skip_bad``, the other
  rows are imported and the bad one reported.
- The change log: one version per change, in commit order, also with two writers at once; ``changes_since`` gives
  exactly the later changes; ``registry(at=v)`` is the registry as it was; a retired device keeps its history; kinds
  never change; re-importing an unchanged file writes nothing.
- A bulk import of many devices (the one-million figure is ``benchmarks/registry.py``'s).
- ``twin devices``: import, list, show, retire, and their errors.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.registry import (
    CSV_COLUMNS,
    DEVICE_KINDS,
    UNIT_TYPES,
    RegistryError,
    devices_from_csv,
    devices_from_geojson,
    expected_quantities,
)
from ingest.registry_db import DeviceConflict, RegistryStore, UnknownDeviceError
from twin.district.sources import data_dir

PG_URL = os.environ.get("CITYTWIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BUND = data_dir() / "bund" / "registry.geojson"


def _pg_database() -> tuple[str, str]:
    import psycopg

    name = f"citytwin_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh registry database URL: an SQLite file, or a scratch PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    import psycopg

    url, name = _pg_database()
    yield url
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def store(db_url):
    s = RegistryStore.open(db_url)
    yield s
    s.close()


# ---------------------------------------------------------------- generated registries
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).filter(lambda s: s == s.strip())
ROAD = st.text("abcdefghij 中山东一路", min_size=1, max_size=10).filter(lambda s: s == s.strip() and s != "")
LON = st.floats(121.40, 121.55, allow_nan=False)
LAT = st.floats(31.20, 31.28, allow_nan=False)


@st.composite
def features(draw, dev_id: str) -> dict:
    """A valid registry Feature of any kind (a crowd counter's area sometimes a polygon; movers sometimes nowhere)."""
    kind = draw(st.sampled_from(DEVICE_KINDS))
    allowed = expected_quantities(kind)
    quantities = draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=len(allowed), unique=True))
    props = {"id": dev_id, "kind": kind, "quantities": quantities, "name": draw(NAME)}
    if kind == "unit":
        props["unit_type"] = draw(st.sampled_from(UNIT_TYPES))
    if draw(st.booleans()):
        props["road"] = draw(ROAD)
    if kind == "crowd" and draw(st.booleans()):
        props["walkable_area_m2"] = draw(st.integers(1, 5000))
    lon, lat = draw(LON), draw(LAT)
    geometry: dict | None = {"type": "Point", "coordinates": [lon, lat]}
    if kind == "crowd" and draw(st.booleans()):
        d = 0.0005
        geometry = {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat]]]}
    elif kind in ("vehicle", "unit") and draw(st.booleans()):
        geometry = None
    return {"type": "Feature", "geometry": geometry, "properties": props}


@st.composite
def registries(draw, min_size: int = 1, max_size: int = 12) -> list[dict]:
    ids = draw(st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12),
                        min_size=min_size, max_size=max_size, unique=True))
    return [draw(features(i)) for i in ids]


def as_csv(feats: list[dict]) -> str:
    """The registry CSV of some features (lon/lat for points, the geometry column for polygons)."""
    out = io.StringIO()
    w = csv.DictWriter(out, [*CSV_COLUMNS, "geometry", "road", "walkable_area_m2"])
    w.writeheader()
    for f in feats:
        p, g = f["properties"], f["geometry"]
        row = {"id": p["id"], "kind": p["kind"], "quantities": ";".join(p["quantities"]), "name": p["name"],
               "unit_type": p.get("unit_type", ""), "road": p.get("road", ""),
               "walkable_area_m2": p.get("walkable_area_m2", "")}
        if g is not None and g["type"] == "Point":
            row["lon"], row["lat"] = repr(g["coordinates"][0]), repr(g["coordinates"][1])
        elif g is not None:
            row["geometry"] = json.dumps(g)
        w.writerow(row)
    return out.getvalue()


def collection(feats: list[dict]) -> dict:
    return {"type": "FeatureCollection", "features": feats}


BREAKS = {
    "kind": lambda f: f["properties"].update(kind="satellite"),
    "id": lambda f: f["properties"].update(id=f["properties"]["id"] + "/x"),
    "quantities": lambda f: f["properties"].update(quantities=["colour"]),
    "position": lambda f: f.update(geometry={"type": "Point", "coordinates": [121.4, 95.0]}),
    "walkable": lambda f: f["properties"].update(walkable_area_m2=-1, kind="crowd", quantities=["count"]),
}
"""Ways to break one feature; each is a problem the registry's rules name."""

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(registries())
def test_a_registry_as_geojson_or_as_csv_imports_to_the_same_devices(feats):
    from_json, problems = devices_from_geojson(json.loads(json.dumps(collection(feats))))
    assert problems == []
    from_csv, problems = devices_from_csv(io.StringIO(as_csv(feats), newline=""))
    assert problems == []
    assert from_csv == from_json
    store = RegistryStore.open(":memory:")
    report = store.import_devices(from_csv)
    assert (report.added, report.first_version, report.last_version) == (len(feats), 1, len(feats))
    stored = store.registry()
    assert [d.id for d in stored.known()] == [f["properties"]["id"] for f in feats]
    for d in from_json:
        got = stored.get(d.id)
        assert (got.kind, got.quantities, got.name, got.unit_type, got.geometry, got.properties) == (
            d.kind, d.quantities, d.name, d.unit_type, d.geometry, d.properties)
    assert store.import_devices(from_json).written == 0, "the same registry again changes nothing"
    assert store.version() == len(feats)


@FAST
@given(registries(min_size=2), st.data())
def test_one_bad_row_refuses_the_import_with_its_problems_or_is_left_out_with_skip_bad(feats, data):
    bad = data.draw(st.integers(0, len(feats) - 1))
    how = data.draw(st.sampled_from(sorted(BREAKS)))
    BREAKS[how](feats[bad])
    bad_id = feats[bad]["properties"]["id"]
    for fmt in ("geojson", "csv"):
        if fmt == "csv" and how == "quantities":
            continue  # a CSV names quantities the same way; covered by the GeoJSON case
        if fmt == "geojson":
            devices, problems = devices_from_geojson(json.loads(json.dumps(collection(feats))))
        else:
            devices, problems = devices_from_csv(io.StringIO(as_csv(feats), newline=""))
        where = f"line {bad + 2}" if fmt == "csv" else f"feature {bad}"
        assert problems and all(p.startswith((where, f"device {bad_id}")) for p in problems), (fmt, problems)
        store = RegistryStore.open(":memory:")
        with pytest.raises(RegistryError) as refused:
            store.import_devices(devices, problems=problems)
        assert refused.value.problems == problems
        assert store.is_empty() and store.version() == 0, "a refused import writes nothing"
        report = store.import_devices(devices, problems=problems, skip_bad=True)
        assert report.bad == problems and report.added == len(feats) - 1
        assert bad_id not in store.registry() and store.count() == len(feats) - 1


def test_the_bund_registry_file_imports_as_the_twin_reads_it(tmp_path):
    from ingest.registry import load_registry

    store = RegistryStore.open(tmp_path / "r.db")
    report = store.import_file(BUND)
    expected = load_registry(BUND)
    assert report.added == len(expected) == 84 and report.bad == []
    stored = store.registry()
    assert list(stored.devices) == list(expected.devices), "file order kept"
    assert all(stored.devices[k].properties == d.properties and stored.devices[k].geometry == d.geometry
               for k, d in expected.devices.items())


def test_csv_problems_name_their_line_and_an_unknown_header_is_refused():
    text = ("id,kind,quantities,name,unit_type,lon,lat,road\n"
            "rain-1,rain,rain,Gauge,,121.49,31.24,中山东一路\n"
            "rain-1,rain,rain,Twice,,121.49,31.24,\n"
            "rain-2,rain,rain,Far,,121.49,95,\n"
            "car-1,vehicle,,,,,,\n"
            "cop-1,unit,position,Patrol,army,,,\n")
    devices, problems = devices_from_csv(io.StringIO(text, newline=""))
    assert [d.id for d in devices] == ["rain-1", "car-1"]
    assert devices[0].properties["road"] == "中山东一路" and devices[1].geometry is None
    assert devices[1].quantities == ("position",), "an empty quantities cell: the kind's quantities"
    assert problems == ["device rain-1: duplicate id (line 3)", "device rain-2: bad Point coordinates",
                        "device cop-1: unit_type 'army' not one of ('police', 'fire', 'medical')"]
    _, problems = devices_from_csv(io.StringIO("name,lon,lat\nx,1,2\n"))
    assert problems == ["line 1: the header has no column id, kind (columns: id, kind, quantities, name, unit_type, "
                        "lon, lat)"]


# ---------------------------------------------------------------- the change log, on both databases
def _device(dev_id: str, kind: str = "rain", lon: float = 121.49, **props):
    from ingest.registry import device_from_feature

    problems: list[str] = []
    geometry = {"type": "Point", "coordinates": [lon, 31.24]}
    dev = device_from_feature({"type": "Feature", "geometry": geometry, "properties": {
        "id": dev_id, "kind": kind, "quantities": list(expected_quantities(kind)), "name": dev_id, **props}},
        "test", problems)
    assert problems == []
    return dev


def test_every_change_is_one_version_and_changes_since_gives_the_later_ones(store):
    assert store.is_empty() and store.version() == 0 and store.registry().version == 0
    store.import_devices([_device("r1"), _device("r2"), _device("w1", "water")])
    assert store.version() == 3
    moved = store.update(_device("r1", lon=121.50))
    assert (moved.version, moved.op, moved.device.added) == (4, "update", 1)
    assert store.update(_device("r1", lon=121.50)) is None, "nothing differs: no new version"
    retired = store.retire("r2", actor="tester")
    added = store.add(_device("t1", "traffic"))
    assert (retired.version, added.version, added.device.added) == (5, 6, 6)
    changes = store.changes_since(3)
    assert [(c.version, c.op, c.device.id, c.device.status) for c in changes] == [
        (4, "update", "r1", "active"), (5, "retire", "r2", "retired"), (6, "add", "t1", "active")]
    assert changes[1].actor == "tester" and changes[0].device.geometry["coordinates"][0] == 121.50
    assert [c.version for c in store.changes_since(3, limit=2)] == [4, 5]
    assert [c.version for c in store.changes_since(3, upto=5)] == [4, 5]
    assert store.changes_since(6) == []
    now = store.registry()
    assert now.version == 6 and set(now.devices) == {"r1", "w1", "t1"} and set(now.retired) == {"r2"}
    assert [d.id for d in now.known()] == ["r1", "r2", "w1", "t1"], "first registered first, retired kept"
    before = store.registry(at=3)
    assert before.version == 3 and set(before.devices) == {"r1", "r2", "w1"} and not before.retired
    assert before.get("r1").geometry["coordinates"][0] == 121.49, "as it was at version 3"
    assert store.registry(at=5).get("t1") is None and "r2" in store.registry(at=5).retired


def test_a_retired_device_keeps_its_history_and_can_be_registered_again(store):
    store.add(_device("r1"))
    store.retire("r1")
    with pytest.raises(DeviceConflict) as again:
        store.retire("r1")
    assert again.value.code == "already_retired"
    with pytest.raises(DeviceConflict) as exists:
        store.add(_device("r1"))
    assert exists.value.code == "device_exists" and "PUT" in exists.value.detail
    back = store.update(_device("r1", lon=121.48))
    assert back.device.status == "active" and back.version == 3
    assert [(c.op, c.device.status) for c in store.history("r1")] == [
        ("add", "active"), ("retire", "retired"), ("update", "active")]
    assert store.device("r1").active and store.count(status="retired") == 0


def test_a_device_s_kind_never_changes_and_unknown_devices_are_named(store):
    store.add(_device("r1"))
    with pytest.raises(DeviceConflict) as kind:
        store.update(_device("r1", "water"))
    assert kind.value.code == "kind_change"
    with pytest.raises(RegistryError, match="kind never changes"):
        store.import_devices([_device("r1", "water"), _device("r2")])
    assert store.version() == 1, "the whole import refused"
    for change in (lambda: store.update(_device("nobody")), lambda: store.retire("nobody")):
        with pytest.raises(UnknownDeviceError):
            change()


def test_two_writers_at_once_get_one_version_each_in_commit_order(db_url):
    stores = [RegistryStore.open(db_url) for _ in range(2)]
    n = 25

    def write(k: int) -> None:
        for i in range(n):
            stores[k].add(_device(f"dev-{k}-{i}"))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    changes = stores[0].changes_since(0)
    assert [c.version for c in changes] == list(range(1, 2 * n + 1))
    assert len({c.device.id for c in changes}) == 2 * n
    for s in stores:
        s.close()


def test_page_and_count_filter_by_kind_and_status(store):
    store.import_devices([_device(f"r{i:02d}") for i in range(7)] + [_device("w1", "water")])
    store.retire("r03")
    assert store.count() == 8 and store.count("rain") == 7 and store.count(status="retired") == 1
    first = store.page("rain", "active", limit=4)
    assert [d.id for d in first] == ["r00", "r01", "r02", "r04"]
    assert [d.id for d in store.page("rain", "active", after=first[-1].id, limit=4)] == ["r05", "r06"]
    assert [d.id for d in store.page(status="retired")] == ["r03"]


def test_many_devices_import_in_one_transaction(store):
    n = 20_000
    devices = [_device(f"g{i:06d}", "rain", lon=121.40 + i * 1e-6) for i in range(n)]
    report = store.import_devices(devices)
    assert (report.added, report.first_version, report.last_version) == (n, 1, n)
    assert store.count() == n and store.version() == n
    reg = store.registry()
    assert len(reg) == n and reg.get("g012345").geometry["coordinates"][0] == pytest.approx(121.412345)
    again = store.import_devices([*devices[:-100], *(_device(d.id, lon=121.3) for d in devices[-100:])])
    assert (again.added, again.updated, again.unchanged) == (0, 100, n - 100)
    assert [c.device.id for c in store.changes_since(n)] == [d.id for d in devices[-100:]]


# ---------------------------------------------------------------- twin devices
def _twin(argv: list[str]) -> int:
    from twin.cli.devices import add_parser

    parser = argparse.ArgumentParser(prog="twin")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_twin_devices_import_list_show_and_retire(tmp_path, capsys):
    from twin.cli.main import UsageError

    db = str(tmp_path / "registry.db")
    assert _twin(["devices", "import", str(BUND), "--db", db]) == 0
    assert "84 added, 0 updated, 0 unchanged (versions 1-84)" in capsys.readouterr().out
    assert _twin(["devices", "list", "--db", db, "--kind", "water", "--limit", "2"]) == 0
    out = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.out.splitlines()] == ["water-01", "water-02"]
    assert "2 of 6 devices" in out.err and "--after water-02" in out.err
    assert _twin(["devices", "retire", "water-01", "--db", db]) == 0
    assert "retired water-01 (registry version 85)" in capsys.readouterr().out
    assert _twin(["devices", "show", "water-01", "--db", db]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["registry"]["status"] == "retired" and [h["op"] for h in shown["history"]] == ["add", "retire"]
    with pytest.raises(UsageError, match="no device 'nobody'"):
        _twin(["devices", "retire", "nobody", "--db", db])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,kind,quantities,name,unit_type,lon,lat\nok-1,rain,rain,,,121.49,31.24\nx/y,rain,,,,1,2\n",
                   encoding="utf-8")
    with pytest.raises(UsageError, match=r"1 problem.* nothing imported"):
        _twin(["devices", "import", str(bad), "--db", db])
    assert "x/y" in capsys.readouterr().err
    assert _twin(["devices", "import", str(bad), "--db", db, "--skip-bad"]) == 0
    assert "1 added, 0 updated, 0 unchanged, 1 bad rows left out" in capsys.readouterr().out
    assert _twin(["devices", "list", "--db", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "cannot open the registry database" in capsys.readouterr().err
