"""The demo's vehicles and field units speaking JT/T 808 to a gateway instead of publishing positions over MQTT.

`jt808_fleet_for(sim, host, port)` wraps a `scenarios.feeds.simulator.Simulator`: every vehicle and field unit of
the simulation whose registry device has a ``jt808_phone`` gets a `scenarios.feeds.jt808.Terminal` (a
`TerminalFleet` on an event loop in a background thread). The wrapper's ``step(dt)`` is the simulator's, except
that those devices' position reports (``{prefix}beidou/{id}``) are taken out of the messages and handed to their
terminals as 0x0200 location reports (WGS84, whole seconds of the simulated clock; a GCJ-02 vehicle's terminal
reports WGS84 as real terminals do); everything else (sensors, acks, task answers, the deliberately bad messages,
devices without a phone) still goes to MQTT. Every other attribute is the simulator's, so the wrapper goes where
a `Simulator` goes (``Publisher.run``)::

    with Publisher(url, respond_prefix=prefix) as pub, jt808_fleet_for(sim, host, port) as feeds:
        pub.run(feeds, duration_s)
    print(feeds.summary())
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ingest.registry import JT808_PHONE
from scenarios.feeds.jt808 import TerminalSettings
from scenarios.feeds.jt808_fleet import FleetStats, TerminalFleet, location_of
from scenarios.feeds.simulator import Simulator
from twin.district.geo import to_lonlat


def jt808_members(sim: Simulator) -> list[tuple[str, str]]:
    """(device id, terminal phone) of the simulation's vehicles and field units that have a ``jt808_phone``."""
    ids = [v.id for v in sim.fleet.vehicles] + list(sim.units.units)
    out = []
    for device_id in ids:
        device = sim.registry.get(device_id)
        phone = device.properties.get(JT808_PHONE) if device is not None else None
        if isinstance(phone, str) and phone:
            out.append((device_id, phone))
    return out


class Jt808Feeds:
    """A `Simulator` whose JT/T 808 devices report through terminals (see the module docstring).

    ``ramp_s``: the terminals connect spread over this many wall seconds; ``drain_s``: at ``stop`` the wait for the
    last answers [s]."""

    def __init__(self, sim: Simulator, host: str, port: int, *, settings: TerminalSettings | None = None,
                 ramp_s: float = 2.0, drain_s: float = 10.0) -> None:
        self.sim, self.drain_s = sim, drain_s
        members = jt808_members(sim)
        self.fleet = TerminalFleet(members, host, port, settings=settings, ramp_s=ramp_s)
        self._topics = {f"{sim.prefix}beidou/{device}": device for device, _ in members}
        self._vehicles = {v.id: v for v in sim.fleet.vehicles}
        self.diverted = 0
        """Position reports handed to terminals."""
        self.stats: FleetStats | None = None
        """The fleet's counters once stopped."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __getattr__(self, name: str) -> Any:
        if name == "sim":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.sim, name)

    # -- the terminals' thread --------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> Jt808Feeds:
        """Start the terminals' event loop thread (the terminals connect over ``ramp_s``)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="jt808-terminals", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the JT/T 808 terminals' event loop did not start")
        return self

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self.stats = self._loop.run_until_complete(self.fleet.run(None, drain_s=self.drain_s))
        finally:
            self._loop.close()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``drain_s`` for the last answers, close the connections and end the thread."""
        if self._thread is None or self._loop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.fleet.stop)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> Jt808Feeds:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the simulator's step ------------------------------------------------------------------------------

    def step(self, dt: float = 1.0) -> list[tuple[str, bytes]]:
        """``Simulator.step``, with the JT/T 808 devices' position reports handed to their terminals."""
        sim = self.sim
        n_posts, n_bad = len(sim.posts), sum(sim.bad.counts.values())
        out = sim.step(dt)
        n_bad = sum(sim.bad.counts.values()) - n_bad
        feeds = range(n_posts, len(out) - n_bad)  # posted messages come first, the bad ones last
        keep = []
        for i, (topic, payload) in enumerate(out):
            device = self._topics.get(topic) if i in feeds else None
            if device is None:
                keep.append((topic, payload))
                continue
            self._hand(device, sim.t)
        return keep

    def _hand(self, device: str, t: float) -> None:
        """Give the device's position at ``t`` to its terminal (in the terminals' thread)."""
        location = location_of(self._position(device), t)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.fleet.submit, device, location)
            self.diverted += 1

    def _position(self, device: str) -> tuple[float, float, float, float]:
        """(lon, lat, speed_kmh, course_deg) of a vehicle or unit now, WGS84 [degree, km h-1, degree]."""
        vehicle = self._vehicles.get(device)
        if vehicle is not None:
            lon, lat, course = self.sim.fleet.position(vehicle)
            return lon, lat, vehicle.speed_kmh, course
        unit = self.sim.units.units[device]
        lon, lat = to_lonlat(unit.x, unit.y)
        return float(lon), float(lat), unit.speed_kmh, unit.course

    def summary(self) -> str:
        """One line of the terminals' counters."""
        s = self.stats or self.fleet.stats
        c = s.counters
        assert c is not None
        return (f"jt808: {s.terminals} terminals, {self.diverted} positions handed over, {c.sent} sent, "
                f"{c.answered} answered, {c.resent} resent, {c.texts} texts received, "
                f"{c.connect_failures} connect failures, {c.dropped} dropped")


def jt808_fleet_for(sim: Simulator, host: str, port: int, **options: Any) -> Jt808Feeds:
    """The `Jt808Feeds` of ``sim`` for the gateway at ``host:port`` (not started: use it in a ``with``).
    ``options``: ``settings`` (`TerminalSettings`), ``ramp_s``, ``drain_s``."""
    return Jt808Feeds(sim, host, port, **options)
