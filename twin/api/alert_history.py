"""The alert history (``GET /api/alerts/history``): the alerts of a period, each with its timeline.

Read from the alert store through `twin.live.query.LiveQuery` (``alert_rows_between``, ``messages_for``,
``acks_for``, ``arrivals_for``): nothing is kept in memory. An alert is in the period if it was active at some time in
it (raised before its end, not cancelled before its start). Its timeline, oldest first:

- ``raised``: its first CAP message (``Alert``);
- ``level``: an ``Update`` whose ``warningLevel`` differs from the message before (up or down);
- ``updated``: any other ``Update`` of the twin (a new value, a change of area, an absorbed neighbour: the text
  says which, `update_text`), and a unit's ``resolved`` report;
- ``acknowledged``: each acknowledgement (operators and units; the operator's own CAP ``Update``, identifier
  ``{id}.ack{k}``, is this step and not another);
- ``on_scene``: a unit seen inside the area, or reporting on scene (once per unit);
- ``cancelled``: its ``Cancel``.

Cost: at most `MAX_ALERTS` alerts (the newest), selected in SQL, and one store read for all their messages, one for
their acknowledgements, one for their arrivals (indexed by alert); ``truncated`` says when more matched. Measured
(tests/api/test_alert_history.py, 500 alerts of 20 messages each, in-memory SQLite, a loaded 2-core machine): the
store's lock, which the tick needs too, is held 0.04 s in all (0.8 s before, with one unindexed read per alert and
every alert ever stored loaded); the answer takes 0.4-1 s, mostly decoding the 10,000 CAP messages.
"""

from __future__ import annotations

import datetime as dt
import re

from twin.alerting import cap
from twin.api.geojson import LEVEL_OF_COLOUR, finite, parameters

MAX_ALERTS = 500
"""At most this many alerts in one answer, the newest. [design]"""
DEFAULT_WINDOW_S = 3 * 3600.0
"""Default period: the three hours before ``until`` (by default the last tick). [s] [design]"""
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


def _area(message: dict) -> list:
    try:
        return cap.info_block(message, "en-US").get("area") or []
    except ValueError:
        return []


def update_text(previous: dict | None, message: dict) -> str:
    """The text of an ``updated`` step: what the twin's ``Update`` changed since the message before (Chinese ·
    English). In order: the message's own CAP ``note``; an absorbed neighbour (more than one ``references``); a new
    area (its ``areaM2``/``cells`` parameters or its polygons differ), with the areas [m2]; a new ``value``
    parameter (the routine refresh of `twin.live.alert_output.AlertOutput.refreshes`); else a bare "updated"."""
    note = str(message.get("note") or "").strip()
    if note:
        return f"更新 · updated: {note[:120]}"
    parts_zh, parts_en = [], []
    absorbed = len(str(message.get("references") or "").split()) - 1
    if absorbed > 0:
        parts_zh.append(f"并入相邻预警{absorbed}条")
        parts_en.append(f"absorbed {absorbed} neighbouring alert{'s' if absorbed > 1 else ''}")
    now, before = parameters(message), parameters(previous) if previous is not None else {}
    area_changed = previous is not None and (
        (now.get("areaM2"), now.get("cells")) != (before.get("areaM2"), before.get("cells"))
        or _area(message) != _area(previous))
    if area_changed:
        a, b = before.get("areaM2"), now.get("areaM2")
        sizes = f" ({a} → {b} m²)" if a and b and a != b else ""
        parts_zh.append(f"范围更新{sizes}")
        parts_en.append(f"area updated{sizes}")
    value = now.get("value")
    if value and value != before.get("value") and not area_changed:
        parts_zh.append(f"数值更新 {value}")
        parts_en.append(f"value now {value}")
    if not parts_en:
        return "更新 · updated"
    return f"{'，'.join(parts_zh)} · {', '.join(parts_en)}"


def _entry(t, kind: str, level: int | None, actor: str | None, text: str) -> dict:
    return {"t": finite(t), "kind": kind, "level": level, "actor": actor, "text": text}


def timeline(row: dict, messages: list[dict], acks: list[dict], arrivals: list[dict]) -> tuple[list[dict], int]:
    """The timeline of one stored alert (see the module docstring), oldest first, and the highest level it
    reached."""
    out: list[dict] = []
    level = None
    previous: dict | None = None  # the message before, for what an Update changed
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
            level, previous = new, message
            continue  # the acks rows below say who acknowledged, and when
        elif level is not None and new is not None and new != level:
            zh_word, en_word = ("升级为", "up to") if new > level else ("降级为", "down to")
            entry = _entry(t, "level", new, TWIN,
                           f"{zh_word}{cap.LEVEL_COLOUR_ZH.get(new, '')} · {en_word} {LEVEL_EN.get(new, '')}")
        else:
            entry = _entry(t, "updated", new, TWIN, update_text(previous, message))
        level, previous = new, message
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


def period(view, since: float | None, until: float | None) -> tuple[float, float]:
    """The period [unix s] with its defaults filled: ``until`` the last tick (else the clock), ``since``
    `DEFAULT_WINDOW_S` before ``until``. ValueError (a sentence) when ``since`` is after ``until``."""
    if until is None:
        until = view.last_tick()
        until = view.now() if until is None else until
    since = until - DEFAULT_WINDOW_S if since is None else since
    if since > until:
        raise ValueError(f"since ({since:.0f}) is after until ({until:.0f}; the last tick when not given)")
    return float(since), float(until)


def alert_history(view, since: float | None, until: float | None, limit: int = MAX_ALERTS) -> dict:
    """The ``/api/alerts/history`` body: alerts active at some time in [since, until], newest first (defaults:
    `period`, whose ValueError this raises)."""
    since, until = period(view, since, until)
    rows = view.alert_rows_between(since, until, limit + 1)  # one more: were there more than limit?
    truncated = len(rows) > limit
    rows = rows[:limit]
    ids = [r["identifier"] for r in rows]
    messages, acks, arrivals = view.messages_for(ids), view.acks_for(ids), view.arrivals_for(ids)
    live = view.alert_live()
    alerts = []
    for row in rows:
        ident = row["identifier"]
        steps, highest = timeline(row, messages.get(ident, []), acks.get(ident, []), arrivals.get(ident, []))
        area_desc = _area_desc(row["message"])
        now = live.get(ident) or {}
        alerts.append({"identifier": ident, "hazard": row["hazard"], "level": highest,
                       "state": "cancelled" if row["state"] == "cancelled" else "active",
                       "raised_at": finite(row["raised_at"]), "cancelled_at": finite(row.get("cancelled_at")),
                       "place": now.get("place") or None,
                       "place_name": now.get("place_name") or _place_name(area_desc),
                       "areaDesc": area_desc, "timeline": steps})
    return {"since": since, "until": until, "truncated": truncated, "alerts": alerts}
