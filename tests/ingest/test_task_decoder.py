"""Field units' task answers (``ingest.decoders.task``, ``city/units/{unit}/tasks/status``): any bytes give a batch
or a rejection, valid answers round-trip, each bad field is refused with its reason."""

from __future__ import annotations

import inspect
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import decode_task, encode_task_status, task_records
from ingest.decoders.task import MAX_CASE_ID, MAX_NOTE
from ingest.decoders.units import TASK_STATUSES
from ingest.rejection import MAX_DETAIL, Reason, Refusal, Rejection

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
TOPIC = "city/units/unit-police-04/tasks/status"
VALID = {"case": "case-20260101-0001", "status": "accepted", "t": NOW, "note": "收到，5 分钟到 / on our way"}
HUGE_INT = b"1" + b"0" * 400

def decode(doc: object, topic: str = TOPIC) -> Batch | Rejection:
    return decode_task(json.dumps(doc, ensure_ascii=False).encode(), topic=topic, received_at=NOW)


def test_the_contract_statuses_and_signature():
    assert TASK_STATUSES == ("accepted", "en_route", "on_scene", "disposed", "declined")
    params = inspect.signature(decode_task).parameters
    assert list(params) == ["payload", "topic", "received_at"]
    assert params["topic"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_task_answer_is_one_record_of_the_unit():
    b = decode(VALID)
    assert isinstance(b, Batch) and len(b) == 1
    r = next(iter(b.records()))
    assert (r["device"], r["t"], r["quantity"], r["ref"], r["note"]) == (
        "unit-police-04", NOW, "task_accepted", "case-20260101-0001", VALID["note"])
    assert math.isnan(r["value"]) and math.isnan(r["lon"]) and r["datum"] == ""


@pytest.mark.parametrize("status", TASK_STATUSES)
def test_each_status_is_its_quantity_and_the_note_is_optional(status):
    b = decode({"case": "c1", "status": status, "t": 1_767_225_600})
    assert isinstance(b, Batch)
    assert (b.quantity.tolist(), b.note.tolist(), b.t.tolist()) == ([f"task_{status}"], [""], [NOW])


def test_the_records_api_takes_the_parsed_document():
    assert task_records(dict(VALID), unit="u0").device.tolist() == ["u0"]
    with pytest.raises(Refusal) as bad:
        task_records(VALID | {"status": "ack"}, unit="u0")
    assert (bad.value.reason, bad.value.field) == (Reason.BAD_SCHEMA, "status")


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"case": ""}, Reason.BAD_SCHEMA, "case"),
        ({"case": "c" * (MAX_CASE_ID + 1)}, Reason.BAD_SCHEMA, "case"),
        ({"case": 12}, Reason.BAD_SCHEMA, "case"),
        ({"case": None}, Reason.BAD_SCHEMA, "case"),
        ({"status": "resolved"}, Reason.BAD_SCHEMA, "status"),  # an ack status, not a task answer
        ({"status": "Accepted"}, Reason.BAD_SCHEMA, "status"),
        ({"status": ["accepted"]}, Reason.BAD_SCHEMA, "status"),
        ({"t": "1767225600"}, Reason.BAD_SCHEMA, "t"),
        ({"t": True}, Reason.BAD_SCHEMA, "t"),
        ({"t": None}, Reason.BAD_SCHEMA, "t"),
        ({"note": "n" * (MAX_NOTE + 1)}, Reason.BAD_SCHEMA, "note"),
        ({"note": None}, Reason.BAD_SCHEMA, "note"),
        ({"note": ["a"]}, Reason.BAD_SCHEMA, "note"),
        ({"unit": "u0"}, Reason.BAD_SCHEMA, "unit"),  # unknown field
        ({"alert": "a"}, Reason.BAD_SCHEMA, "alert"),
    ],
)
def test_each_bad_field_is_refused_with_its_reason(change, reason, field):
    out = decode(VALID | change)
    assert isinstance(out, Rejection), out
    assert (out.reason, out.field) == (reason, field)
    assert out.detail and len(out.detail) <= MAX_DETAIL and len(out.digest) == 16


@pytest.mark.parametrize("missing", ["case", "status", "t"])
def test_a_missing_field_is_named(missing):
    out = decode({k: v for k, v in VALID.items() if k != missing})
    assert isinstance(out, Rejection) and (out.reason, out.field) == (Reason.BAD_SCHEMA, missing)
    assert missing in out.detail


def test_the_longest_case_id_and_note_pass():
    b = decode(VALID | {"case": "c" * MAX_CASE_ID, "note": "注" * MAX_NOTE})
    assert isinstance(b, Batch) and len(b.ref[0]) == MAX_CASE_ID and len(b.note[0]) == MAX_NOTE


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", Reason.BAD_SYNTAX),
        (b'{"case":"c","status":"accepted","t":NaN}', Reason.BAD_SYNTAX),
        (b'{"case":"c","status":"accepted","t":' + HUGE_INT + b"}", Reason.OUT_OF_RANGE),
        (b'{"case":"c","status":"accepted","t":1e400}', Reason.OUT_OF_RANGE),
        (b'{"case":"c","status":"accepted","t":1,"note":"\\ud800"}', Reason.BAD_SCHEMA),  # a lone surrogate
        (b"[" * 100_000, Reason.BAD_SYNTAX),
        (b'["c","accepted",1]', Reason.BAD_SCHEMA),
        (b"null", Reason.BAD_SCHEMA),
        (b"\xff\xfe", Reason.BAD_SYNTAX),
    ],
)
def test_hostile_payloads_are_refused_not_crashed(payload, reason):
    out = decode_task(payload, topic=TOPIC, received_at=NOW)
    assert isinstance(out, Rejection) and out.reason is reason, out
    assert not out.detail.startswith("internal")


@pytest.mark.parametrize("topic", ["city/units/u0/tasks", "city/units//tasks/status", "city/units/u0/ack", "status"])
def test_a_topic_that_names_no_unit_is_refused(topic):
    out = decode(VALID, topic)
    assert isinstance(out, Rejection) and (out.reason, out.field) == (Reason.BAD_SCHEMA, "topic")


# --- properties ------------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["case", "status", "t", "note", "alert", ""]), inner, max_size=5),
    max_leaves=8,
).map(lambda doc: json.dumps(doc).encode()), st.sampled_from([TOPIC, "city/units/x/tasks/status", "", "a/b"]))
def test_any_bytes_give_a_batch_or_a_rejection(payload, topic):
    out = decode_task(payload, topic=topic, received_at=NOW)
    assert type(out) in (Batch, Rejection)
    if isinstance(out, Rejection):
        assert out.reason in Reason and not out.detail.startswith("internal")
    else:
        assert len(out) == 1 and out.quantity[0] in {f"task_{s}" for s in TASK_STATUSES}


answers = st.fixed_dictionaries(
    {
        "case": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=MAX_CASE_ID),
        "status": st.sampled_from(TASK_STATUSES),
        "t": st.floats(0, 4e9) | st.integers(0, 4_000_000_000),
    },
    optional={"note": st.text(st.characters(exclude_categories=("Cs",)), max_size=MAX_NOTE)},
)


@settings(max_examples=300, deadline=None)
@given(answers, st.booleans())
def test_valid_answers_round_trip(doc, ascii_only):
    payload = json.dumps(doc, ensure_ascii=ascii_only).encode()
    b = decode_task(payload, topic=TOPIC, received_at=NOW)
    assert isinstance(b, Batch), b
    again = json.loads(encode_task_status(b))
    expected = doc | {"t": float(doc["t"])}
    if not doc.get("note"):
        expected.pop("note", None)  # an empty note is no note
    assert again == expected
    b2 = decode_task(encode_task_status(b), topic=TOPIC, received_at=NOW)
    assert isinstance(b2, Batch)
    assert [(r["device"], r["ref"], r["quantity"], r["t"], r["note"]) for r in b2.records()] == [
        (r["device"], r["ref"], r["quantity"], r["t"], r["note"]) for r in b.records()]


def test_encoding_needs_a_task_answer():
    with pytest.raises(ValueError, match="empty"):
        encode_task_status(Batch.empty())
    with pytest.raises(ValueError, match="not a task answer"):
        encode_task_status(Batch.build(1, device="u0", t=NOW, quantity="ack", ref="a"))
