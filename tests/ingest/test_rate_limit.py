"""The per-device rate limit on the device's own clock (issue 13): a backlog delivered in one burst after an
outage is admitted in full, a flood is limited, garbage is refused before decoding, and the live loop and a
replay of the raw log (from the start or from a snapshot) decide exactly the same."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import admission as admission_mod
from ingest.admission import Admission, batch_of, batch_with_origins
from ingest.batch import COLUMNS, FLOAT_COLUMNS, Batch
from ingest.decoders import encode_nmea, encode_position
from ingest.metrics import Metrics
from ingest.pipeline import IngestConfig, Ingestor
from ingest.rawlog import RawLog
from ingest.rejection import Reason, Rejection, payload_digest
from ingest.validation import Limits
from tests.ingest.fakes import FakeSource

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the end of the outage, when the broker delivers the backlog
DEFAULT = Limits()  # 20 messages/s of own time, burst 200


def crowd(dev: str, t: float, v: float = 10) -> bytes:
    return json.dumps([{"bn": f"urn:dev:{dev}:", "n": "count", "v": v, "t": t}]).encode()


def position(dev: str, t: float) -> bytes:
    return encode_position(Batch.build(1, device=dev, t=t, quantity="position", lon=121.49, lat=31.24))


def nmea(t: float) -> bytes:
    return encode_nmea(Batch.build(1, t=t, lat=31.24, lon=121.49, fix=1))


def backlog(outage_s: float, cadence_s: dict[str, float]) -> list[tuple[str, bytes]]:
    """What the devices sent during the outage, at their cadence [s], in the order the broker queued it."""
    sent = []
    for dev, every in cadence_s.items():
        n = int(outage_s / every)
        for k in range(n):
            t = round(NOW - outage_s + k * every, 2)
            if dev.startswith("c"):
                sent.append((t, f"city/sensors/crowd/{dev}", crowd(dev, t)))
            elif dev == "v1":
                sent.append((t, f"city/beidou/{dev}", nmea(t)))
            else:
                sent.append((t, f"city/beidou/{dev}", position(dev, t)))
    sent.sort(key=lambda x: x[0])
    return [(topic, payload) for _, topic, payload in sent]


def burst(msgs: list[tuple[str, bytes]], start: float = NOW, gap_s: float = 0.001) -> list[tuple[str, bytes, float]]:
    """The messages received one after the other, ``gap_s`` apart [s]."""
    return [(topic, payload, start + i * gap_s) for i, (topic, payload) in enumerate(msgs)]


def outcomes(adm: Admission, msgs, redelivered=False) -> list:
    return [adm.admit(topic, payload, at, redelivered) for topic, payload, at in msgs]


def rejected(outs: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outs:
        if isinstance(o, Rejection):
            out[o.reason.value] = out.get(o.reason.value, 0) + 1
    return out


def same_outcomes(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        if isinstance(x, Rejection):
            assert x == y
        else:
            assert len(x) == len(y)
            for c in COLUMNS:
                if c in FLOAT_COLUMNS:
                    assert np.array_equal(getattr(x, c), getattr(y, c), equal_nan=True), c
                else:
                    assert getattr(x, c).tolist() == getattr(y, c).tolist(), c


# --- a backlog is admitted in full -------------------------------------------------------------------------


def test_a_backlog_received_in_one_burst_after_an_outage_is_admitted_in_full(registry):
    """Ten crowd counters every 10 s, a terminal every 1 s (NMEA) and a vehicle at 10 positions a second (half
    the limit) for an hour: 23,600 messages, delivered in 24 s after the outage. Charged by receive time, each
    device would have had 200 + 20 x 24 s of them accepted; charged by its own time, all are."""
    cadence = {f"c{i}": 10.0 for i in range(10)} | {"v1": 1.0, "v2": 0.1}
    msgs = burst(backlog(3600.0, cadence))
    assert len(msgs) == 10 * 360 + 3600 + 36_000
    adm = Admission(registry, DEFAULT)
    outs = outcomes(adm, msgs)
    assert rejected(outs) == {}
    m = adm.metrics.snapshot()
    assert (m["received"], m["accepted"], m["accepted_records"], m["duplicates"]) == (len(msgs),) * 3 + (0,)
    got = Batch.concat(outs)
    assert sorted(set(got.device.tolist())) == sorted(cadence)
    assert (got.device == "v2").sum() == 36_000 and (got.device == "c3").sum() == 360


def test_a_backlog_with_a_little_garbage_keeps_every_valid_message(registry):
    """2 % of the backlog is bad: it is dead-lettered by reason, and the valid messages around it all pass
    (the refusal guard gets a token back for each accepted message)."""
    msgs = backlog(3600.0, {"c0": 1.0})
    bad = set(range(0, len(msgs), 50))
    msgs = [(topic, b"{not json" if i in bad else payload) for i, (topic, payload) in enumerate(msgs)]
    adm = Admission(registry, DEFAULT)
    outs = outcomes(adm, burst(msgs, gap_s=0.0001))
    assert rejected(outs) == {"bad_syntax": len(bad)}
    assert adm.metrics.accepted_records == len(msgs) - len(bad)


# --- floods are limited ------------------------------------------------------------------------------------


def test_a_flood_with_compressed_own_times_is_limited(registry):
    """1,000 messages whose own times are 1 ms apart, 50 times the limit: the burst of 200, plus 20 for the
    second of own time they span, are accepted; the rest are rate limited, most of them without being
    decoded once the device's refusal guard is empty."""
    msgs = [("city/sensors/crowd/c0", crowd("c0", NOW + k * 0.001), NOW + k * 0.001) for k in range(1000)]
    adm = Admission(registry, DEFAULT)
    outs = outcomes(adm, msgs)
    accepted = sum(isinstance(o, Batch) and len(o) == 1 for o in outs)
    assert 200 + 20 - 2 <= accepted <= 200 + 20
    assert rejected(outs) == {"rate_limited": 1000 - accepted}
    details = [o.detail for o in outs if isinstance(o, Rejection)]
    decoded = sum("own time" in d for d in details)  # decoded, then refused: the guard's 200 tokens, plus
    assert 200 <= decoded <= 250  # what 1 s of receive time and the accepted messages gave back
    assert sum("without decoding" in d for d in details) == 1000 - accepted - decoded
    # other devices are not affected
    assert len(adm.admit("city/sensors/crowd/c1", crowd("c1", NOW), NOW + 1)) == 1


def test_the_same_flood_is_limited_live_and_when_it_arrives_in_a_backlog(registry):
    """Own times compressed: whether it arrives at its own pace or all at once, about 20/s of its own time."""
    sent = [("city/sensors/crowd/c0", crowd("c0", NOW - 60 + k * 0.01)) for k in range(6000)]  # 100/s for 60 s
    live = [(topic, payload, NOW - 60 + k * 0.01 + 0.2) for k, (topic, payload) in enumerate(sent)]
    live_adm, late_adm = Admission(registry, DEFAULT), Admission(registry, DEFAULT)
    outcomes(live_adm, live)
    outcomes(late_adm, burst(sent, NOW + 3600, 0.0001))
    assert 200 + 60 * 20 - 20 <= live_adm.metrics.accepted <= 200 + 60 * 20 + 1
    assert 200 + 60 * 20 - 20 <= late_adm.metrics.accepted <= 200 + 60 * 20 + 1


def test_old_and_repeated_timestamps_are_duplicates_or_limited_never_a_refill(registry):
    adm = Admission(registry, DEFAULT)
    same = outcomes(adm, [("city/sensors/crowd/c0", crowd("c0", NOW), NOW + k * 0.001) for k in range(1000)])
    assert len(same[0]) == 1 and all(isinstance(o, Batch) and len(o) == 0 for o in same[1:])
    m = adm.metrics.snapshot()
    assert (m["accepted"], m["duplicates"], m["rejected_total"]) == (1, 999, 0)  # redeliveries cost nothing
    older = outcomes(adm, [("city/sensors/crowd/c1", crowd("c1", NOW - k * 0.001), NOW) for k in range(500)])
    assert sum(isinstance(o, Batch) and len(o) == 1 for o in older) == 200  # going back in time refills nothing
    assert rejected(older) == {"rate_limited": 300}


def test_own_time_and_receive_time_never_add_up(registry):
    """A device that alternates a jump of its own time (same receive time) with a wait in receive time (same
    own time) gets 1 message per second of either, not 2 (gaining by each clock in turn would give 2)."""
    adm = Admission(registry, Limits(rate_per_s=1, burst=1))
    msgs = []
    for j in range(100):
        msgs.append(("city/sensors/crowd/c0", crowd("c0", NOW + j + 1), NOW + j))  # own time jumps 1 s
        msgs.append(("city/sensors/crowd/c0", crowd("c0", NOW + j + 0.5), NOW + j + 1))  # receive time waits 1 s
    outs = outcomes(adm, msgs)
    assert 100 <= adm.metrics.accepted <= 101
    assert rejected(outs) == {"rate_limited": 200 - adm.metrics.accepted}


def test_a_device_whose_clock_jumps_back_goes_on_at_its_rate(registry):
    """Its own clock stays ahead of the records for an hour; meanwhile the receive time drives the bucket."""
    adm = Admission(registry, DEFAULT)
    before = [("city/sensors/crowd/c0", crowd("c0", NOW + k), NOW + k + 0.1) for k in range(600)]
    after = [("city/sensors/crowd/c0", crowd("c0", NOW + 600 - 3600 + k), NOW + 600 + k + 0.1) for k in range(600)]
    assert rejected(outcomes(adm, before + after)) == {}
    assert adm.metrics.accepted_records == 1200


def test_garbage_is_refused_without_decoding_once_the_guard_is_empty(registry, monkeypatch):
    parsed = []
    real = admission_mod.load_json
    monkeypatch.setattr(admission_mod, "load_json", lambda p: (parsed.append(p), real(p))[1])
    adm = Admission(registry, DEFAULT)
    outs = outcomes(adm, [("city/sensors/crowd/c0", b"[{oops", NOW + k * 1e-5) for k in range(1000)])
    assert rejected(outs) == {"bad_syntax": 200, "rate_limited": 800}  # 10 ms: the guard refilled 0.2 token
    assert len(parsed) == 200
    assert all("without decoding" in o.detail for o in outs[200:])
    late = adm.admit("city/sensors/crowd/c0", crowd("c0", NOW + 0.02), NOW + 0.02)  # a valid one, still refused
    assert isinstance(late, Rejection) and late.reason is Reason.RATE_LIMITED and len(parsed) == 200
    ok = adm.admit("city/sensors/crowd/c0", crowd("c0", NOW + 11), NOW + 11)  # 11 s later: refilled
    assert len(ok) == 1 and ok.t.tolist() == [NOW + 11]
    assert adm.metrics.internal_errors == 0


def test_no_limit_when_the_rate_is_zero(registry):
    adm = Admission(registry, Limits(rate_per_s=0))
    outs = outcomes(adm, [("city/sensors/crowd/c0", crowd("c0", NOW), NOW) for _ in range(3)]
                    + [("city/sensors/crowd/c0", b"x", NOW) for _ in range(500)]
                    + [("city/sensors/crowd/c0", crowd("c0", NOW + k * 1e-3), NOW) for k in range(1, 500)])
    assert rejected(outs) == {"bad_syntax": 500}
    assert adm.metrics.accepted_records == 500 and adm.metrics.duplicates == 2


# --- live and replay decide the same -----------------------------------------------------------------------


def mixed_traffic() -> list[tuple[str, bytes, float, bool]]:
    """A backlog, then live traffic with a flood, garbage, broker redeliveries (dup flag) and resends."""
    msgs = [(topic, payload, at, False) for topic, payload, at in
            burst(backlog(1800.0, {"c0": 5.0, "c1": 2.0, "v1": 1.0, "v3": 0.5}))]
    t = msgs[-1][2]
    for k in range(3000):
        t += 0.002
        dev = f"c{k % 4}"
        if k % 7 == 0:
            msgs.append(("city/sensors/crowd/c9", crowd("c9", NOW + 5 + k * 1e-4), t, False))  # the flood
        elif k % 11 == 0:
            msgs.append(("city/beidou/v4", b"$GPGGA,garbage*00", t, False))
        elif k % 13 == 0:
            msgs.append((*msgs[k * 3][:3], True))  # a redelivery of something seen
        else:
            msgs.append((f"city/sensors/crowd/{dev}", crowd(dev, NOW + k * 0.05), t, k % 17 == 0))
    return msgs


def test_live_admission_and_replay_of_the_same_log_give_identical_batches_and_rejections(registry):
    msgs = mixed_traffic()
    live, replay = Admission(registry, DEFAULT), Admission(registry, DEFAULT)
    live_out = [live.admit(topic, payload, at, dup) for topic, payload, at, dup in msgs]
    replay_out = [replay.admit(topic, payload, at, True) for topic, payload, at, _ in msgs]  # replay's flag
    same_outcomes(live_out, replay_out)
    assert live.metrics.snapshot() == replay.metrics.snapshot()
    r = rejected(live_out)
    assert r["rate_limited"] > 0 and r["bad_checksum"] > 0 and live.metrics.duplicates > 0  # all shapes were there


def test_the_ingest_loop_and_its_replay_deliver_the_same(tmp_path, registry):
    """Through `Ingestor`: live (with the broker's dup flags) into the raw log, then `replay` of that log."""
    msgs = mixed_traffic()
    src, live_batches = FakeSource(), []
    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, registry, live_batches.append, IngestConfig(limits=DEFAULT))
        for topic, payload, at, dup in msgs:
            src.put(topic, payload, at, dup=dup)
        while ing.run_once(poll_s=0.0):
            pass
    letters = [json.loads(p) for _, p, _ in src.published]
    replayed = []
    with RawLog(tmp_path / "log") as log:
        ing2 = Ingestor(FakeSource(), log, registry, replayed.append, IngestConfig(limits=DEFAULT))
        assert ing2.replay() == len(msgs)
    a, b = Batch.concat(live_batches), Batch.concat(replayed)
    assert a.keys() == b.keys() and np.array_equal(a.value, b.value, equal_nan=True)
    live_m, replay_m = ing.metrics.snapshot(), ing2.metrics.snapshot()
    for key in ("received", "accepted", "duplicates", "rejected", "accepted_records", "duplicate_records"):
        assert live_m[key] == replay_m[key], key
    assert sorted(d["reason"] for d in letters) == sorted(
        reason for reason, n in replay_m["rejected"].items() for _ in range(n))


def test_a_replay_from_a_snapshot_goes_on_exactly_as_the_live_loop(registry):
    """The rate state is saved with the dedupe memory (as plain arrays) and restored with it."""
    msgs = mixed_traffic()
    cut = len(msgs) * 2 // 3
    whole = Admission(registry, DEFAULT)
    expected = [whole.admit(topic, payload, at) for topic, payload, at, _ in msgs]
    first = Admission(registry, DEFAULT)
    for topic, payload, at, _ in msgs[:cut]:
        first.admit(topic, payload, at)
    state = first.deduper.save_state()
    assert "rates" in state and state["rates"]["state"].dtype == np.float64
    buf = io.BytesIO()
    np.savez(buf, **state["rates"])
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as arrays:  # the snapshot stores arrays without pickle
        state["rates"] = {k: arrays[k] for k in arrays.files}
    second = Admission(registry, DEFAULT)
    second.deduper.restore_state(state)
    got = [second.admit(topic, payload, at, True) for topic, payload, at, _ in msgs[cut:]]
    same_outcomes(got, expected[cut:])
    assert rejected(got).get("rate_limited", 0) > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["c0", "c1", "v0"]), st.floats(-30, 30), st.floats(0, 0.05),
                          st.booleans(), st.booleans()), max_size=400))
def test_live_and_replay_agree_on_any_sequence(registry, steps):
    """Random own times (late, early, repeated), receive gaps, garbage and dup flags: the same decisions."""
    msgs, at = [], NOW
    for dev, dt, gap, garbage, dup in steps:
        at += gap
        t = round(NOW + dt, 3)
        topic = f"city/beidou/{dev}" if dev == "v0" else f"city/sensors/crowd/{dev}"
        payload = b"{]" if garbage else (position(dev, t) if dev == "v0" else crowd(dev, t))
        msgs.append((topic, payload, at, dup))
    limits = Limits(rate_per_s=2, burst=5)
    live, replay = Admission(registry, limits), Admission(registry, limits)
    same_outcomes([live.admit(tp, p, a, d) for tp, p, a, d in msgs],
                  [replay.admit(tp, p, a, True) for tp, p, a, _ in msgs])


# --- the counters ------------------------------------------------------------------------------------------


def test_a_message_refused_later_moves_from_accepted_to_rejected():
    m = Metrics()
    m.accept(3, duplicate_records=1)
    m.accept(1)
    m.duplicate(2)
    m.refuse(Reason.BAD_SYNTAX)
    assert (m.received, m.accepted, m.duplicates, m.accepted_records, m.duplicate_records) == (4, 2, 1, 4, 3)
    m.reclassify(Reason.OUTSIDE_GRID, records=2)  # two positions of the first message were outside the grid
    s = m.snapshot()
    assert (s["received"], s["accepted"], s["rejected_total"], s["accepted_records"]) == (4, 1, 2, 2)
    assert s["rejected"]["outside_grid"] == 1 and s["received"] == s["accepted"] + s["duplicates"] + s["rejected_total"]
    m.count_rejection(Reason.IDENTITY_MISMATCH)  # the older one-record form
    assert (m.received, m.accepted, m.rejected["identity_mismatch"], m.accepted_records) == (4, 0, 1, 1)
    m.count_rejection(Reason.OUTSIDE_GRID)  # a caller's bug: nothing accepted left; still counted, still adds up
    assert (m.received, m.accepted, m.rejected["outside_grid"]) == (5, 0, 2)


def test_records_trace_back_to_their_message():
    b = Batch.build(2, device="v0", t=[3.0, 4.0], quantity="position", lon=1.0, lat=2.0)
    items = [("a", 1.0, "count", 5.0), b, ("c", 5.0, "depth", 0.1)]
    batch, origin = batch_with_origins(items)
    assert batch.keys() == batch_of(items).keys()
    assert origin.tolist() == [0, 1, 1, 2]
    assert batch_with_origins([])[1].tolist() == []


@pytest.mark.parametrize("n", [1, 5])
def test_an_ingest_loop_counter_snapshot_always_adds_up(tmp_path, registry, n):
    src = FakeSource()
    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, registry, lambda b: None, IngestConfig(limits=Limits(rate_per_s=1, burst=n)))
        now = time.time()
        for k in range(40):
            src.put(f"city/sensors/crowd/c{k % 3}", crowd(f"c{k % 3}", now - (k % 5)) if k % 4 else b"?", now)
        while ing.run_once(poll_s=0.0):
            pass
        ing.reject("city/beidou/v0", Rejection(Reason.OUTSIDE_GRID, "outside"), now, b"{}")
    m = ing.metrics.snapshot()
    assert m["received"] == 40 == m["accepted"] + m["duplicates"] + m["rejected_total"]
    assert m["rejected"]["outside_grid"] == 1


def _pack(dev: str, ts: list[float]) -> bytes:
    """One SenML message with one crowd count per time."""
    return json.dumps([{"bn": f"urn:dev:{dev}:", "n": "count", "v": 10, "t": ts[0]},
                       *({"n": "count", "v": 10 + k, "t": t} for k, t in enumerate(ts[1:], 1))]).encode()


def test_records_the_twin_refuses_are_dead_lettered_once_per_message_with_the_raw_payload(tmp_path, registry):
    """Issue 13: an ``outside_grid`` dead letter carried a re-encoded payload (its digest matched nothing in the
    raw log) and each refused record was counted as a message (received != accepted + duplicates + rejected)."""
    src = FakeSource()
    pack = _pack("c1", [NOW - 3, NOW - 2, NOW - 1])  # three records; the sink refuses two of them
    single = crowd("c2", NOW - 1)

    def refusing_sink(batch: Batch) -> None:
        rows = [i for i, (d, t) in enumerate(zip(batch.device, batch.t, strict=True))
                if (d == "c1" and t < NOW - 1) or d == "c2"]
        ing.refuse_records([(i, Rejection(Reason.OUTSIDE_GRID, f"record {i} refused", "lon,lat")) for i in rows])

    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(src, log, registry, refusing_sink)
        for topic, payload in [("city/sensors/crowd/c0", crowd("c0", NOW - 1)), ("city/sensors/crowd/c1", pack),
                               ("city/sensors/crowd/c2", single)]:
            src.put(topic, payload, NOW)
        while ing.run_once(poll_s=0.0):
            pass
        letters = [json.loads(p) for t, p, _ in src.published if t == "city/deadletter"]
        assert [(d["topic"], d["reason"]) for d in letters] == [("city/sensors/crowd/c1", "outside_grid"),
                                                                ("city/sensors/crowd/c2", "outside_grid")]
        assert [d["digest"] for d in letters] == [payload_digest(pack), payload_digest(single)]
        assert base64.b64decode(letters[0]["payload_b64"]) == pack and "1 more record" in letters[0]["detail"]
        m = ing.metrics.snapshot()
        assert (m["received"], m["accepted"], m["rejected"]["outside_grid"], m["accepted_records"]) == (3, 1, 2, 2)
        assert m["received"] == m["accepted"] + m["duplicates"] + m["rejected_total"]
        # replayed, the same refusals are counted again (a fresh loop's counters) and not dead-lettered again
        replayed = Ingestor(src, log, registry, lambda b: replayed.refuse_records([(0, Rejection(
            Reason.OUTSIDE_GRID, "again"))]) if "c2" in b.device else None)
        src.published.clear()
        assert replayed.replay() == 3 and src.published == []
        r = replayed.metrics.snapshot()
        assert r["rejected"]["outside_grid"] == 1
        assert r["received"] == r["accepted"] + r["duplicates"] + r["rejected_total"]


def test_refusing_records_outside_a_delivery_is_a_clear_error(tmp_path, registry):
    with RawLog(tmp_path / "log") as log:
        ing = Ingestor(FakeSource(), log, registry, lambda b: None)
        with pytest.raises(RuntimeError, match="from the sink"):
            ing.refuse_records([(0, Rejection(Reason.OUTSIDE_GRID, "x"))])
