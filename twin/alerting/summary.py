"""The CAP message of an alert-storm summary (issue 16, storm control; `twin.alerting.storm`).

When more new alerts would go out in a minute than storm control allows, the extra ones are held back from the
units and one summary per hazard names their count and worst places. The summary is an alert of its own on
``city/alerts/{id}``: ``Alert`` when the storm begins, ``Update`` (``{id}.update{n}``) when its members change,
``Cancel`` (``{id}.cancel{n}``) when the storm is over, with the same two info blocks (``zh-CN``, ``en-US``) as
every other message (docs/contract/cap.md, "Storm summaries").
"""

from __future__ import annotations

import numpy as np

from models.hazards import hazard as hazard_spec
from twin.alerting import cap
from twin.alerting.regions import geocodes, outline
from twin.alerting.storm import StormSummary
from twin.district.grid import GridSpec

EXPIRES_S = 6 * 3600
"""As every alert's: ``expires`` is the message time plus this. [s]"""
INSTRUCTION = {"zh-CN": "告警风暴：逐条告警暂缓下发现场单位，请在指挥大屏上按地点查看并处置最严重的告警。",
               "en-US": "Alert storm: single alerts are held back from the field units; work through the worst "
                        "places on the operations dashboard."}


def summary_identifier(summary: StormSummary, n_messages: int) -> str:
    """``{id}`` for the first message, ``{id}.update{n}`` / ``{id}.cancel{n}`` after ``n`` messages."""
    if summary.kind == "raised" or n_messages == 0:
        return summary.identifier
    kind = "cancel" if summary.kind == "cleared" else "update"
    return f"{summary.identifier}.{kind}{n_messages}"


def summary_message(summary: StormSummary, grid: GridSpec, cells: np.ndarray, sender: str, status: str, t: float,
                    previous: dict | None = None, n_messages: int = 0) -> dict:
    """The CAP message (JSON form) of a storm summary at ``t`` [unix s]; ``cells``: the union of its members'
    cells (the area); ``previous``: its last message (referenced by an Update or Cancel)."""
    msg_type = {"raised": "Alert", "cleared": "Cancel"}.get(summary.kind, "Update")
    level = max(int(summary.level), 1)
    spec = hazard_spec(summary.hazard)
    params = cap.name_values([("hazard", summary.hazard), ("warningLevel", cap.LEVEL_COLOUR[level]),
                              ("alertStorm", "true"), ("heldAlerts", str(summary.count)),
                              *(("member", m) for m in summary.member_ids)])
    rings = outline(grid, cells) if np.size(cells) else []
    area = {"areaDesc": "; ".join(w.get("place_name") or w.get("place") or w["identifier"] for w in summary.worst)
            or summary.hazard,
            "polygon": [cap.polygon_text(r) for r in rings],
            "geocode": cap.name_values(("BeidouGridCode", c) for c in geocodes(grid, cells)) if np.size(cells) else []}
    cancel = summary.kind == "cleared"
    texts = {"zh-CN": (summary.headline_zh, summary.description_zh, "解除："),
             "en-US": (summary.headline_en, summary.description_en, "Cleared: ")}
    infos = []
    for language in cap.LANGUAGES:
        headline, description, cleared = texts[language]
        info = {"language": language, "category": spec.category,
                "event": "告警风暴汇总" if language == "zh-CN" else "Alert storm summary",
                "responseType": "AllClear" if cancel else "Assess",
                "urgency": "Past" if cancel else "Immediate", "severity": cap.LEVEL_SEVERITY[level],
                "certainty": spec.certainty, "onset": cap.cap_time(summary.started_at),
                "expires": cap.cap_time(t + EXPIRES_S),
                "headline": (cleared if cancel else "") + headline, "description": description,
                "parameter": params, "area": [{k: v for k, v in area.items() if v}]}
        if not cancel:
            info["instruction"] = INSTRUCTION[language]
        infos.append(info)
    message = {"identifier": summary_identifier(summary, n_messages), "sender": sender, "sent": cap.cap_time(t),
               "status": status, "msgType": msg_type, "scope": "Public", "info": infos}
    if msg_type != "Alert" and previous is not None:
        message["references"] = cap.reference(previous)
    return message


__all__ = ["summary_identifier", "summary_message"]
