"""``Simulator``: the synthetic feeds of a district on a simulated clock; ``Publisher``: sends them.

``Simulator.step(dt)`` advances ``t`` by ``dt`` seconds and returns the ``(topic, payload)`` pairs due at
that step, in a fixed order; the same seed and configuration give the same bytes. ``Publisher`` publishes
them with paho-mqtt at QoS 1, pacing the simulated clock at ``speed`` simulated seconds per wall second.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.batch import Batch
from ingest.decoders.report import encode_report
from ingest.registry import load_registry
from scenarios.feeds.bad import BadMessages
from scenarios.feeds.mqtt import paho_client
from scenarios.feeds.roads import RoadGraph, load_road_graph
from scenarios.feeds.sensors import Sensors, Storm
from scenarios.feeds.units import Units
from scenarios.feeds.vehicles import Fleet
from twin.district.cim import DEFAULT_DRAINAGE_MM_H
from twin.district.sources import data_dir

log = logging.getLogger(__name__)

DEFAULT_START = 1767189600.0
"""2025-12-31 22:00 +08:00 (14:00 UTC): New Year's Eve on the Bund [unix s]."""


@dataclass
class FeedConfig:
    """What the simulator produces. Times in unix seconds, durations in seconds unless named."""

    seed: int = 0
    start: float = DEFAULT_START
    vehicles: int = 40
    gcj_share: float = 0.2
    bad_share: float = 0.02
    storm_return_period_yr: float | None = 5.0
    storm_duration_min: float = 60.0
    storm_start: float | None = None
    """Default: 10 minutes after ``start``."""
    crowd_peak: float = 3.0
    """Density at the busiest counter at the profile's maximum, per m2 of the walkable area it counts over
    (`scenarios.feeds.sensors.Sensors`) [person m-2]."""
    crowd_peak_at: float | None = None
    """Default: 2.5 h after ``start`` (00:30 +08:00 with the default start, the real profile's midnight hour)."""
    crowd_span_s: float = 86400.0
    underpass_drainage_mm_h: float = DEFAULT_DRAINAGE_MM_H
    """What the underpasses' drains and pumps take away, as a rain intensity [mm h-1]."""
    congestion: dict[str, float] = field(default_factory=dict)
    """Speed factor (0, 1] by English road name, e.g. ``{"East Zhongshan No. 1 Road": 0.3}``."""
    prefix: str = "city/"
    vehicle_report_s: float = 5.0
    sensor_report_s: float = 60.0
    district: str = "bund"

    def check(self) -> None:
        """Raise ``ValueError`` listing every bad value."""
        problems = []
        if not 0 <= self.gcj_share <= 1:
            problems.append(f"gcj share {self.gcj_share} not in [0, 1]")
        if not 0 <= self.bad_share < 1:
            problems.append(f"bad share {self.bad_share} not in [0, 1)")
        if self.vehicles < 0:
            problems.append(f"vehicles {self.vehicles} < 0")
        if self.storm_return_period_yr is not None and not self.storm_return_period_yr >= 1:
            problems.append(f"storm return period {self.storm_return_period_yr} yr < 1")
        if not self.storm_duration_min > 0:
            problems.append(f"storm duration {self.storm_duration_min} min <= 0")
        if not 0 <= self.crowd_peak <= 10:
            problems.append(f"crowd peak {self.crowd_peak} person/m2 not in [0, 10]")
        if not self.underpass_drainage_mm_h >= 0:
            problems.append(f"underpass drainage {self.underpass_drainage_mm_h} mm/h < 0")
        if not self.crowd_span_s > 0:
            problems.append("crowd span must be > 0 s")
        if not self.prefix.endswith("/") or any(c in self.prefix for c in "+#"):
            problems.append(f"prefix {self.prefix!r} must end with / and have no wildcard")
        for road, f in self.congestion.items():
            if not 0 < f <= 1:
                problems.append(f"congestion factor {f} for {road!r} not in (0, 1]")
        if self.vehicle_report_s <= 0 or self.sensor_report_s <= 0:
            problems.append("report intervals must be > 0 s")
        if problems:
            raise ValueError("; ".join(problems))


@functools.lru_cache(maxsize=4)
def _road_graph(path: str) -> RoadGraph:
    """The road graph of a file, built once per process (simulators only read it)."""
    return load_road_graph(path)


class Simulator:
    """The district's feeds on a simulated clock ``t`` [unix s].

    ``walkable_m2`` (device id -> m2) is the walkable area the receiving twin divides each crowd counter's count
    by (`scenarios.feeds.sensors.twin_walkable_m2` of that twin); the counters then count people so that the
    twin reads ``crowd_peak`` x shape x weight. Without it a counter counts over its registry
    ``walkable_area_m2``, else over its coverage polygon (`scenarios.feeds.sensors.Sensors`).
    """

    def __init__(self, config: FeedConfig | None = None, *, registry_path: str | Path | None = None,
                 roads_path: str | Path | None = None, walkable_m2: Mapping[str, float] | None = None) -> None:
        cfg = config or FeedConfig()
        cfg.check()
        self.config, self.t, self.prefix = cfg, cfg.start, cfg.prefix
        folder = data_dir() / cfg.district
        self.registry = load_registry(registry_path or folder / "registry.geojson")
        self.graph = _road_graph(str(roads_path or folder / "roads.geojson"))
        rng = np.random.default_rng(cfg.seed)
        streams = rng.spawn(4)
        vehicle_ids = [d.id for d in self.registry.of_kind("vehicle")]
        if cfg.vehicles > len(vehicle_ids):
            raise ValueError(f"{cfg.vehicles} vehicles asked, the registry has {len(vehicle_ids)}")
        vehicle_ids = vehicle_ids[: cfg.vehicles]
        self.congestion = dict(cfg.congestion)
        self.fleet = Fleet(self.graph, vehicle_ids, streams[0], cfg.start, gcj_share=cfg.gcj_share,
                           report_s=cfg.vehicle_report_s, congestion=self.congestion)
        self.units = Units(self.registry.of_kind("unit"), streams[1], cfg.start, report_s=cfg.vehicle_report_s)
        storm = None
        if cfg.storm_return_period_yr is not None:
            s0 = cfg.start + 600.0 if cfg.storm_start is None else cfg.storm_start
            storm = Storm(cfg.storm_return_period_yr, cfg.storm_duration_min, s0)
        free = {}
        for e in self.graph.edges:
            free[e.name] = max(free.get(e.name, 0.0), e.speed_kmh)
        peak_at = cfg.start + 2.5 * 3600.0 if cfg.crowd_peak_at is None else cfg.crowd_peak_at
        self.sensors = Sensors(self.registry, streams[2], cfg.start, report_s=cfg.sensor_report_s,
                               crowd_peak=cfg.crowd_peak, crowd_peak_at=peak_at, crowd_span_s=cfg.crowd_span_s,
                               storm=storm, drainage_mm_h=cfg.underpass_drainage_mm_h,
                               congestion=self.congestion, free_speed_kmh=free, walkable_m2=walkable_m2)
        sensor_ids = {k: [d.id for d in self.registry.of_kind(k)] for k in ("crowd", "rain", "water", "traffic")}
        self.bad = BadMessages(streams[3], cfg.bad_share, sensor_ids, vehicle_ids)
        self.sent = 0
        self.posts: list[tuple[str, bytes | _Report]] = []
        """Messages to send with the next step (`post`), e.g. a citizen's report."""

    def set_congestion(self, road: str, factor: float) -> None:
        """Slow a named road to ``factor`` of its free speed (1 clears it); vehicles and loops follow."""
        if not 0 < factor <= 1:
            raise ValueError(f"congestion factor {factor} not in (0, 1]")
        if factor == 1:
            self.congestion.pop(road, None)
        else:
            self.congestion[road] = factor

    def respond(self, unit_id: str, cap_json: str | bytes | dict[str, Any]) -> None:
        """Hand a CAP alert to a field unit (see ``scenarios.feeds.units``)."""
        self.units.respond(unit_id, cap_json)

    def follow_task(self, unit_id: str, task_json: str | bytes | dict[str, Any]) -> None:
        """Hand a case desk's task message to a field unit (see ``scenarios.feeds.units``)."""
        self.units.follow_task(unit_id, task_json)

    def observe_alert(self, cap_json: str | bytes | dict[str, Any]) -> None:
        """Let the field units know of a public CAP message (``city/alerts/{id}``)."""
        self.units.observe_alert(cap_json)

    def post(self, topic: str, payload: bytes) -> None:
        """Send ``payload`` on ``{prefix}{topic}`` with the next step (before the feeds' messages)."""
        self.posts.append((f"{self.prefix}{topic}", payload))

    def report(self, source: str, report_id: str, *, category: str, lon: float, lat: float, description: str,
               address: str = "", datum: str = "WGS84") -> None:
        """Post a citizen report on ``{prefix}reports/{source}`` (`ingest.decoders.report.encode_report`) with the
        next step, stamped with the simulated time then; ``lon``/``lat`` [degree] in ``datum``."""
        details = {"category": category, "description": description} | ({"address": address} if address else {})
        note = json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self.posts.append((f"{self.prefix}reports/{source}", _Report(report_id, lon, lat, datum, note)))

    def step(self, dt: float = 1.0) -> list[tuple[str, bytes]]:
        """Advance the clock by ``dt`` [s] and return the messages due: posted ones, the feeds' good ones, then the
        bad."""
        if not dt > 0:
            raise ValueError(f"dt {dt} must be > 0")
        self.t += dt
        out = [(topic, p.encode(self.t) if isinstance(p, _Report) else p) for topic, p in self.posts]
        self.posts.clear()
        out += self.fleet.step(self.t, dt, self.prefix)
        out += self.units.step(self.t, dt, self.prefix)
        out += self.sensors.step(self.t, dt, self.prefix)
        out += self.bad.for_good(len(out), self.t, self.prefix)
        self.sent += len(out)
        return out


@dataclass(frozen=True)
class _Report:
    """A posted report, encoded when it is sent (its ``t`` is the simulated time of that step)."""

    ref: str
    lon: float
    lat: float
    datum: str
    note: str

    def encode(self, t: float) -> bytes:
        return encode_report(Batch.build(1, t=round(t, 3), quantity="report", ref=self.ref, lon=self.lon,
                                         lat=self.lat, datum=self.datum, note=self.note))


class Publisher:
    """Publish a ``Simulator``'s messages to a broker at QoS 1, ``speed`` simulated seconds per wall second.

    A thin wrapper around a paho-mqtt 2 client (not a subclass); ``max_inflight`` bounds the
    unacknowledged messages. ``run`` waits for every PUBACK before it returns.

    With ``respond_prefix`` (the topic prefix, e.g. ``city/``) it also subscribes to
    ``{prefix}units/+/alerts``, ``{prefix}units/+/tasks`` and ``{prefix}alerts/+`` and hands each message, before
    the next step, to ``Simulator.respond`` (a unit's alert), ``Simulator.follow_task`` (a unit's task) or
    ``Simulator.observe_alert`` (a public alert), so the simulated field units answer the alerts a live twin
    routes to them and follow the tasks its case desk gives them.
    """

    def __init__(self, url: str, *, protocol: str = "5", client_id: str = "", max_inflight: int = 100,
                 connect_timeout_s: float = 10.0, respond_prefix: str | None = None) -> None:
        self._client, self.url = paho_client(url, protocol=protocol,
                                             client_id=client_id or f"twin-simulate-{id(self):x}")
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self._cond = threading.Condition()
        self._inflight = 0
        self.max_inflight = max_inflight
        self.published = 0
        self.acked = 0
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self.respond_prefix = respond_prefix
        self.alerts: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=10_000)
        """Messages from the twin (unit alerts, unit tasks, public alerts) not yet handed to the simulator."""
        self.alerts_received = 0
        """Unit alerts handed to the simulated units."""
        self.tasks_received = 0
        """Task messages handed to the simulated units."""
        self.connect_timeout_s = connect_timeout_s

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            if self.respond_prefix is not None:  # in on_connect so it survives reconnects
                p = self.respond_prefix
                client.subscribe([(f"{p}units/+/alerts", 1), (f"{p}units/+/tasks", 1), (f"{p}alerts/+", 1)])
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.alerts.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            log.warning("alert queue full, dropped a message on %s", msg.topic)

    def _respond(self, sim: Simulator) -> None:
        """Hand queued messages from the twin to the simulated units (run thread only)."""
        while True:
            try:
                topic, payload = self.alerts.get_nowait()
            except queue.Empty:
                return
            if not payload:
                continue  # a retained message being removed
            try:
                self._hand(sim, topic, payload)
            except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
                log.warning("cannot hand the message on %s to the simulated units: %s", topic, exc)

    def _hand(self, sim: Simulator, topic: str, payload: bytes) -> None:
        """One message: a unit's alert or task, or a public alert."""
        parts = topic[len(self.respond_prefix or ""):].split("/")
        if len(parts) == 3 and parts[0] == "units" and parts[2] == "alerts":
            sim.respond(parts[1], payload)
            self.alerts_received += 1
        elif len(parts) == 3 and parts[0] == "units" and parts[2] == "tasks":
            sim.follow_task(parts[1], payload)
            self.tasks_received += 1
        elif len(parts) == 2 and parts[0] == "alerts":
            sim.observe_alert(payload)
        else:
            log.debug("not a topic for the units: %s", topic)  # amqtt can send non-matching retained messages

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self.acked += 1
            self._inflight -= 1
            self._cond.notify_all()

    def __enter__(self) -> Publisher:
        try:
            self._client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self.url.host}:{self.url.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout_s):
            self._client.loop_stop()
            raise ConnectionError(f"broker {self.url.host}:{self.url.port} did not accept the connection")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish one message at QoS 1, waiting while ``max_inflight`` are unacknowledged."""
        with self._cond:
            while self._inflight >= self.max_inflight:
                self._cond.wait(1.0)
            self._inflight += 1
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != 0:
            with self._cond:
                self._inflight -= 1
            raise ConnectionError(f"publish to {topic} failed (paho rc {info.rc})")
        self.published += 1

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def run(self, sim: Simulator, duration_s: float, *, speed: float = 1.0, dt: float = 1.0,
            progress: Callable[[float, int, float], None] | None = None, progress_every_s: float = 1.0,
            stop: threading.Event | None = None, clock: Callable[[], float] | None = None,
            before_step: Callable[[Simulator], None] | None = None) -> int:
        """Step ``sim`` for ``duration_s`` simulated seconds and publish; return the messages published.

        ``progress(sim_elapsed_s, published, rate_per_wall_s)`` is called about every ``progress_every_s``.
        With ``clock`` (simulated unix seconds, e.g. the live twin's clock) the steps keep pace with it
        instead of with the wall clock, so the feed's timestamps and the receiver's clock agree;
        ``before_step(sim)`` runs before every step (a storyline's beats)."""
        if not speed > 0:
            raise ValueError(f"speed {speed} must be > 0")
        wall0 = time.monotonic()
        last_progress = wall0
        elapsed = 0.0
        while elapsed < duration_s - 1e-9 and not (stop is not None and stop.is_set()):
            step = min(dt, duration_s - elapsed)
            self._respond(sim)
            if before_step is not None:
                before_step(sim)
            for topic, payload in sim.step(step):
                self.publish(topic, payload)
            elapsed += step
            wait = wall0 + elapsed / speed - time.monotonic() if clock is None else (sim.t - clock()) / speed
            if wait > 0:
                time.sleep(wait)
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_every_s:
                progress(elapsed, self.published, self.published / max(now - wall0, 1e-9))
                last_progress = now
        if not self.drain():
            log.warning("%d messages not acknowledged", self._inflight)
        return self.published
