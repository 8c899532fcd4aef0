"""The CAP 1.2 profile (docs/contract/cap.md): every kind of message, in Chinese and English, checked by the
profile's rules (`cap.problems`) and parsed by an independent CAP library (cap-tools)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xsdata.formats.dataclass.parsers import XmlParser

from models.hazards import ALERT_HAZARDS, REGISTRY
from twin.alerting import cap
from twin.alerting.compose import DEFAULT_RESTRICTION, ComposeContext, issue, restricted
from twin.alerting.lifecycle import AlertBook
from twin.alerting.segments import Place
from twin.district.grid import GridSpec

GRID = GridSpec.from_bbox(121.484, 31.236, 121.492, 31.244, 20.0)
T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
WEB = "https://twin.example.org/bund"
CTX = ComposeContext(GRID, "twin.bund@citytwin", "bund", web_base=WEB + "/",
                     evidence=lambda h, c: {REGISTRY[h].evidence: f"5.30 {REGISTRY[h].unit}"})
NS = f"{{{cap.CAP_NS}}}"
SPEC_INFO_ORDER = ("language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
                   "eventCode", "effective", "onset", "expires", "senderName", "headline", "description",
                   "instruction", "web", "contact", "parameter", "resource", "area")
"""The ``info`` sequence of the CAP 1.2 schema (CAP-v1.2-os, 3.2.2 and the XML schema), written out here rather
than taken from `cap.INFO_ORDER`, so the test checks the code against the standard."""
SPEC_ALERT_ORDER = ("identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
                    "addresses", "code", "note", "references", "incidents", "info")


def cells_box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return np.sort((rows * GRID.nx + cols).ravel())


def levels(*boxes) -> np.ndarray:
    a = np.zeros(GRID.shape, dtype=np.int8)
    for r0, r1, c0, c1, v in boxes:
        a[r0:r1, c0:c1] = v
    return a


def portal(level: int) -> Place:
    """A waterlogging point (an operational unit with a key and names, as `twin.alerting.units` makes them)."""
    return Place(np.zeros(0, np.int64), cells_box(5, 7, 5, 7), level, "外滩隧道北口 Bund Tunnel north portal",
                 key="flood:point:water-03", name_en="Bund Tunnel north portal", name_zh="外滩隧道北口")


def segment(level: int) -> Place:
    """A road segment: carried by its links, named in both languages, with its own evidence."""
    return Place(np.array([3, 4, 5]), cells_box(20, 21, 10, 20), level,
                 "East Zhongshan No. 1 Road (中山东一路) southbound, Hankou Road to Fuzhou Road; "
                 "中山东一路南向（汉口路至福州路）",
                 evidence={"roadName": "East Zhongshan No. 1 Road", "minSpeed": "11.20 km/h"},
                 name_en="East Zhongshan No. 1 Road southbound, Hankou Road to Fuzhou Road",
                 name_zh="中山东一路南向（汉口路至福州路）")


@pytest.fixture(scope="module")
def kinds() -> dict[str, dict]:
    """One message of every kind: name -> CAP message."""
    book, out = AlertBook("bund"), {}

    def run(t, grids=None, places=None):
        return issue(book.tick(t, grids or {}, places=places or {}), CTX)

    (raised,) = run(T0, places={"flood": [portal(4)]})
    out["flood alert"] = raised.message
    (update,) = run(T0 + 60, places={"flood": [portal(3)]})
    out["flood update"] = update.message
    ack = issue([book.acknowledge(raised.alert.identifier, "Li Wei", T0 + 90, "pumps on the way")], CTX)[0]
    out["operator acknowledgement"] = ack.message
    (cancel,) = run(T0 + 120, places={"flood": []})
    out["flood cancel"] = cancel.message
    crowd = run(T0 + 130, {"crowd": levels((30, 34, 30, 34, 4)), "crowd_forecast": levels((10, 12, 30, 32, 3))})
    out |= {f"{e.alert.hazard} alert": e.message for e in crowd}
    (jam,) = run(T0 + 140, places={"traffic": [segment(3)]})
    out["traffic segment alert"] = jam.message
    (rain,) = run(T0 + 150, {"rain": np.full(GRID.shape, 2, np.int8)})
    out["rain alert"] = rain.message
    out |= {f"restricted {k}": restricted(m) for k, m in list(out.items())}
    return out


KINDS = ("flood alert", "flood update", "operator acknowledgement", "flood cancel", "crowd alert",
         "crowd_forecast alert", "traffic segment alert", "rain alert")
ALL_KINDS = (*KINDS, *(f"restricted {k}" for k in KINDS))


def parse(message: dict):
    from cap_tools.models import Alert as CapAlert

    return XmlParser().from_string(cap.to_xml(message), CapAlert)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_of_message_is_valid_cap_1_2_and_parses_with_cap_tools(kinds, kind):
    m = kinds[kind]
    assert cap.problems(m) == [], cap.problems(m)
    parsed = parse(m)
    assert (parsed.identifier, parsed.msg_type.value, parsed.scope.value) == (m["identifier"], m["msgType"], m["scope"])
    assert parsed.restriction == m.get("restriction")
    assert [i.language for i in parsed.infos] == ["zh-CN", "en-US"]
    for info, block in zip(parsed.infos, m["info"], strict=True):
        assert (info.event, info.headline, info.description, info.instruction) == (
            block["event"], block["headline"], block["description"], block.get("instruction"))
        assert [r.value for r in info.response_types] == [block["responseType"]]
        assert info.certainty.value == block["certainty"] == REGISTRY[params(m)["hazard"]].certainty
        assert (info.sender_name, info.web, info.contact) == (block["senderName"], block["web"], block["contact"])
        assert dict(info.parameters_to_dict()) == params(m)
        assert info.areas[0].polygons == block["area"][0]["polygon"]
    if m["msgType"] != "Alert":
        assert [f"{r.sender},{r.identifier},{r.sent}" for r in parsed.references_to_list()] == m["references"].split()


@pytest.mark.parametrize("kind", ("flood alert", "restricted operator acknowledgement", "flood cancel"))
def test_the_xml_elements_follow_the_schema_order(kinds, kind):
    root = ET.fromstring(cap.to_xml(kinds[kind]))
    tags = [el.tag.removeprefix(NS) for el in root]
    assert tags == sorted(tags, key=SPEC_ALERT_ORDER.index)
    for info in root.iter(f"{NS}info"):
        tags = [el.tag.removeprefix(NS) for el in info]
        assert tags == sorted(tags, key=SPEC_INFO_ORDER.index), tags
        assert {"senderName", "web", "contact", "responseType", "language"} <= set(tags)
    assert root.find(f"{NS}senderName") is None, "senderName is an info element in CAP 1.2"


def params(message: dict) -> dict[str, str]:
    return {p["valueName"]: p["value"] for p in cap.info_block(message)["parameter"]}


def test_headlines_name_the_place_in_both_languages(kinds):
    zh, en = kinds["flood alert"]["info"]
    assert (zh["language"], en["language"]) == ("zh-CN", "en-US")
    assert zh["headline"] == "外滩隧道北口积水红色预警"
    assert en["headline"] == "Red waterlogging warning, Bund Tunnel north portal"
    assert (zh["event"], en["event"]) == ("城市积水内涝预警", "Urban waterlogging warning")
    assert "外滩隧道北口" in zh["description"] and "红色（I级）" in zh["description"]
    assert en["description"].endswith("Bund Tunnel north portal.") and "level red (I)" in en["description"]
    assert zh["instruction"].startswith("请封闭积水的下穿通道") and en["instruction"].startswith("Close flooded")
    zh, en = kinds["traffic segment alert"]["info"]
    assert zh["headline"] == "中山东一路南向（汉口路至福州路）交通拥堵橙色预警"
    assert en["headline"] == "Orange traffic congestion warning, East Zhongshan No. 1 Road southbound, Hankou Road " \
                             "to Fuzhou Road"


def test_without_a_place_the_headline_names_the_district(kinds):
    zh, en = kinds["crowd alert"]["info"]
    assert (zh["headline"], en["headline"]) == ("外滩人群密度红色预警", "Red crowd density warning, Bund")
    zh, en = kinds["rain alert"]["info"]
    assert (zh["headline"], en["headline"]) == ("外滩暴雨黄色预警信号", "Yellow rainstorm warning signal, Bund")


def test_a_forecast_says_what_is_expected_and_when_in_both_languages(kinds):
    zh, en = kinds["crowd_forecast alert"]["info"]
    assert zh["headline"] == "外滩人群密度橙色预测：预计5分钟内达到5.3人/平方米"
    assert en["headline"] == "Orange crowd density forecast, Bund: expected to reach 5.3 person/m2 in 5 min"
    assert (zh["certainty"], zh["urgency"], zh["responseType"]) == ("Likely", "Expected", "Prepare")


def test_a_cancel_says_cleared_and_all_clear(kinds):
    zh, en = kinds["flood cancel"]["info"]
    assert zh["headline"] == "解除：外滩隧道北口积水橙色预警"
    assert en["headline"] == "Cleared: Orange waterlogging warning, Bund Tunnel north portal"
    assert (zh["responseType"], zh["urgency"]) == ("AllClear", "Past")
    assert (zh["description"], en["description"]) == ("监测值已回落至解除阈值以下",
                                                      "conditions back below the clear thresholds")
    assert "instruction" not in zh and "instruction" not in en


def test_response_type_by_hazard_and_level(kinds):
    got = {k: kinds[k]["info"][1]["responseType"] for k in KINDS}
    assert got == {"flood alert": "Avoid", "flood update": "Avoid", "operator acknowledgement": "Avoid",
                   "flood cancel": "AllClear", "crowd alert": "Execute", "crowd_forecast alert": "Prepare",
                   "traffic segment alert": "Avoid", "rain alert": "Prepare"}
    for spec in REGISTRY.values():
        assert set(spec.response) <= set(cap.RESPONSE_TYPE), spec.name
        assert spec.event_zh and spec.instruction_zh and "{place}" in spec.headline_zh, spec.name


def test_sender_name_contact_and_the_dashboard_link(kinds):
    m = kinds["operator acknowledgement"]
    ident = kinds["flood alert"]["identifier"]
    for info in m["info"]:
        assert info["senderName"] == "上海市城市运行数字孪生·外滩 / citytwin Bund operations twin"
        assert info["web"] == f"{WEB}/#alert={ident}", "the alert's link, not the message's"
        assert info["contact"]
    assert cap.info_block(m)["parameter"][-1] == {"valueName": "acknowledgedBy", "value": "Li Wei"}
    ctx = ComposeContext(GRID, "twin.bund@citytwin", "bund", sender_name="Bund twin", contact="")
    book = AlertBook("bund")
    (event,) = issue(book.tick(T0, {"crowd": levels((5, 8, 5, 8, 2))}), ctx)
    for info in event.message["info"]:
        assert info["senderName"] == "Bund twin" and "web" not in info and "contact" not in info
    assert cap.problems(event.message) == []


def test_scope_is_public_and_the_unit_copy_is_restricted(kinds):
    public, unit = kinds["flood update"], kinds["restricted flood update"]
    assert public["scope"] == "Public" and "restriction" not in public
    assert unit["scope"] == "Restricted" and unit["restriction"] == DEFAULT_RESTRICTION
    assert {k: v for k, v in unit.items() if k not in ("scope", "restriction")} == \
        {k: v for k, v in public.items() if k != "scope"}
    copy = restricted(public, "Police units only; 仅限公安")
    copy["info"][0]["headline"] = "changed"
    assert public["info"][0]["headline"] != "changed", "the copy is deep: the public message is unchanged"
    with pytest.raises(ValueError, match="restriction"):
        restricted(public, "  ")


def test_info_block_picks_the_language_else_the_first(kinds):
    m = kinds["flood alert"]
    assert cap.info_block(m)["language"] == "en-US" and cap.info_block(m, "zh-CN")["language"] == "zh-CN"
    assert cap.info_block(m, "fr-FR") is m["info"][0]
    assert cap.info_block({"info": [{"event": "x"}]}, "en-US") == {"event": "x"}, "no language: CAP's en-US"
    with pytest.raises(ValueError, match="no info block"):
        cap.info_block({"identifier": "x"})


def test_the_checker_catches_profile_breaks(kinds):
    good = kinds["flood alert"]
    zh, en = good["info"]

    def broken(**changes):
        return cap.problems({**good, **changes})

    assert "scope Restricted needs a restriction" in broken(scope="Restricted")
    assert any("restriction is only for scope Restricted" in p for p in broken(restriction="x"))
    assert "scope Private needs addresses" in broken(scope="Private")
    assert any("RFC 3066" in p for p in broken(info=[{**zh, "language": "zh_CN!"}, en]))
    assert any("responseType 'Run'" in p for p in broken(info=[zh, {**en, "responseType": "Run"}]))
    assert any("info[1].severity differs" in p for p in broken(info=[zh, {**en, "severity": "Minor"}]))
    assert any("info[1].area differs" in p for p in broken(info=[zh, {**en, "area": [{"areaDesc": "x"}]}]))
    assert any("more than one info block" in p for p in broken(info=[en, en]))
    assert any("absolute URI" in p for p in broken(info=[{**zh, "web": "#alert=1"}, {**en, "web": "#alert=1"}]))


# ------------------------------------------------------------ property: any composed message is valid
place_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
box = st.tuples(st.integers(0, 30), st.integers(1, 6), st.integers(0, 30), st.integers(1, 6), st.integers(0, 4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hazard=st.sampled_from(ALERT_HAZARDS), steps=st.lists(st.lists(box, max_size=2), min_size=1, max_size=4),
       name_en=place_names, name_zh=place_names, acks=st.lists(st.sampled_from(["Li Wei", "王芳"]), max_size=2),
       evidence=st.floats(0, 100), web=st.sampled_from(["", "http://127.0.0.1:8080"]))
def test_every_composed_message_of_random_events_is_valid(hazard, steps, name_en, name_zh, acks, evidence, web):
    ctx = ComposeContext(GRID, "twin.bund@citytwin", "bund", "Exercise", web_base=web,
                         evidence=lambda h, c: {REGISTRY[h].evidence: f"{evidence:.2f} {REGISTRY[h].unit}"})
    book, messages = AlertBook("bund"), []
    for k, boxes in enumerate([*steps, []]):  # the last step clears everything
        t = T0 + 60 * k
        if hazard in ("flood", "traffic"):  # as places with names (possibly empty: the district's then)
            places = [Place(np.array([i]), cells_box(r, r + h, c, c + w), v, f"place {i}", key=f"k{i}",
                            name_en=name_en, name_zh=name_zh) for i, (r, h, c, w, v) in enumerate(boxes) if v]
            events = issue(book.tick(t, {}, places={hazard: places}), ctx)
        else:
            events = issue(book.tick(t, {hazard: levels(*((r, r + h, c, c + w, v) for r, h, c, w, v in boxes))}), ctx)
        messages += [e.message for e in events]
        for alert in list(book.active.values())[:1]:
            acknowledged = [book.acknowledge(alert.identifier, op, t + 1) for op in acks]
            messages += [e.message for e in issue([e for e in acknowledged if e is not None], ctx)]
    messages += [restricted(m) for m in messages]
    for m in messages:
        assert cap.problems(m) == [], (m["identifier"], cap.problems(m))
        parsed = parse(m)
        assert [i.language for i in parsed.infos] == list(cap.LANGUAGES)
        assert all(i.headline for i in parsed.infos)


def test_the_alert_s_value_parameters_follow_its_evidence_in_both_blocks():
    seen = []

    def values(identifier):
        seen.append(identifier)
        return {"value": "0.31 m", "trend": "rising, +0.02 m per minute"}

    ctx = ComposeContext(GRID, "twin.bund@citytwin", "bund", evidence=lambda h, c: {"peakDepth": "0.35 m"},
                         alert_values=values)
    (event,) = issue(AlertBook("bund").tick(T0, {}, places={"flood": [portal(3)]}), ctx)
    names = [p["valueName"] for p in cap.info_block(event.message, "zh-CN")["parameter"]]
    assert names == ["warningLevel", "hazard", "cells", "areaM2", "peakDepth", "value", "trend"]
    assert seen == [event.alert.identifier] and cap.problems(event.message) == []
