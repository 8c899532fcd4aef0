"""A refused citizen report's dead letter never carries the reporter's contact (issue 17)."""

from __future__ import annotations

import base64
import json
import time

from hypothesis import given
from hypothesis import strategies as st

from ingest.deadletter import PERSONAL_FIELDS, DeadLetters
from ingest.rejection import Reason, Rejection


def _letters(topic: str, payload: bytes) -> dict:
    sent = []
    DeadLetters(lambda t, body, qos: sent.append(json.loads(body))).send(
        topic, Rejection(Reason.UNKNOWN_CATEGORY, "no such service", "category"), time.time(), payload)
    return sent[0]


def test_a_refused_report_is_dead_lettered_without_its_contact():
    doc = {"id": "r1", "t": 1.0, "category": "dragons", "lon": 121.49, "lat": 31.24, "description": "积水",
           "contact": "张三 13800000000"}
    letter = _letters("city/reports/12345", json.dumps(doc, ensure_ascii=False).encode())
    body = json.loads(base64.b64decode(letter["payload_b64"]))
    assert "contact" not in body and body["description"] == "积水" and letter["payload_redacted"] == ["contact"]
    assert letter["reason"] == "unknown_category"


def test_an_unparseable_report_is_withheld_and_a_sensor_message_is_kept_whole():
    letter = _letters("city/reports/12345", b'{"contact": "13800000000", broken')
    assert letter["payload_b64"] == "" and letter["payload_withheld"] is True
    raw = b'[{"bn":"urn:dev:c1:","n":"count","v":-1}]'
    assert base64.b64decode(_letters("city/sensors/crowd/c1", raw)["payload_b64"]) == raw


@given(st.dictionaries(st.sampled_from(["id", "description", *PERSONAL_FIELDS]), st.text(max_size=20)))
def test_no_personal_field_survives_in_any_report_dead_letter(doc):
    letter = _letters("city/reports/app", json.dumps(doc).encode())
    body = json.loads(base64.b64decode(letter["payload_b64"]))
    assert not set(body) & set(PERSONAL_FIELDS)
