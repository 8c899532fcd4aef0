"""Time limits (处置时限) of a case's steps, per category and priority, in twin time [s] (``limits.yaml``).

A step runs from the time its start status was first reached in the current round until its end status (or a later
one) was first reached:

==========  ==================================  ==========================================
step        starts at                           ends at
==========  ==================================  ==========================================
dispatch    opened / reopened (``new``)         dispatched
accept      dispatched                          accepted (or en_route, on_scene ... later)
on_scene    dispatched                          on_scene (or later)
dispose     on_scene                            disposed (or later)
verify      disposed                            verified (or later)
close       verified                            closed
==========  ==================================  ==========================================

A step's deadline is its start plus `TimeLimits.limit_s`; a running step past its deadline is *overdue*
(`overdue_steps`). docs/contract/cases.md, "Time limits and escalation".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from twin.cases.model import PRIORITIES, STATUSES, STEPS, Case
from twin.cases.yamlfile import mapping, problem, read_yaml

__all__ = ["DEFAULT_LIMITS", "STEPS", "STEP_STATUSES", "TimeLimits", "overdue_steps", "step_spans"]

DEFAULT_LIMITS = "limits.yaml"
"""The bundled limits (package data of ``twin.cases``)."""
STEP_STATUSES = {"dispatch": ("new", "dispatched"), "accept": ("dispatched", "accepted"),
                 "on_scene": ("dispatched", "on_scene"), "dispose": ("on_scene", "disposed"),
                 "verify": ("disposed", "verified"), "close": ("verified", "closed")}
"""Step -> (the status that starts it, the status that ends it)."""
PROGRESS = STATUSES[: STATUSES.index("closed") + 1]
"""The statuses in the order a case goes through them (new .. closed)."""
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?\s*$")
UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def step_spans(case: Case) -> dict[str, tuple[float, float | None]]:
    """Step -> (start, end or None while running) [unix s] for the steps started in the current round."""
    out = {}
    for step, (first, last) in STEP_STATUSES.items():
        if first not in case.reached:
            continue
        ends = [case.reached[s] for s in PROGRESS[PROGRESS.index(last):] if s in case.reached]
        out[step] = (case.reached[first], min(ends) if ends else None)
    return out


def _seconds(value: object, where: str, key: str) -> float:
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return math.inf
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and DURATION_RE.match(value):
        number, unit = DURATION_RE.match(value).groups()
        seconds = float(number) * UNIT_S[unit]
    else:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise problem(where, key, f'must be seconds > 0 (120, "5 min", "2 h") or null for none, got {value!r}')
    return seconds


def _priority_key(value: object, where: str, key: str) -> int:
    if isinstance(value, bool) or value not in PRIORITIES:
        raise problem(where, key, f"priority must be 1, 2 or 3, got {value!r}")
    return int(value)


def _steps(value: object, where: str, key: str, complete: bool) -> dict[str, float]:
    steps = mapping(value, where, key, STEPS)
    missing = [s for s in STEPS if s not in steps]
    if complete and missing:
        raise problem(where, f"{key}.{missing[0]}", "missing: every priority lists every step")
    return {str(s): _seconds(v, where, f"{key}.{s}") for s, v in steps.items()}


@dataclass(frozen=True)
class TimeLimits:
    """Limits [s] per priority and step, with per-category overrides (see the module docstring)."""

    priorities: dict[int, dict[str, float]]
    categories: dict[str, dict[int, dict[str, float]]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> TimeLimits:
        """The limits of a YAML file (the bundled ``limits.yaml`` when None); ValueError names the file and key."""
        data, where = read_yaml(path, DEFAULT_LIMITS)
        top = mapping(data, where, "", ("priorities", "categories"))
        if "priorities" not in top:
            raise problem(where, "priorities", "missing: limits for priorities 1, 2 and 3")
        given = mapping(top["priorities"], where, "priorities")
        priorities = {_priority_key(p, where, f"priorities.{p}"): _steps(v, where, f"priorities.{p}", True)
                      for p, v in given.items()}
        absent = [p for p in PRIORITIES if p not in priorities]
        if absent:
            raise problem(where, f"priorities.{absent[0]}", "missing: limits for priorities 1, 2 and 3")
        categories = {}
        for cat, per in mapping(top.get("categories") or {}, where, "categories").items():
            items = mapping(per, where, f"categories.{cat}").items()
            categories[str(cat)] = {_priority_key(p, where, f"categories.{cat}.{p}"):
                                    _steps(v, where, f"categories.{cat}.{p}", False) for p, v in items}
        return cls(priorities, categories)

    def limit_s(self, category: str, priority: int, step: str) -> float:
        """How long ``step`` may take [s] for a case of ``category`` and ``priority`` (inf: no limit)."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
        if priority not in self.priorities:
            raise ValueError(f"unknown priority {priority!r}; priorities: 1, 2, 3")
        override = self.categories.get(category, {}).get(priority, {})
        return override.get(step, self.priorities[priority][step])

    def deadlines(self, case: Case) -> dict[str, float]:
        """Step -> deadline [unix s] for the steps started in the case's current round that have a limit."""
        out = {}
        for step, (start, _end) in step_spans(case).items():
            limit = self.limit_s(case.category, case.priority, step)
            if math.isfinite(limit):
                out[step] = start + limit
        return out


def overdue_steps(case: Case, limits: TimeLimits, t: float) -> list[tuple[str, float]]:
    """(step, deadline) of an open case's running steps past their deadline at ``t`` [unix s] (escalated or not),
    in step order."""
    if not case.is_open:
        return []
    spans, deadlines = step_spans(case), limits.deadlines(case)
    return [(s, deadlines[s]) for s in STEPS if s in deadlines and spans[s][1] is None and t > deadlines[s]]
