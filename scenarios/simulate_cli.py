"""``twin simulate``: publish the synthetic Bund feeds to a broker (wired into ``twin/cli/main.py``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time

from scenarios.feeds.simulator import DEFAULT_START as START
from scenarios.feeds.simulator import FeedConfig, Publisher, Simulator


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand; its ``func`` runs it and returns the exit code."""
    p = subparsers.add_parser(
        "simulate", help="publish realistic sensor and Beidou feeds to an MQTT broker",
        description="Publish synthetic Bund feeds (vehicles on the OSM roads, field units, crowd counters with "
                    "a New Year's Eve profile, a Shanghai design storm, underpass water gauges, loop "
                    "detectors and a share of bad messages) at QoS 1 over the MQTT contract "
                    "(docs/contract/mqtt.md 3.1).")
    p.add_argument("--broker", required=True, help="mqtt[s]://[user[:pass]@]host[:port]")
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds to run (default 600)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same messages")
    p.add_argument("--vehicles", type=int, default=40, help="probe vehicles (registry has 40)")
    p.add_argument("--gcj-share", type=float, default=0.2, help="share of vehicles sending GCJ-02 JSON")
    p.add_argument("--bad-share", type=float, default=0.02, help="share of bad messages in [0, 1)")
    p.add_argument("--storm-return-period", type=float, default=5.0,
                   help="design storm return period [yr]; 0 for no rain")
    p.add_argument("--storm-duration", type=float, default=60.0, help="design storm duration [min]")
    p.add_argument("--storm-start", type=float, default=600.0, help="storm start after the start [sim s]")
    p.add_argument("--crowd-peak", type=float, default=3.0, help="peak crowd density [person/m2]")
    p.add_argument("--crowd-peak-in", type=float, default=9000.0,
                   help="sim seconds from the start to the crowd peak (default 9000: 00:30 local)")
    p.add_argument("--crowd-span", type=float, default=86400.0,
                   help="sim seconds the 24-hour New Year's Eve profile is squeezed into (default 86400)")
    p.add_argument("--congestion", action="append", default=[], metavar="ROAD=FACTOR",
                   help='slow a named road, e.g. "East Zhongshan No. 1 Road=0.3" (repeatable)')
    p.add_argument("--prefix", default="city/", help="topic prefix (default city/)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
    p.add_argument("--no-respond", action="store_true",
                   help="do not let the simulated field units answer alerts on {prefix}units/+/alerts")
    p.add_argument("--jt808", metavar="HOST:PORT",
                   help="vehicles and field units with a jt808_phone report as JT/T 808 terminals to the gateway at "
                        "HOST:PORT ('twin run --jt808', 'twin gateway jt808') instead of over MQTT; the sensors stay "
                        "on MQTT (docs/guides/jt808.md)")
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> FeedConfig:
    """FeedConfig from parsed arguments; ``ValueError`` with every problem."""
    problems = []
    if not args.duration > 0:
        problems.append(f"--duration {args.duration} must be > 0")
    if not args.speed > 0:
        problems.append(f"--speed {args.speed} must be > 0")
    congestion = {}
    for item in args.congestion:
        road, sep, factor = item.rpartition("=")
        try:
            congestion[road.strip()] = float(factor)
        except ValueError:
            sep = ""
        if not sep or not road.strip():
            problems.append(f"--congestion {item!r} is not ROAD=FACTOR")
    rp = args.storm_return_period
    cfg = FeedConfig(seed=args.seed, vehicles=args.vehicles, gcj_share=args.gcj_share, bad_share=args.bad_share,
                     storm_return_period_yr=rp if rp else None, storm_duration_min=args.storm_duration,
                     crowd_peak=args.crowd_peak, congestion=congestion, prefix=args.prefix,
                     storm_start=START + args.storm_start, crowd_peak_at=START + args.crowd_peak_in,
                     crowd_span_s=args.crowd_span)
    try:
        cfg.check()
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run ``twin simulate``: one progress line, then a summary. Raises ``ValueError`` on bad input."""
    cfg = config_from_args(args)
    sim = Simulator(cfg)
    tty = sys.stderr.isatty()

    def progress(elapsed: float, published: int, rate: float) -> None:
        line = f"sim {elapsed:7.0f}/{args.duration:.0f} s  published {published}  {rate:7.1f} msg/s"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    stop = threading.Event()
    t0 = time.monotonic()
    jt808 = jt808_address(args.jt808) if args.jt808 else None
    try:
        respond = None if args.no_respond else cfg.prefix
        with (Publisher(args.broker, protocol=args.protocol, respond_prefix=respond) as pub,
              _feeds(sim, jt808) as feeds):
            try:
                pub.run(feeds, args.duration, speed=args.speed, progress=progress, stop=stop)
            except KeyboardInterrupt:
                stop.set()
                pub.drain(5.0)
            published, acked, alerts = pub.published, pub.acked, pub.alerts_received
    except ConnectionError as exc:
        raise ValueError(str(exc)) from exc
    wall = time.monotonic() - t0
    if tty:
        print(file=sys.stderr)
    bad = ", ".join(f"{k} {v}" for k, v in sim.bad.counts.items())
    acks = ", ".join(f"{k} {v}" for k, v in sim.units.acks.items()) or "none"
    print(f"simulate: {published} messages published, {acked} acknowledged by the broker, "
          f"in {wall:.1f} s wall for {sim.t - cfg.start:.0f} s simulated ({published / max(wall, 1e-9):.1f} msg/s); "
          f"bad on purpose: {bad}; alerts handed to units: {alerts}; unit acks sent: {acks}")
    if jt808 is not None:
        print(feeds.summary())
    return 0


def jt808_address(text: str) -> tuple[str, int]:
    """``--jt808 HOST:PORT`` -> (host, port); ``ValueError`` when it is not one."""
    from ingest.jt808.config import host_port

    address = host_port(text, lowest_port=1)
    if address is None:
        raise ValueError(f"--jt808 {text!r} is not HOST:PORT (e.g. 127.0.0.1:6808)")
    return address


def _feeds(sim: Simulator, jt808: tuple[str, int] | None):
    """The simulator itself, or with ``--jt808`` its JT/T 808 wrapper (`scenarios.feeds.jt808_sim`)."""
    if jt808 is None:
        return contextlib.nullcontext(sim)
    from scenarios.feeds.jt808_sim import jt808_fleet_for

    return jt808_fleet_for(sim, *jt808)
