"""Unit alerts as 0x8300 texts: the Chinese summary of a CAP message (level, hazard, place, action; at most 200
GBK bytes), sent to a connected unit terminal, kept for an offline one until it authenticates, and counted
as delivered on the terminal's 0x0001."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808 import messages as m
from ingest.jt808.downlink import MAX_TEXT_BYTES, Downlink, gbk_length, summary_text, text_flags
from tests.ingest.jt808.test_gateway import UNIT, UNIT_PHONE, Terminal, Watcher, run, started, until
from tests.support.mqtt import mosquitto_available

PLACE = "bund: 外滩隧道北口 Bund Tunnel north portal (Wusong Rd) (2 cells)"


def cap(level: str = "red", severity: str = "Extreme", msg_type: str = "Alert", instruction: str | None = None) -> dict:
    zh = {
        "language": "zh-CN",
        "event": "城市积水内涝预警",
        "severity": severity,
        "instruction": instruction or "请封闭积水的下穿通道，禁止车辆和行人通行，远离深水区域。",
        "parameter": [{"valueName": "warningLevel", "value": level}, {"valueName": "hazard", "value": "flood"}],
        "area": [{"areaDesc": PLACE}],
    }
    en = {**zh, "language": "en-US", "event": "Urban waterlogging warning"}
    return {"identifier": "x", "msgType": msg_type, "info": [en, zh]}


def test_summary_has_level_hazard_place_and_action():
    text = summary_text(cap())
    assert text.startswith("【红色预警】城市积水内涝预警")
    assert "地点：" + PLACE in text and "措施：请封闭积水的下穿通道" in text
    assert gbk_length(text) <= MAX_TEXT_BYTES
    assert summary_text(cap(level="", severity="Moderate")).startswith("【黄色预警】")
    cancel = summary_text(cap(msg_type="Cancel"))
    assert cancel == "【解除】城市积水内涝预警｜地点：" + PLACE, "a cancel asks for no action"
    assert text_flags(cap()) == m.TEXT_EMERGENCY | m.TEXT_DISPLAY | m.TEXT_TTS
    assert text_flags(cap(level="blue")) == m.TEXT_DISPLAY | m.TEXT_TTS


def test_a_long_action_is_cut_and_the_head_kept():
    text = summary_text(cap(instruction="请立即疏散人群。" * 40))
    assert gbk_length(text) <= MAX_TEXT_BYTES and text.endswith("…") and "地点：" + PLACE in text


@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=300), st.sampled_from(["", "red", "x"]))
@settings(max_examples=200, deadline=None)
def test_any_cap_text_fits(event, place, action, level):
    doc = {
        "info": [
            {
                "language": "zh-CN",
                "event": event,
                "instruction": action,
                "area": [{"areaDesc": place}],
                "parameter": [{"valueName": "warningLevel", "value": level}],
            }
        ]
    }
    assert gbk_length(summary_text(doc)) <= MAX_TEXT_BYTES


def test_offline_texts_are_bounded_per_unit():
    sent = []

    class Sink:
        def send_text(self, text, flags):
            sent.append(text)
            return True

    online = {}
    down = Downlink("city/", lambda unit: unit == "u1", online.get, per_unit=2)
    for level in ("blue", "yellow", "red"):
        down.on_alert("city/units/u1/alerts", json.dumps(cap(level)).encode())
    down.on_alert("city/units/u2/alerts", json.dumps(cap()).encode())
    down.on_alert("city/units/u1/alerts", b"not json")
    s = down.stats
    assert (s.alerts, s.texts_queued, s.texts_dropped, s.alerts_no_terminal, s.alerts_bad) == (4, 3, 1, 1, 1)
    down.on_authenticated("u1", Sink())
    assert [t[:6] for t in sent] == ["【黄色预警】", "【红色预警】"] and s.texts_sent == 2 and not down.pending


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")
def test_alert_reaches_the_unit_terminal_online_and_after_authentication(broker):
    url = broker.url

    async def scenario():
        gw = await started(url)
        feed = await Watcher(url, ["city/none"]).ready()
        unit = await Terminal(UNIT_PHONE).connect(gw.port)
        await unit.login()
        feed.publish(f"city/units/{UNIT}/alerts", json.dumps(cap()).encode())
        msg = await unit.recv()
        assert msg.header.msg_id == m.TEXT
        text = m.decode_text(msg.body, msg.header)
        assert "红色" in text.text and "外滩隧道北口" in text.text and len(msg.body) <= MAX_TEXT_BYTES + 1
        await unit.send(m.TERMINAL_REPLY, m.encode_general_reply(m.GeneralReply(msg.header.serial, m.TEXT, 0)))
        unit.close()
        await until(lambda: gw.stats.texts_acked == 1 and not gw.stats.open_connections, "the reply and the close")
        feed.publish(f"city/units/{UNIT}/alerts", json.dumps(cap("orange", msg_type="Cancel")).encode())
        await until(lambda: gw.stats.texts_queued == 1, "the alert kept for the offline unit")
        again = await Terminal(UNIT_PHONE).connect(gw.port)
        await again.login()
        msg = await again.recv()
        assert msg.header.msg_id == m.TEXT and m.decode_text(msg.body, msg.header).text.startswith("【解除】")
        assert (gw.stats.texts_sent, gw.stats.texts_acked, gw.stats.texts_queued) == (2, 1, 1)
        again.close()
        feed.stop()
        await gw.stop()

    run(scenario)
