"""Tests of twin/cases (issue 17): the case state machine, the book and its store, limits, rules, services,
dispatch suggestions, citizen reports and the risk ledger. Shared makers below."""

from __future__ import annotations

from twin.cases.model import CaseEvent, CasePlace

T0 = 1_735_689_600.0
"""2025-01-01 00:00 UTC = 08:00 in Shanghai: a case opened then is of day 20250101."""
BUND = CasePlace("flood:point:water-03", "外滩隧道北口", "Bund Tunnel north portal", 121.4905, 31.2397, 50.0)
"""A case place on the Bund."""
PATHS = {
    "new": (),
    "dispatched": ("dispatched",),
    "accepted": ("dispatched", "accepted"),
    "en_route": ("dispatched", "accepted", "en_route"),
    "on_scene": ("dispatched", "accepted", "en_route", "on_scene"),
    "disposed": ("dispatched", "accepted", "en_route", "on_scene", "disposed"),
    "verified": ("dispatched", "accepted", "en_route", "on_scene", "disposed", "verified"),
    "closed": ("dispatched", "accepted", "en_route", "on_scene", "disposed", "verified", "closed"),
    "cancelled": ("cancelled",),
}
"""The kinds that take a new case to each status."""


def opened(case="bund-20250101-0001", t=T0, category="waterlogging", priority=1, source="alert",
           place=BUND) -> CaseEvent:
    """The opened event of a case."""
    return CaseEvent(case, 0, "opened", t, "rules", "flood alert", {
        "category": category, "priority": priority, "place": place.as_dict(), "source": source,
        "district": "bund", "verify": "sensors"})


def data_for(kind: str) -> dict:
    """Valid data for an event kind."""
    return {"dispatched": {"unit": "fire-01"}, "linked": {"alert": "A1"}, "attached": {"url": "https://x.cn/p.jpg"},
            "escalated": {"step": "dispatch", "deadline": T0 + 120}, "prioritised": {"priority": 2}}.get(kind, {})


def events_to(status: str, case="bund-20250101-0001", t0=T0, dt=60.0) -> list[CaseEvent]:
    """Valid events that take a case from opened at ``t0`` to ``status``, one every ``dt`` seconds."""
    out = [opened(case, t0)]
    for k, kind in enumerate(PATHS[status], start=1):
        out.append(CaseEvent(case, k, kind, t0 + k * dt, "op", "why", data_for(kind)))
    return out
