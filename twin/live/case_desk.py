"""The live twin's case desk (issue 17): alerts and citizen reports become cases, cases are dispatched to field
units, the units' answers and Beidou positions move them on, the sensors verify them, overdue steps escalate.

`CaseDesk` is owned by `twin.live.core.TwinCore` and runs under its lock, on the ingest thread, in the order of the
raw log (data, ticks and ``$twin/case`` control records), so a replay rebuilds the same cases. It holds a
`twin.cases.book.CaseBook` over the core's store: every case event is stored under its key ``{case}#{n}`` before
anything is published, and every message it causes goes to the store's outbox under a key made from that event's
key, so a replay after a restart writes nothing twice.

Every tick, after the alert events (`tick`):

1. an alert raised or updated that a case rule matches (`twin.cases.rules.CaseRules`) opens a case linked to it (one
   open case per alert; an open case at the same place and of the same category takes the alert instead, and is
   reopened if it was disposed or verified: the hazard is back); a level that makes the rule's priority more urgent
   is a ``prioritised`` event. A rule with ``dispatch: auto`` dispatches the first suggestion
   (`twin.cases.dispatch.suggest`: the nearest free unit of the category's duty, by road travel time over the
   twin's road network when it has one, else straight line). With no free unit the case stays new, is tried again
   every `CaseConfig.retry_s`, and escalates by its time limit;
2. the assignee's Beidou position inside the case area (the place's disc, and the linked alerts' areas, grown by
   `CaseConfig.scene_buffer_m`) puts the case on scene (actor ``beidou``);
3. a disposed case verified by ``sensors`` whose linked alerts have all been cancelled for `CaseConfig.verify_s` is
   verified (actor ``sensors``) and, with `CaseConfig.auto_close`, closed (actor ``twin``); manual ones wait;
4. every running step past its deadline (`twin.cases.limits`) escalates once per round: an ``escalated`` event and
   a message to ``city/supervisor/escalations``.

Between ticks, with the batches (`on_tasks`, `on_reports`): the units' task answers (refused with ``unknown_case``,
``not_assigned`` or ``bad_transition``; an on-scene claim the unit's Beidou position does not confirm is kept as a
``noted`` event and answered on ``city/units/{unit}/tasks/errors``), and the citizen reports (refused with
``unknown_source``, ``unknown_category`` or ``outside_grid``; joined to a near open case of their category, or to
the case of a live alert of their service's hazard nearby, else a new case linked to that alert, dispatched
automatically). Operators' actions come as ``$twin/case`` control records (`command`). docs/guides/cases.md.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import shapely

from ingest.decoders.report import report_records
from ingest.decoders.units import TASK_STATUSES
from ingest.rejection import Refusal
from twin.alerting.cap import LEVEL_COLOUR_ZH, info_block
from twin.alerting.delivery import Router
from twin.alerting.lifecycle import Alert, AlertBook, AlertEvent
from twin.alerting.store import Store
from twin.cases.book import CaseBook
from twin.cases.dispatch import Suggestion, UnitView, road_travel, suggest
from twin.cases.ledger import ledger, ledger_csv
from twin.cases.limits import TimeLimits, step_spans
from twin.cases.model import Case, CaseError, CaseEvent, CasePlace
from twin.cases.reports import DEDUPE_RADIUS_M, DEDUPE_WINDOW_S, CitizenReport, from_record
from twin.cases.rules import CaseRules
from twin.cases.services import Catalogue
from twin.district import geo
from twin.live import case_messages as msg
from twin.live.state import Rejected, ReportRow, TaskAnswer, TwinState

log = logging.getLogger(__name__)

ACTIONS = ("open", "dispatch", "transition", "note", "attach", "prioritise", "report", "task_answer")
"""The operators' and the HTTP API's case actions (``$twin/case`` control records)."""
OPERATOR_KINDS = ("accepted", "en_route", "on_scene", "disposed", "verified", "closed", "reopened", "cancelled",
                  "declined")
"""The status changes an operator may enter with the ``transition`` action."""
WORKING = ("dispatched", "accepted", "en_route", "on_scene")
"""Statuses in which the assignee works on the case: it is busy (not suggested for another case)."""
PROGRESS = ("new", "dispatched", "accepted", "en_route", "on_scene", "disposed", "verified", "closed")
MAX_TEXT = 200


@dataclass(frozen=True)
class CaseConfig:
    """Settings of the case loop (`twin.live.core.CoreConfig.cases`; ``twin run --case-rules --case-limits
    --services --no-cases``).

    ``rules``, ``limits``, ``services``: YAML files (`twin.cases.rules`, `twin.cases.limits`, `twin.cases.services`),
    None for the bundled ones. ``verify_s``: how long the linked alerts must stay cancelled before the sensors verify
    a disposed case [s, twin time]; ``auto_close``: close a case the sensors verified; ``scene_buffer_m``: the case
    area is grown by this much for the on-scene check [m]; ``retry_s``: how often an automatic dispatch that found
    no free unit is tried again [s, twin time]; ``position_max_age_s``: a unit's Beidou position older than this is
    ignored (the unit is not suggested nor confirmed on scene by it) [s, twin time]; ``enabled``: False runs the
    twin without cases (task answers and reports are then refused).
    """

    enabled: bool = True
    rules: str | None = None
    limits: str | None = None
    services: str | None = None
    verify_s: float = 300.0
    auto_close: bool = True
    scene_buffer_m: float = 50.0
    retry_s: float = 30.0
    position_max_age_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("verify_s", "scene_buffer_m", "position_max_age_s"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"CaseConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.retry_s > 0.0:
            raise ValueError(f"CaseConfig.retry_s must be > 0 seconds, got {self.retry_s}")


class ReportRefused(Exception):  # noqa: N818 -- a refusal, not an error of ours
    """A citizen report the desk refuses: ``reason`` unknown_source, unknown_category, bad_report or outside_grid
    (the place is outside the district's grid)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


REPORT_REASONS = {"bad_report": "bad_schema"}
"""A desk refusal's reason -> its dead-letter reason (the others are the same word)."""


def _refused_report(reason: str, detail: str) -> CaseError:
    """The `CaseError` of a report refused through a case action, carrying the dead-letter ``reason`` (the service
    counts and dead-letters it as the MQTT path does)."""
    return CaseError("bad_request", detail, reason=reason)


def _text(body: dict, key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise CaseError("bad_request", f"{key} must be text, got {type(value).__name__}")
    return value.strip()


def _note_category(note: str) -> str | None:
    """The ``category`` of a report record's note, None if the note is not a JSON object with one."""
    try:
        doc = json.loads(note)
    except ValueError:
        return None
    category = doc.get("category") if isinstance(doc, dict) else None
    return category if isinstance(category, str) else None


def _previous_assignee(case: Case, n: int) -> str:
    """The unit assigned before event ``n`` of the case ("" none)."""
    for event in reversed(case.events[:n]):
        if event.kind in ("declined", "reopened"):
            return ""
        if event.kind == "dispatched":
            return str(event.data.get("unit", ""))
    return ""


def _declined_now(case: Case) -> set[str]:
    """Units that declined the case in its current round (since it was opened or reopened)."""
    out: set[str] = set()
    for event in reversed(case.events):
        if event.kind == "reopened":
            break
        if event.kind == "declined":
            out.add(str(event.data.get("unit") or event.actor))
    return out


class CaseDesk:
    """The case loop of one live twin (see the module docstring)."""

    def __init__(self, config: CaseConfig, store: Store, *, district: str, prefix: str, state: TwinState,
                 router: Router, alerts: AlertBook, road_network=None) -> None:
        self.config, self.store, self.district, self.prefix = config, store, district, prefix
        self.state, self.router, self.alerts, self.road_network = state, router, alerts, road_network
        self.rules = CaseRules.load(config.rules)
        self.limits = TimeLimits.load(config.limits)
        self.catalogue = Catalogue.load(config.services)
        self.book = CaseBook(store, district, self.limits)
        """Empty (sequence 0): a snapshot restores it (`restore_state`); without one the service replays the raw log
        from its beginning, which rebuilds the same ids and keys (the store ignores keys it holds already). Loading
        it from the store (`CaseBook.load`, for tools and audit) would make a replay open every case again."""
        self.book.listeners.append(self._on_event)
        self.areas: dict[str, shapely.Geometry] = {}
        """Areas (grid CRS) of the alerts linked to open cases, kept after the alert is cancelled."""
        self.cleared: dict[str, float] = {}
        """Linked alert -> when it was seen cancelled [unix s]."""
        self.auto: dict[str, float | None] = {}
        """Open cases dispatched automatically -> the time of the last attempt that found no free unit (None)."""
        self.refused: dict[str, int] = {}
        """Task answers and reports refused, by reason."""
        self.events: list[dict] = []
        """Case events since the last tick, for `twin.live.query.TickReport.case_events`."""
        self.now = float("nan")
        """The last tick [unix s] (NaN before the first): what ``overdue`` in `view` is measured at."""
        self._travel: Callable | None = None
        self._travel_built = False

    # ------------------------------------------------------------ inputs: the batches
    def on_tasks(self, answers: list[TaskAnswer], now: float) -> list[Rejected]:
        """Apply the units' task answers of a batch; the refused ones, for the dead letters and the units' errors
        topic. ``now``: the last tick [unix s] (NaN before the first); no event is dated before it."""
        out = []
        for a in answers:
            try:
                self.answer(a.unit, a.case, a.status, _at(a.t, now), a.note)
            except CaseError as exc:
                reason = exc.code if exc.code in ("unknown_case", "not_assigned") else "bad_transition"
                self._count(reason)
                out.append(Rejected(a.unit, a.t, reason=reason, status=a.status, row=a.row, case=a.case,
                                    message=exc.detail))
        return out

    def on_reports(self, rows: list[ReportRow], now: float) -> list[Rejected]:
        """Take the citizen reports of a batch; the refused ones, for the dead letters."""
        out = []
        for r in rows:
            try:
                self.take_report(self.check_report(r), _at(r.t, now))
            except ReportRefused as exc:
                self._count(exc.reason)
                out.append(Rejected(r.source, r.t, r.lon, r.lat, reason=exc.reason, row=r.row, case=r.ref,
                                    message=exc.detail))
        return out

    # ------------------------------------------------------------ a unit's answer
    def answer(self, unit: str, case_id: str, status: str, t: float, note: str = "") -> tuple[Case, str]:
        """A unit's answer to its task: the case after it, and a warning ("" none) when it was only noted (an
        on-scene claim the unit's Beidou position does not confirm, or a step the case had reached already).
        Raises CaseError ``unknown_case``, ``not_assigned`` or ``bad_transition``."""
        case = self.book.get(case_id)
        if case is None:
            raise CaseError("unknown_case", f"{status} of {unit} for unknown case {case_id[:120]!r}")
        if case.assignee != unit:
            raise CaseError("not_assigned", f"{status} of {unit} for case {case_id}, which is assigned to "
                                            f"{case.assignee or 'no unit'}")
        t = max(t, case.updated_at)
        note = note.strip()
        if status != "declined" and case.status in PROGRESS[PROGRESS.index(status):]:
            reason = msg.already_reason(unit, status, case.reached.get(status, case.updated_at))
            return self.book.apply(case_id, "noted", t, unit, f"{reason}{'; ' + note if note else ''}"), reason
        if status == "on_scene" and case.status in ("dispatched", "accepted", "en_route"):
            away = self._away_m(case, unit, t)
            if away is None or away > self.config.scene_buffer_m:
                return self._unconfirmed(case, unit, t, away, note)
        reason = f"{unit}: {note}" if note else f"{unit}: {status}"
        return self.book.apply(case_id, status, t, unit, reason, unit=unit), ""

    def _unconfirmed(self, case: Case, unit: str, t: float, away: float | None, note: str) -> tuple[Case, str]:
        reason = msg.unconfirmed_reason(unit, away)
        case = self.book.apply(case.id, "noted", t, unit, f"{reason}{'; ' + note if note else ''}")
        error = msg.task_error(case.id, "on_scene", t, "not_confirmed", reason)
        self.store.enqueue([(f"{self.prefix}units/{unit}/tasks/errors", msg.to_json(error), False)],
                           key=f"case/{case.events[-1].key}/error")
        return case, reason

    # ------------------------------------------------------------ a citizen report
    def check_report(self, r: ReportRow) -> CitizenReport:
        """A report row checked against the catalogue (`twin.cases.reports.from_record`); raises `ReportRefused`."""
        if r.source not in self.catalogue.sources:
            raise ReportRefused("unknown_source", f"report {r.ref[:64]!r} from unknown source {r.source[:64]!r}; "
                                                  f"sources: {', '.join(self.catalogue.sources)}")
        category = _note_category(r.note)
        if category is not None and self.catalogue.get(category) is None:
            codes = ", ".join(s.code for s in self.catalogue.all())
            raise ReportRefused("unknown_category", f"report {r.ref[:64]!r} of unknown category {category[:64]!r}; "
                                                    f"categories: {codes}")
        try:
            report = from_record(r.source, r.ref, r.t, r.lon, r.lat, r.datum or None, r.note, self.catalogue)
        except CaseError as exc:
            raise ReportRefused("bad_report", f"report {r.ref[:64]!r}: {exc.detail}") from None
        row, _ = self.state.grid.cell_of_lonlat(float(report.lon), float(report.lat))
        if int(row) < 0:
            raise ReportRefused("outside_grid", f"report {r.ref[:64]!r} at {report.lon:.6f},{report.lat:.6f} is "
                                                f"outside the twin's district {self.district}")
        return report

    def take_report(self, report: CitizenReport, t: float) -> Case:
        """Join the report to a case (de-duplicated by place and category, or by a live alert nearby) or open one,
        linked to that alert and dispatched automatically; the report is stored. ``t``: the events' time."""
        case = next((c for c in self.book.cases() if report.id in c.reports), None)
        if case is not None:  # the same report again (its source sent it twice)
            log.info("report %s is already linked to case %s", report.id, case.id)
            return case
        service = self.catalogue.get(report.category)
        case = self.book.near(report.lon, report.lat, report.category, DEDUPE_RADIUS_M, report.t - DEDUPE_WINDOW_S)
        alert = self._alert_near(report.lon, report.lat, service.hazard)
        if case is None and alert is not None:
            case = self.book.open_for_alert(alert[1])
            case = case if case is not None and case.category == report.category else None
        why = f"citizen report {report.id} ({service.name_en} / {service.name_zh})"
        if case is not None:
            case = self.book.apply(case.id, "linked", t, report.source, f"{why}, same place", report=report.id)
            if alert is not None and alert[1] not in case.alerts and self.book.open_for_alert(alert[1]) is None:
                case = self._link_alert(case, alert[1], t, f"live {service.hazard} alert {alert[0]:.0f} m away")
        else:
            case = self._open_for_report(report, service, t, why, alert)
        self.store.record_report(report.to_row(case.id))
        return case

    def _open_for_report(self, report: CitizenReport, service, t: float, why: str,
                         alert: tuple[float, str] | None) -> Case:
        case = self.book.open(t, category=report.category, priority=service.priority, place=report.place(),
                              source="report", actor=report.source, reason=why, verify=service.verify,
                              report=report.id)
        if alert is not None:
            case = self._link_alert(case, alert[1], t, f"live {service.hazard} alert {alert[0]:.0f} m away")
        self.auto[case.id] = None
        return self._dispatch_auto(case, t) or case

    def _alert_near(self, lon: float, lat: float, hazard: str) -> tuple[float, str] | None:
        """(distance [m], id) of the nearest active alert of ``hazard`` whose area is within `DEDUPE_RADIUS_M`."""
        if not hazard:
            return None
        x, y = geo.to_projected(lon, lat, self.state.grid.crs)
        point = shapely.Point(float(x), float(y))
        near = []
        for ident, alert in self.alerts.active.items():
            area = self.router.areas.get(ident)
            if alert.hazard == hazard and area is not None:
                d = float(shapely.distance(area.area, point))
                if d <= DEDUPE_RADIUS_M:
                    near.append((d, ident))
        return min(near) if near else None

    # ------------------------------------------------------------ every tick
    def tick(self, t: float, events: list[AlertEvent]) -> list[dict]:
        """The tick's case work at ``t`` [unix s] after the alert events (see the module docstring); returns the
        case events since the last tick (``{case, kind, t, status, actor}``)."""
        self.now = t
        for ev in events:
            self._on_alert(ev, t)
        self._retry_dispatch(t)
        self._beidou(t)
        self._verify(t)
        self._escalate(t)
        self._forget()
        out, self.events = self.events, []
        return out

    def _on_alert(self, ev: AlertEvent, t: float) -> None:
        alert, ident = ev.alert, ev.alert.identifier
        if ev.kind == "cancelled":
            case = self.book.open_for_alert(ident)
            into = _merged_into(ev)
            if case is not None and into:
                self._merged(case, ident, into, t)
            elif case is not None:
                self.cleared.setdefault(ident, t)
            return
        if ev.kind not in ("raised", "updated") or ident not in self.router.areas:
            return
        rule = self.rules.match(alert.hazard, int(alert.level), _place_key(alert))
        case = self.book.open_for_alert(ident)
        if case is not None:
            self.areas[ident] = self.router.areas[ident].area
            self._prioritise(case, alert, rule, t)
            return
        if rule is None or self._had_case(ident):
            return  # an alert opens one case at most: a case closed or cancelled while it is active stays so
        case = self._case_taking(ev, rule.category)
        if case is None:
            case = self.book.open(t, category=rule.category, priority=rule.priority, place=self._alert_place(alert),
                                  source="alert", actor="twin", verify=rule.verify, alert=ident,
                                  reason=f"{_level_en(alert.level)} {alert.hazard} alert {ident} (rule {rule.name})")
            self.areas[ident] = self.router.areas[ident].area
        else:
            case = self._take_alert(case, alert, t)
            case = self._prioritise(case, alert, rule, t)
        if rule.dispatch == "auto":
            self.auto.setdefault(case.id, None)
            if case.status == "new":
                self._dispatch_auto(case, t)

    def _merged(self, case: Case, ident: str, into: str, t: float) -> None:
        """A linked alert merged into alert ``into``: the hazard is not cleared, it goes on as ``into``, which the
        case takes (and whose cancellation its sensor verification then waits for) when ``into`` has no case."""
        if into in case.alerts or self.book.open_for_alert(into) is not None or into not in self.alerts.active:
            return
        self._link_alert(case, into, t, f"alert {ident} merged into alert {into} / 预警已合并")

    def _had_case(self, ident: str) -> bool:
        """Whether a case (open or not) is linked to the alert."""
        return any(ident in c.alerts for c in self.book.cases())

    def _case_taking(self, ev: AlertEvent, category: str) -> Case | None:
        """An open case of ``category`` that takes a new alert: the case of an alert it absorbed, or the case at the
        same (keyed) place."""
        for absorbed in ev.absorbed:
            case = self.book.open_for_alert(absorbed.identifier)
            if case is not None and case.category == category:
                return case
        key = _place_key(ev.alert)
        if not key:
            return None
        return next((c for c in self.book.cases(open_only=True) if c.category == category and c.place.key == key),
                    None)

    def _take_alert(self, case: Case, alert: Alert, t: float) -> Case:
        """Link a new alert of the same hazard at the case's place; a disposed or verified case is reopened."""
        case = self._link_alert(case, alert.identifier, t, f"{alert.hazard} alert at the same place")
        if case.status in ("disposed", "verified"):
            case = self.book.apply(case.id, "reopened", t, "sensors",
                                   f"the hazard is back: alert {alert.identifier} / 险情复现")
        return case

    def _link_alert(self, case: Case, ident: str, t: float, why: str) -> Case:
        if ident in self.router.areas:
            self.areas[ident] = self.router.areas[ident].area
        return self.book.apply(case.id, "linked", t, "twin", why, alert=ident)

    def _prioritise(self, case: Case, alert: Alert, rule, t: float) -> Case:
        if rule is None or rule.priority >= case.priority or not case.is_open:
            return case
        return self.book.apply(case.id, "prioritised", t, "twin",
                               f"alert {alert.identifier} is {_level_en(alert.level).lower()} now / 预警升为"
                               f"{LEVEL_COLOUR_ZH.get(int(alert.level), '')}", priority=rule.priority)

    def _alert_place(self, alert: Alert) -> CasePlace:
        """The case area of an alert's case: a disc of the area's size (at least 50 m) at its centre, named by the
        alert's place (else its CAP ``areaDesc``)."""
        area = self.router.areas[alert.identifier].area
        centre = area.centroid if area.contains(area.centroid) else area.point_on_surface()
        lon, lat = geo.to_lonlat(centre.x, centre.y, self.state.grid.crs)
        place, desc = alert.place, _area_desc(alert)
        zh = (place.name_zh if place is not None and place.name_zh else desc)[:MAX_TEXT]
        en = (place.name_en if place is not None and place.name_en else desc)[:MAX_TEXT]
        radius = max(50.0, float(round(math.sqrt(area.area / math.pi))))
        return CasePlace(_place_key(alert) or f"alert:{alert.identifier}", zh, en, round(float(lon), 7),
                         round(float(lat), 7), radius)

    # ------------------------------------------------------------ dispatch
    def suggestions(self, case: Case, limit: int = 3, t: float | None = None) -> list[Suggestion]:
        """The nearest free units of the case's duty (units that declined it in this round left out, and units
        without a Beidou fix in the last `CaseConfig.position_max_age_s` before ``t``, the last tick by default)."""
        busy = {c.assignee for c in self.book.cases(open_only=True) if c.assignee and c.status in WORKING}
        busy |= _declined_now(case)
        now = self.now if t is None else t
        units = [UnitView(e.id, e.unit_type, e.lon, e.lat, e.id in busy) for e in self.state.entities.located_units()
                 if self._fresh(e, now)]
        service = self.catalogue.get(case.category)
        duty = service.duty if service is not None else ("police",)
        return suggest(case.place, duty, units, self._road(), limit)

    def _road(self) -> Callable | None:
        """Road travel time over the twin's road network, built at first use (None without a network)."""
        if not self._travel_built:
            self._travel_built = True
            if self.road_network is not None:
                try:
                    self._travel = road_travel(self.road_network)
                except Exception:  # a network that gives no graph: straight-line ETAs, said once
                    log.exception("no road travel times for dispatch: straight-line ETAs")
        return self._travel

    def _dispatch_auto(self, case: Case, t: float) -> Case | None:
        """Dispatch the first suggestion (actor ``twin``); None (and tried again later) with no free unit."""
        found = self.suggestions(case, limit=1, t=t)
        if not found:
            self.auto[case.id] = t
            return None
        self.auto[case.id] = None
        return self.dispatch(case, found[0], t, "twin")

    def dispatch(self, case: Case, s: Suggestion, t: float, actor: str, why: str = "") -> Case:
        """Dispatch a suggested unit."""
        eta = f"ETA {s.eta_s / 60:.1f} min by {s.by}, {s.distance_m:.0f} m / 预计 {s.eta_s / 60:.1f} 分钟到达"
        reason = f"{why}; {eta}" if why else f"nearest free {s.unit_type} unit, {eta}"
        return self.book.apply(case.id, "dispatched", t, actor, reason, unit=s.unit)

    def _retry_dispatch(self, t: float) -> None:
        for case_id, last in sorted(self.auto.items()):
            case = self.book.get(case_id)
            if case is None or case.status != "new" or (last is not None and t - last < self.config.retry_s):
                continue
            self._dispatch_auto(case, t)

    # ------------------------------------------------------------ on scene, verification, escalation
    def _fresh(self, e, t: float) -> bool:
        """Whether the unit's last Beidou position is at most `CaseConfig.position_max_age_s` old at ``t`` (NaN: no
        time to measure against, any position counts)."""
        return math.isnan(t) or (math.isfinite(e.t) and t - e.t <= self.config.position_max_age_s)

    def _away_m(self, case: Case, unit: str, t: float) -> float | None:
        """How far the unit's Beidou position is outside the case area [m] (0 inside) at ``t``, None if not located
        or the position is older than `CaseConfig.position_max_age_s`."""
        e = self.state.entities.entities.get(unit)
        if e is None or not e.located or not self._fresh(e, t):
            return None
        x, y = geo.to_projected(case.place.lon, case.place.lat, self.state.grid.crs)
        away = math.hypot(e.x - float(x), e.y - float(y)) - case.place.radius_m
        point = shapely.Point(e.x, e.y)
        for ident in case.alerts:
            if ident in self.areas:
                away = min(away, float(shapely.distance(self.areas[ident], point)))
        return max(0.0, away)

    def _beidou(self, t: float) -> None:
        for case in self.book.cases(open_only=True):
            if case.status not in ("dispatched", "accepted", "en_route") or not case.assignee:
                continue
            away = self._away_m(case, case.assignee, t)
            if away is not None and away <= self.config.scene_buffer_m:
                self.book.apply(case.id, "on_scene", max(t, case.updated_at), "beidou",
                                f"{case.assignee} inside the case area by its Beidou position / 北斗定位已到场")

    def _verify(self, t: float) -> None:
        for case in self.book.cases(status="disposed"):
            if case.verify != "sensors" or not case.alerts:
                continue  # manual verification, or no sensor evidence: an operator verifies
            if any(a in self.alerts.active for a in case.alerts):
                continue
            # an alert merged into another linked one has no clear time of its own: the other's counts
            known = [self.cleared[a] for a in case.alerts if a in self.cleared]
            clear_since = max(known) if known else max(self.cleared.setdefault(a, t) for a in case.alerts)
            if t - clear_since < self.config.verify_s:
                continue
            self.book.apply(case.id, "verified", t, "sensors",
                            f"the sensors show the hazard cleared: alerts {', '.join(case.alerts[:5])} cancelled "
                            f"for {t - clear_since:.0f} s / 传感器显示险情已解除")
            if self.config.auto_close:
                self.book.apply(case.id, "closed", t, "twin", "verified by the sensors / 传感器核查通过，自动结案")

    def _escalate(self, t: float) -> None:
        for case, step, deadline in self.book.overdue(t):
            self.book.apply(case.id, "escalated", t, "twin",
                            f"{step} overdue since {msg.clock(deadline)} / {msg.STEP_ZH[step]}超时", step=step,
                            deadline=deadline)

    def _forget(self) -> None:
        """Drop what no open case needs any more."""
        open_cases = self.book.cases(open_only=True)
        linked = {a for c in open_cases for a in c.alerts}
        self.areas = {k: v for k, v in self.areas.items() if k in linked}
        self.cleared = {k: v for k, v in self.cleared.items() if k in linked}
        still = {c.id for c in open_cases}
        self.auto = {k: v for k, v in self.auto.items() if k in still}

    # ------------------------------------------------------------ publishing (a CaseBook listener)
    def _on_event(self, case: Case, event: CaseEvent) -> None:
        """Queue what an event causes, keyed by the event: the retained case state, tasks, escalations."""
        items = [(f"{self.prefix}cases/{case.id}", msg.to_json(case.as_dict()), True)]
        items += self._task_messages(case, event)
        if event.kind == "escalated":
            payload = msg.escalation_payload(case, event.data["step"], float(event.data["deadline"]), event.t,
                                             self._names(case))
            items.append((f"{self.prefix}supervisor/escalations", msg.to_json(payload), False))
        self.store.enqueue(items, key=f"case/{event.key}")
        self.events.append({"case": case.id, "kind": event.kind, "t": event.t, "status": case.status,
                            "actor": event.actor})

    def _task_messages(self, case: Case, event: CaseEvent) -> list[tuple[str, bytes, bool]]:
        out = []
        if event.kind == "dispatched":
            before = _previous_assignee(case, event.n)
            if before and before != case.assignee:
                out.append(self._task(case, before, "cancelled", event.t))
            out.append(self._task(case, case.assignee, "dispatched", event.t))
        elif event.kind == "cancelled" and case.assignee and "disposed" not in case.reached:
            out.append(self._task(case, case.assignee, "cancelled", event.t))
        return out

    def _task(self, case: Case, unit: str, status: str, t: float) -> tuple[str, bytes, bool]:
        payload = msg.task_payload(case, status, self._names(case), self._level(case), self.running_deadlines(case), t)
        return f"{self.prefix}units/{unit}/tasks", msg.to_json(payload), False

    def _names(self, case: Case) -> tuple[str, str]:
        service = self.catalogue.get(case.category)
        return (service.name_zh, service.name_en) if service is not None else (case.category, case.category)

    def _level(self, case: Case) -> int | None:
        """The highest level of the case's linked alerts that are active, None without one."""
        levels = [int(self.alerts.active[a].level) for a in case.alerts if a in self.alerts.active]
        return max(levels) if levels else None

    def running_deadlines(self, case: Case) -> dict[str, float]:
        """Deadline [unix s] of each step running now."""
        spans = step_spans(case)
        return {s: d for s, d in self.limits.deadlines(case).items() if spans[s][1] is None} if case.is_open else {}

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    # ------------------------------------------------------------ operators' actions ($twin/case records)
    def command(self, action: str, body: dict, t: float) -> dict:
        """Apply an operator's or the API's action at ``t`` [unix s] (`ACTIONS`; bodies in docs/guides/cases.md);
        returns ``{"case": ...}`` (and ``"report"`` for a report). Raises CaseError."""
        if action not in ACTIONS:
            raise CaseError("bad_request", f"unknown action {str(action)[:40]!r}; actions: {', '.join(ACTIONS)}")
        if not isinstance(body, dict):
            raise CaseError("bad_request", "the body of a case action is a JSON object")
        return getattr(self, f"_do_{action}")(body, t)

    def _case(self, body: dict) -> Case:
        case_id = _text(body, "case")
        case = self.book.get(case_id)
        if case is None:
            raise CaseError("unknown_case", f"no case {case_id[:120]!r}")
        return case

    def _actor(self, body: dict) -> str:
        return _text(body, "actor") or "operator"

    def _do_open(self, body: dict, t: float) -> dict:
        category = _text(body, "category")
        service = self.catalogue.get(category)
        if service is None:
            raise CaseError("bad_request", f"unknown category {category[:40]!r}; categories: "
                                           f"{', '.join(s.code for s in self.catalogue.all())}")
        lon, lat, radius = body.get("lon"), body.get("lat"), body.get("radius_m", 50.0)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (lon, lat, radius)):
            raise CaseError("bad_request", f"lon, lat [deg, CGCS2000] and radius_m [m] must be numbers, got {lon!r}, "
                                           f"{lat!r}, {radius!r}")
        row, _ = self.state.grid.cell_of_lonlat(float(lon), float(lat))
        if int(row) < 0:
            raise CaseError("bad_request", f"{lon:.6f},{lat:.6f} is outside the twin's district")
        where = f"{lon:.5f}, {lat:.5f}"
        place = CasePlace(f"operator:{lon:.6f},{lat:.6f}", _text(body, "name_zh") or where,
                          _text(body, "name_en") or where, float(lon), float(lat), float(radius))
        actor = self._actor(body)
        case = self.book.open(t, category=category, priority=body.get("priority", service.priority), place=place,
                              source="operator", actor=actor, reason=_text(body, "reason") or f"opened by {actor}",
                              verify=service.verify)
        return {"case": self.view(case)}

    def _do_dispatch(self, body: dict, t: float) -> dict:
        case, unit, actor = self._case(body), _text(body, "unit"), self._actor(body)
        why = _text(body, "reason")
        if not unit:
            found = self.suggestions(case, limit=1, t=t)
            if not found:
                raise CaseError("bad_request", f"no free unit on duty for {case.category} is located")
            return {"case": self.view(self.dispatch(case, found[0], t, actor, why))}
        entity = self.state.entities.entities.get(unit)
        if entity is None or entity.kind != "unit":
            raise CaseError("bad_request", f"no field unit {unit[:64]!r} in the registry")
        reason = why or f"{unit} dispatched by {actor}"
        return {"case": self.view(self.book.apply(case.id, "dispatched", t, actor, reason, unit=unit))}

    def _do_transition(self, body: dict, t: float) -> dict:
        case, kind, actor = self._case(body), _text(body, "kind"), self._actor(body)
        if kind not in OPERATOR_KINDS:
            raise CaseError("bad_request", f"kind must be one of {', '.join(OPERATOR_KINDS)}, got {kind[:40]!r} "
                                           "(dispatch with the dispatch action)")
        reason = _text(body, "reason") or f"{kind} by {actor}"
        # an operator declining for the unit records the unit as the decliner, so it is not sent again this round
        data = {"unit": case.assignee} if kind == "declined" and case.assignee else {}
        return {"case": self.view(self.book.apply(case.id, kind, max(t, case.updated_at), actor, reason, **data))}

    def _do_note(self, body: dict, t: float) -> dict:
        case = self._case(body)
        reason = _text(body, "reason")
        if not reason:
            raise CaseError("bad_request", "a note needs its text in reason")
        return {"case": self.view(self.book.apply(case.id, "noted", t, self._actor(body), reason))}

    def _do_attach(self, body: dict, t: float) -> dict:
        case, actor = self._case(body), self._actor(body)
        url = _text(body, "url")
        reason = _text(body, "reason") or f"attached by {actor}"
        return {"case": self.view(self.book.apply(case.id, "attached", t, actor, reason, url=url))}

    def _do_prioritise(self, body: dict, t: float) -> dict:
        case, actor = self._case(body), self._actor(body)
        reason = _text(body, "reason") or f"priority set by {actor}"
        return {"case": self.view(self.book.apply(case.id, "prioritised", t, actor, reason,
                                                  priority=body.get("priority")))}

    def _do_report(self, body: dict, t: float) -> dict:
        source = _text(body, "source")
        try:
            batch = report_records(body.get("doc"), source=source)
        except Refusal as exc:
            raise _refused_report(str(exc.reason), exc.detail) from None
        r = next(iter(batch.records()))
        row = ReportRow(source, r["ref"], float(r["t"]), float(r["lon"]), float(r["lat"]), r["datum"], r["note"], 0)
        try:
            report = self.check_report(row)
        except ReportRefused as exc:
            raise _refused_report(REPORT_REASONS.get(exc.reason, exc.reason), exc.detail) from None
        case = self.take_report(report, t)
        return {"report": self.report(report.id), "case": self.view(case)}

    def _do_task_answer(self, body: dict, t: float) -> dict:
        unit, case_id, status = _text(body, "unit"), _text(body, "case"), _text(body, "status")
        if status not in TASK_STATUSES:
            raise CaseError("bad_request", f"status must be one of {', '.join(TASK_STATUSES)}, got {status[:40]!r}")
        case, warning = self.answer(unit, case_id, status, t, _text(body, "note"))
        out = {"case": self.view(case)}
        if warning:
            out["warning"] = warning
        return out

    # ------------------------------------------------------------ reads
    def view(self, case: Case, events: bool = False) -> dict:
        """`Case.as_dict` with ``deadlines`` (running steps) and ``overdue`` (running steps past them), and with
        ``events`` the event rows."""
        out = case.as_dict()
        out["deadlines"] = self.running_deadlines(case)
        now = self._now(case)
        out["overdue"] = [s for s, d in out["deadlines"].items() if now > d]
        if events:
            out["events"] = [e.to_row() for e in case.events]
        return out

    def _now(self, case: Case) -> float:
        return self.now if math.isfinite(self.now) else case.updated_at

    def report(self, report_id: str) -> dict | None:
        """A stored report without its contact, with its case id and the case's status."""
        row = self.store.report(report_id)
        if row is None:
            return None
        report = CitizenReport.from_row(row).public()
        case = self.book.get(row["case_id"]) if row.get("case_id") else None
        return {**report, "case": row.get("case_id"), "case_status": case.status if case is not None else None}

    def reports(self, limit: int = 100) -> list[dict]:
        """The newest ``limit`` reports, newest first (no contacts)."""
        rows = self.store.reports()[::-1][: max(int(limit), 0)]
        return [self.report(r["id"]) for r in rows]

    def unit_tasks(self, unit: str) -> list[dict]:
        """The open cases assigned to a unit, newest first, as task messages whose ``status`` is the case's."""
        mine = [c for c in self.book.cases(open_only=True) if c.assignee == unit]
        out = []
        for case in sorted(mine, key=lambda c: (c.opened_at, c.id), reverse=True):
            task = msg.task_payload(case, case.status, self._names(case), self._level(case),
                                    self.running_deadlines(case), case.updated_at)
            out.append(task)
        return out

    def ledger(self, t: float) -> dict:
        """The risk ledger at ``t`` [unix s] (`twin.cases.ledger.ledger`)."""
        return ledger(self.book.cases(), t, self.district, self.limits)

    def ledger_csv(self, t: float) -> str:
        """The risk ledger as CSV (`twin.cases.ledger.ledger_csv`)."""
        return ledger_csv(self.book.cases(), t, self.district, self.limits)

    def services(self) -> list[dict]:
        """The Open311 catalogue."""
        return [s.as_dict() for s in self.catalogue.all()]

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """The book, the linked alerts' areas (WKB hex) and clear times, pending automatic dispatches, counters."""
        return {"book": self.book.save_state(),
                "areas": {k: shapely.to_wkb(v, hex=True) for k, v in sorted(self.areas.items())},
                "cleared": dict(self.cleared), "auto": dict(self.auto), "refused": dict(self.refused)}

    def restore_state(self, state: dict) -> None:
        """Take back `save_state`."""
        self.book.restore_state(state["book"])
        self.areas = {k: shapely.from_wkb(v) for k, v in state.get("areas", {}).items()}
        self.cleared = {k: float(v) for k, v in state.get("cleared", {}).items()}
        self.auto = {k: None if v is None else float(v) for k, v in state.get("auto", {}).items()}
        self.refused = {k: int(v) for k, v in state.get("refused", {}).items()}
        self.events = []


def _at(t: float, now: float) -> float:
    """An event's time: the record's, never before the last tick ``now`` (NaN: no tick yet)."""
    return t if math.isnan(now) else max(t, now)


def _merged_into(ev: AlertEvent) -> str:
    """The alert a cancelled alert was merged into (`twin.alerting.lifecycle.AlertBook._fade`), "" if none."""
    prefix = "merged into "
    return ev.note[len(prefix):].strip() if ev.note.startswith(prefix) else ""


def _place_key(alert: Alert) -> str:
    return alert.place.key if alert.place is not None and alert.place.key else ""


def _level_en(level: int) -> str:
    return msg.LEVEL_COLOUR_EN.get(int(level), str(level))


def _area_desc(alert: Alert) -> str:
    """The CAP ``areaDesc`` of the alert's last message (bilingual already), else its hazard."""
    try:
        areas = info_block(alert.last).get("area") or []
        return str(areas[0].get("areaDesc") or alert.hazard)
    except (IndexError, ValueError, AttributeError):
        return alert.hazard


__all__ = ["ACTIONS", "CaseConfig", "CaseDesk", "ReportRefused"]
