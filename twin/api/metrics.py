"""``/metrics``: the twin's counters in the Prometheus text exposition format (prometheus_client).

Read at scrape time from the service (ingest counters, alerts, outbox, status, and the vital signs of every node
of the management tree) by a custom collector on a private registry, so nothing is double-counted and nothing
global is touched; tick durations and alert events are observed by the app's tick listener.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.hazards import ALERT_HAZARDS
from twin.api.view import TwinView
from twin.district.layers import LEVEL_NAMES
from twin.live.query import TickReport

PREFIX = "citytwin"
TREE_LEVELS = ("city", "district", "street", "unit")
"""The levels of the management tree whose nodes' indicators are exported."""
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
"""Tick duration histogram buckets. [s]"""


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class TwinCollector(Collector):
    """Reads the service's counters at every scrape."""

    def __init__(self, view: TwinView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        """The families of one scrape."""
        yield from self._ingest(self.view.ingest_metrics())
        yield from self._twin(self.view.status())
        yield self._alerts()
        yield from self._indicators()

    def _ingest(self, m: dict) -> Iterator[Metric]:
        yield _counter("ingest_received", "MQTT messages received", m["received"])
        yield _counter("ingest_accepted", "messages accepted (decoded and checked)", m["accepted"])
        yield _counter("ingest_records_accepted", "records accepted (a message may hold many)",
                       m["accepted_records"])
        yield _counter("ingest_duplicates", "redelivered messages recognised and skipped (every record already seen)",
                       m["duplicates"])
        rejected = CounterMetricFamily(f"{PREFIX}_ingest_rejected", "messages rejected, by reason",
                                       labels=["reason"])
        for reason, n in sorted(m["rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield _counter("ingest_internal_errors", "messages that hit an unexpected error", m["internal_errors"])
        yield _gauge("ingest_queue_depth", "messages waiting in the transport queue", m["queue_depth"])
        yield _gauge("ingest_fsync_last_seconds", "duration of the last raw-log group commit",
                     m["fsync_last_ms"] / 1e3)
        yield _gauge("ingest_fsync_max_seconds", "longest raw-log group commit", m["fsync_max_ms"] / 1e3)

    def _twin(self, s: dict) -> Iterator[Metric]:
        yield _gauge("tick_last_seconds", "duration of the last tick", s["tick_ms"] / 1e3)
        yield _gauge("lag_seconds", "wall time since the last tick (at most about one tick period when the twin "
                     "keeps up)", s["lag_ms"] / 1e3)
        yield _gauge("alerts_active", "alerts active now", s["alerts_active"])
        yield _gauge("outbox_depth", "stored messages waiting to be published", s["outbox"])
        yield _gauge("devices_seen", "devices heard from since start", s["devices_seen"])
        yield _gauge("units_tracked", "field units with a known position in the grid", s["units_tracked"])
        yield _gauge("uptime_seconds", "time since the service started", s["uptime_s"])
        last = self.view.last_tick()
        yield _gauge("last_tick_timestamp_seconds", "twin time of the last tick (unix)", last or 0.0)

    def _alerts(self) -> Metric:
        fam = GaugeMetricFamily(f"{PREFIX}_alerts_active_by_level", "active alerts by hazard and level",
                                labels=["hazard", "level"])
        active = self.view.active_by_hazard_level()
        known = {(h, lv) for h in ALERT_HAZARDS for lv in range(1, 5)}  # every hazard of the registry, zeros too
        for (hazard, level) in sorted(known | set(active)):
            fam.add_metric([hazard, LEVEL_NAMES.get(level, str(level))], active.get((hazard, level), 0))
        return fam


    def _indicators(self) -> Iterator[Metric]:
        """``indicator`` (the value, in the indicator's unit; none while it has no value) and ``indicator_level``
        (0-4, -1 no data) of every indicator of every node, from `twin.live.query.LiveQuery.indicators` now."""
        value = GaugeMetricFamily(f"{PREFIX}_indicator", "vital-sign indicator of a node of the management tree, "
                                  "in its unit (people person, water m, traffic index 0-10, sensors %, others a "
                                  "count)", labels=["node", "node_level", "indicator"])
        level = GaugeMetricFamily(f"{PREFIX}_indicator_level", "warning level of a vital-sign indicator: 0 none, "
                                  "1 blue, 2 yellow, 3 orange, 4 red, -1 no data",
                                  labels=["node", "node_level", "indicator"])
        for tree_level in TREE_LEVELS:
            for node in self.view.indicators(tree_level)["nodes"]:
                for name, ind in node.get("indicators", {}).items():
                    labels = [str(node["id"]), tree_level, name]
                    v = ind.get("value")
                    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                        value.add_metric(labels, float(v))
                    level.add_metric(labels, float(ind.get("level", -1)))
        yield value
        yield level


class ApiMetrics:
    """The API's registry: the twin collector plus what the API observes itself."""

    def __init__(self, view: TwinView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TwinCollector(view))
        self.ticks = Histogram(f"{PREFIX}_tick_duration_seconds", "duration of live ticks (models and alerts)",
                               buckets=TICK_BUCKETS, registry=self.registry)
        self.alert_events = Counter(f"{PREFIX}_alert_events", "alert lifecycle events seen by the API",
                                    ["kind"], registry=self.registry)
        self.ws_clients = Gauge(f"{PREFIX}_ws_clients", "WebSocket clients connected to /ws",
                                registry=self.registry)

    def observe(self, report: TickReport) -> None:
        """Count one tick (called on the ingest thread; cheap and non-blocking)."""
        self.ticks.observe(report.tick_ms / 1e3)
        for ev in report.events:
            self.alert_events.labels(ev.kind).inc()

    def text(self) -> bytes:
        """The exposition text of one scrape."""
        return generate_latest(self.registry)
