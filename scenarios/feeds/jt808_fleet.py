"""Many simulated JT/T 808 terminals over one event loop (`scenarios.feeds.jt808.Terminal`).

`TerminalFleet` starts its terminals spread over ``ramp_s`` seconds and, with a ``position(device, t)`` callback,
has each report every ``report_s`` seconds (``rounds`` reports, or until the duration ends), then waits until every
report is answered. Without a callback it only keeps the terminals connected and sends what `submit` hands it (the
demo's vehicles, `scenarios.feeds.jt808_sim`). ``stats`` sums the terminals' counters and the answer latencies.

Report times are whole seconds (the location report's BCD time has a one-second resolution), in GMT+8 on the wire.

    python -m scenarios.feeds.jt808_fleet --connect 127.0.0.1:6808 --terminals 10000 --report-s 10 --rounds 2

runs a synthetic fleet (`synthetic_members`: devices ``jt-00001``…, phones ``13800000001``…) and prints its
counters as JSON (the load of tests/ingest/jt808/test_fleet.py and benchmarks/jt808.py). `BeidouCounter` counts what
reached the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from ingest.batch import Batch
from ingest.decoders.jt808 import jt808_records
from ingest.jt808.location import Location
from ingest.rejection import Refusal
from scenarios.feeds.jt808 import Terminal, TerminalCounters, TerminalSettings

Row = Batch | tuple[float, float, float, float]
PositionFn = Callable[[str, float], Row]
"""``position(device, t)``: a one-row position ``Batch`` or ``(lon, lat, speed_kmh, course_deg)`` [degree, km h-1,
degree from true north] at unix time ``t`` [s]."""
LATENCIES_KEPT = 200_000
"""Answer latencies kept for the percentiles (the first ones) [1]."""
GNSS_USED = frozenset({"GPS", "BDS"})
"""Constellations a simulated terminal reports (status bits 18 and 19): its positions are WGS84."""


@dataclass
class FleetStats:
    """The fleet's counters: the terminals' sums, and per-fleet figures [1; latencies in s]."""

    terminals: int = 0
    scheduled: int = 0
    """Reports handed to the terminals."""
    complete: int = 0
    """Terminals whose every report was answered."""
    latency_p50_s: float = math.nan
    latency_p99_s: float = math.nan
    steady_p50_s: float = math.nan
    """Latency of the answers after the ramp and one report interval (every terminal connected) [s]."""
    steady_p99_s: float = math.nan
    counters: TerminalCounters | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "counters"}
        return out | asdict(self.counters or TerminalCounters())


def location_of(row: Row, t: float) -> Location:
    """A fixed GPS+BDS location report at whole second ``t`` from a position row."""
    if isinstance(row, Batch):
        lon, lat = float(row.lon[0]), float(row.lat[0])
        speed, course = float(np.nan_to_num(row.speed_kmh[0])), float(np.nan_to_num(row.course_deg[0]))
        alt = float(row.alt_m[0]) if math.isfinite(row.alt_m[0]) else 0.0
    else:
        (lon, lat, speed, course), alt = row, 0.0
    return Location(lat=lat, lon=lon, altitude_m=round(alt), speed_kmh=round(speed, 1),
                    direction_deg=round(course) % 360, time=float(int(t)), fixed=True, gnss=GNSS_USED,
                    satellites=12, signal=25)


class TerminalFleet:
    """Terminals of ``members`` (device id, terminal phone) talking to ``host:port``; see the module docstring."""

    def __init__(self, members: Sequence[tuple[str, str]], host: str, port: int, *,
                 position: PositionFn | None = None, report_s: float = 10.0, ramp_s: float = 10.0,
                 rounds: int | None = None, settings: TerminalSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if report_s < 1:
            raise ValueError(f"report interval {report_s} s < 1 s (the report time has whole seconds)")
        self.members, self.position, self.report_s, self.ramp_s = list(members), position, report_s, ramp_s
        self.rounds, self.clock = rounds, clock
        self.latencies: list[float] = []
        self.steady_latencies: list[float] = []
        """Latencies of the answers that came after ``ramp_s + report_s`` [s]."""
        self._steady_from = math.inf
        self.terminals = {device: Terminal(phone, host, port, settings=settings, on_answer=self._answered)
                          for device, phone in self.members}
        self.offered = dict.fromkeys(self.terminals, 0)
        self._stopped = asyncio.Event()
        self._reporting = len(self.terminals)
        """Terminals still reporting."""

    def _answered(self, latency_s: float) -> None:
        if len(self.latencies) < LATENCIES_KEPT:
            self.latencies.append(latency_s)
        if time.monotonic() >= self._steady_from and len(self.steady_latencies) < LATENCIES_KEPT:
            self.steady_latencies.append(latency_s)

    def submit(self, device: str, location: Location) -> bool:
        """Hand a report to a device's terminal (event loop thread only); False for a device without one."""
        terminal = self.terminals.get(device)
        if terminal is None:
            return False
        terminal.offer(location)
        self.offered[device] += 1
        return True

    def stop(self) -> None:
        """End ``run`` early (event loop thread only)."""
        self._stopped.set()

    async def run(self, duration_s: float | None, *, drain_s: float = 30.0) -> FleetStats:
        """Run the fleet for ``duration_s`` [s] (None: until ``stop``; or until ``rounds`` reports each), then wait
        up to ``drain_s`` for the answers and close every connection."""
        end = math.inf if duration_s is None else time.monotonic() + duration_s
        self._steady_from = time.monotonic() + self.ramp_s + self.report_s
        n = max(len(self.terminals), 1)
        tasks = [asyncio.create_task(self._life(device, i * self.ramp_s / n, end))
                 for i, device in enumerate(self.terminals)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), duration_s)
        await self._drain(drain_s)
        for task in tasks:
            task.cancel()
        for terminal in self.terminals.values():
            terminal.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    async def _life(self, device: str, start_in_s: float, end: float) -> None:
        """One terminal: start after ``start_in_s``, keep it running, report while a callback is given."""
        await asyncio.sleep(start_in_s)
        terminal = self.terminals[device]
        runner = asyncio.create_task(terminal.run())
        try:
            if self.position is not None:
                await self._report(device, terminal, end)
            await runner
        finally:
            runner.cancel()

    async def _report(self, device: str, terminal: Terminal, end: float) -> None:
        """Report every ``report_s`` from the first authentication on, ``rounds`` times or until ``end``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(terminal.authenticated.wait(), min(max(end - time.monotonic(), 0.0), 1e6))
        due, last_t = time.monotonic(), -math.inf
        k = 0
        while due < end and (self.rounds is None or k < self.rounds):
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            t = last_t = max(float(int(self.clock())), last_t + 1.0)  # a late wake-up never repeats a second
            self.submit(device, location_of(self.position(device, t), t))
            k += 1
            due += self.report_s
        self._reporting -= 1
        if self.rounds is not None and self._reporting == 0:
            self._stopped.set()  # every terminal has made its rounds

    async def _drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` until every terminal is idle (its reports answered or dropped)."""
        waits = [t.idle.wait() for t in self.terminals.values() if not t.idle.is_set()]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout_s)

    @property
    def stats(self) -> FleetStats:
        total = TerminalCounters()
        complete = 0
        for device, terminal in self.terminals.items():
            c = terminal.counters
            for f in fields(TerminalCounters):
                setattr(total, f.name, getattr(total, f.name) + getattr(c, f.name))
            complete += self.offered[device] > 0 and c.answered == self.offered[device]
        p50, p99 = _percentiles(self.latencies)
        s50, s99 = _percentiles(self.steady_latencies)
        return FleetStats(len(self.terminals), sum(self.offered.values()), complete, p50, p99, s50, s99, total)


def _percentiles(values: list[float]) -> tuple[float, float]:
    """50th and 99th percentiles (NaN of nothing)."""
    if not values:
        return math.nan, math.nan
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def synthetic_members(n: int, *, phone_base: int = 13800000000) -> list[tuple[str, str]]:
    """``n`` terminals: devices ``jt-00001``… with phones ``phone_base + 1``…"""
    return [(f"jt-{i:05d}", str(phone_base + i)) for i in range(1, n + 1)]


def synthetic_registry(members: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A registry GeoJSON document with one vehicle per member and its ``jt808_phone``."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None,
         "properties": {"id": device, "kind": "vehicle", "quantities": ["position"], "jt808_phone": phone}}
        for device, phone in members]}


def circling(device: str, t: float) -> tuple[float, float, float, float]:
    """A synthetic position: each device circles the Bund at 30 km/h on its own radius (200-1200 m)."""
    k = sum(map(ord, device))
    radius_m, speed_kmh = 200.0 + k % 1000, 30.0
    angle = (t * speed_kmh / 3.6 / radius_m + k) % (2 * math.pi)
    lat = 31.2400 + radius_m * math.cos(angle) / 111_320.0
    lon = 121.4900 + radius_m * math.sin(angle) / (111_320.0 * math.cos(math.radians(31.24)))
    return lon, lat, speed_kmh, (math.degrees(angle) + 90.0) % 360.0


class BeidouCounter:
    """Subscribes to ``{prefix}beidou/+`` at QoS 1 on the broker at ``127.0.0.1:port`` and keeps the distinct
    (device, time) of the positions in the messages, decoded as the twin decodes them (JT/T 808 frames only)."""

    def __init__(self, port: int, prefix: str = "city/", client_id: str = "jt808-fleet-counter") -> None:
        self.seen: set[tuple[str, float]] = set()
        self.messages = 0
        self.undecodable = 0
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}beidou/+", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        device = msg.topic.rsplit("/", 1)[1]
        try:
            times = jt808_records(bytes(msg.payload), device=device, received_at=0.0).t
        except (Refusal, ValueError):
            times = None
        with self._cond:
            self.messages += 1
            if times is None:
                self.undecodable += 1
            else:
                self.seen.update((device, float(t)) for t in times)
            self._cond.notify_all()

    def wait_for(self, distinct: int, timeout_s: float) -> bool:
        """Wait until ``distinct`` (device, time) have come; whether they did within ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.seen) >= distinct, timeout_s)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    """Run a synthetic fleet against a gateway and print its counters as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m scenarios.feeds.jt808_fleet", description=main.__doc__)
    p.add_argument("--connect", required=True, metavar="HOST:PORT")
    p.add_argument("--terminals", type=int, default=1000)
    p.add_argument("--report-s", type=float, default=10.0, help="report interval [s] (default 10)")
    p.add_argument("--rounds", type=int, default=None, help="reports per terminal (default: until --duration)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to run at most (default 60)")
    p.add_argument("--ramp-s", type=float, default=10.0, help="seconds over which the terminals connect")
    p.add_argument("--version", type=int, choices=(2013, 2019), default=2013)
    p.add_argument("--reply-timeout", type=float, default=10.0, help="T [s] (default 10)")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers")
    p.add_argument("--phone-base", type=int, default=13800000000)
    args = p.parse_args(argv)
    host, _, port = args.connect.rpartition(":")
    settings = TerminalSettings(version=args.version, reply_timeout_s=args.reply_timeout,
                                backlog=max(4, args.rounds or 0))
    fleet = TerminalFleet(synthetic_members(args.terminals, phone_base=args.phone_base), host, int(port),
                          position=circling, report_s=args.report_s, ramp_s=args.ramp_s, rounds=args.rounds,
                          settings=settings)
    stats = asyncio.run(_run_settled(fleet, args.duration, args.drain, args.ramp_s + 1.0))
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


async def _run_settled(fleet: TerminalFleet, duration_s: float, drain_s: float, settle_after_s: float) -> FleetStats:
    """``fleet.run``, with the heap frozen once the terminals have connected: full collections over 10,000
    terminals' objects pause the loop for up to 0.6 s each, which would count as answer latency."""

    async def settle() -> None:
        await asyncio.sleep(settle_after_s)
        gc.collect()
        gc.freeze()

    settling = asyncio.create_task(settle())
    try:
        return await fleet.run(duration_s, drain_s=drain_s)
    finally:
        settling.cancel()


if __name__ == "__main__":
    sys.exit(main())
