"""A citizen report refused over HTTP is dead-lettered and counted like one refused over MQTT, without the
reporter's contact (issue 17)."""

from __future__ import annotations

import base64
import json

import pytest

from twin.cases.model import CaseError

T0 = 1_767_189_600.0  # the api fixtures' start (tests/api/conftest.py)


def test_a_report_refused_over_http_is_dead_lettered_and_counted(service):
    letters = []
    service.ingestor.deadletters._publish = lambda topic, body, qos: letters.append((topic, json.loads(body)))
    service._live = True  # as after start: refusals are published (the test service never connects)
    doc = {"id": "o311-1", "t": service.clock(), "category": "dragons", "lon": 121.4905, "lat": 31.2402,
           "description": "积水 / water", "contact": "13800000000"}
    with pytest.raises(CaseError) as refused:
        service.case_command("report", {"source": "open311", "doc": doc})
    assert "dragons" in refused.value.detail
    assert service.ingestor.metrics.snapshot()["rejected"]["unknown_category"] == 1
    [(topic, letter)] = letters
    assert topic == "city/deadletter" and letter["topic"] == "city/reports/open311"
    assert letter["reason"] == "unknown_category"
    body = json.loads(base64.b64decode(letter["payload_b64"]))
    assert body["category"] == "dragons" and "contact" not in body
