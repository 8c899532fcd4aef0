"""Unit task answers (``city/units/{unit}/tasks/status``) and citizen reports (``city/reports/{source}``) through the
admission step: routed, checked against the registry (units) or not (report sources), time-checked, deduplicated,
rate limited and counted like every other message."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.admission import Admission, batch_of
from ingest.batch import COLUMNS, FLOAT_COLUMNS, Batch
from ingest.decoders.units import TASK_STATUSES
from ingest.dedupe import Deduper
from ingest.metrics import Metrics
from ingest.rejection import Reason, Rejection
from ingest.routing import DECODERS, Route, route, subscriptions
from ingest.validation import Limits

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
WIDE = Limits(max_age_s=1e12, max_future_s=1e12, rate_per_s=0)
"""No time skew and no rate limit."""
TASK_TOPIC = "city/units/u0/tasks/status"
REPORT_TOPIC = "city/reports/hotline-12345"
CASE_LOOP_REASONS = ["unknown_case", "not_assigned", "bad_transition", "unknown_source", "unknown_category"]


def task(t: float = NOW, status: str = "accepted", case: str = "case-1", **extra) -> bytes:
    return json.dumps({"case": case, "status": status, "t": t} | extra, ensure_ascii=False).encode()


def report(t: float = NOW, report_id: str = "r-1", **extra) -> bytes:
    doc = {"id": report_id, "t": t, "category": "road_damage", "lon": 121.4905, "lat": 31.2402,
           "description": "人行道塌陷 / sidewalk collapsed"}
    return json.dumps(doc | extra, ensure_ascii=False).encode()


# --- topics ----------------------------------------------------------------------------------------------------


def test_the_twin_subscribes_to_task_answers_and_reports():
    assert subscriptions() == ["city/sensors/+/+", "city/beidou/+", "city/units/+/ack", "city/units/+/tasks/status",
                               "city/reports/+"]
    assert subscriptions("sh/") == ["sh/sensors/+/+", "sh/beidou/+", "sh/units/+/ack", "sh/units/+/tasks/status",
                                    "sh/reports/+"]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("city/units/u0/tasks/status", Route("task", "u0")),
        ("city/reports/hotline-12345", Route("report", "hotline-12345")),
        ("city/units/u0/ack", Route("ack", "u0")),
        ("city/units//tasks/status", None),
        ("city/units/u0/tasks", None),  # the twin's outbound task topic is not an inbound one
        ("city/units/u0/tasks/status/x", None),
        ("city/units/u0/tasks/state", None),
        ("city/reports/", None),
        ("city/reports", None),
        ("city/reports/a/b", None),
        ("other/reports/a", None),
    ],
)
def test_routes(topic, expected):
    assert route(topic) == expected


def test_every_family_has_a_bytes_decoder():
    assert {"task", "report"} <= DECODERS.keys()


# --- through the admission step ------------------------------------------------------------------------------


def test_a_units_task_answer_is_admitted_as_one_record(registry):
    out = Admission(registry).admit(TASK_TOPIC, task(NOW - 5, "on_scene", note="到场 / on scene"), NOW)
    assert isinstance(out, Batch) and len(out) == 1
    r = next(iter(out.records()))
    assert (r["device"], r["t"], r["quantity"], r["ref"], r["note"]) == (
        "u0", NOW - 5, "task_on_scene", "case-1", "到场 / on scene")


def test_a_citizen_report_is_admitted_from_a_source_the_registry_does_not_know(registry):
    assert registry.get("hotline-12345") is None
    out = Admission(registry).admit(REPORT_TOPIC, report(NOW - 60, address="中山东一路"), NOW)
    assert isinstance(out, Batch) and len(out) == 1
    r = next(iter(out.records()))
    assert (r["device"], r["t"], r["quantity"], r["ref"], r["datum"], r["lon"], r["lat"]) == (
        "hotline-12345", NOW - 60, "report", "r-1", "WGS84", 121.4905, 31.2402)
    assert json.loads(r["note"]) == {"address": "中山东一路", "category": "road_damage",
                                     "description": "人行道塌陷 / sidewalk collapsed"}


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("city/units/nobody/tasks/status", Reason.UNKNOWN_DEVICE),  # not in the registry
        ("city/units/v0/tasks/status", Reason.IDENTITY_MISMATCH),  # a vehicle, not a unit
        ("city/units/c0/tasks/status", Reason.IDENTITY_MISMATCH),  # a crowd counter
    ],
)
def test_a_task_answer_must_come_from_a_registered_unit(registry, topic, reason):
    adm = Admission(registry)
    out = adm.admit(topic, task(), NOW)
    assert isinstance(out, Rejection) and (out.reason, out.field) == (reason, "topic"), out
    assert adm.metrics.rejected[reason.value] == 1 and adm.metrics.accepted == 0


def test_without_a_registry_any_unit_may_answer():
    out = Admission(None).admit("city/units/nobody/tasks/status", task(), NOW)
    assert isinstance(out, Batch) and out.device.tolist() == ["nobody"]


class CountingRegistry:
    """A registry that records every look-up."""

    def __init__(self, registry) -> None:
        self.registry, self.looked_up = registry, []

    def get(self, device_id: str):
        self.looked_up.append(device_id)
        return self.registry.get(device_id)


def test_a_task_answer_looks_its_unit_up_once_and_a_report_looks_nothing_up(registry):
    stub = CountingRegistry(registry)
    adm = Admission(stub)  # type: ignore[arg-type] - duck-typed stand-in
    assert len(adm.admit(TASK_TOPIC, task(), NOW)) == 1
    assert stub.looked_up == ["u0"]
    stub.looked_up.clear()
    assert len(adm.admit(REPORT_TOPIC, report(), NOW)) == 1
    assert stub.looked_up == []


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TASK_TOPIC, task(NOW + 3600)),  # an hour ahead
        (TASK_TOPIC, task(NOW - 2 * 86_400)),  # two days old
        (REPORT_TOPIC, report(NOW + 3600)),
        (REPORT_TOPIC, report(NOW - 2 * 86_400)),
    ],
)
def test_time_skew_applies_to_both(registry, topic, payload):
    adm = Admission(registry)
    out = adm.admit(topic, payload, NOW)
    assert isinstance(out, Rejection) and (out.reason, out.field) == (Reason.TIME_SKEW, "t"), out
    assert adm.metrics.rejected["time_skew"] == 1


def test_the_same_report_twice_is_a_duplicate(registry):
    adm = Admission(registry)
    first = adm.admit(REPORT_TOPIC, report(), NOW)
    again = adm.admit(REPORT_TOPIC, report(), NOW + 30)  # a redelivery
    same_id_same_time = adm.admit(REPORT_TOPIC, report(description="更正 / corrected"), NOW + 40)
    assert len(first) == 1
    assert isinstance(again, Batch) and len(again) == 0
    assert isinstance(same_id_same_time, Batch) and len(same_id_same_time) == 0, "the note is not part of the key"
    other_source = adm.admit("city/reports/app", report(), NOW)
    next_report = adm.admit(REPORT_TOPIC, report(report_id="r-2"), NOW)
    assert len(other_source) == 1 and len(next_report) == 1
    m = adm.metrics.snapshot()
    assert (m["accepted"], m["duplicates"], m["duplicate_records"], m["rejected_total"]) == (3, 2, 2, 0)
    assert m["received"] == 5


def test_the_same_task_answer_twice_is_a_duplicate_and_the_next_status_is_new(registry):
    adm = Admission(registry)
    assert len(adm.admit(TASK_TOPIC, task(NOW, "accepted"), NOW)) == 1
    assert len(adm.admit(TASK_TOPIC, task(NOW, "accepted"), NOW + 1)) == 0
    assert adm.admit(TASK_TOPIC, task(NOW + 60, "en_route"), NOW + 60).quantity.tolist() == ["task_en_route"]
    assert adm.admit(TASK_TOPIC, task(NOW, "accepted", case="case-2"), NOW + 60).ref.tolist() == ["case-2"]
    m = adm.metrics.snapshot()
    assert (m["accepted"], m["duplicates"], m["rejected_total"]) == (3, 1, 0)


def test_a_report_source_is_rate_limited_on_its_own_clock(registry):
    adm = Admission(registry, Limits(rate_per_s=1, burst=2))
    assert [len(adm.admit(REPORT_TOPIC, report(NOW, f"r-{i}"), NOW)) for i in (1, 2)] == [1, 1]
    late = adm.admit(REPORT_TOPIC, report(NOW, "r-3"), NOW)  # a third in the same second of the source's clock
    assert isinstance(late, Rejection) and (late.reason, late.field) == (Reason.RATE_LIMITED, "t")
    assert len(adm.admit("city/reports/app", report(NOW, "r-3"), NOW)) == 1  # another source has its own bucket
    assert len(adm.admit(REPORT_TOPIC, report(NOW + 1, "r-4"), NOW)) == 1  # one second later on its own clock


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "field"),
    [
        (TASK_TOPIC, task(status="done"), Reason.BAD_SCHEMA, "status"),
        (TASK_TOPIC, task(unit="u0"), Reason.BAD_SCHEMA, "unit"),
        (TASK_TOPIC, b"{", Reason.BAD_SYNTAX, "payload"),
        (REPORT_TOPIC, report(lat=95), Reason.OUT_OF_RANGE, "lat"),
        (REPORT_TOPIC, report(datum="BD09"), Reason.BAD_SCHEMA, "datum"),
        (REPORT_TOPIC, report(media_url=["file:///etc/passwd"]), Reason.BAD_SCHEMA, "media_url[0]"),
        (REPORT_TOPIC, report(phone="1"), Reason.BAD_SCHEMA, "phone"),
        (REPORT_TOPIC, b"[" + b" " * 70_000 + b"]", Reason.TOO_LARGE, "payload"),
    ],
)
def test_bad_messages_are_refused_and_counted_by_reason(registry, topic, payload, reason, field):
    adm = Admission(registry)
    out = adm.admit(topic, payload, NOW)
    assert isinstance(out, Rejection) and (out.reason, out.field) == (reason, field), out
    m = adm.metrics.snapshot()
    assert m["rejected"][reason.value] == 1 == m["rejected_total"] == m["received"]


def test_the_case_loop_reasons_are_counted_from_zero():
    assert [r.value for r in Reason][-len(CASE_LOOP_REASONS):] == CASE_LOOP_REASONS
    m = Metrics()
    assert all(m.rejected[r] == 0 for r in CASE_LOOP_REASONS)
    m.accept(1)
    m.reclassify(Reason.UNKNOWN_CASE)
    assert m.snapshot()["rejected"]["unknown_case"] == 1 and m.received == 1 and m.accepted == 0


# --- properties ------------------------------------------------------------------------------------------------


def same_columns(a: Batch, b: Batch) -> None:
    assert len(a) == len(b)
    for c in COLUMNS:
        x, y = getattr(a, c), getattr(b, c)
        if c in FLOAT_COLUMNS:
            assert np.array_equal(x, y, equal_nan=True), c
        else:
            assert x.tolist() == y.tolist(), c


plain = st.characters(exclude_categories=("Cs",))
valid_messages = st.one_of(
    st.builds(
        lambda t, status, case, note: (TASK_TOPIC, task(t, status, case, **({} if note is None else {"note": note}))),
        st.floats(NOW - 86_000, NOW + 200), st.sampled_from(TASK_STATUSES),
        st.text(plain, min_size=1, max_size=20), st.none() | st.text(plain, max_size=30),
    ),
    st.builds(
        lambda t, rid, lon, lat, extra: (REPORT_TOPIC, report(t, rid, lon=lon, lat=lat, **extra)),
        st.floats(NOW - 86_000, NOW + 200), st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
        st.floats(-180, 180), st.floats(-90, 90),
        st.fixed_dictionaries({}, optional={"datum": st.sampled_from(["CGCS2000", "WGS84", "GCJ02"]),
                                            "contact": st.text(plain, max_size=20)}),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_messages, st.booleans())
def test_admit_equals_the_bytes_decoders_on_valid_messages(registry, message, with_registry):
    topic, payload = message
    old = DECODERS[route(topic).family](payload, topic=topic, received_at=NOW)
    assert isinstance(old, Batch), old
    expected, _ = Deduper().filter(old)
    got = Admission(registry if with_registry else None, WIDE).admit(topic, payload, NOW)
    assert isinstance(got, Batch), got
    same_columns(got, expected)
    fast = Admission(registry if with_registry else None, WIDE).admit_fast(topic, payload, NOW)
    same_columns(batch_of([fast]), expected)


topics = st.sampled_from([TASK_TOPIC, "city/units/v0/tasks/status", "city/units/zz/tasks/status", REPORT_TOPIC,
                          "city/reports/app", "city/reports/", "city/units/u0/tasks"])
payloads = st.binary(max_size=200) | st.sampled_from([task(), report(), task(0.0), report(0.0), b"{}", b"[]"]) | (
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
            ["case", "status", "t", "note", "id", "category", "lon", "lat", "datum", "description", "media_url"]),
            inner, max_size=6),
        max_leaves=10,
    ).map(lambda doc: json.dumps(doc).encode())
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(topics, payloads, st.floats(0, 2e9)), min_size=1, max_size=8), st.booleans())
def test_admit_never_raises_and_counts_every_message_once(registry, msgs, with_registry):
    adm = Admission(registry if with_registry else None, Limits(rate_per_s=5, burst=3))
    for topic, payload, received_at in msgs:
        out = adm.admit(topic, payload, received_at)
        assert type(out) in (Batch, Rejection)
        if isinstance(out, Rejection):
            assert out.reason in Reason and out.digest
    m = adm.metrics.snapshot()
    assert m["internal_errors"] == 0
    assert m["received"] == len(msgs) == m["accepted"] + m["duplicates"] + m["rejected_total"]


def test_a_report_from_a_source_not_listed_is_refused_before_any_state_is_kept(registry):
    """With the twin's sources given, an unknown source is refused ``unknown_source`` and gets no rate-limit entry."""
    admission = Admission(registry, report_sources=frozenset({"12345"}))
    now = time.time()
    doc = {"id": "r1", "t": now, "category": "waterlogging", "lon": 121.49, "lat": 31.24, "description": "积水"}
    out = admission.admit("city/reports/spammer-7", json.dumps(doc).encode(), now)
    assert isinstance(out, Rejection) and out.reason == Reason.UNKNOWN_SOURCE and "12345" in out.detail
    assert admission.metrics.snapshot()["rejected"]["unknown_source"] == 1
    assert "spammer-7" not in admission.rates.save_state()["device"].tolist()
    ok = admission.admit("city/reports/12345", json.dumps(doc).encode(), now)
    assert not isinstance(ok, Rejection) and ok.device.tolist() == ["12345"]
