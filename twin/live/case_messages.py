"""What the case desk says, in Chinese and English: tasks to units, escalations to the supervisor, and the reasons it
writes into case events (`twin.live.case_desk`).

The payloads are those of docs/guides/cases.md ("MQTT topics of the case loop"); every one is plain JSON. Times in
texts are Shanghai wall-clock times (``HH:MM``) of twin time; times in fields are twin time [unix s].
"""

from __future__ import annotations

import datetime as dt
import json

from twin.alerting.cap import LEVEL_COLOUR_ZH, SHANGHAI_TZ
from twin.cases.model import Case

LEVEL_COLOUR_EN = {1: "Blue", 2: "Yellow", 3: "Orange", 4: "Red"}
PRIORITY_ZH = {1: "紧急", 2: "较急", 3: "一般"}
PRIORITY_EN = {1: "Urgent", 2: "High priority", 3: "Normal"}
STEP_ZH = {"dispatch": "派遣", "accept": "接单", "on_scene": "到场", "dispose": "处置", "verify": "核查",
           "close": "结案"}
STEP_EN = {"dispatch": "dispatch", "accept": "acceptance", "on_scene": "arrival on scene", "dispose": "disposal",
           "verify": "verification", "close": "closing"}
STATUS_ZH = {"new": "待派遣", "dispatched": "已派遣", "accepted": "已接单", "en_route": "在途", "on_scene": "已到场",
             "disposed": "已处置", "verified": "已核查", "closed": "已结案", "cancelled": "已撤销"}
STATUS_EN = {"new": "new", "dispatched": "dispatched", "accepted": "accepted", "en_route": "en route",
             "on_scene": "on scene", "disposed": "disposed", "verified": "verified", "closed": "closed",
             "cancelled": "cancelled"}


def to_json(doc: dict) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as is)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def clock(t: float) -> str:
    """Twin time [unix s] as Shanghai ``HH:MM``."""
    return dt.datetime.fromtimestamp(t, SHANGHAI_TZ).strftime("%H:%M")


def grade(level: int | None, priority: int) -> tuple[str, str]:
    """The headline word of a case: the alert's colour (``红色`` / ``Red``) for a case of a live alert, else its
    priority (``紧急`` / ``Urgent``)."""
    if level in LEVEL_COLOUR_ZH:
        return LEVEL_COLOUR_ZH[level], LEVEL_COLOUR_EN[level]
    return PRIORITY_ZH.get(priority, ""), PRIORITY_EN.get(priority, "")


def task_summary(case: Case, names: tuple[str, str], level: int | None, status: str) -> tuple[str, str]:
    """The one-line order to a unit: ``红色 人群拥挤 陈毅广场：请前往处置`` / ``Red crowd safety at Chen Yi Square:
    please go and deal with it``; for a withdrawn task ``任务已撤回：…`` / ``Task withdrawn: …``."""
    zh_word, en_word = grade(level, case.priority)
    what_zh = f"{zh_word} {names[0]} {case.place.name_zh}".strip()
    what_en = f"{en_word} {names[1].lower()} at {case.place.name_en}".strip()
    if status == "cancelled":
        why_zh = "案件已撤销" if case.status == "cancelled" else "已改派或结束"
        why_en = "the case was cancelled" if case.status == "cancelled" else "reassigned or finished"
        return f"任务已撤回：{what_zh}（{why_zh}）", f"Task withdrawn: {what_en} ({why_en})"
    return f"{what_zh}：请前往处置", f"{what_en}: please go and deal with it"


def task_payload(case: Case, status: str, names: tuple[str, str], level: int | None, deadlines: dict[str, float],
                 t: float) -> dict:
    """The ``city/units/{unit}/tasks`` message: ``status`` ``dispatched`` (a task) or ``cancelled`` (withdrawn)."""
    zh, en = task_summary(case, names, level, status)
    return {"case": case.id, "kind": "task", "status": status, "category": case.category,
            "category_zh": names[0], "category_en": names[1], "priority": case.priority,
            "place": case.place.as_dict(), "deadlines": dict(deadlines), "summary_zh": zh, "summary_en": en,
            "t": t}


def escalation_payload(case: Case, step: str, deadline: float, t: float, names: tuple[str, str]) -> dict:
    """The ``city/supervisor/escalations`` message of an overdue step."""
    late_zh, late_en = _lateness(t - deadline)
    who_zh = f"，承办单位 {case.assignee}" if case.assignee else "，尚无承办单位"
    who_en = f", assigned to {case.assignee}" if case.assignee else ", no unit assigned"
    text_zh = (f"超时升级：案件 {case.id}（{names[0]}，{case.place.name_zh}）{STEP_ZH[step]}超时，时限 "
               f"{clock(deadline)}，已超 {late_zh}；当前状态：{STATUS_ZH[case.status]}{who_zh}")
    text_en = (f"Escalation: case {case.id} ({names[1]}, {case.place.name_en}) is overdue for {STEP_EN[step]}: "
               f"due {clock(deadline)}, {late_en} late; status {STATUS_EN[case.status]}{who_en}")
    return {"case": case.id, "step": step, "deadline": deadline, "t": t, "category": case.category,
            "priority": case.priority, "place": case.place.as_dict(), "assignee": case.assignee,
            "text_zh": text_zh, "text_en": text_en}


def _lateness(seconds: float) -> tuple[str, str]:
    """How late, in words: seconds under two minutes, else minutes."""
    seconds = max(0.0, seconds)
    if seconds < 120.0:
        return f"{seconds:.0f} 秒", f"{seconds:.0f} s"
    return f"{seconds / 60.0:.0f} 分钟", f"{seconds / 60.0:.0f} min"


def task_error(case_id: str, status: str, t: float, error: str, detail: str) -> dict:
    """The ``city/units/{unit}/tasks/errors`` answer to a task answer the twin refused or did not confirm."""
    return {"case": case_id, "status": status, "t": t, "error": error, "detail": detail}


def unconfirmed_reason(unit: str, distance_m: float | None) -> str:
    """The ``noted`` event of an on-scene claim the unit's Beidou position does not confirm."""
    if distance_m is None:
        return f"{unit}: on scene claimed with no Beidou position, not confirmed / 报告到场但无北斗定位，未确认"
    return (f"{unit}: on scene claimed {distance_m:.0f} m away, not confirmed / "
            f"报告到场但北斗定位距现场 {distance_m:.0f} 米，未确认")


def already_reason(unit: str, status: str, since: float) -> str:
    """The ``noted`` event of a unit's answer the case had already reached (e.g. on scene by Beidou first)."""
    return (f"{unit}: {status} reported; the case is {STATUS_EN.get(status, status)} since {clock(since)} already / "
            f"单位报告{STATUS_ZH.get(status, status)}，案件已于 {clock(since)} {STATUS_ZH.get(status, status)}")


__all__ = ["already_reason", "clock", "escalation_payload", "grade", "task_error", "task_payload", "task_summary",
           "to_json", "unconfirmed_reason"]
