"""The live twin's read interface: what the HTTP API, the demo and benchmarks may ask a running service.

Code outside `twin.live` reads the live twin only through `LiveQuery` (tests/test_layout.py checks
the imports). Every method is safe to call from any thread: what reads the core's mutable state
does so under the core's lock and returns copies or immutable values (the live layers dataset is
rebuilt every tick, never changed in place, so a reference taken under the lock stays valid);
the store has its own lock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ingest.registry import Device, Registry
from ingest.registry_db import Change
from models.crowd import CrowdFusion
from twin.alerting.lifecycle import AlertEvent
from twin.district.dataset import grid_of
from twin.district.grid import GridSpec
from twin.live.state import TwinState
from twin.live.vitals import FRAME_NAMES  # noqa: F401 (the API's list of the stored level frames)

if TYPE_CHECKING:
    import geopandas as gpd

    from twin.live.service import LiveService


@dataclass
class TickReport:
    """What one tick did: its time [unix s], alert events, duration [ms], unit arrivals
    (alert, unit, time [unix s], seconds from first delivery) and the case events since the last tick
    (``{"case", "kind", "t", "status", "actor"}``, in order: the tick's own and those of the task answers,
    reports and case actions applied since the tick before)."""

    t: float
    events: list[AlertEvent]
    tick_ms: float
    arrivals: list[tuple[str, str, float, float]]
    case_events: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ActiveAlert:
    """An alert active in the core now."""

    identifier: str
    hazard: str
    level: int
    raised_at: float
    cells: int
    acknowledged_by: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class RoadLinks:
    """The live twin's directed road links and what the last tick gave each (`LiveQuery.road_links`).

    ``links`` is the road network's link table (`twin.district.roads.RoadNetwork.links`: ``link_id, u, v, name,
    name_en, road_class, lanes, length_m, free_flow_kmh, tunnel, bridge, elevated, osm_id, geometry`` in the grid
    CRS, row k = link k). It is the service's own table, the same object for the service's whole life: read it,
    never change it. The arrays are copies, one value per link (row order), NaN where the link has no data.
    """

    links: gpd.GeoDataFrame
    speed_kmh: np.ndarray
    """Space-mean speed, smoothed across windows. [km h-1]"""
    speed_window_kmh: np.ndarray
    """Space-mean speed of the probes in the last window. [km h-1]"""
    samples: np.ndarray
    """Traversal pieces in the window. [1]"""
    vehicles: np.ndarray
    """Distinct probe vehicles in the window. [1]"""
    confidence: np.ndarray
    """Confidence of the speed, 0 to 1 (0 without one). [1]"""
    travel_time_s: np.ndarray
    """Travel time of the link at the smoothed speed. [s]"""
    level: np.ndarray
    """GB/T 33171 congestion level of the link's congestion speed for its road class (`models.links.LinkCongestion`,
    the twin's thresholds `models.config.TrafficConfig.gbt_edges_ms`): 0 smooth, 1 basically smooth, 2 light,
    3 moderate, 4 severe; -1 no speed. [int8]"""
    t: float | None
    """Time of the tick the outputs are of [unix s]; None before the first tick."""
    congestion_kmh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The speed the levels use: stop-line waits shorter than a signal cycle left out, loops fused. [km h-1]"""
    tpi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """TPI-like index of the link, 0 to 10 (not the official TPI). [1]"""
    warning: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    """Warning level of the link (the alert-level machine on links): 0 none, 1 blue, 2 yellow, 3 orange, 4 red,
    -1 no data. [int8]"""
    incident: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    """1 incident declared (sustained drop against the link's baseline), 0 tested and none, -1 not tested. [int8]"""
    loops: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Fresh loop detectors fused on the link. [1]"""
    road_index: dict[str, float] = field(default_factory=dict)
    """TPI-like index per named road (length-weighted over its links with data). [1]"""
    district_index: float = float("nan")
    """TPI-like index of the district (length-weighted over its links with data). [1]"""


LINK_OUTPUTS = {"speed_kmh": "link_speed", "speed_window_kmh": "link_speed_window", "samples": "link_samples",
                "vehicles": "link_vehicles", "confidence": "link_confidence", "travel_time_s": "link_travel_time",
                "congestion_kmh": "link_speed_congestion", "tpi": "link_tpi", "loops": "link_loops"}
LINK_CODES = {"level": "link_level", "warning": "link_warning", "incident": "link_incident"}
"""`RoadLinks` integer field -> link layer (-1 before the first tick)."""
"""`RoadLinks` field -> the live twin's link layer (`twin.live.models.LiveModels.link_layers`)."""


class AlertNotActiveError(KeyError):
    """The alert is not active (unknown, or already cancelled)."""


class AckTimeoutError(TimeoutError):
    """An operator's acknowledgement was queued but not applied within the wait (the twin is behind).

    It stays queued and is applied in order unless the service stops first; asking again is safe (an
    operator who has acknowledged gets ``None``: already acknowledged)."""


class AckUnavailableError(RuntimeError):
    """The live service takes no acknowledgement now: it has stopped, or too many wait to be applied."""


class DeviceError(ValueError):
    """A device change the registry refuses: ``code`` ``invalid_device`` (``problems`` lists them all),
    ``unknown_device``, ``device_exists``, ``kind_change`` or ``already_retired``; ``detail`` says why in one line."""

    def __init__(self, code: str, detail: str, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.problems = code, detail, list(problems or [])


@dataclass(frozen=True)
class DevicePage:
    """A page of the device registry (`LiveQuery.devices`): the registry database's ``version`` and the twin's
    (``applied``: what its admission and state use), how many devices match, and the page, ordered by id."""

    version: int
    applied: int
    total: int
    devices: list[Device]


class LiveQuery:
    """Typed, thread-safe reads of one running `LiveService` (see the module docstring)."""

    def __init__(self, service: LiveService) -> None:
        self._service = service
        self.static: xr.Dataset = service.static
        self.grid: GridSpec = grid_of(service.static)

    # ------------------------------------------------------------ clock and settings
    @property
    def prefix(self) -> str:
        """MQTT topic prefix with its trailing slash."""
        return self._service.core.config.prefix

    @property
    def tick_s(self) -> float:
        """Nominal tick period of twin time. [s]"""
        return float(self._service.config.tick_s)

    def now(self) -> float:
        """The twin's clock. [unix s]"""
        return float(self._service.clock())

    @property
    def grid_file(self):
        """The twin file (NetCDF) the service runs on, None if it was given a dataset. [path]"""
        return getattr(self._service.config, "grid", None)

    def last_tick(self) -> float | None:
        """Time of the last tick [unix s], None before the first."""
        t = self._service.core.last_tick
        return None if math.isnan(t) else float(t)

    # ------------------------------------------------------------ live state
    def live_layers(self) -> tuple[xr.Dataset, float | None]:
        """The live and risk layers of the last tick and that tick's time (None before the first)."""
        return self._service.core.live_layers(), self.last_tick()

    def active_alerts(self) -> list[ActiveAlert]:
        """The alerts active in the core now, oldest first."""
        return self._service.core.active_alerts()

    def active_ids(self) -> list[str]:
        """Identifiers of the alerts active in the core now."""
        return [a.identifier for a in self.active_alerts()]

    def alert_live(self) -> dict[str, dict]:
        """Per active alert: ``value``, ``unit``, ``peak``, ``peak_at``, ``trend``, ``trend_word``, ``trend_arrow``,
        ``history`` ([[t, value], ...] over 30 min), ``devices`` and ``suppressed`` (None, or ``{"by": "silence" |
        "inhibition" | "storm", "id", "reason"}``: recorded and published, not delivered to units)."""
        return self._service.core.alert_live()

    def silences(self):
        """The core's `twin.alerting.silences.SilenceBook` (thread-safe; backed by the store)."""
        return self._service.core.output.silences

    def entities(self, kinds: tuple[str, ...] = ("unit", "vehicle")) -> list[dict]:
        """Located vehicles and units as plain dicts, with the active alerts each unit was sent
        (``alerts``) and those it is on scene of (``on_scene``)."""
        return self._service.core.located_entities(kinds)

    def road_links(self) -> RoadLinks | None:
        """The road links with their static attributes and the last tick's speeds and congestion levels; None
        when the twin has no road network (see `RoadLinks`)."""
        core = self._service.core
        with core.lock:
            config = core.models.config
            network = config.road_network
            if network is None:
                return None
            layers, t = core.models.link_layers, core.last_tick
            n = len(network.links)
            out = {name: (layers[var].values.astype(float, copy=True) if var in layers.data_vars
                          else np.full(n, np.nan)) for name, var in LINK_OUTPUTS.items()}
            out.update({name: (layers[var].values.astype(np.int8, copy=True) if var in layers.data_vars
                               else np.full(n, -1, np.int8)) for name, var in LINK_CODES.items()})
            roads, district = core.models.links.index()
        return RoadLinks(network.links, **out, t=None if math.isnan(t) else float(t), road_index=roads,
                         district_index=district)

    def status(self) -> dict[str, Any]:
        """The ``city/twin/status`` document (docs/contract/mqtt.md) plus ``outbox``, as of the last tick."""
        return self._service.status(self.last_tick())

    def ingest_metrics(self) -> dict[str, Any]:
        """A copy of the ingest counters."""
        return self._service.ingestor.metrics.snapshot()

    # ------------------------------------------------------------ vital signs (issue 18, docs/guides/vital-signs.md)
    def admin_units(self, level: str | None = None) -> dict:
        """The management tree's nodes of ``level`` (``city``, ``district``, ``street``, ``unit``; every level, top
        down, with None) as a GeoJSON FeatureCollection in lon/lat, properties ``{id, level, name, name_en, parent}``
        (`twin.district.admin.AdminTree`). The features are shared: read them, do not change them. Raises ValueError
        for an unknown level."""
        return self._service.core.admin_units(level)

    def indicators(self, level: str = "city", at: float | None = None, parent: str | None = None) -> dict:
        """The vital signs of the nodes of ``level`` (children of ``parent`` only, when given): ``{"t", "level",
        "nodes": [{"id", "level", "name", "name_en", "parent", "indicators": {name: {"value", "unit", "level",
        "trend", "trend_arrow", "detail"}}}]}`` at the last tick (``at`` None) or as stored at or before ``at``
        [unix s] (each node's last stored row at or before ``at``: rows are stored when a node changes and once a
        minute; ``t`` the newest of those rows' times; None and empty ``indicators`` when there is none). Indicators
        and their rules: `twin.live.vitals`. Raises ValueError for an unknown level."""
        return self._service.core.indicators(level, at, parent)

    def indicator_history(self, node: str, indicator: str | None = None, since: float | None = None,
                          until: float | None = None) -> dict:
        """A node's stored vital signs: ``{"node", "since", "until", "series": {name: {"unit", "points": [[t, value,
        level], ...]}}}`` oldest first: a point whenever anything of the node changed (value, level or detail, at
        tick resolution, for the last hour), and one a minute (24 h kept); all indicators
        without ``indicator``; ``until`` defaults to the last tick, ``since`` to an hour before ``until`` [unix s].
        Raises KeyError for an unknown node, ValueError for an unknown indicator."""
        return self._service.core.indicator_history(node, indicator, since, until)

    def layer_frames(self) -> dict:
        """``{"names": ["level", "level_crowd", "level_flood", "level_traffic"], "times": [t, ...]}``: the times
        [unix s] of the last hour the page can scrub to, oldest first: every time a level frame (of any name) or any
        node's indicators were stored (frames and rows are stored when they change; indicator rows also once a
        minute). `layer_frame` and `indicators` read at or before such a time."""
        return self._service.core.layer_frames()

    def layer_frame(self, name: str, at: float) -> tuple[np.ndarray, float] | None:
        """The stored level frame ``name`` at or before ``at`` [unix s]: (int8 grid of shape (ny, nx), row 0 north,
        as `live_layers`; -1 no data, 0-4 the level) and its time; None if none is stored. Raises ValueError for a
        name not in `layer_frames` ``names``."""
        return self._service.core.layer_frame(name, at)

    # ------------------------------------------------------------ stored alerts
    def alert_rows(self, state: str | None = "active") -> list[dict]:
        """Stored alerts (``active``, ``cancelled`` or None for all), oldest first, with their last message."""
        return self._service.store.alerts(state)

    def alert_row(self, identifier: str) -> dict | None:
        """One stored alert by identifier (active ones looked up first), or None."""
        for state in ("active", None):
            for row in self._service.store.alerts(state):
                if row["identifier"] == identifier:
                    return row
        return None

    def alert_rows_between(self, since: float, until: float, limit: int = 500) -> list[dict]:
        """Stored alerts alive at some time of [``since``, ``until``] [unix s, twin time] (raised at or before
        ``until``, not cancelled before ``since``), newest raised first, at most ``limit``; dicts as `alert_rows`
        (`twin.alerting.store.Store.alerts_between`)."""
        return self._service.store.alerts_between(since, until, limit)

    def messages_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """{alert id: every CAP message of that alert, oldest first} for many alerts (a few queries, not one each)."""
        return self._service.store.messages_for(ids)

    def acks_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """{alert id: its acknowledgements (units and operators), in the order received} for many alerts."""
        return self._service.store.acks_for(ids)

    def arrivals_for(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """{alert id: the units recorded on scene, by time} for many alerts."""
        return self._service.store.arrivals_for(ids)

    def messages(self, identifier: str) -> list[dict]:
        """Every CAP message of an alert, oldest first."""
        return self._service.store.messages(identifier)

    def acks(self, identifier: str) -> list[dict]:
        """Acknowledgements of an alert (units and operators), in the order received."""
        return self._service.store.acks(identifier)

    def arrivals(self, identifier: str) -> list[dict]:
        """Units recorded on scene for an alert."""
        return self._service.store.arrivals(identifier)

    # ------------------------------------------------------------ the one write: an operator's acknowledgement
    def acknowledge(self, identifier: str, operator: str, note: str = "", t: float | None = None,
                    timeout_s: float | None = None) -> AlertEvent | None:
        """Have the core record an operator's acknowledgement and publish its CAP Update; None if this operator
        had already acknowledged it. ``t`` defaults to the twin's clock, never before the last tick.

        Durable: the service logs it in the raw log as a ``$twin/ack`` control record and the core applies
        it on the ingest thread, in order with the data and the ticks (a restart replays it); this waits
        for that, at most ``timeout_s`` [s] (default `twin.live.service.ACK_TIMEOUT_S`).

        Raises `AlertNotActiveError` if the alert is not active, `AckTimeoutError` if it was not applied in
        time, `AckUnavailableError` if the service takes no acknowledgement now.
        """
        return self._service.acknowledge(identifier, operator, note, t, timeout_s=timeout_s)

    # ------------------------------------------------------------ cases (issue 17, docs/guides/cases.md)
    def cases(self, status: str | None = None, open_only: bool = False) -> list[dict]:
        """Cases (in ``status``; only open ones with ``open_only``), oldest first: `Case.as_dict` plus
        ``deadlines`` ({step: t [unix s]} of the steps running now) and ``overdue`` (those of them past due at
        the last tick). Raises `twin.cases.model.CaseError` ``bad_request`` for an unknown status."""
        return self._service.core.cases(status, open_only)

    def case(self, case_id: str) -> dict | None:
        """One case as `cases` gives it plus ``events`` (its event rows, oldest first), or None."""
        return self._service.core.case(case_id)

    def case_suggestions(self, case_id: str, limit: int = 3) -> list[dict]:
        """The free units on duty for a case, soonest first: ``{unit, unit_type, eta_s, distance_m, by}`` (``by``
        ``road`` or ``straight``). Raises `twin.cases.model.CaseError` ``unknown_case``."""
        return self._service.core.case_suggestions(case_id, limit)

    def case_command(self, action: str, body: dict, timeout_s: float | None = None) -> dict:
        """An operator's or the API's case action, applied in order with the data through the raw log (a restart
        replays it): ``{"case": case dict}`` (with ``"report"`` for ``report``; with ``"warning"`` when a unit's
        answer was only noted). Actions and bodies: docs/guides/cases.md.

        Raises `twin.cases.model.CaseError` (``code``, ``detail``) for a refusal, `AckTimeoutError` if it was not
        applied within ``timeout_s`` [s] (it stays queued), `AckUnavailableError` if the service takes none now.
        """
        return self._service.case_command(action, body, timeout_s=timeout_s)

    def ledger(self, t: float | None = None) -> dict:
        """The risk ledger (`twin.cases.ledger.ledger`) at ``t`` [unix s], the last tick by default."""
        return self._service.core.case_reads("ledger", t)

    def ledger_csv(self, t: float | None = None) -> str:
        """The risk ledger as CSV text, one row per district and day (`twin.cases.ledger.ledger_csv`)."""
        return self._service.core.case_reads("ledger_csv", t)

    def report(self, report_id: str) -> dict | None:
        """A citizen report (never its contact) with ``case`` (its case id) and ``case_status``, or None."""
        return self._service.core.case_reads("report", report_id)

    def reports(self, limit: int = 100) -> list[dict]:
        """The newest ``limit`` citizen reports, newest first, as `report` gives them."""
        return self._service.core.case_reads("reports", limit)

    def services(self) -> list[dict]:
        """The Open311 service catalogue (`twin.cases.services`): code, names, group, description, duty, priority,
        hazard, verify."""
        return self._service.core.case_reads("services")

    def unit_tasks(self, unit_id: str) -> list[dict]:
        """The open cases assigned to a unit, newest first, as the task messages of ``city/units/{unit}/tasks``
        with ``status`` the case's status now."""
        return self._service.core.case_reads("unit_tasks", unit_id)

    # ------------------------------------------------------------ the device registry (docs/guides/devices.md)
    def devices(self, kind: str | None = None, status: str | None = None, after: str | None = None,
                limit: int = 100) -> DevicePage:
        """Registered devices (of a ``kind``, in a ``status``: ``active`` or ``retired``), by id, those after the id
        ``after`` only, at most ``limit``: read from the registry database."""
        store = self._service.registry_store
        return DevicePage(store.version(), int(self._service.registry.version), store.count(kind, status),
                          store.page(kind, status, after, limit))

    def device(self, device_id: str) -> Device | None:
        """One device, active or retired (``status``, ``version`` of its last change), or None."""
        return self._service.registry_store.device(device_id)

    def device_history(self, device_id: str) -> list[Change]:
        """Every change of one device, oldest first (``version``, ``op``, the device after it, ``at`` [unix s],
        ``actor``); [] for an unknown id."""
        return self._service.registry_store.history(device_id)

    def add_device(self, feature: dict, timeout_s: float | None = None) -> Change:
        """Register a new device from a GeoJSON Feature; returns the change once the twin has applied it (its next
        message is admitted). Stored in the registry database first, then applied through the raw log in order
        with the data (a ``$twin/registry`` record): this waits for that, at most ``timeout_s`` [s].

        Raises `DeviceError` (``invalid_device``, ``device_exists``), `AckTimeoutError` (stored, applied later),
        `AckUnavailableError` (the twin takes no change now; stored, applied later)."""
        return self._service.add_device(feature, timeout_s=timeout_s)

    def update_device(self, device_id: str, feature: dict, timeout_s: float | None = None) -> Device:
        """A device's new entry (moved, other quantities or properties; a retired one registered again), as
        `add_device`; returns the entry as stored (unchanged: no new version). Raises `DeviceError`
        (``invalid_device``, ``unknown_device``, ``kind_change``), `AckTimeoutError`, `AckUnavailableError`."""
        return self._service.update_device(device_id, feature, timeout_s=timeout_s)

    def retire_device(self, device_id: str, timeout_s: float | None = None) -> Change:
        """Retire a device (row and history kept), as `add_device`: once applied its messages are refused as
        ``retired_device``. Raises `DeviceError` (``unknown_device``, ``already_retired``), `AckTimeoutError`,
        `AckUnavailableError`."""
        return self._service.retire_device(device_id, timeout_s=timeout_s)

    # ------------------------------------------------------------ tick listeners
    def add_tick_listener(self, listener: Callable[[TickReport], None]) -> None:
        """Call ``listener(report)`` after every tick (on the service's thread: keep it short)."""
        self._service.listeners.append(listener)

    def remove_tick_listener(self, listener: Callable[[TickReport], None]) -> None:
        """Stop calling a listener added with `add_tick_listener`."""
        self._service.listeners.remove(listener)


def counter_walkable_m2(static: xr.Dataset, registry: Registry,
                     walkable_override: str | os.PathLike | None = None) -> dict[str, float]:
    """The walkable area each crowd counter's count is divided by in a twin of ``static`` [m2], by device id.

    Asked of the twin itself, not recomputed: the counters' coverage pieces and registry ``walkable_area_m2``
    come from a `twin.live.state.TwinState` of ``static`` and ``registry`` (with ``walkable_override`` applied
    as `twin run --walkable` does), and the twin's fusion, `models.CrowdFusion`
    (`models.kernels.crowd.fuse_density`), fuses one person on one counter at a time: a lone counter's
    density is 1 / its walkable area on every cell it covers, whether that area is the registry's
    ``walkable_area_m2`` or the twin's ``walkable_area`` layer under its coverage. Counters with no walkable
    ground on the grid are left out (a feed then falls back on the registry or the polygon,
    `scenarios.feeds.sensors.counter_area_m2`).
    """
    state = TwinState(static, registry, walkable_override)
    cover, ids = state.crowd_coverage, state.readings["crowd"].ids
    fusion = CrowdFusion(state.static)
    constant = {"sensor_rel_error": ("sensor", np.zeros(len(ids)), {"units": "1"}),
                "sensor_walkable_area": ("sensor", state.crowd_walkable_m2, {"units": "m2"}),
                "piece_cell": ("piece", cover.piece_cell),
                "piece_fraction": ("piece", cover.piece_area / state.grid.cell_area),
                "walkable_area": state.static["walkable_area"]}
    out = {}
    for s, device in enumerate(ids):
        alone = cover.owner_feature == s
        count = np.where(np.arange(len(ids)) == s, 1.0, np.nan)
        ds = xr.Dataset({**constant, "sensor_count": ("sensor", count, {"units": "person"}),
                         "cover_piece": ("cover", cover.owner_piece[alone]),
                         "cover_sensor": ("cover", cover.owner_feature[alone])})
        density = fusion.update(ds)["crowd_density"].values
        density = density[np.isfinite(density) & (density > 0)]
        if density.size:
            out[device] = float(1.0 / np.median(density))
    return out
