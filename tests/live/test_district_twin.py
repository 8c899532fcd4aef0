"""District twins fed from the stream (twin.live.district_twin, docs/city-deployment.md sections 4 and 5).

On a ``MemoryStream``, driven step by step (``DistrictTwin.step``): batches and ticks read in stream order give the
alerts and layers of a core fed the same batches and ticks directly; the two partitions a twin reads come out in
stream-sequence order whatever the timing; a unit crossing from one district to another ends held by the second
only, with every fix applied; bad records are counted and passed over; the reader thread stops within 5 s.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.registry import load_registry
from ingest.stream import BATCH, KIND, TICK, TIME, MemoryStream, encode_batch, tick_headers, tick_msg_id
from twin.alerting.cap import info_block
from twin.alerting.store import Store
from twin.district.sources import data_dir
from twin.live import snapshot
from twin.live.core import TwinCore
from twin.live.district_feed import OrderedFeed
from twin.live.district_handover import HANDOVER_PARTITION, Handover, parse_handover
from twin.live.district_twin import DistrictConfig, DistrictTopics, DistrictTwin, district_core_config

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
TICK_S = 60.0
DISTRICT = "310101"
CHEN_YI_SQUARE = (121.4855, 31.2405)
UNIT = "unit-police-04"


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


def story(registry, k: int) -> list[Batch]:
    """Tick k of a story with every sensor kind: a crowd swelling to red, a 100 mm/h storm, loops slowing to a
    jam, four probe vehicles and a field unit."""
    t = T0 + TICK_S * k

    def many(ids, quantity, values):
        return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity=quantity, value=values)

    crowd = [d.id for d in registry.of_kind("crowd")]
    gauges = [d.id for d in registry.of_kind("rain")]
    loops = [d.id for d in registry.of_kind("traffic")]
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
    out.append(Batch.build(1, device=UNIT, t=t, quantity="position", lon=CHEN_YI_SQUARE[0] + 0.0001 * k,
                           lat=CHEN_YI_SQUARE[1], datum="CGCS2000", speed_kmh=4.0))
    return out


def publish_ticks(stream, partition: str, registry, ticks: range) -> int:
    """Each tick's batches, then the tick, on ``partition`` (as ingest workers and the city clock do); the rows."""
    rows = 0
    for k in ticks:
        for i, b in enumerate(story(registry, k)):
            stream.publish(partition, encode_batch(b), f"w1:{k}-{i}:{partition}", {KIND: BATCH})
            rows += len(b)
        t = T0 + TICK_S * k
        stream.publish(partition, b"", tick_msg_id(partition, t), tick_headers(t))
    stream.flush(5.0)
    return rows


def core_config(partition: str = DISTRICT):
    return district_core_config(partition, tick_s=TICK_S, clear_s=TICK_S)


def make_twin(static, registry, stream, folder: Path, partition: str = DISTRICT, **settings) -> DistrictTwin:
    config = DistrictConfig(partition, core=core_config(partition), dedupe_keys=50_000, **settings)
    return DistrictTwin(static, registry, stream, folder / partition, config)


def stored_messages(store: Store) -> list[dict]:
    """Every CAP message the store holds, by (sent, identifier)."""
    messages = [m for a in store.alerts() for m in store.messages(a["identifier"])]
    return sorted(messages, key=lambda m: (m["sent"], m["identifier"]))


# ---------------------------------------------------------------- stream order = the core fed directly
def test_batches_and_ticks_in_stream_order_give_the_alerts_of_a_core_fed_directly(bund10, registry, tmp_path):
    static = bund10[0]
    stream = MemoryStream()
    rows = publish_ticks(stream, DISTRICT, registry, range(14))
    twin = make_twin(static, registry, stream, tmp_path)
    assert not twin.restored
    twin.catch_up(60)
    direct = TwinCore(static, registry, Store.open(tmp_path / "direct.db"), core_config())
    events = []
    for k in range(14):
        for b in story(registry, k):
            direct.on_batch(b)
        events += direct.on_tick(T0 + TICK_S * k).events
    hazards = {info_block(e.message, "en-US")["parameter"][1]["value"] for e in events}
    assert hazards >= {"crowd", "flood", "traffic"}, "the story raises alerts of several hazards"
    served, expected = stored_messages(twin.store), stored_messages(direct.store)
    assert served == expected and len(served) >= 3
    assert all(m["identifier"].startswith(f"citytwin.{DISTRICT}.") for m in served), "alerts name the district"
    xr.testing.assert_identical(twin.core.models.layers, direct.models.layers)
    status = twin.status()
    assert (status["ticks"], status["rows"], status["records"], status["duplicates"]) == (14, rows, 14 * 8, 0)
    assert status["lag"] == 0 and status["applied_seq"] == stream.last_seq(DISTRICT)
    twin.close()
    direct.store.close()


def test_rows_stored_twice_are_applied_once_and_bad_records_are_counted_and_passed_over(bund10, registry, tmp_path):
    stream = MemoryStream()
    twin = make_twin(bund10[0], registry, stream, tmp_path)
    b = story(registry, 0)[0]
    stream.publish(DISTRICT, encode_batch(b), "w1:a", {KIND: BATCH})
    stream.publish(DISTRICT, encode_batch(b), "w1:a-again-after-the-window", {KIND: BATCH})  # same rows
    stream.publish(DISTRICT, b"not arrow", "w1:junk", {KIND: BATCH})
    stream.publish(DISTRICT, b"", "tick:bad", {KIND: TICK, TIME: "soon"})
    stream.publish(DISTRICT, b"{}", "what", {KIND: "gossip"})
    stream.publish(HANDOVER_PARTITION, b"[1]", "h:junk", {KIND: "handover"})
    stream.publish(DISTRICT, b"", tick_msg_id(DISTRICT, T0), tick_headers(T0))
    stream.publish(DISTRICT, b"", tick_msg_id(DISTRICT, T0 - 60), tick_headers(T0 - 60))  # the clock went back
    stream.flush(5.0)
    twin.catch_up(30)
    s = twin.status()
    assert (s["records"], s["rows"], s["duplicates"]) == (2, len(b), len(b))
    assert s["bad_records"] == {"bad_batch": 1, "bad_tick": 1, "unknown_kind": 1, "bad_handover": 1}
    assert (s["ticks"], s["ticks_skipped"]) == (1, 1)
    assert s["faults"]["apply_errors"] == 0
    twin.close()


# ---------------------------------------------------------------- the two partitions in sequence order
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["main", "handover", "poll"]), st.integers(1, 3)), min_size=1,
                max_size=40), st.integers(1, 4))
def test_the_feed_releases_both_partitions_in_sequence_order_whatever_the_timing(ops, max_n):
    stream = MemoryStream()
    feed = OrderedFeed(stream, "main", "handover", {}, max_n)
    released: list[int] = []
    n = 0
    for what, count in ops:
        if what == "poll":
            released += [r.seq for _, r in feed.poll(0.0)]
            continue
        for _ in range(count):
            n += 1
            stream.publish(what, b"", f"m{n}")
        stream.flush(1.0)
    for _ in range(2 * n + 2):  # drained: every record comes out
        released += [r.seq for _, r in feed.poll(0.0)]
    assert released == list(range(1, n + 1))
    assert feed.out_of_order == 0 and feed.buffered == 0


def test_a_record_of_the_own_partition_waits_for_the_handover_watermark():
    stream = MemoryStream()
    feed = OrderedFeed(stream, "main", "handover", {}, 1)
    stream.publish("main", b"", "a")
    stream.publish("main", b"", "b")
    stream.publish("handover", b"", "c")
    stream.flush(1.0)
    got = []
    for _ in range(6):
        got += [(p, r.seq) for p, r in feed.poll(0.0)]
    assert got == [("main", 1), ("main", 2), ("handover", 3)]


# ---------------------------------------------------------------- handover
def fix(stream, partition: str, unit: str, t: float, lon: float, lat: float = CHEN_YI_SQUARE[1]) -> None:
    b = Batch.build(1, device=unit, t=t, quantity="position", lon=lon, lat=lat, datum="CGCS2000", speed_kmh=4.0)
    stream.publish(partition, encode_batch(b), f"fix:{unit}:{t!r}:{partition}", {KIND: BATCH})
    stream.flush(1.0)


def settle(twins: list[DistrictTwin], stream) -> None:
    """Step every twin until all have applied both partitions to the end and published their claims."""
    for _ in range(100):
        moved = sum(t.step(0.0) for t in twins)
        done = all(t.positions[t.main] >= stream.last_seq(t.main) and not t.pending
                   and t.positions[t.side] >= stream.last_seq(t.side) for t in twins)
        if done and not moved:
            return
    raise AssertionError("the twins did not settle")


def holders(twins: list[DistrictTwin], unit: str) -> dict[str, float]:
    """The twins that hold ``unit`` now, with their last fix time."""
    out = {}
    for twin in twins:
        e = twin.core.state.entities.entities[unit]
        if e.located:
            out[twin.main] = e.t
    return out


def test_a_unit_crossing_from_one_district_to_another_ends_held_by_the_second_only(bund10, registry, tmp_path):
    stream = MemoryStream()
    a, b = (make_twin(bund10[0], registry, stream, tmp_path, p) for p in ("310101", "310109"))
    lons = np.linspace(121.4840, 121.4920, 9)  # the first five in Huangpu's partition, the others in Hongkou's
    for i, lon in enumerate(lons):
        t = T0 + 10.0 * i
        district = a if i < 5 else b
        fix(stream, district.main, UNIT, t, float(lon))
        settle([a, b], stream)
        assert holders([a, b], UNIT) == {district.main: t}, f"fix {i}: one holder, with that fix"
        e = district.core.state.entities.entities[UNIT]
        assert e.lon == pytest.approx(lon, abs=1e-9), "the fix moved the unit"
    assert a.counts.rows + b.counts.rows == len(lons), "no fix lost"
    assert (a.counts.claims, b.counts.claims, a.counts.dropped) == (1, 1, 1), "A took it first, then B from A"
    assert [parse_handover(r) for r in stream.records(HANDOVER_PARTITION)] == [
        Handover(UNIT, T0, "310101"), Handover(UNIT, T0 + 10.0 * 5, "310109")]
    assert a.core.located_entities(("unit",)) == [] and [e["id"] for e in b.core.located_entities(("unit",))] == [UNIT]
    for twin in (a, b):
        twin.close()


def test_a_fix_back_in_the_first_district_before_the_claim_is_read_makes_it_claim_again(bund10, registry, tmp_path):
    stream = MemoryStream()
    a, b = (make_twin(bund10[0], registry, stream, tmp_path, p) for p in ("310101", "310109"))
    fix(stream, a.main, UNIT, T0, 121.4850)
    settle([a, b], stream)
    fix(stream, b.main, UNIT, T0 + 10, 121.4890)
    fix(stream, a.main, UNIT, T0 + 20, 121.4860)  # back in A before B's claim is in the stream
    a.step(0.0)  # A applies it while it holds the unit: no claim
    b.step(0.0)  # B claims the unit with its older fix
    settle([a, b], stream)
    assert holders([a, b], UNIT) == {a.main: T0 + 20}
    assert a.counts.reclaims == 1 and b.counts.dropped == 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_after_any_interleaving_the_twin_of_the_latest_fix_holds_the_unit_and_no_other(bund10, registry, data):
    partitions = ("310101", "310109", "310110")
    n = data.draw(st.integers(1, 8), label="fixes")
    times = data.draw(st.permutations(range(n)), label="fix order")  # late fixes too
    where = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="district of each fix")
    steps = data.draw(st.lists(st.lists(st.integers(0, 2), max_size=3), min_size=n, max_size=n), label="reads")
    with tempfile.TemporaryDirectory() as folder:
        stream = MemoryStream()
        twins = [make_twin(bund10[0], registry, stream, Path(folder), p) for p in partitions]
        for i in range(n):
            fix(stream, partitions[where[i]], UNIT, T0 + times[i], 121.4840 + 0.0001 * i)
            for k in steps[i]:
                twins[k].step(0.0)
        settle(twins, stream)
        latest = max(range(n), key=lambda i: times[i])
        assert holders(twins, UNIT) == {partitions[where[latest]]: T0 + times[latest]}
        assert sum(t.counts.rows for t in twins) == n, "every fix applied where it was sent"
        for twin in twins:
            twin.close()


# ---------------------------------------------------------------- the reader thread, topics, snapshots
def test_the_reader_thread_follows_the_stream_and_stops_within_5_s(bund10, registry, tmp_path):
    stream = MemoryStream()
    publish_ticks(stream, DISTRICT, registry, range(3))
    twin = make_twin(bund10[0], registry, stream, tmp_path)
    ticks = []
    twin.listeners.append(lambda report: ticks.append(report.t))
    twin.start(warm=False)
    assert twin.wait_applied(stream.last_seq(DISTRICT), 30), twin.status()
    assert ticks == [T0, T0 + TICK_S, T0 + 2 * TICK_S]
    t0 = time.monotonic()
    assert twin.stop()
    assert time.monotonic() - t0 < 5.0
    snap = snapshot.read(twin.state_dir, twin.core.state.grid)
    assert snap.stream == {DISTRICT: stream.last_seq(DISTRICT), HANDOVER_PARTITION: twin.positions[HANDOVER_PARTITION]}
    assert stream.records(HANDOVER_PARTITION), "its claims of the unit and the vehicles are in the stream"


def test_alert_topics_carry_the_district_and_other_topics_stay():
    sent = []

    class Transport:
        def publish(self, topic, payload, *, qos=1, retain=False, droppable=False):
            sent.append((topic, retain))

    topics = DistrictTopics(Transport(), "city/", "310109")
    topics.publish("city/alerts/citytwin.310109.crowd.20250101T0000.00007", b"{}", retain=True)
    topics.publish("city/units/u1/alerts", b"{}")
    assert sent == [("city/alerts/310109/citytwin.310109.crowd.20250101T0000.00007", True),
                    ("city/units/u1/alerts", False)]


def test_a_snapshot_without_stream_positions_reads_as_none_and_a_foreign_one_is_refused(bund10, registry, tmp_path):
    twin = make_twin(bund10[0], registry, MemoryStream(), tmp_path)
    grid = twin.core.state.grid
    twin.close()
    path = snapshot.write(tmp_path, {"core": {}}, grid, (1, 2), 0.0)
    import zipfile

    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    del manifest["stream"]  # as written before stream positions existed
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
    assert snapshot.read(tmp_path, grid).stream == {}
    with pytest.raises(snapshot.SnapshotError, match="not written by the district twin of 310101"):
        DistrictTwin(bund10[0], registry, MemoryStream(), tmp_path,
                     DistrictConfig(DISTRICT, core=core_config(), dedupe_keys=1000))


# ---------------------------------------------------------------- twin district: bad options
@pytest.mark.parametrize("argv, message", [
    (["--grid", "missing.nc", "--registry", "r.geojson", "--partition", "310101"], "--grid missing.nc does not exist"),
    (["--partition", "310101"], "--grid, --registry missing"),
    ([], "name the district either with --city and --district, or with --grid"),
    (["--city", "c.yaml", "--grid", "g.nc"], "name the district either"),
    (["--district", "310101"], "--city and --district go together"),
])
def test_twin_district_refuses_bad_options_in_one_line_with_status_2(argv, message, capsys):
    from twin.cli.district import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("twin: error: ") and message in err and "\n" not in err


def test_twin_district_names_a_bad_partition_and_a_city_not_built(bund_file, tmp_path, capsys):
    from twin.cli.district import main

    registry = str(data_dir() / "bund" / "registry.geojson")
    assert main(["--grid", str(bund_file), "--registry", registry, "--partition", "a.b"]) == 2
    assert "bad partition name 'a.b'" in capsys.readouterr().err
    assert main(["--grid", str(bund_file), "--registry", registry, "--partition", HANDOVER_PARTITION]) == 2
    assert "is the handover partition" in capsys.readouterr().err
    manifest = Path(__file__).parents[2] / "data" / "city" / "bund4.yaml"
    assert main(["--city", str(manifest), "--district", "310109", "--cache", str(tmp_path / "cache")]) == 2
    assert "is not built in" in capsys.readouterr().err
    assert main(["--city", str(manifest), "--district", "999999", "--cache", str(tmp_path / "cache")]) == 2
    assert "no district '999999'" in capsys.readouterr().err
