"""The risk ledger (风险清零台账): per district and day, cases opened, closed, cancelled, still open and overdue, the
median time of each step, and every open risk point until it is closed.

Everything is computed from the cases' events as of twin time ``t`` [unix s]: the state of a case at the end of a
day is the fold of its events up to then, so yesterday's row does not change when a case is closed today. A day is
an Asia/Shanghai calendar date; the rows run from the first day a case was opened to the day of ``t``.

Per day: ``opened`` cases opened that day; ``closed`` / ``cancelled`` cases closed / cancelled that day (and still
so at its end); ``open`` cases open at its end (at ``t`` for today); ``overdue`` of those, the ones with a step past
its deadline then; ``median_s`` per step (`LEDGER_STEPS`) the median duration [s] of the steps that ended that day
(None without any). ``totals`` are the same counts at ``t``; ``open_points`` lists every open case at ``t``.
docs/contract/cases.md, "The risk ledger".
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import statistics
from collections.abc import Iterable

from twin.alerting.cap import SHANGHAI_TZ
from twin.cases.limits import TimeLimits, overdue_steps, step_spans
from twin.cases.model import Case, next_case

LEDGER_STEPS = ("dispatch", "on_scene", "dispose", "verify", "close")
"""The steps whose median durations the ledger shows."""
COUNTS = ("opened", "closed", "cancelled", "open", "overdue")
CSV_HEADER = ("district", "day", *COUNTS, *(f"median_{s}_s" for s in LEDGER_STEPS))


def _date(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, SHANGHAI_TZ).date()


def _start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=SHANGHAI_TZ).timestamp()


def states_at(case: Case, ends: list[float]) -> list[Case | None]:
    """The case as it was before each of ``ends`` (ascending, [unix s]): the fold of its events up to the first one
    at or after that time; None before it was opened."""
    out, state, k = [], None, 0
    for end in ends:
        while k < len(case.events) and case.events[k].t < end:
            state = next_case(state, case.events[k])
            k += 1
        out.append(state)
    return out


def _in(t: float | None, lo: float, hi: float) -> bool:
    return t is not None and lo <= t < hi


def _day_row(day: dt.date, lo: float, hi: float, states: list[Case], limits: TimeLimits) -> dict:
    """One day's row from the states of the cases at its end ``hi`` (exclusive) [unix s]."""
    at = math.nextafter(hi, -math.inf)
    opened = [s for s in states if _in(s.opened_at, lo, hi)]
    still = [s for s in states if s.is_open]
    durations: dict[str, list[float]] = {step: [] for step in LEDGER_STEPS}
    for s in states:
        for step, (start, end) in step_spans(s).items():
            if step in durations and _in(end, lo, hi):
                durations[step].append(end - start)
    return {"day": day.isoformat(), "opened": len(opened),
            "closed": sum(s.status == "closed" and _in(s.reached.get("closed"), lo, hi) for s in states),
            "cancelled": sum(s.status == "cancelled" and _in(s.reached.get("cancelled"), lo, hi) for s in states),
            "open": len(still), "overdue": sum(bool(overdue_steps(s, limits, at)) for s in still),
            "median_s": {step: float(statistics.median(v)) if v else None for step, v in durations.items()}}


def _point(case: Case, limits: TimeLimits, t: float) -> dict:
    return {"id": case.id, "category": case.category, "place_key": case.place.key, "name_zh": case.place.name_zh,
            "name_en": case.place.name_en, "lon": case.place.lon, "lat": case.place.lat, "status": case.status,
            "priority": case.priority, "assignee": case.assignee, "opened_at": case.opened_at,
            "overdue": [step for step, _ in overdue_steps(case, limits, t)]}


def ledger(cases: Iterable[Case], t: float, district: str, limits: TimeLimits | None = None) -> dict:
    """The ledger of ``district``'s cases as of ``t`` [unix s] (see the module docstring): district, t, days (one
    row per day, oldest first), totals and open_points (oldest first); ``limits`` the bundled ones when None."""
    limits = limits if limits is not None else TimeLimits.load()
    mine = sorted((c for c in cases if c.district == district), key=lambda c: (c.opened_at, c.id))
    first = min([_date(t), *(_date(c.opened_at) for c in mine if c.opened_at <= t)])
    days = [first + dt.timedelta(days=k) for k in range((_date(t) - first).days + 1)]
    bounds = [(_start(d), min(_start(d + dt.timedelta(days=1)), math.nextafter(t, math.inf))) for d in days]
    per_case = [states_at(c, [hi for _, hi in bounds]) for c in mine]
    rows = []
    for k, (day, (lo, hi)) in enumerate(zip(days, bounds, strict=True)):
        states = [s[k] for s in per_case if s[k] is not None]
        rows.append(_day_row(day, lo, hi, states, limits))
    now = [s[-1] for s in per_case if s[-1] is not None]
    still = [s for s in now if s.is_open]
    totals = {"opened": len(now), "closed": sum(s.status == "closed" for s in now),
              "cancelled": sum(s.status == "cancelled" for s in now), "open": len(still),
              "overdue": sum(bool(overdue_steps(s, limits, t)) for s in still)}
    return {"district": district, "t": t, "days": rows, "totals": totals,
            "open_points": [_point(s, limits, t) for s in still]}


def ledger_csv(cases: Iterable[Case], t: float, district: str, limits: TimeLimits | None = None) -> str:
    """The ledger as CSV text (UTF-8 when written): the header `CSV_HEADER`, then one row per district and day;
    medians in seconds with one decimal, empty without data."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in ledger(cases, t, district, limits)["days"]:
        medians = ["" if row["median_s"][s] is None else f"{row['median_s'][s]:.1f}" for s in LEDGER_STEPS]
        writer.writerow([district, row["day"], *(row[c] for c in COUNTS), *medians])
    return out.getvalue()
