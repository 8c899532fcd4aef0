"""The city tier in one process: the city clock, the alert merger, the unit router and the city API.

docs/city-deployment.md section 6, docs/guides/city-tier.md. ``twin city-tier --city city.yaml`` runs it
(`twin.cli.city_tier`); `tier_from_city` builds it from a city manifest.

Threads:

- ``city-clock`` (`twin.city.clock.CityClock`): ticks into every district partition of the stream; left out
  without a stream (the ticks come from elsewhere: one clock per city);
- ``city-tier`` (this module's consumer): takes the MQTT messages off the transport's bounded queue, in order:
  district alerts (``{prefix}alerts/#``) into the merger, the tier's own retained city alerts
  (``{prefix}cityalerts/#``, read back after a restart) into `AlertMerger.adopt`, unit positions
  (``{prefix}beidou/{unit}``) into the unit router, the district twins' status messages
  (``{prefix}twin/status/<partition>``, retained, after every tick) onto the board; publishes what they produce,
  then acknowledges the message (at-least-once: a crash before the ack gets the message again);
- ``city-http`` (uvicorn, `twin.city.http`): reads the `CityBoard` the consumer keeps up to date.

Outbound topics (QoS 1):

- ``{prefix}cityalerts/{identifier}``, **retained**: a city alert's current CAP message; after its Cancel an empty
  retained message removes it (as ``{prefix}alerts/{identifier}`` does for district alerts). Not under
  ``{prefix}alerts/`` so that district-alert subscribers (and the tier itself) do not take city alerts for district
  ones;
- ``{prefix}units/{unit}/alerts``: the Restricted copy of a city alert, for the units `twin.city.units` picks.

Start-up: for ``settle_s`` after the first connection the merger holds its output while the retained district
alerts and the tier's own retained city alerts of its previous run come in; then it publishes once what changed
(city alerts still backed keep their identifiers, the others are cancelled).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

import shapely.errors

from ingest.decoders import decode_beidou
from ingest.registry import load_registry
from ingest.rejection import Rejection
from ingest.stream.base import Stream
from ingest.transport.client import InboundMessage, MqttTransport
from twin.api.server import ServerHandle
from twin.city.cityalert import CityContext, CityUpdate
from twin.city.citymap import city_map
from twin.city.clock import CityClock
from twin.city.districtalert import RejectedError
from twin.city.grouping import DEFAULT_TOLERANCE_M
from twin.city.http import CityBoard, DistrictLink, DistrictProbe, serve_city
from twin.city.merge import AlertMerger
from twin.city.units import DEFAULT_BUFFER_M, UnitRouter
from twin.district.geo import gcj02_to_wgs84

log = logging.getLogger(__name__)

SETTLE_S = 1.0
"""How long the merger holds its output after the first connection (retained messages come in) [s]."""
POLL_S = 0.2
"""Longest wait of the consumer for a message before it looks at its other duties [s]."""
MAX_UNIT_TOPICS = 2000
"""Up to this many units are subscribed one topic each; more share ``{prefix}beidou/+`` (filtered here)."""
DEFAULT_CLIENT_ID = "citytwin-city-tier"


@dataclass
class TierConfig:
    """Settings of a `CityTier` (``twin city-tier`` fills them from the manifest and its options)."""

    broker: str
    prefix: str = "city/"
    client_id: str = DEFAULT_CLIENT_ID
    protocol: str = "5"
    tolerance_m: float = DEFAULT_TOLERANCE_M
    buffer_m: float = DEFAULT_BUFFER_M
    settle_s: float = SETTLE_S
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    """None: no city API."""
    token: str | None = None
    end_session_on_stop: bool = False
    """Drop the broker-side session when stopping (tests, one-off runs)."""
    units: frozenset[str] | None = None
    """The city's field units (None: follow every unit that reports on ``{prefix}beidou/+``)."""

    @property
    def alerts_in(self) -> str:
        return f"{self.prefix}alerts/"

    @property
    def alerts_out(self) -> str:
        return f"{self.prefix}cityalerts/"

    def subscriptions(self) -> list[str]:
        """Topic filters of the tier's session."""
        units = (f"{self.prefix}beidou/+",) if self.units is None or len(self.units) > MAX_UNIT_TOPICS else tuple(
            f"{self.prefix}beidou/{u}" for u in sorted(self.units))
        return [f"{self.alerts_in}#", f"{self.alerts_out}#", f"{self.prefix}twin/status/+", *units]


@dataclass
class TierStats:
    """Counters of the consumer [1]."""

    messages: int = 0
    published: int = 0
    """City messages published (retained)."""
    unit_messages: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """District or city messages refused, by reason (`twin.city.districtalert.REASONS`), positions by rejection
    reason."""


class CityTier:
    """The running city tier (module docstring). ``start`` / ``stop``; ``board`` is what the API shows."""

    def __init__(self, config: TierConfig, context: CityContext, board: CityBoard,
                 locate: Callable[[float, float], str], *, clock: Callable[[], float] = time.time,
                 city_clock: CityClock | None = None, stream: Stream | None = None,
                 transport: MqttTransport | None = None) -> None:
        self.config, self.board, self.clock = config, board, clock
        self.merger = AlertMerger(context, config.tolerance_m, hold=config.settle_s > 0)
        self.router = UnitRouter(locate, config.units, config.buffer_m)
        self.city_clock, self.stream = city_clock, stream
        self.transport = transport or MqttTransport(config.broker, client_id=config.client_id,
                                                    subscriptions=config.subscriptions(), protocol=config.protocol)
        self.probe = DistrictProbe(board.districts)
        self.stats = TierStats()
        self.server: ServerHandle | None = None
        self.released = threading.Event()
        """Set once the merger has published after its start-up hold."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected_at: float | None = None
        self._stopped = False
        board.status, board.units, board.now = self.status, self._units, clock
        self._partitions = frozenset(d.partition for d in board.districts)
        if config.settle_s <= 0:
            self.released.set()

    # ------------------------------------------------------------ running
    def start(self) -> CityTier:
        """Serve the API (an unusable address raises OSError before anything else starts), start the clock,
        connect to the broker in the background and start the consumer."""
        if self.config.http_port is not None:
            self.server = serve_city(self.board, self.probe, self.config.http_host, self.config.http_port,
                                     self.config.token)
        if self.city_clock is not None:
            self.city_clock.start()
        self.transport.start(wait_s=None)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="city-tier", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop everything (once; a second call does nothing); messages not yet acknowledged stay with the broker for
        the next start."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self.transport.close_inbound()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.city_clock is not None:
            self.city_clock.stop()
        if self.server is not None:
            self.server.stop()
        self.transport.stop(end_session=self.config.end_session_on_stop)
        if self.stream is not None:
            self.stream.close()
        self.probe.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg: InboundMessage | None = self.transport.queue.get(timeout=POLL_S)
            except queue.Empty:
                msg = None
            if not self.released.is_set():
                self._maybe_release()
            if msg is None:
                continue
            with self._lock:
                self._handle(msg)
            self.transport.ack(msg)

    def _maybe_release(self) -> None:
        if not self.transport.connected.is_set():
            return
        now = time.monotonic()
        if self._connected_at is None:
            self._connected_at = now
        if now - self._connected_at >= self.config.settle_s:
            with self._lock:
                self._publish(self.merger.release(self.clock()))
                self._refresh()
            self.released.set()
            log.info("city tier: %d district alerts, %d city alerts after start-up", len(self.merger.active),
                     len(self.merger.cities))

    # ------------------------------------------------------------ messages
    def _handle(self, msg: InboundMessage) -> None:
        self.stats.messages += 1
        topic, cfg = msg.topic, self.config
        try:
            if topic.startswith(cfg.alerts_in):
                self._district_alert(msg)
            elif topic.startswith(cfg.alerts_out):
                if msg.retain and msg.payload:
                    self._publish(self.merger.adopt(msg.payload, self.clock()))
            elif topic.startswith(f"{cfg.prefix}beidou/"):
                self._position(msg)
            elif topic.startswith(f"{cfg.prefix}twin/status/"):
                self._twin_status(msg)
                return
        except RejectedError as exc:
            self.stats.refused[exc.reason] += 1
            if sum(self.stats.refused.values()) % 100 == 1:
                log.warning("city tier: refused a message on %s (%s)", topic, exc)
            return
        except (ValueError, TypeError, KeyError, shapely.errors.GEOSException) as exc:
            self.stats.refused["internal_error"] += 1
            log.exception("city tier: could not handle a message on %s: %s", topic, exc)
            return
        self._refresh()

    def _district_alert(self, msg: InboundMessage) -> None:
        now = self.clock()
        if not msg.payload:  # a retained alert removed (after its Cancel, normally already seen)
            self._publish(self.merger.remove(msg.topic.rsplit("/", 1)[-1], now))
        else:
            self._publish(self.merger.accept(msg.payload, now))

    def _position(self, msg: InboundMessage) -> None:
        unit = msg.topic.rsplit("/", 1)[-1]
        if self.config.units is not None and unit not in self.config.units:
            return  # another device on the shared wildcard (a vehicle): not ours to follow
        batch = decode_beidou(msg.payload, topic=msg.topic, received_at=msg.received_at)
        if isinstance(batch, Rejection):
            self.stats.refused[f"position_{batch.reason}"] += 1
            return
        fixes = [i for i in range(len(batch.t)) if batch.quantity[i] == "position" and math.isfinite(batch.lon[i])
                 and math.isfinite(batch.lat[i])]
        if not fixes:
            return
        i = max(fixes, key=lambda k: batch.t[k])
        lon, lat = float(batch.lon[i]), float(batch.lat[i])
        if batch.datum[i] == "GCJ02":
            lon, lat = (float(v) for v in gcj02_to_wgs84(lon, lat))
        self._deliver(self.router.on_fix(unit, lon, lat, float(batch.t[i])))

    def _twin_status(self, msg: InboundMessage) -> None:
        partition = msg.topic.rsplit("/", 1)[-1]
        if partition not in self._partitions:
            self.stats.refused["status_unknown_partition"] += 1
            return
        try:
            doc = json.loads(msg.payload) if msg.payload else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            self.stats.refused["status_not_json"] += 1
            return
        self.board.set_twin_status(partition, doc)

    # ------------------------------------------------------------ output
    def _publish(self, updates: Iterable[CityUpdate]) -> None:
        for u in updates:
            topic = f"{self.config.alerts_out}{u.identifier}"
            self.transport.publish(topic, json.dumps(u.message, ensure_ascii=False).encode(), qos=1, retain=True)
            if u.cancelled:
                self.transport.publish(topic, b"", qos=1, retain=True)
            self.stats.published += 1
            self._deliver(self.router.on_city(u.identifier, u.message, u.area, u.by_district, u.cancelled))

    def _deliver(self, deliveries: Iterable) -> None:
        for d in deliveries:
            self.transport.publish(f"{self.config.prefix}units/{d.unit}/alerts",
                                   json.dumps(d.message, ensure_ascii=False).encode(), qos=1)
            self.stats.unit_messages += 1

    def _refresh(self) -> None:
        counts = Counter(a.district for a in self.merger.active.values())
        rows = [(c.identifier, c.last, sorted(c.refs)) for c in self.merger.city_alerts() if c.last is not None]
        self.board.set_alerts(rows, dict(counts))

    # ------------------------------------------------------------ reading
    def status(self) -> dict:
        """The counters the API's ``/api/city/health`` shows."""
        with self._lock:
            merger = {"district_alerts": len(self.merger.active), "city_alerts": len(self.merger.cities),
                      "holding": self.merger.holding, **dict(self.merger.counts),
                      "rejected": dict(self.merger.rejected)}
            units = {"followed": len(self.router.fixes), "refused": dict(self.router.refused)}
            tier = {"messages": self.stats.messages, "published": self.stats.published,
                    "unit_messages": self.stats.unit_messages, "refused": dict(self.stats.refused)}
        clock = asdict(self.city_clock.stats) if self.city_clock is not None else None
        t = self.transport.stats
        mqtt = {"connected": self.transport.connected.is_set(), "published": t.published, "confirmed": t.confirmed,
                "publish_refused": t.publish_refused}
        return {"clock": clock, "merger": merger, "units": units, "tier": tier, "mqtt": mqtt}

    def _units(self) -> list[dict]:
        with self._lock:
            return self.router.where()


# ---------------------------------------------------------------- from a city manifest
def district_links(city, apis: Mapping[str, str]) -> list[DistrictLink]:
    """The districts of a `twin.city.city.City` with their twins' API addresses: ``apis`` (partition or adcode ->
    URL), else an ``api`` the manifest gives the district (when it has that key)."""
    out = []
    for spec in city.manifest.districts:
        api = apis.get(spec.partition) or apis.get(spec.code) or getattr(spec, "api", "") or ""
        out.append(DistrictLink(spec.partition, spec.code, spec.name, spec.name_en, str(api)))
    return out


def city_context(city) -> CityContext:
    """Sender and district names of a city's alerts: ``twin.city@citytwin``, ``{name}城市运行数字孪生·全市 /
    citytwin {name_en} city tier``, partition -> (name_en, name)."""
    names = {s.partition: (s.name_en, s.name) for s in city.manifest.districts}
    return CityContext(sender_name=f"{city.name}城市运行数字孪生·全市 / citytwin {city.name_en} city tier",
                       district_names=names)


def city_units(city) -> frozenset[str]:
    """The field units of a city's registries (``kind`` unit); `ingest.registry.RegistryError` or OSError when
    one cannot be read."""
    units: set[str] = set()
    for path in city.manifest.registries:
        units.update(d.id for d in load_registry(path).of_kind("unit"))
    return frozenset(units)


def tier_from_city(city, config: TierConfig, *, apis: Mapping[str, str] | None = None,
                   clock: Callable[[], float] = time.time, stream: Stream | None = None,
                   raster_cell_m: float = 100.0) -> CityTier:
    """A `CityTier` for a `twin.city.city.City`: its districts and names, its district raster (built and cached on
    first use, about a second per ten districts) for locating units, and, when ``stream`` is given, a city clock
    ticking into every partition every ``tick_s`` of the manifest."""
    raster = city.raster(raster_cell_m)

    def locate(lon: float, lat: float) -> str:
        return str(raster.codes_of([lon], [lat])[0])

    board = CityBoard(city.manifest.code, city.name, city.name_en, district_links(city, apis or {}),
                      tick_s=city.manifest.tick_s)
    board.map = city_map(city)  # the city page's map (GET /api/city/map)
    city_clock = None
    if stream is not None:
        stream.ensure(city.partitions)
        city_clock = CityClock(stream, city.partitions, city.manifest.tick_s, clock)
    return CityTier(config, city_context(city), board, locate, clock=clock, city_clock=city_clock, stream=stream)
