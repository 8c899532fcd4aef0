"""The ingest pipeline without a broker: log before ack, validation, dead letters, dedupe, replay."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import encode_nmea
from ingest.pipeline import IngestConfig, Ingestor
from ingest.rawlog import RawLog, read_log
from ingest.registry import RegistryError, load_registry, registry_from_geojson
from ingest.validation import Limits, RateLimiter
from tests.ingest.conftest import REPO, feature, small_registry_doc
from tests.ingest.fakes import FakeSource


def crowd(dev: str, t: float, v: float = 10) -> bytes:
    return json.dumps([{"bn": f"urn:dev:{dev}:", "n": "count", "v": v, "t": t}]).encode()


@pytest.fixture
def rig(tmp_path, registry):
    src, got = FakeSource(), []
    log = RawLog(tmp_path / "log")
    ing = Ingestor(src, log, registry, got.append, IngestConfig(limits=Limits(rate_per_s=5, burst=5)))
    yield src, ing, got, tmp_path / "log"
    log.close()


def drain(ing):
    while ing.run_once(poll_s=0.0):
        pass


def test_each_reason_is_dead_lettered_and_counted(rig):
    src, ing, _got, _ = rig
    now = time.time()
    gga = encode_nmea(Batch.build(1, t=now, lat=31.24, lon=121.49, fix=1)).decode().split()[0]
    cases = {
        "too_large": ("city/sensors/crowd/c0", b"[" + b" " * 70_000 + b"]"),
        "bad_checksum": ("city/beidou/v0", (gga[:-2] + ("00" if gga[-2:] != "00" else "01")).encode()),
        "bad_syntax": ("city/sensors/crowd/c0", b"{not json"),
        "bad_schema": ("city/other/thing", b"{}"),
        "out_of_range": ("city/sensors/crowd/c1", crowd("c1", now, -5)),
        "bad_unit": ("city/sensors/rain/r0", b'[{"bn":"urn:dev:r0:","n":"rain","u":"in/h","v":1}]'),
        "time_skew": ("city/sensors/crowd/c2", crowd("c2", now + 3600)),
        "unknown_device": ("city/sensors/crowd/nobody", crowd("nobody", now)),
        "identity_mismatch": ("city/sensors/rain/c3", b'[{"bn":"urn:dev:c3:","n":"rain","u":"mm/h","v":1}]'),
    }
    for topic, payload in cases.values():
        src.put(topic, payload, now)
    for i in range(8):  # burst 5: three are rate limited
        src.put("city/sensors/crowd/c4", crowd("c4", now - i), now)
    drain(ing)
    m = ing.metrics.snapshot()
    expected = {r: 1 for r in cases} | {"rate_limited": 3, "outside_grid": 0, "unknown_alert": 0, "not_sent": 0,
                                                    "unknown_case": 0, "not_assigned": 0, "bad_transition": 0,
                                                    "unknown_source": 0, "unknown_category": 0, "retired_device": 0}
    assert m["rejected"] == expected
    assert m["received"] == len(cases) + 8 and m["accepted"] == 5 and m["accepted_records"] == 5
    letters = [json.loads(p) for t, p, q in src.published]
    assert {t for t, _, q in src.published} == {"city/deadletter"} and {q for *_, q in src.published} == {1}
    assert sorted(d["reason"] for d in letters) == sorted(list(cases) + ["rate_limited"] * 3)
    for d in letters:
        assert set(d) >= {"topic", "reason", "detail", "received_at", "payload_b64"}
        if d["reason"] == "bad_syntax":
            assert (
                base64.b64decode(d["payload_b64"]) == b"{not json" and d["topic"] == "city/sensors/crowd/c0"
            )
    assert len(src.acked) == m["received"] == m["log_records"]  # everything logged and acked


def test_log_before_ack_and_records_to_sink(rig):
    src, ing, got, logdir = rig
    now = time.time()
    for i in range(5):
        src.put(f"city/sensors/crowd/c{i}", crowd(f"c{i}", now), now)
    src.put("city/units/u0/ack", json.dumps({"alert": "A1", "status": "ack", "t": now}).encode(), now)
    drain(ing)
    assert [r.topic for r in read_log(logdir)] == [f"city/sensors/crowd/c{i}" for i in range(5)] + [
        "city/units/u0/ack"
    ]
    assert len(src.acked) == 6
    b = Batch.concat(got)
    assert b.device.tolist() == ["c0", "c1", "c2", "c3", "c4", "u0"]
    assert b.quantity.tolist()[-1] == "ack" and b.ref.tolist()[-1] == "A1"


def test_duplicates_recognised_by_key(rig):
    src, ing, _got, _ = rig
    now = time.time()
    src.put("city/sensors/crowd/c0", crowd("c0", now), now)
    src.put("city/sensors/crowd/c0", crowd("c0", now), now, dup=True)  # broker redelivery
    src.put("city/sensors/crowd/c0", crowd("c0", now, 11), now)  # same key, other value
    drain(ing)
    m = ing.metrics.snapshot()
    assert (m["accepted_records"], m["duplicates"], m["rejected_total"]) == (1, 2, 0)


def test_replay_rebuilds_dedupe_and_delivers(tmp_path, registry):
    src, first = FakeSource(), []
    now = time.time()
    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, registry, first.append)
        for i in range(50):
            src.put(f"city/sensors/crowd/c{i % 10}", crowd(f"c{i % 10}", now - i), now)
        src.put("city/sensors/crowd/c0", b"bad", now)
        drain(ing)
    src2, second = FakeSource(), []
    with RawLog(tmp_path / "log") as log:
        ing2 = Ingestor(src2, log, registry, second.append)
        assert ing2.replay() == 51
        assert Batch.concat(second).keys() == Batch.concat(first).keys()
        assert src2.published == []  # no second dead letter
        for i in range(50):  # the broker redelivers all
            src2.put(f"city/sensors/crowd/c{i % 10}", crowd(f"c{i % 10}", now - i), now, dup=True)
        drain(ing2)
    assert ing2.metrics.duplicates == 50 and len(Batch.concat(second)) == 50


def test_sink_failure_is_counted_not_raised(tmp_path):
    src = FakeSource()

    def sink(batch):
        raise RuntimeError("twin down")

    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, None, sink)
        src.put("city/sensors/crowd/any", crowd("any", time.time()))
        drain(ing)
    assert ing.metrics.sink_errors == 1 and src.acked == [1]


def test_deadletter_topic_is_never_dead_lettered(tmp_path):
    src = FakeSource()
    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, None, lambda b: None)
        src.put("city/deadletter", b"{}")
        drain(ing)
    assert src.published == [] and ing.metrics.rejected["bad_schema"] == 1


def test_rate_limiter_refills_by_own_time_or_receive_time():
    rl = RateLimiter(rate_per_s=2, burst=2)
    st = rl.state("d", 0.0)
    assert [rl.charge(st, 100.0, 0.0) for _ in range(3)] == [True, True, False]  # same own time: no refill
    assert rl.charge(st, 100.5, 0.0) and not rl.charge(st, 100.5, 0.0)  # 0.5 s of own time: one token
    assert rl.charge(st, 100.5, 0.5) and not rl.charge(st, 100.5, 0.5)  # 0.5 s of receive time: one token
    assert [rl.charge(st, 100.5 + k, 0.5) for k in range(1, 50)] == [True] * 49  # a backlog at 1 s cadence
    assert not RateLimiter(0, 0).enabled


def test_registry_problems_listed_once():
    doc = small_registry_doc()
    doc["features"] += [
        feature("c0", "crowd", ["count"]),
        feature("x", "laser", []),
        feature("u9", "unit", ["position"], unit_type="army"),
        feature("r9", "rain", ["depth"]),
    ]
    with pytest.raises(RegistryError) as err:
        registry_from_geojson(doc)
    assert len(err.value.problems) == 4


def test_bund_registry():
    reg = load_registry(REPO / "data" / "bund" / "registry.geojson")
    counts = {k: len(reg.of_kind(k)) for k in ("crowd", "rain", "water", "traffic", "vehicle", "unit")}
    assert counts["crowd"] >= 12 and counts["rain"] >= 6 and counts["water"] >= 6
    assert counts["traffic"] >= 8 and counts["vehicle"] >= 40 and counts["unit"] >= 10
    for d in reg.of_kind("crowd"):
        assert d.geometry["type"] == "Polygon"
        lon, lat = d.geometry["coordinates"][0][0]
        assert 121.480 < lon < 121.495 and 31.228 < lat < 31.248
    assert {d.unit_type for d in reg.of_kind("unit")} == {"police", "fire", "medical"}


topics = st.sampled_from(["city/sensors/crowd/c0", "city/sensors/traffic/t0", "city/sensors/rain/r0", "city/beidou/v0",
                          "city/units/u0/ack", "city/sensors/crowd/", "city/x", "other/beidou/v0", "city/deadletter"])
payloads = st.binary(max_size=200) | st.sampled_from([
    b'[{"bn":"urn:dev:c0:","n":"count","v":3}]', b'[{"bn":"urn:dev:t0:","n":"speed","u":"km/h","v":30}]',
    b'{"id":"v0","t":1.7e9,"lon":121.49,"lat":31.24}', b'{"alert":"a","status":"ack","t":1.7e9}', b"$GNGGA,*00"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(topics, payloads, st.booleans()), max_size=20))
def test_loop_never_raises_and_counts_every_message(tmp_path, registry, msgs):
    src = FakeSource()
    with RawLog(tmp_path / f"log-{len(msgs)}-{time.monotonic_ns()}") as log:
        ing = Ingestor(src, log, registry, lambda b: None)
        for topic, payload, dup in msgs:
            src.put(topic, payload, 1.7e9, dup=dup)
        drain(ing)
    m = ing.metrics.snapshot()
    assert m["received"] == len(msgs) == m["accepted"] + m["duplicates"] + m["rejected_total"] == len(src.acked)
    assert m["internal_errors"] == 0


def test_a_stop_inside_a_long_group_abandons_the_drain_and_leaves_the_log_to_the_loop(tmp_path, registry):
    """A group that outlasts ``stop``'s wait (a tick compiling its kernels) is finished, the rest of the queue is
    left unacknowledged for the broker to send again, and ``stop`` says the loop was still running."""
    src, in_group, release = FakeSource(), threading.Event(), threading.Event()

    def slow_sink(batch):
        in_group.set()
        release.wait(30)

    log = RawLog(tmp_path / "log")
    ing = Ingestor(src, log, registry, slow_sink)
    now = time.time()
    src.put("city/sensors/crowd/c0", crowd("c0", now), now)
    ing.start()
    assert in_group.wait(10)
    for i in range(5):
        src.put(f"city/sensors/crowd/c{i}", crowd(f"c{i}", now + 1), now + 1)
    assert ing.stop(timeout_s=0.1) is False, "still inside the group: the caller must not close the log"
    release.set()
    assert ing.stop(timeout_s=10) is True
    assert ing.abandoned == 5 and len(src.acked) == 1
    assert [r.topic for r in read_log(tmp_path / "log")] == ["city/sensors/crowd/c0"]
    log.close()
