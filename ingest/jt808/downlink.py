"""Alerts to field units as JT/T 808 text delivery (0x8300, JT/T 808-2013 section 8.38, 2019 section 8.42).

A CAP message for a unit (JSON on ``{prefix}units/{unit}/alerts``, docs/contract/cap.md) becomes one short GBK
text: ``【红色预警】城市积水内涝预警｜地点：…｜措施：…`` -- level (the ``warningLevel`` parameter, else the
CAP ``severity``), hazard (``event``), place (``areaDesc``), action (``instruction``), from the zh-CN ``info``
block; a Cancel starts with ``【解除】`` and names no action. At most `MAX_TEXT_BYTES` GBK bytes: the action,
then the place are cut.

``Downlink`` sends it to the unit's connected, authenticated terminal, or keeps it (at most `PENDING_PER_UNIT`
per unit, the oldest dropped) until the terminal next authenticates. The terminal's general response 0x0001 to
the 0x8300 counts it as delivered.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.jt808.messages import TEXT_DISPLAY, TEXT_EMERGENCY, TEXT_TTS, gbk_cut

MAX_TEXT_BYTES = 200
"""Longest text sent [byte, GBK]."""
PENDING_PER_UNIT = 3
"""Texts kept for a unit whose terminal is offline [1]."""
MAX_PENDING_UNITS = 10_000
"""Units with kept texts at most [1]."""
LEVEL_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
SEVERITY_LEVEL = {"Minor": "blue", "Moderate": "yellow", "Severe": "orange", "Extreme": "red"}


def gbk_length(text: str) -> int:
    """Bytes of ``text`` in GBK (characters GBK lacks count as the ``?`` they become)."""
    return len(text.encode("gbk", "replace"))


def _cut(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` GBK bytes, ``…`` marking the cut (`ingest.jt808.messages.gbk_cut`)."""
    if gbk_length(text) <= budget:
        return text
    room = budget - gbk_length("…")
    return gbk_cut(text, room).decode("gbk") + "…" if room > 0 else ""


def _zh_info(cap: dict[str, Any]) -> dict[str, Any]:
    infos = [i for i in cap.get("info") or [] if isinstance(i, dict)]
    for info in infos:
        if str(info.get("language", "")).lower().startswith("zh"):
            return info
    return infos[0] if infos else {}


def _parameter(info: dict[str, Any], name: str) -> str:
    for p in info.get("parameter") or []:
        if isinstance(p, dict) and p.get("valueName") == name:
            return str(p.get("value", ""))
    return ""


def alert_level(info: dict[str, Any]) -> str:
    """``blue`` … ``red`` from the ``warningLevel`` parameter, else the CAP ``severity``; "" when neither says."""
    level = _parameter(info, "warningLevel")
    return level if level in LEVEL_ZH else SEVERITY_LEVEL.get(str(info.get("severity", "")), "")


def summary_text(cap: dict[str, Any], max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The short Chinese text of a CAP message (see the module docstring), at most ``max_bytes`` GBK bytes."""
    info = _zh_info(cap)
    level = LEVEL_ZH.get(alert_level(info), "")
    cancel = cap.get("msgType") == "Cancel"
    tag = "【解除】" if cancel else f"【{level}预警】" if level else "【预警】"
    head = _cut(tag + str(info.get("event") or info.get("headline") or ""), max_bytes)
    area = (info.get("area") or [{}])[0]
    place = str(area.get("areaDesc", "")) if isinstance(area, dict) else ""
    action = "" if cancel else str(info.get("instruction") or "")  # a cancelled alert asks for nothing more
    text = head
    for label, value in (("｜地点：", place), ("｜措施：", action)):
        budget = max_bytes - gbk_length(text) - gbk_length(label)
        if value and budget > gbk_length("…") + 2:
            text += label + _cut(value, budget)
    return text


def text_flags(cap: dict[str, Any]) -> int:
    """0x8300 flags: display and read aloud; emergency for orange and red."""
    urgent = alert_level(_zh_info(cap)) in ("orange", "red") and cap.get("msgType") != "Cancel"
    return TEXT_DISPLAY | TEXT_TTS | (TEXT_EMERGENCY if urgent else 0)


class TextSink(Protocol):
    """A terminal session that can take a text (``ingest.jt808.session.Session``)."""

    def send_text(self, text: str, flags: int) -> bool: ...


@dataclass
class DownlinkStats:
    """Counters of the downlink [1]."""

    alerts: int = 0
    """CAP messages received for units."""
    alerts_bad: int = 0
    """Messages on an alert topic that are not CAP JSON objects."""
    alerts_no_terminal: int = 0
    """CAP messages for units without a JT/T 808 terminal."""
    texts_sent: int = 0
    texts_queued: int = 0
    """Texts kept for an offline terminal."""
    texts_dropped: int = 0
    """Kept texts dropped: `PENDING_PER_UNIT` newer ones came, or too many units waited."""
    texts_acked: int = 0
    """Texts the terminal answered with 0x0001 result 0."""
    texts_failed: int = 0
    """Texts the terminal answered with another result."""


class Downlink:
    """Routes unit alerts to terminal sessions (see the module docstring).

    ``has_terminal(unit)`` says whether a unit has a JT/T 808 terminal; ``session_of(unit)`` gives its
    authenticated session or None.
    """

    def __init__(self, prefix: str, has_terminal: Callable[[str], bool],
                 session_of: Callable[[str], TextSink | None], per_unit: int = PENDING_PER_UNIT,
                 stats: DownlinkStats | None = None) -> None:
        self.prefix = prefix
        self.subscription = f"{prefix}units/+/alerts"
        self.has_terminal = has_terminal
        self.session_of = session_of
        self.per_unit = per_unit
        self.pending: dict[str, deque[tuple[str, int]]] = {}
        self.stats = stats if stats is not None else DownlinkStats()

    def unit_of(self, topic: str) -> str | None:
        """The unit id of ``{prefix}units/{unit}/alerts``, else None."""
        head, tail = f"{self.prefix}units/", "/alerts"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        unit = topic[len(head):-len(tail)]
        return unit if unit and "/" not in unit else None

    def on_alert(self, topic: str, payload: bytes) -> None:
        """One message from the alert subscription (event loop)."""
        unit = self.unit_of(topic)
        try:
            cap = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            cap = None
        if unit is None or not isinstance(cap, dict):
            self.stats.alerts_bad += 1
            return
        self.stats.alerts += 1
        if not self.has_terminal(unit):
            self.stats.alerts_no_terminal += 1
            return
        text, flags = summary_text(cap), text_flags(cap)
        session = self.session_of(unit)
        if session is not None and session.send_text(text, flags):
            self.stats.texts_sent += 1
            return
        self._keep(unit, text, flags)

    def _keep(self, unit: str, text: str, flags: int) -> None:
        queue = self.pending.get(unit)
        if queue is None:
            if len(self.pending) >= MAX_PENDING_UNITS:
                self.stats.texts_dropped += 1
                return
            queue = self.pending[unit] = deque()
        if len(queue) >= self.per_unit:
            queue.popleft()
            self.stats.texts_dropped += 1
        queue.append((text, flags))
        self.stats.texts_queued += 1

    def on_authenticated(self, unit: str, session: TextSink) -> None:
        """A unit's terminal authenticated: send what was kept for it, oldest first."""
        queue = self.pending.pop(unit, None)
        while queue:
            text, flags = queue.popleft()
            if session.send_text(text, flags):
                self.stats.texts_sent += 1
            else:
                queue.appendleft((text, flags))
                self.pending[unit] = queue
                return

    def on_reply(self, result: int) -> None:
        """The terminal answered a 0x8300 with 0x0001 ``result``."""
        if result == 0:
            self.stats.texts_acked += 1
        else:
            self.stats.texts_failed += 1
