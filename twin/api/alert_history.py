"""The alert history (``GET /api/alerts/history``): the alerts of a period, each with its timeline.

Read from the alert store through `twin.live.query.LiveQuery` (``alert_rows``, ``messages``, ``acks``,
``arrivals``): nothing is kept in memory. An alert is in the period if it was active at some time in it (raised
before its end, not cancelled before its start). Its timeline, oldest first:

- ``raised``: its first CAP message (``Alert``);
- ``level``: an ``Update`` whose ``warningLevel`` differs from the message before (up or down);
- ``updated``: any other ``Update`` of the twin (a change of area, an absorbed neighbour), and a unit's
  ``resolved`` report;
- ``acknowledged``: each acknowledgement (operators and units; the operator's own CAP ``Update``, identifier
  ``{id}.ack{k}``, is this step and not another);
- ``on_scene``: a unit seen inside the area, or reporting on scene (once per unit);
- ``cancelled``: its ``Cancel``.

Cost: at most `MAX_ALERTS` alerts (the newest), three store reads each; ``truncated`` says when more matched.
"""

from __future__ import annotations

import datetime as dt
import re

from twin.alerting import cap
from twin.api.geojson import LEVEL_OF_COLOUR, finite, parameters

MAX_ALERTS = 500
"""At most this many alerts in one answer, the newest. [design: three store reads each, ~0.1 s for 500]"""
DEFAULT_WINDOW_S = 3 * 3600.0
"""Default period: the last three hours before the last tick. [s] [design]"""
ACK_MESSAGE = re.compile(r"\.ack\d+$")
LEVEL_EN = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}
TWIN = "twin"
"""The actor of the twin's own messages."""


def _time(message: dict) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(message.get("sent"))).timestamp()
    except ValueError:
        return None


def _level(message: dict, default: int | None) -> int | None:
    return LEVEL_OF_COLOUR.get(parameters(message).get("warningLevel", ""), default)


def _area_desc(message: dict) -> str | None:
    info = cap.info_block(message, "en-US") if message.get("info") else {}
    area = (info.get("area") or [{}])[0]
    return area.get("areaDesc") or None


def _place_name(area_desc: str | None) -> str | None:
    """The English part of an areaDesc such as ``Chen Yi Square; 陈毅广场``."""
    if not area_desc:
        return None
    return area_desc.split(";")[0].strip() or None


def _entry(t, kind: str, level: int | None, actor: str | None, text: str) -> dict:
    return {"t": finite(t), "kind": kind, "level": level, "actor": actor, "text": text}


def timeline(row: dict, messages: list[dict], acks: list[dict], arrivals: list[dict]) -> tuple[list[dict], int]:
    """The timeline of one stored alert (see the module docstring), oldest first, and the highest level it
    reached."""
    out: list[dict] = []
    level = None
    highest = int(row.get("level") or 0)
    steps: list[tuple[float, int, dict]] = []  # (t, order, entry): messages first at equal times
    for message in messages:
        t = _time(message)
        new = _level(message, level)
        msg_type = message.get("msgType")
        if new is not None:
            highest = max(highest, new)
        if msg_type == "Alert":
            zh, en = cap.LEVEL_COLOUR_ZH.get(new or 0, ""), LEVEL_EN.get(new or 0, "")
            entry = _entry(t, "raised", new, TWIN, f"发布{zh}预警 · raised at {en}")
        elif msg_type == "Cancel":
            entry = _entry(t if t is not None else row.get("cancelled_at"), "cancelled", new, TWIN, "解除 · cancelled")
        elif ACK_MESSAGE.search(str(message.get("identifier", ""))):
            level = new
            continue  # the acks rows below say who acknowledged, and when
        elif level is not None and new is not None and new != level:
            zh_word, en_word = ("升级为", "up to") if new > level else ("降级为", "down to")
            entry = _entry(t, "level", new, TWIN,
                           f"{zh_word}{cap.LEVEL_COLOUR_ZH.get(new, '')} · {en_word} {LEVEL_EN.get(new, '')}")
        else:
            entry = _entry(t, "updated", new, TWIN, "更新范围 · area updated")
        level = new
        steps.append((entry["t"] or 0.0, 0, entry))
    if not any(e["kind"] == "cancelled" for _, _, e in steps) and row.get("state") == "cancelled":
        steps.append((row.get("cancelled_at") or 0.0, 0,
                      _entry(row.get("cancelled_at"), "cancelled", level, TWIN, "解除 · cancelled")))
    on_scene: set[str] = set()
    for a in arrivals:
        unit = str(a["unit_id"])
        on_scene.add(unit)
        steps.append((a["t"], 1, _entry(a["t"], "on_scene", None, unit, f"{unit} 到达现场 · {unit} on scene")))
    for a in acks:
        actor, status = str(a["actor"]), a["status"]
        who = "值班员" if a.get("kind") == "operator" else "单元"
        who_en = "operator" if a.get("kind") == "operator" else "unit"
        if status == "ack":
            text = f"{who} {actor} 已确认 · acknowledged by {who_en} {actor}"
            entry = _entry(a["t"], "acknowledged", None, actor, text)
        elif status == "on_scene":
            if actor in on_scene:
                continue
            on_scene.add(actor)
            entry = _entry(a["t"], "on_scene", None, actor, f"{actor} 到达现场 · {actor} on scene")
        else:
            entry = _entry(a["t"], "updated", None, actor, f"{actor} 报告已处置 · {actor} reports it resolved")
        steps.append((a["t"], 1, entry))
    steps.sort(key=lambda s: (s[0], s[1]))
    # the level of the alert at each acknowledgement or arrival: that of the twin's last message before it
    current = None
    for _, _, entry in steps:
        if entry["actor"] == TWIN:
            current = entry["level"]
        elif entry["level"] is None:
            entry["level"] = current
        out.append(entry)
    return out, highest


def alert_history(view, since: float | None, until: float | None, limit: int = MAX_ALERTS) -> dict:
    """The ``/api/alerts/history`` body: alerts active at some time in [since, until], newest first.

    ``since`` defaults to the last tick (else the clock) minus `DEFAULT_WINDOW_S`, ``until`` to the last tick (else
    the clock).
    """
    ref = view.last_tick()
    ref = view.now() if ref is None else ref
    since = ref - DEFAULT_WINDOW_S if since is None else since
    until = ref if until is None else until
    rows = [r for r in view.alert_rows(None)
            if r["raised_at"] <= until
            and (r.get("cancelled_at") is None or r["cancelled_at"] >= since)]
    rows.sort(key=lambda r: (r["raised_at"], r["identifier"]), reverse=True)
    truncated = len(rows) > limit
    live = view.alert_live()
    alerts = []
    for row in rows[:limit]:
        ident = row["identifier"]
        steps, highest = timeline(row, view.messages(ident), view.acks(ident), view.arrivals(ident))
        area_desc = _area_desc(row["message"])
        now = live.get(ident) or {}
        alerts.append({"identifier": ident, "hazard": row["hazard"], "level": highest,
                       "state": "cancelled" if row["state"] == "cancelled" else "active",
                       "raised_at": finite(row["raised_at"]), "cancelled_at": finite(row.get("cancelled_at")),
                       "place": now.get("place") or None,
                       "place_name": now.get("place_name") or _place_name(area_desc),
                       "areaDesc": area_desc, "timeline": steps})
    return {"since": since, "until": until, "truncated": truncated, "alerts": alerts}
