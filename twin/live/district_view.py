"""A district twin as the twin's HTTP API reads a live service: `DistrictService` (docs/guides/district-twins.md).

The twin API (`twin.api.create_app`) reads a running `twin.live.service.LiveService` through
`twin.live.query.LiveQuery`, which asks the service for its ``core``, ``store``, ``static``, ``config.tick_s``,
``clock()``, ``status()``, ``ingestor.metrics``, ``registry_store`` and ``listeners``. `DistrictService` gives a
`twin.live.district_twin.DistrictTwin` those names, so the same API, dashboard and event stream serve a district
twin of the city deployment (``twin district --http PORT``), with its health and vital signs
(``GET /api/indicators?level=district``) that the city tier reads.

Thread safety is LiveQuery's: every read of the core goes through the core's own methods, which take the core's
lock (the district twin's reader thread applies batches and ticks under the same lock), the alert store has its own
lock, and the twin's counters are replaced, never changed in place (`DistrictTwin.status`). Reading the stream's
last sequence (for the lag) asks NATS, so a status is kept `STATUS_CACHE_S`.

Read-only: a district twin has no raw log to write an operator's action into, so acknowledgements, case actions
and device changes are refused (`twin.live.query.AckUnavailableError`, answered 503 by the API): make them on the
city's dashboards, or on a `twin run` of the district. Its registry is the file it was started with (`RegistryReads`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.registry import Device, Registry
from twin.live.district_twin import DistrictTwin
from twin.live.query import AckUnavailableError, TickReport

STATUS_CACHE_S = 1.0
"""How long one status of the twin (which asks the stream for its last sequence) is reused [s]."""
READ_ONLY = ("a district twin's API only reads: it has no raw log to record an operator's action in; act on the "
             "twin of record (twin run) or through the city's tools")


@dataclass(frozen=True)
class DistrictApiConfig:
    """What the API reads of a service's settings: the tick [s] and the grid twin file (None: no building table)."""

    tick_s: float
    grid: Path | None = None


class RegistryReads:
    """The device registry database's reads (`ingest.registry_db.RegistryStore`) over a district twin's registry file:
    version 0, no history (a file has none). Safe from any thread: the registry is read, never changed."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def _devices(self, kind: str | None, status: str | None) -> list[Device]:
        everything = [*self._registry.devices.values(), *self._registry.retired.values()]
        return [d for d in everything if (kind is None or d.kind == kind) and (status is None or d.status == status)]

    def version(self) -> int:
        """The registry's version (a file's: 0)."""
        return int(self._registry.version)

    def count(self, kind: str | None = None, status: str | None = None) -> int:
        """Devices of a kind, in a status. [1]"""
        return len(self._devices(kind, status))

    def page(self, kind: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> list[Device]:
        """Devices by id (a kind, a status), those after the id ``after`` only, at most ``limit``."""
        rows = sorted((d for d in self._devices(kind, status) if after is None or d.id > after), key=lambda d: d.id)
        return rows[:max(0, int(limit))]

    def device(self, device_id: str) -> Device | None:
        """One device (active or retired), or None."""
        return self._registry.find(device_id)

    def history(self, device_id: str) -> list:
        """A file keeps no history: always []."""
        return []


class _Metrics:
    """The twin's counters in the shape of the ingest metrics (`twin.live.query.LiveQuery.ingest_metrics`)."""

    def __init__(self, twin: DistrictTwin) -> None:
        self._twin = twin

    def snapshot(self) -> dict:
        """``received`` records read from the partition, ``accepted`` batch records applied, ``accepted_records``
        their rows, ``duplicates`` rows dropped as already applied, ``rejected`` {reason: n} (records that could not
        be used and rows the core refused), ``internal_errors`` records whose application raised, ``queue_depth``
        records read and not yet applied. [1]"""
        return ingest_metrics(self._twin.counts, self._twin.faults, self._twin.feed.buffered)


class _Ingest:
    def __init__(self, twin: DistrictTwin) -> None:
        self.metrics = _Metrics(twin)


def ingest_metrics(counts, faults, buffered: int) -> dict:
    """The ingest metrics document of a district twin's `Counts` and `Faults` (see `_Metrics.snapshot`)."""
    rejected = dict(counts.bad_records)
    for reason, n in counts.refused.items():
        rejected[reason] = rejected.get(reason, 0) + n
    bad = sum(counts.bad_records.values())
    rejected_total = sum(rejected.values())
    return {"received": counts.records + bad, "accepted": counts.records, "accepted_records": counts.rows,
            "duplicates": counts.duplicates, "rejected": rejected, "rejected_total": rejected_total,
            "internal_errors": faults.apply_errors, "queue_depth": int(buffered), "fsync_last_ms": 0.0,
            "fsync_max_ms": 0.0, "fsync_mean_ms": 0.0, "log_commits": 0}


class DistrictService:
    """A `DistrictTwin` under the names `twin.live.query.LiveQuery` reads (module docstring).

    ``clock()`` is the twin's time: the last tick's time plus the wall time since it was applied (the city clock's
    ticks are the district twin's only clock, so `GET /api/health` turns stale when they stop coming, whatever the
    city's clock runs at); before the first tick, the wall clock. Call `close` when the API stops.
    """

    def __init__(self, twin: DistrictTwin, grid_file: str | Path | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.twin = twin
        self.static, self.core, self.store, self.registry = twin.static, twin.core, twin.store, twin.registry
        self.config = DistrictApiConfig(float(twin.config.core.tick_s), Path(grid_file) if grid_file else None)
        self.listeners = twin.listeners
        self.ingestor = _Ingest(twin)
        self.registry_store = RegistryReads(twin.registry)
        self.started = wall()
        self._wall = wall
        self._lock = threading.Lock()
        self._tick_seen: tuple[float, float] = (twin.core.last_tick, self.started)
        """(time of the last tick seen [unix s, NaN before any], wall time when it was seen [unix s])."""
        self._status: tuple[float, dict] | None = None
        self.listeners.append(self._on_tick)

    def close(self) -> None:
        """Stop following the twin's ticks."""
        if self._on_tick in self.listeners:
            self.listeners.remove(self._on_tick)

    # ------------------------------------------------------------ clock
    def _on_tick(self, report: TickReport) -> None:
        with self._lock:
            self._tick_seen = (float(report.t), self._wall())

    def clock(self) -> float:
        """The twin's time now [unix s] (class docstring)."""
        with self._lock:
            t, seen = self._tick_seen
        last = self.core.last_tick
        if math.isnan(last):
            return float(self._wall())
        if math.isnan(t) or t != last:  # restored, or a tick applied before its listener ran: count from now
            t, seen = float(last), self._wall()
            with self._lock:
                self._tick_seen = (t, seen)
        return t + max(0.0, self._wall() - seen)

    # ------------------------------------------------------------ status
    def status(self, t: float | None = None, tick_ms: float | None = None) -> dict:
        """The twin's status (`DistrictTwin.status`: partition, stream positions, ``lag`` in stream sequences,
        counters, faults) plus the fields of a live service's status document: ``uptime_s``, ``received``,
        ``accepted``, ``rejected``, ``lag_ms`` (wall time since the last tick [ms]), ``alarms``; kept
        `STATUS_CACHE_S`."""
        now = self._wall()
        with self._lock:
            cached = self._status
        if cached is not None and now - cached[0] < STATUS_CACHE_S:
            return dict(cached[1])
        doc = self.twin.status(poll_stream=True)
        metrics = ingest_metrics(self.twin.counts, self.twin.faults, self.twin.feed.buffered)
        last = self.core.last_tick
        lag_ms = 0.0 if math.isnan(last) else max(0.0, self.clock() - last) * 1e3
        doc.update({"uptime_s": round(now - self.started, 1), "received": metrics["received"],
                    "accepted": metrics["accepted"], "rejected": metrics["rejected"], "lag_ms": round(lag_ms, 1),
                    "outbox": doc.get("outbox") or 0,
                    "alarms": {"deadletters_dropped": int(self.twin.faults.deadletters_dropped),
                               "ticks_skipped": int(self.twin.counts.ticks_skipped)}})
        with self._lock:
            self._status = (now, doc)
        return dict(doc)

    # ------------------------------------------------------------ writes: refused
    def acknowledge(self, *args, **kwargs):
        """Refused: `AckUnavailableError` (module docstring)."""
        raise AckUnavailableError(READ_ONLY)

    def case_command(self, *args, **kwargs):
        """Refused: `AckUnavailableError`."""
        raise AckUnavailableError(READ_ONLY)

    def add_device(self, *args, **kwargs):
        """Refused: `AckUnavailableError`."""
        raise AckUnavailableError(READ_ONLY)

    def update_device(self, *args, **kwargs):
        """Refused: `AckUnavailableError`."""
        raise AckUnavailableError(READ_ONLY)

    def retire_device(self, *args, **kwargs):
        """Refused: `AckUnavailableError`."""
        raise AckUnavailableError(READ_ONLY)


__all__ = ["READ_ONLY", "STATUS_CACHE_S", "DistrictApiConfig", "DistrictService", "RegistryReads", "ingest_metrics"]
