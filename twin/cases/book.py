"""The case book: every case of one district in memory, every event written to the alert store first.

`CaseBook.open` and `CaseBook.apply` check an event against the case (`twin.cases.model.next_case`), append it to the
store's ``case_events`` under its key ``{case}#{n}``, then take the new state and call the listeners (the live desk
publishes from them). Ids and keys are deterministic (no wall clock, no random), so a replay after
`CaseBook.restore_state` writes nothing twice, and `CaseBook.load` rebuilds from the store the very cases the live
book holds (audit == state). Thread-safe: the API and the live desk share one book.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import threading
from collections.abc import Callable

import numpy as np

from twin.alerting.cap import SHANGHAI_TZ
from twin.cases.limits import TimeLimits, overdue_steps
from twin.cases.model import STATUSES, Case, CaseError, CaseEvent, CasePlace, fold, next_case
from twin.district.geo import to_projected

log = logging.getLogger(__name__)

Listener = Callable[[Case, CaseEvent], None]


def case_day(t: float) -> str:
    """The case's day: the Asia/Shanghai calendar date of twin time ``t`` [unix s], as ``YYYYMMDD``."""
    return dt.datetime.fromtimestamp(float(t), SHANGHAI_TZ).strftime("%Y%m%d")


def distance_m(lon0: float, lat0: float, lon1, lat1) -> np.ndarray:
    """Distance [m] from one point to others (CGCS2000 lon/lat [deg]), in the twin's projected CRS."""
    x, y = to_projected(np.r_[lon0, np.atleast_1d(lon1)], np.r_[lat0, np.atleast_1d(lat1)])
    return np.hypot(np.asarray(x[1:]) - x[0], np.asarray(y[1:]) - y[0])


def _time(t: object) -> float:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise CaseError("bad_request", f"t must be a finite time [unix s], got {t!r}")
    return float(t)


def _plain(data: dict) -> dict:
    """``data`` as the store gives it back (JSON values: tuples become lists), so audit == state."""
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CaseError("bad_request", f"data must be plain JSON values: {exc}") from None


class CaseBook:
    """The cases of one district (see the module docstring).

    ``store``: a `twin.alerting.store.Store` (None keeps the book in memory only, for tests and what-ifs);
    ``limits``: the time limits (the bundled ones when None).
    """

    def __init__(self, store, district: str, limits: TimeLimits | None = None) -> None:
        self.store, self.district = store, district
        self.limits = limits if limits is not None else TimeLimits.load()
        self.sequence = 0
        self.listeners: list[Listener] = []
        self._cases: dict[str, Case] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------ changes
    def open(self, t: float, *, category: str, priority: int, place: CasePlace, source: str, actor: str,
             reason: str = "", verify: str = "manual", alert: str | None = None,
             report: str | None = None) -> Case:
        """Open a case at ``t`` [unix s]: its ``opened`` event, then ``linked`` for ``alert`` / ``report``.
        The id is ``{district}-{YYYYMMDD}-{k:04d}`` (k = `sequence` + 1, the Shanghai date of ``t``)."""
        t = _time(t)
        with self._lock:
            case_id = f"{self.district}-{case_day(t)}-{self.sequence + 1:04d}"
            place_row = _plain(CasePlace.of(place).as_dict())
            data = {"category": category, "priority": priority, "place": place_row, "source": source,
                    "district": self.district, "verify": verify}
            events = [CaseEvent(case_id, 0, "opened", t, actor, reason, _plain(data))]
            events += [CaseEvent(case_id, len(events), "linked", t, actor, "", {k: v})
                       for k, v in (("alert", alert), ("report", report)) if v is not None]
            states, case = [], None
            for event in events:
                case = next_case(case, event)
                states.append(case)
            self._write(events)
            self.sequence += 1
            self._cases[case_id] = case
            for state, event in zip(states, events, strict=True):
                self._tell(state, event)
            return case

    def apply(self, case_id: str, kind: str, t: float, actor: str, reason: str = "", **data) -> Case:
        """Append one event to a case (CaseError ``unknown_case`` if there is none, or why it is not allowed)."""
        with self._lock:
            case = self._cases.get(case_id)
            if case is None:
                raise CaseError("unknown_case", f"no case {case_id!r} in district {self.district}")
            if kind == "opened":
                raise CaseError("bad_request", "open a case with CaseBook.open, not apply('opened')")
            event = CaseEvent(case_id, len(case.events), kind, _time(t), actor, reason, _plain(data))
            case = next_case(case, event)
            self._write([event])
            self._cases[case_id] = case
            self._tell(case, event)
            return case

    def _write(self, events: list[CaseEvent]) -> None:
        if self.store is not None:
            self.store.append_case_events([e.to_row() for e in events])

    def _tell(self, case: Case, event: CaseEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(case, event)
            except Exception:  # a listener's failure must not undo a stored event or stop the others
                log.exception("case listener %r failed on %s", listener, event.key)

    # ------------------------------------------------------------ reads
    def get(self, case_id: str) -> Case | None:
        """One case by id."""
        with self._lock:
            return self._cases.get(case_id)

    def cases(self, status: str | None = None, open_only: bool = False) -> list[Case]:
        """Cases (in ``status``; only open ones with ``open_only``), oldest first."""
        if status is not None and status not in STATUSES:
            raise CaseError("bad_request", f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")
        with self._lock:
            found = [c for c in self._cases.values()
                     if (status is None or c.status == status) and (c.is_open or not open_only)]
        return sorted(found, key=lambda c: (c.opened_at, c.id))

    def open_for_alert(self, alert_id: str) -> Case | None:
        """The (oldest) open case linked to an alert, or None."""
        return next((c for c in self.cases(open_only=True) if alert_id in c.alerts), None)

    def near(self, lon: float, lat: float, category: str, radius_m: float, since_t: float) -> Case | None:
        """The nearest open case of ``category`` opened at or after ``since_t`` [unix s] whose place centre is within
        ``radius_m`` [m] of (``lon``, ``lat``) [deg, CGCS2000]; None if there is none (report de-duplication)."""
        found = [c for c in self.cases(open_only=True) if c.category == category and c.opened_at >= since_t]
        if not found:
            return None
        d = distance_m(lon, lat, [c.place.lon for c in found], [c.place.lat for c in found])
        k = int(np.argmin(d))
        return found[k] if d[k] <= radius_m else None

    def overdue(self, t: float) -> list[tuple[Case, str, float]]:
        """(case, step, deadline [unix s]) of every running step past its deadline at ``t`` and not yet escalated in
        the case's current round, by deadline (the live desk escalates each once: an ``escalated`` event)."""
        out = [(c, step, deadline) for c in self.cases(open_only=True)
               for step, deadline in overdue_steps(c, self.limits, t) if step not in c.escalated]
        return sorted(out, key=lambda x: (x[2], x[0].id))

    # ------------------------------------------------------------ snapshots and audit
    def save_state(self) -> dict:
        """Plain values: the sequence and every case's events (rows of `CaseEvent.to_row`)."""
        with self._lock:
            return {"sequence": self.sequence,
                    "cases": [[e.to_row() for e in c.events] for c in self.cases()]}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (replacing the cases; the store is not written)."""
        cases = [fold(CaseEvent.from_row(r) for r in rows) for rows in state["cases"]]
        with self._lock:
            self.sequence = int(state["sequence"])
            self._cases = {c.id: c for c in cases}

    @classmethod
    def load(cls, store, district: str, limits: TimeLimits | None = None) -> CaseBook:
        """The book of ``district`` rebuilt from the store's case events (audit == state); CaseError names a stored
        event that does not fold."""
        book = cls(store, district, limits)
        numbered = re.compile(rf"^{re.escape(district)}-\d{{8}}-(\d+)$")
        by_case: dict[str, list[CaseEvent]] = {}
        for row in store.case_events():
            if numbered.match(row["case_id"]):
                by_case.setdefault(row["case_id"], []).append(CaseEvent.from_row(row))
        for case_id, events in by_case.items():
            try:
                book._cases[case_id] = fold(sorted(events, key=lambda e: e.n))
            except CaseError as exc:
                raise CaseError(exc.code, f"stored events of case {case_id} do not fold: {exc.detail}") from None
            book.sequence = max(book.sequence, int(numbered.match(case_id).group(1)))
        return book
