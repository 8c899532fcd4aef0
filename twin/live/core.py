"""The live twin's deterministic core: batches and ticks in, stored alerts and outbox messages out.

`TwinCore` holds the state, the models and the alert book. It does no I/O but the store:
every alert change, its CAP message and the MQTT messages it causes are written to the
store (and its outbox) before anything is published. Given the same batches and ticks in
the same order it produces the same alerts, so replaying the raw log after a crash
rebuilds the state exactly (the service logs ticks, operators' acknowledgements and case actions into the
raw log too, as control records).

The case loop (`twin.live.case_desk.CaseDesk`, issue 17) runs inside the core: the units' task answers and the
citizen reports of every batch, the alert events of every tick, and the operators' case actions
(`TwinCore.case_command`) go to it, under the same lock and in the same order.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ingest.batch import Batch
from ingest.registry import Device, Registry
from models.hazards import ALERT_HAZARDS, density_bands_text
from models.hazards import hazard as hazard_spec
from twin.alerting.compose import ComposeContext, default_description, issue, peak_evidence, worst_value
from twin.alerting.delivery import DEFAULT_BUFFER_M, Router
from twin.alerting.lifecycle import AlertBook, AlertEvent
from twin.alerting.store import Store
from twin.cases import ledger as cases_ledger
from twin.cases.model import CaseError
from twin.district.sources import data_dir
from twin.live.alert_output import AlertOutput, OutputConfig, unit_payload
from twin.live.case_desk import CaseConfig, CaseDesk
from twin.live.links import loop_links
from twin.live.models import LiveConfig, LiveModels
from twin.live.query import ActiveAlert, AlertNotActiveError, TickReport
from twin.live.state import RIVER_WIDE, Rejected, ReportRow, TaskAnswer, TwinState
from twin.live.vitals import FRAME_NAMES, SENSOR_KINDS, TickInputs, Vitals, registry_sensors

log = logging.getLogger(__name__)


def _observed(hazard: str) -> bool:
    """Whether an alert of ``hazard`` is observed (CAP certainty Observed, `models.hazards`), not a forecast such as
    ``crowd_forecast`` (Likely): the vital signs count the two apart. An unknown hazard counts as observed."""
    try:
        return hazard_spec(hazard).certainty == "Observed"
    except KeyError:
        return True


@dataclass(frozen=True)
class CoreConfig:
    """Settings of the live twin core.

    Attributes
    ----------
    prefix : str
        MQTT topic prefix with its trailing slash.
    district, sender : str
        Used in alert identifiers and the CAP ``sender``.
    tick_s : float
        Nominal tick period (the first tick's step). [s]
    unit_buffer_m : float
        Field units within this distance of an alert area get the alert. [m]
    clear_s : float
        Seconds of twin time an alert with no cells left waits before its Cancel (0: at once; the cell-level
        state machine already holds levels through its own clear delay).
    alert_hazards : tuple of str
        The hazards of the registry (`models.hazards`) that raise alerts; all by default. Leaving out
        ``crowd_forecast`` keeps the forecast a map layer (``level_crowd_forecast``) without alerts.
    output : OutputConfig
        Inhibition rules file, storm control and value steps (`twin.live.alert_output`).
    web_base : str
        The dashboard's base URL for CAP ``web`` (``{web_base}/#alert={id}``); empty: no ``web``.
    cases : CaseConfig
        The case loop: rules, time limits and services files, sensor verification, on or off
        (`twin.live.case_desk.CaseConfig`).
    units_file : str or None
        GeoJSON polygons of the management grid units (网格) for the vital signs (`twin run --units`,
        `twin.district.admin.read_units_file`); None: the generated 500 m units. docs/guides/vital-signs.md.
    """

    prefix: str = "city/"
    district: str = "bund"
    sender: str = "twin.bund@citytwin"
    tick_s: float = 1.0
    unit_buffer_m: float = DEFAULT_BUFFER_M
    clear_s: float = 0.0
    alert_hazards: tuple[str, ...] = ALERT_HAZARDS
    model_version: str = "citytwin-0.1.0"
    live: LiveConfig = field(default_factory=LiveConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    web_base: str = ""
    cases: CaseConfig = field(default_factory=CaseConfig)
    units_file: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.alert_hazards) - set(ALERT_HAZARDS))
        if unknown:
            raise ValueError(f"CoreConfig.alert_hazards: unknown {unknown}; known: {', '.join(ALERT_HAZARDS)}")
        if not self.clear_s >= 0.0:
            raise ValueError(f"CoreConfig.clear_s must be >= 0 seconds, got {self.clear_s}")


def _grown(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(max(n, a.size), fill, dtype=a.dtype)
    out[:a.size] = a
    return out


def follow_sensors(models: LiveModels, kinds: set[str]) -> None:
    """The models' per-sensor tables after the state's changed (`TwinState.apply_devices`, docs/guides/devices.md):
    the crowd counters' errors and covered cells; the rain gauges' rolling totals (a row per gauge, new gauges from
    zero) and nearest-gauge cache; the loop detectors' California state (new detectors from nothing) and their road
    links; the operational units of the flood and crowd alerts (rebuilt at their next use). A retired sensor's row
    stays, so per-row state is never shifted."""
    state, observed = models.state, models.observed
    if "crowd" in kinds:
        observed.count_rel_error = np.where(np.isnan(state.crowd_rel_error), models.config.count_rel_error,
                                            state.crowd_rel_error)
        covered = np.zeros(state.grid.size, bool)
        covered[state.cover[1]] = True
        observed.crowd_covered = covered.reshape(observed.shape)
    if "rain" in kinds:
        n, rain = max(1, len(state.readings["rain"].ids)), models.pipeline.rain
        if rain.ring.shape[0] < n:
            rain.ring = np.vstack([rain.ring, np.zeros((n - rain.ring.shape[0], rain.ring.shape[1]))])
            rain.shape = (1, n)
        observed.n_rain_sources = n
        observed._nearest.clear()  # cached per set of fresh gauges: a gauge may have moved
    if "traffic" in kinds:
        loops, n = observed.loops, len(state.readings["traffic"].ids)
        loops.lags = [_grown(lag, n, np.nan) for lag in loops.lags]
        loops.count, loops.flag = _grown(loops.count, n, 0), _grown(loops.flag, n, 0)
        loops.last_t = _grown(loops.last_t, n, -np.inf)
        if models.links is not None:
            models.links.loop_det, models.links.loop_link = loop_links(state, models.links.network)
    if kinds & {"crowd", "water"}:
        models._units = None  # the named places of the flood and crowd alerts: rebuilt from the registry at next use


class TwinCore:
    """State, models and alerts of one district (see the module docstring)."""

    def __init__(self, static: xr.Dataset, registry: Registry, store: Store, config: CoreConfig | None = None):
        self.config = cfg = config or CoreConfig()
        self.store = store
        self.state = TwinState(static, registry)
        self.models = LiveModels(self.state, cfg.live)
        self.book = AlertBook(cfg.district, clear_s=cfg.clear_s)
        self.book.sequence = int(store.get_meta("alert_sequence", "0") or 0)
        self.router = Router(self.state.grid, cfg.unit_buffer_m)
        self.output = AlertOutput(cfg.prefix, cfg.district, self.state.grid, store, self.router, cfg.output)
        self.cap_context = ComposeContext(self.state.grid, cfg.sender, cfg.district, "Actual", self._evidence,
                                          self._describe, cfg.model_version, cfg.live.risk.crowd.trend_horizon,
                                          web_base=cfg.web_base, alert_values=self.output.parameters)
        self.lock = threading.RLock()
        self.last_tick = float("nan")
        self.devices_seen: set[str] = set()
        self.outside_grid = 0
        self.refused_acks: dict[str, int] = {}
        """Units' acknowledgements refused, by reason (``unknown_alert``, ``not_sent``)."""
        self.desk = CaseDesk(cfg.cases, store, district=cfg.district, prefix=cfg.prefix, state=self.state,
                             router=self.router, alerts=self.book, road_network=cfg.live.road_network) \
            if cfg.cases.enabled else None
        """The case loop (`twin.live.case_desk.CaseDesk`), None when it is off."""
        district = str(static.attrs.get("district", "") or "").strip()
        network = self.models.config.road_network
        self.vitals = Vitals(self.state.grid, store, data_dir() / district if district else None, cfg.units_file,
                             district, registry_sensors(registry), network.links if network is not None else None,
                             district_cells=self.state.in_district)
        """The city's vital signs (`twin.live.vitals`, issue 18); its tree is built at the first tick or read (at
        once with a ``units_file``, so a bad file stops the start)."""
        if cfg.units_file is not None:
            _ = self.vitals.tree

    # ------------------------------------------------------------ inputs
    def on_batch(self, batch: Batch) -> list[Rejected]:
        """Apply a batch; delivers alerts to units that moved into an area, records the units' acks.

        A unit may acknowledge only an alert it was sent (`Router.ack_problem`): an ack of an unknown alert or
        of one never sent to that unit is refused (``unknown_alert`` / ``not_sent``), stored nowhere, and
        returned with the positions outside the grid for the dead-letter topic.
        """
        with self.lock:
            applied = self.state.apply(batch)
            self.devices_seen.update(np.unique(batch.device).tolist())
            if applied.moved_units:
                self._deliver_to_movers(applied.moved_units)
            self.outside_grid += len(applied.rejected)
            rejected = applied.rejected
            for unit, alert, status, t, row in applied.acks:
                problem = self.router.ack_problem(alert, unit)
                if problem is None:
                    self.store.record_ack(alert, unit, "unit", status, t)
                else:
                    self.refused_acks[problem] = self.refused_acks.get(problem, 0) + 1
                    rejected.append(Rejected(unit, t, reason=problem, alert=alert, status=status, row=row))
            rejected += self._cases_in(applied.tasks, applied.reports)
            return rejected

    def _cases_in(self, tasks: list[TaskAnswer], reports: list[ReportRow]) -> list[Rejected]:
        """The batch's task answers and reports to the case desk; its refusals (all of them with no case loop)."""
        if self.desk is not None:
            return self.desk.on_tasks(tasks, self.last_tick) + self.desk.on_reports(reports, self.last_tick)
        off = "the twin runs without its case loop (twin run --no-cases)"
        return ([Rejected(a.unit, a.t, reason="unknown_case", status=a.status, row=a.row, case=a.case,
                          message=f"{a.status} of {a.unit} for case {a.case[:120]!r}: {off}") for a in tasks]
                + [Rejected(r.source, r.t, r.lon, r.lat, reason="unknown_source", row=r.row, case=r.ref,
                            message=f"report {r.ref[:64]!r} of {r.source[:64]!r}: {off}") for r in reports])

    def on_tick(self, t: float) -> TickReport:
        """Run the models and the alert lifecycle at time ``t`` [unix s]."""
        with self.lock:
            start = time.perf_counter()
            dt = self.config.tick_s if np.isnan(self.last_tick) else max(t - self.last_tick, 1e-3)
            self.last_tick = t
            self.models.step(t, dt)
            levels = self.models.hazard_levels()
            places = {h: p for h, p in self.models.hazard_places().items() if h in self.config.alert_hazards}
            events = self.book.tick(t, {h: levels[h] for h in self.config.alert_hazards}, places)
            self.output.observe(t, self.book, self._measure)
            events = issue(events + self.output.refreshes(t, self.book, events), self.cap_context)
            plan = self.output.plan(t, self.book, events, lambda a: self._reporting(a.hazard, a.cells))
            units = self.state.entities.located_units()
            for ev in events:
                self._publish_event(ev, units)
            self.output.send_current(plan, self.book, units, {e.alert.identifier for e in events})
            self.output.publish_summaries(plan, self.book, self.config.sender, "Actual", t)
            if events:
                self.store.set_meta("alert_sequence", str(self.book.sequence))
            arrivals = self._arrivals()
            case_events = self.desk.tick(t, events) if self.desk is not None else []
            self._vital_signs(t)
            return TickReport(t, events, (time.perf_counter() - start) * 1e3, arrivals, case_events)

    def _vital_signs(self, t: float) -> None:
        """The tick's vital signs (`twin.live.vitals`): computed from the layers, links, alerts, cases, sensors and
        units, and stored with the level frames. A failure is logged: it never stops the twin."""
        try:
            self.vitals.tick(self._vital_inputs(t))
        except Exception:
            log.exception("vital signs of the tick at %.3f failed", t)

    def _vital_inputs(self, t: float) -> TickInputs:
        layers, grid = self.models.layers, self.state.grid

        def flat(name: str, fill: float) -> np.ndarray:
            return layers[name].values.ravel() if name in layers else np.full(grid.size, fill)

        link_tpi = link_level = None
        if self.models.links is not None:
            ll = self.models.link_layers
            if "link_tpi" in ll:
                link_tpi = ll["link_tpi"].values
                link_level = ll["link_level"].values if "link_level" in ll else np.full(link_tpi.size, -1)
        cases, busy = None, set()
        if self.desk is not None:
            cases = []
            for c in self.desk.book.cases(open_only=True):
                deadlines = self.desk.running_deadlines(c)
                cases.append((c.id, c.place.lon, c.place.lat, any(t > d for d in deadlines.values())))
                if c.assignee:
                    busy.add(c.assignee)
        stale = self.config.live.stale_s
        observed, forecasts = [], []
        for a in self.book.active.values():
            (observed if _observed(a.hazard) else forecasts).append((a.cells, int(a.level)))
        return TickInputs(
            t, flat("crowd_density", np.nan), self.state.static["walkable_area"].values.ravel(),
            flat("level_crowd", -1), flat("water_depth", np.nan), flat("level_flood", -1), link_tpi, link_level,
            observed, cases,
            {k: self.state.readings[k].fresh_any(t, stale[k]) for k in SENSOR_KINDS},
            [(e.row * grid.nx + e.col, e.id in busy) for e in self.state.entities.located_units()],
            {name: layers[name].values for name in FRAME_NAMES if name in layers}, forecasts)

    def is_active(self, alert_id: str) -> bool:
        """Whether the alert is active now."""
        with self.lock:
            return alert_id in self.book.active

    def acknowledge(self, alert_id: str, operator: str, t: float | None, note: str = "",
                    now: float | None = None) -> AlertEvent | None:
        """An operator acknowledges an active alert: stored, and published as a CAP Update listing
        ``acknowledgedBy`` (retained, and to the units that had the alert); every later message of the
        alert lists the operators too. None if this operator has already acknowledged it.

        ``t`` [unix s]: when; if None, ``now`` but never before the last tick. Raises `AlertNotActiveError`.
        A live service calls this from its ingest thread for a logged ``$twin/ack`` record (``now`` is the
        record's receive time), so the acknowledgement is replayed with the log after a crash.
        """
        with self.lock:
            if alert_id not in self.book.active:
                raise AlertNotActiveError(alert_id)
            if t is None:
                t = float(now if now is not None else time.time())
                t = t if np.isnan(self.last_tick) else max(t, self.last_tick)
            event = self.book.acknowledge(alert_id, operator, t, note)
            if event is None:
                return None
            self.store.record_ack(alert_id, operator, "operator", "ack", t)
            issue([event], self.cap_context)
            self._publish_event(event, self.state.entities.located_units())
            return event

    # ------------------------------------------------------------ the registry changes (docs/guides/devices.md)
    def apply_devices(self, devices: list[Device], version: int) -> set[str]:
        """Take new versions of devices (added, updated or retired; `ingest.registry_db.RegistryStore.changes_since`)
        into the registry, which the ingest admission shares (it sees them at its next message), the state's
        per-sensor tables (`TwinState.apply_devices`), the models' per-sensor state and the vital signs' sensor
        table; the registry is then at ``version``. Returns the device kinds that changed. A live service calls
        this on its ingest thread for a logged ``$twin/registry`` record, in order with the data and the ticks."""
        with self.lock:
            pairs = self.state.registry.apply(devices, version)
            kinds = self.state.apply_devices(pairs)
            follow_sensors(self.models, kinds)
            self._vitals_follow(kinds)
            return kinds

    def _vitals_follow(self, kinds: set[str]) -> None:
        """The vital signs' sensor table (each sensor row's kind and management atom, in the state's row order,
        `registry_sensors`) after sensors changed."""
        if not kinds & set(SENSOR_KINDS):
            return
        tree = self.vitals.tree  # built now if not yet (it reads the sensors it was given, replaced here)
        st = self.state
        cells = [st.sensor_cells[k] if k in st.sensor_cells
                 else np.array([st.cell_of(st.registry.get(d)) for d in st.readings[k].ids], np.int64)
                 for k in SENSOR_KINDS]
        self.vitals.sensor_kind = np.concatenate([np.full(c.size, i, np.int64) for i, c in enumerate(cells)])
        self.vitals.sensor_atom = tree.atoms_of_cells(np.concatenate(cells))

    # ------------------------------------------------------------ reads (see twin.live.query)
    def live_layers(self) -> xr.Dataset:
        """The live and risk layers of the last tick (rebuilt every tick, never changed in place)."""
        with self.lock:
            return self.models.layers

    def active_alerts(self) -> list[ActiveAlert]:
        """The alerts active now, oldest first."""
        with self.lock:
            alerts = sorted(self.book.active.values(), key=lambda a: (a.raised_at, a.identifier))
            return [ActiveAlert(a.identifier, a.hazard, int(a.level), float(a.raised_at), int(a.cells.size),
                                tuple(a.acknowledged_by)) for a in alerts]

    def located_entities(self, kinds: tuple[str, ...] = ("unit", "vehicle")) -> list[dict]:
        """Located vehicles and units as plain dicts, with the active alerts each unit was sent
        (``alerts``) and those it is on scene of (``on_scene``), sorted by id."""
        with self.lock:
            areas = list(self.router.areas.values())
            rows = []
            for e in sorted(self.state.entities.entities.values(), key=lambda e: e.id):
                if e.kind not in kinds or not e.located:
                    continue
                row = e.as_dict()
                row["alerts"] = [a.identifier for a in areas if e.id in a.delivered]
                row["on_scene"] = [a.identifier for a in areas if e.id in a.on_scene]
                rows.append(row)
            return rows

    # ------------------------------------------------------------ vital signs (see twin.live.vitals)
    def admin_units(self, level: str | None = None) -> dict:
        """The management tree's nodes of a level (all without) as a GeoJSON FeatureCollection (lon/lat)."""
        return self.vitals.tree.feature_collection(level)

    def indicators(self, level: str = "city", at: float | None = None, parent: str | None = None) -> dict:
        """The vital signs of the nodes of a level at the last tick, or as stored at or before ``at`` [unix s]."""
        return self.vitals.nodes_at(level, at, parent)

    def indicator_history(self, node: str, indicator: str | None = None, since: float | None = None,
                          until: float | None = None) -> dict:
        """A node's stored vital signs over time (`twin.live.vitals.Vitals.history`)."""
        last = None if np.isnan(self.last_tick) else float(self.last_tick)
        return self.vitals.history(node, indicator, since, until, last)

    def layer_frames(self) -> dict:
        """The names and times of the stored level frames of the last hour."""
        return self.vitals.frame_times(None if np.isnan(self.last_tick) else float(self.last_tick))

    def layer_frame(self, name: str, at: float) -> tuple[np.ndarray, float] | None:
        """The stored level frame of ``name`` at or before ``at`` [unix s] and its time, or None."""
        return self.vitals.frame(name, at)

    # ------------------------------------------------------------ cases (see twin.live.case_desk)
    def case_command(self, action: str, body: dict, now: float | None = None) -> dict:
        """Apply an operator's or the API's case action (`twin.live.case_desk.ACTIONS`) at ``now`` [unix s], never
        before the last tick; what `CaseDesk.command` returns. Raises `twin.cases.model.CaseError`. A live service
        calls this from its ingest thread for a logged ``$twin/case`` record (``now`` is the record's receive
        time), so the action is replayed with the log after a crash."""
        with self.lock:
            desk = self._desk()
            t = float(now if now is not None else time.time())
            t = t if np.isnan(self.last_tick) else max(t, self.last_tick)
            return desk.command(action, body, t)

    def cases(self, status: str | None = None, open_only: bool = False) -> list[dict]:
        """Cases as plain dicts with their running deadlines and overdue steps, oldest first ([] without cases)."""
        with self.lock:
            if self.desk is None:
                return []
            return [self.desk.view(c) for c in self.desk.book.cases(status, open_only)]

    def case(self, case_id: str) -> dict | None:
        """One case with its events, or None."""
        with self.lock:
            case = self.desk.book.get(case_id) if self.desk is not None else None
            return self.desk.view(case, events=True) if case is not None else None

    def case_suggestions(self, case_id: str, limit: int = 3) -> list[dict]:
        """The units suggested for a case, soonest first. Raises CaseError ``unknown_case``."""
        with self.lock:
            case = self._desk().book.get(case_id)
            if case is None:
                raise CaseError("unknown_case", f"no case {case_id[:120]!r}")
            return [s.as_dict() for s in self.desk.suggestions(case, limit)]

    def case_reads(self, name: str, *args):
        """One of the desk's plain reads under the lock: ``report``, ``reports``, ``unit_tasks``, ``services``,
        ``ledger`` or ``ledger_csv`` (the last two at the last tick when no time is given). Without a case loop:
        nothing (None, [], an empty ledger)."""
        with self.lock:
            if name in ("ledger", "ledger_csv"):
                t = args[0] if args and args[0] is not None else self._ledger_time()
                if self.desk is None:
                    return getattr(cases_ledger, name)([], t, self.config.district)
                return getattr(self.desk, name)(t)
            if self.desk is None:
                return None if name == "report" else []
            return getattr(self.desk, name)(*args)

    def _ledger_time(self) -> float:
        return float(self.last_tick) if not np.isnan(self.last_tick) else time.time()

    def _desk(self) -> CaseDesk:
        if self.desk is None:
            raise CaseError("bad_request", "the twin runs without its case loop (twin run --no-cases)")
        return self.desk

    # ------------------------------------------------------------ alerts out
    def _alert_row(self, ev: AlertEvent) -> dict:
        a = ev.alert
        return {"identifier": a.identifier, "hazard": a.hazard, "level": a.level,
                "state": "cancelled" if ev.kind == "cancelled" else "active", "raised_at": a.raised_at,
                "updated_at": self.last_tick, "cancelled_at": self.last_tick if ev.kind == "cancelled" else None,
                "cells": [int(c) for c in a.cells]}

    def _publish_event(self, ev: AlertEvent, units: list) -> None:
        self.output.publish(ev, units, self._alert_row(ev))

    def _deliver_to_movers(self, moved: list[str]) -> None:
        units = [self.state.entities.entities[u] for u in moved]
        for ident in list(self.router.areas):
            alert = self.book.active.get(ident)
            if alert is None or self.output.suppressed(ident) is not None:
                continue
            due = self.router.recipients(ident, units)
            if due:
                body = unit_payload(alert.last)
                for u in due:  # keyed, so a replay of the same move sends nothing twice
                    self.store.enqueue([(f"{self.config.prefix}units/{u}/alerts", body, False)],
                                       key=f"{alert.last['identifier']}@{u}")
                self.router.mark_delivered(ident, due)

    def _arrivals(self) -> list[tuple[str, str, float, float]]:
        arrivals = self.router.arrivals(self.state.entities.located_units())
        for alert, unit, t, secs in arrivals:
            self.store.record_arrival(alert, unit, t, secs)
        return arrivals

    def alert_live(self) -> dict[str, dict]:
        """Per active alert: value, peak, trend, history and why it is not delivered (`AlertOutput.live`)."""
        with self.lock:
            return self.output.live(self.book)

    # ------------------------------------------------------------ values
    def _measure(self, alert) -> tuple[float, tuple[str, ...]]:
        """The worst of the alert's hazard metric over its cells (NaN without data) and the devices reporting."""
        return worst_value(self.models.layers, alert.hazard, alert.cells), self._reporting(alert.hazard, alert.cells)

    def _reporting(self, hazard: str, cells: np.ndarray) -> tuple[str, ...]:
        """The sensors of the hazard's kind on ``cells`` that reported within their staleness window."""
        kind = hazard_spec(hazard).sensor_kind
        if not kind:
            return ()
        return tuple(self.state.reporting_devices(kind, cells, self.last_tick, self.config.live.stale_s[kind]))

    # ------------------------------------------------------------ evidence for CAP
    def _evidence(self, hazard: str, cells: np.ndarray) -> dict[str, object]:
        out = peak_evidence(self.models.layers, hazard, cells)
        # only the devices that reported within their staleness window are evidence
        kind = hazard_spec(hazard).sensor_kind
        if kind == "crowd":  # crowd and crowd_forecast: the density bands that applied in the area
            source = next((ds for ds in (self.models.layers, self.state.static) if "crowd_band" in ds), None)
            bands = source["crowd_band"].values.ravel()[cells] if source is not None else np.zeros(0, np.int8)
            out["densityBands"] = density_bands_text(self.models.config.risk, bands)
        devices = self._reporting(hazard, cells)
        if devices:
            out["devices"] = " ".join(devices[:20])
        return out

    def _describe(self, hazard: str, cells: np.ndarray) -> str:
        """CAP ``areaDesc``: the named sensors in the area (e.g. a tunnel portal's gauge), else its centre."""
        devices = self.state.registry.devices
        names = [devices[d].name or d for d in self._devices_in(hazard, cells) if d in devices]
        if not names or hazard == "rain":
            return default_description(self.state.grid, self.config.district, cells)
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return f"{self.config.district}: {'; '.join(names[:3])}{more} ({cells.size} cells)"

    def _devices_in(self, hazard: str, cells: np.ndarray) -> list[str]:
        """The sensors of the hazard's kind on ``cells``, silent or not (they name the place in ``areaDesc``)."""
        kind = hazard_spec(hazard).sensor_kind
        ids = self.state.readings[kind].ids
        if kind == "crowd":
            sensor, cell, _ = self.state.cover
            hit = np.unique(sensor[np.isin(cell, cells)])
        elif kind in RIVER_WIDE:  # the river's gauges name a river alert's place, wherever they stand
            hit = np.arange(len(ids))
        else:
            hit = np.flatnonzero(np.isin(self.state.sensor_cells[kind], cells))
        return [ids[i] for i in hit]

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """Everything that evolves, part by part, as plain values and arrays (`twin.live.snapshot` writes it).

        The store is not part of it: it is durable on its own.
        """
        with self.lock:
            return {"core": {"last_tick": float(self.last_tick), "outside_grid": int(self.outside_grid),
                             "devices_seen": np.array(sorted(self.devices_seen), dtype=str),
                             "refused_acks": dict(self.refused_acks),
                             "registry_version": int(self.state.registry.version)},
                    "book": self.book.save_state(), "router": self.router.save_state(),
                    "output": self.output.save_state(),
                    "twin_state": self.state.save_state(), "models": self.models.save_state(),
                    **({"cases": self.desk.save_state()} if self.desk is not None else {})}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave, on a core built from the same static twin, registry (at the version the
        snapshot names: ``core.registry_version``, `snapshot_registry_version`) and config."""
        with self.lock:
            core = state["core"]
            self.last_tick, self.outside_grid = float(core["last_tick"]), int(core["outside_grid"])
            self.devices_seen = set(np.asarray(core["devices_seen"]).tolist())
            self.refused_acks = {k: int(v) for k, v in core.get("refused_acks", {}).items()}
            self.book.restore_state(state["book"])
            self.router.restore_state(state["router"])
            self.output.restore_state(state.get("output"))
            self.state.restore_state(state["twin_state"])
            self.models.restore_state(state["models"])
            if self.desk is not None and state.get("cases"):
                self.desk.restore_state(state["cases"])

    # ------------------------------------------------------------ status
    def status(self) -> dict[str, object]:
        """The core's part of ``city/twin/status``."""
        with self.lock:
            return {"devices_seen": len(self.devices_seen), "units_tracked": len(self.state.entities.located_units()),
                    "alerts_active": len(self.book.active),
                    "cases_open": len(self.desk.book.cases(open_only=True)) if self.desk is not None else 0,
                    "river": self.models.river.as_dict()}
