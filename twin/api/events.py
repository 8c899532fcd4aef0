"""``/ws`` live events: from the ingest thread's tick listener to every WebSocket client.

The service calls `Hub.on_tick` on its ingest thread after every live tick. That call only
appends the report to a deque and wakes the hub's task on the event loop
(``call_soon_threadsafe``): it never blocks and never waits for a client. The hub's task
builds the events in a worker thread (they read the store and take the core lock), encodes
each once, and puts it on every client's bounded queue. A client whose queue is full is
disconnected (close code 1013) and gets a fresh snapshot when it reconnects.

Events (JSON objects, ``type`` first):

- ``snapshot`` (first message on a connection): ``t``, ``status``, ``alerts`` (FeatureCollection
  of active alerts, as ``/api/alerts``), ``units`` (FeatureCollection, as ``/api/units``);
- ``alert``: ``kind`` raised / updated / cancelled / acknowledged / on_scene, ``t``, ``feature``
  (the alert's Feature as in ``/api/alerts``);
- ``positions``: ``t``, ``entities`` [{id, kind, unit_type, lon, lat, t, speed_kmh, course_deg}] that
  moved since the last positions event;
- ``case``: ``case``, ``kind`` (the case event: opened, dispatched, accepted, ..., closed), ``t``, ``status``
  (the case's status after it), ``actor``: one per case event of the tick (`TickReport.case_events`);
- ``tick``: ``t``, ``tick_ms``, ``events`` {raised, updated, cancelled} counts, ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

from twin.api import geojson
from twin.api.view import TwinView
from twin.live.query import TickReport

log = logging.getLogger(__name__)

CLOSE = None
"""Queue item that tells a client's sender to close the connection."""


def _dumps(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False)


class EventBuilder:
    """Turns tick reports into events (runs in a worker thread; reads the store and the core)."""

    def __init__(self, view: TwinView) -> None:
        self.view = view
        self.sent_t: dict[str, float] = {}
        self.ack_counts: dict[str, int] = {}

    def snapshot(self) -> dict:
        """The ``snapshot`` event."""
        live = self.view.alert_live()
        alerts = [self.feature_of_row(r, live) for r in self.view.alert_rows("active")]
        units = [geojson.entity_feature(e) for e in self.view.entities()]
        return {"type": "snapshot", "t": self.view.last_tick(), "status": self.view.status(),
                "alerts": geojson.collection(alerts), "units": geojson.collection(units)}

    def feature_of_row(self, row: dict, live: dict[str, dict] | None = None) -> dict:
        """The Feature of a stored alert row, with its acknowledgements and arrivals, and for an active alert its
        live values and suppression (``live``: `LiveQuery.alert_live`, read once per build; read now if None)."""
        ident = row["identifier"]
        if live is None:
            live = self.view.alert_live() if row.get("state") != "cancelled" else {}
        return geojson.alert_feature(row, self.view.acks(ident), self.view.arrivals(ident), live.get(ident))

    def build(self, reports: list[TickReport], want_events: bool) -> list[dict]:
        """Events for the reports, in order (``want_events`` False: only keep the bookkeeping)."""
        events: list[dict] = []
        for report in reports:
            if want_events:
                events += self._alert_events(report)
                events += self._case_events(report)
        events += self._ack_events(want_events)
        if want_events and reports:
            moved = self._positions(reports[-1].t)
            events += [moved] if moved["entities"] else []
            status = self.view.status()
            events += [self._tick(r, status) for r in reports]
        return events

    def _alert_events(self, report: TickReport) -> list[dict]:
        out = []
        live = self.view.alert_live() if report.events or report.arrivals else {}
        for ev in report.events:
            a = ev.alert
            cancelled = ev.kind == "cancelled"
            row = {"identifier": a.identifier, "hazard": a.hazard, "state": "cancelled" if cancelled else "active",
                   "raised_at": a.raised_at, "updated_at": report.t, "cancelled_at": report.t if cancelled else None,
                   "message": ev.message}
            out.append({"type": "alert", "kind": ev.kind, "t": report.t, "feature": self.feature_of_row(row, live)})
        for alert_id, _unit, t, _secs in report.arrivals:
            row = self.view.alert_row(alert_id)
            if row is not None:
                out.append({"type": "alert", "kind": "on_scene", "t": t, "feature": self.feature_of_row(row, live)})
        return out

    @staticmethod
    def _case_events(report: TickReport) -> list[dict]:
        """``case`` events of the report's case events (none before the twin keeps cases)."""
        keys = ("case", "kind", "t", "status", "actor")
        return [{"type": "case", **{k: ev.get(k) for k in keys}} for ev in getattr(report, "case_events", None) or ()]

    def _ack_events(self, want_events: bool) -> list[dict]:
        """``acknowledged`` events for active alerts whose acknowledgements changed."""
        out = []
        counts = {}
        for ident in self.view.active_ids():
            counts[ident] = n = len(self.view.acks(ident))
            if want_events and n != self.ack_counts.get(ident, 0):
                row = self.view.alert_row(ident)
                if row is not None:
                    out.append({"type": "alert", "kind": "acknowledged", "t": self.view.now(),
                                "feature": self.feature_of_row(row)})
        self.ack_counts = counts
        return out

    def _positions(self, t: float) -> dict:
        moved = []
        for e in self.view.entities():
            if e["t"] > self.sent_t.get(e["id"], float("-inf")):
                self.sent_t[e["id"]] = e["t"]
                moved.append({"id": e["id"], "kind": e["kind"], "unit_type": e["unit_type"] or None,
                              "lon": round(e["lon"], 7), "lat": round(e["lat"], 7), "t": e["t"],
                              "speed_kmh": geojson.finite(e["speed_kmh"]),
                              "course_deg": geojson.finite(e["course_deg"])})
        return {"type": "positions", "t": t, "entities": moved}

    @staticmethod
    def _tick(report: TickReport, status: dict) -> dict:
        counts = {k: sum(ev.kind == k for ev in report.events) for k in ("raised", "updated", "cancelled")}
        return {"type": "tick", "t": report.t, "tick_ms": round(report.tick_ms, 2), "events": counts,
                "status": status}


class Hub:
    """Fans tick events out to WebSocket clients (see the module docstring)."""

    def __init__(self, view: TwinView, queue_size: int = 1000, max_pending: int = 3600) -> None:
        self.builder = EventBuilder(view)
        self.queue_size = queue_size
        self.clients: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[TickReport] = deque(maxlen=max_pending)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ any thread
    def on_tick(self, report: TickReport) -> None:
        """The service's tick listener: queue the report and wake the hub (never blocks)."""
        self._pending.append(report)
        self.poke()

    def poke(self) -> None:
        """Have the hub look for changes now (e.g. after an acknowledgement), from any thread."""
        loop, wake = self.loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
            loop.call_soon_threadsafe(wake.set)

    # ------------------------------------------------------------ event loop
    async def start(self) -> None:
        """Start the hub's task on the running loop."""
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await asyncio.to_thread(self.builder.build, [], False)  # know the current acknowledgements
        self._task = asyncio.create_task(self._pump(), name="twin-api-events")

    async def stop(self) -> None:
        """Stop the task and close every client."""
        self.loop = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for q in list(self.clients):
            self._close(q)

    def subscribe(self) -> asyncio.Queue:
        """A new client's queue of encoded events."""
        q: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)
        self.clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        """Forget a client."""
        self.clients.discard(q)

    async def snapshot(self) -> str:
        """The encoded ``snapshot`` event for a new client."""
        return _dumps(await asyncio.to_thread(self.builder.snapshot))

    def broadcast(self, events: list[dict]) -> None:
        """Queue encoded events for every client (on the loop thread)."""
        for text in map(_dumps, events):
            for q in list(self.clients):
                if q.full():
                    log.warning("a /ws client fell %d events behind: disconnecting it", q.qsize())
                    self._close(q)
                else:
                    q.put_nowait(text)

    def _close(self, q: asyncio.Queue) -> None:
        self.clients.discard(q)
        while not q.empty():
            q.get_nowait()
        q.put_nowait(CLOSE)

    async def _pump(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            reports = [self._pending.popleft() for _ in range(len(self._pending))]
            try:
                events = await asyncio.to_thread(self.builder.build, reports, bool(self.clients))
            except Exception:  # a broken event must not end the stream for everyone
                log.exception("building /ws events failed")
                continue
            self.broadcast(events)
