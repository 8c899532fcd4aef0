"""``twin demo``: the live twin, a broker and the storyline's feeds in one command.

Order of things: the Bund grid (built once into the cache, then the story's drainage applied), a
fresh state folder, the broker (embedded unless ``--broker``), the models' kernels compiled (`warm_up`: about
40 s on the first run after installing, a second later), the live service on a `TwinClock` that
runs ``speed`` times faster than the wall and starts at the story's start, the dashboard (HTTP API
on 127.0.0.1, its URL printed with a fresh write token), a `Watcher` reading the
contract's topics from the outside, and the simulator publishing the story at the same clock (its crowd
counters counting over the walkable areas of the twin it feeds, `Story.simulator`; its field units answering
the alerts routed to them and following the tasks of the twin's case desk). It ends after ``--duration`` wall
seconds, when the story is over (its length, or earlier once, after the last beat, every alert has been cleared
and every case the watcher saw has been closed), or on Ctrl-C / SIGTERM; then everything is stopped in reverse
order and the summary printed, its last line the ledger of the cases (``ledger: N opened, N closed, 0 open``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.registry import load_registry
from scenarios.demo.console import Console, summary
from scenarios.demo.story import Script, Story
from scenarios.demo.watch import Watcher
from scenarios.feeds.simulator import Publisher, Simulator
from scenarios.session import cached_twin
from twin.district.dataset import grid_of, load_twin, save_twin
from twin.district.roads import (
    road_network_for,
    save_road_network,
)
from twin.district.sources import data_dir
from twin.live.broker import broker_or_embedded
from twin.live.core import CoreConfig, LiveConfig
from twin.live.query import LiveQuery
from twin.live.service import LiveService, ServiceConfig, TwinClock
from twin.live.snapshot import fresh_state_folder
from twin.live.warmup import warm_up

DEMO_TICK_S = 10.0
"""Tick of the demo's twin [s of twin time]: the story's alert timings are tuned for it."""
DEFAULT_HTTP_PORT = 8765
"""The dashboard's port; a free one is taken when it is busy."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``twin demo`` was asked to do."""

    broker: str | None = None
    protocol: str | None = None
    speed: float = 30.0
    duration: float | None = None
    """Wall seconds; None runs the story to its end."""
    grid: Path | None = None
    state: Path | None = None
    seed: int = 0
    tick_s: float = DEMO_TICK_S
    prefix: str = "city/"
    http: int | None = DEFAULT_HTTP_PORT
    """Dashboard port on 127.0.0.1 (0: a free port; None: no dashboard)."""
    http_token: str | None = None
    """Bearer token for the dashboard's writes (default: a new random one, shown in the printed URL)."""


def base_grid(opts: DemoOptions, say) -> Path:
    """The grid file to start from: ``--grid``, or the Bund at 10 m built once into the cache."""
    if opts.grid is not None:
        if not opts.grid.is_file():
            raise FileNotFoundError(f"--grid {opts.grid} does not exist")
        return opts.grid
    return cached_twin("bund", 10.0, say=say, progress=sys.stderr.isatty())


def run_demo(opts: DemoOptions, story: Story | None = None) -> int:
    """Run the demo (see the module docstring); returns the exit status."""
    story = story or Story()
    story.check()
    if not opts.speed > 0:
        raise ValueError(f"--speed {opts.speed} must be > 0")
    console = Console(sys.stdout, speed=opts.speed)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        grid = base_grid(opts, console.say)
        with fresh_state_folder(opts.state, "the demo", "citytwin-demo-") as state, \
                broker_or_embedded(opts.broker, opts.protocol, console.say) as (url, protocol):
            return _run(opts, story, grid, state, url, protocol, console, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(opts: DemoOptions, story: Story, grid: Path, state: Path, url: str, protocol: str,
         console: Console, stop: threading.Event) -> int:
    static, buildings = load_twin(grid)
    demo_grid = save_twin(state / "demo-grid.nc", story.twin(static), buildings)
    # its road links: the cached twin's are built into the cache once; a --grid file is never written beside
    network = road_network_for(grid, write=opts.grid is None)
    save_road_network(demo_grid, network, grid_of(static))
    registry_path = data_dir() / "bund" / "registry.geojson"
    core = CoreConfig(prefix=opts.prefix, tick_s=opts.tick_s)
    # compile the kernels before the story's clock starts: a cold first tick would otherwise hold the twin ~40 s
    warm_up(story.twin(static), load_registry(registry_path),
            dataclasses.replace(core, live=LiveConfig(road_network=network)), say=console.say)
    clock = TwinClock(opts.speed, start=story.start)
    cfg = ServiceConfig(broker=url, grid=demo_grid, registry=registry_path,
                        state_dir=state, tick_s=opts.tick_s, prefix=opts.prefix, protocol=protocol,
                        client_id=f"citytwin-demo-{os.getpid()}", snapshot_every_s=600.0,
                        core=core, clock=clock, end_session_on_stop=True, freeze_heap=True, receiver="process")
    service = LiveService(cfg)
    watcher = Watcher(url, protocol=protocol, prefix=opts.prefix).start()
    sim = story.simulator(static, load_registry(cfg.registry), opts.seed, opts.prefix)
    script = Script(story, on_beat=lambda b: console.beat(story.start + b.at_s, b.text))
    wall0 = time.monotonic()
    http = None
    try:
        if not service.start():
            raise ConnectionError(f"the live twin could not connect to {url}")
        http = dashboard(service, opts, console.say)
        console.say(f"twin running at {opts.speed:g}x: up to {story.length_s / 60:.0f} simulated minutes of "
                    f"New Year's Eve on the Bund, ending once all is clear and every case closed (about 55), "
                    f"in at most {story.length_s / opts.speed:.0f} s (Ctrl-C stops)")
        feed = threading.Thread(target=_feed, args=(url, protocol, opts, story, sim, script, clock, stop),
                                name="demo-feed", daemon=True)
        feed.start()
        _watch(opts, story, script, watcher, console, clock, stop, wall0)
        stop.set()
        feed.join(30)
    finally:
        stop.set()
        console.done()
        if http is not None:
            http.stop()
        service.stop()
        time.sleep(0.5)  # the last retained messages reach the watcher
        watcher.stop()
    with watcher.lock:
        print(summary(watcher.tally, LiveQuery(service).ingest_metrics(), sim, story, clock, time.monotonic() - wall0),
              flush=True)
    return 0


def dashboard(service: LiveService, opts: DemoOptions, say):
    """Serve the HTTP API and dashboard on 127.0.0.1 (``opts.http``; a free port if that one is busy)."""
    if opts.http is None:
        return None
    from twin.api import serve

    token = opts.http_token or secrets.token_urlsafe(16)
    try:
        handle = serve(service, host="127.0.0.1", port=opts.http, token=token)
    except OSError as exc:
        if opts.http == 0:
            raise
        say(f"port {opts.http} is busy ({exc.strerror or exc}); the dashboard takes a free port")
        handle = serve(service, host="127.0.0.1", port=0, token=token)
    say(f"dashboard: {handle.url}/#token={token}  (API docs {handle.url}/docs)")
    return handle


def _feed(url: str, protocol: str, opts: DemoOptions, story: Story, sim: Simulator, script: Script,
          clock: TwinClock, stop: threading.Event) -> None:
    """Publish the story (feed thread); a broken broker connection ends the demo."""
    try:
        with Publisher(url, protocol=protocol, respond_prefix=opts.prefix,
                       client_id=f"twin-demo-feed-{os.getpid()}") as pub:
            pub.run(sim, story.length_s, speed=opts.speed, stop=stop, clock=clock, before_step=script.advance)
    except ConnectionError as exc:
        print(f"twin demo: the feed lost the broker: {exc}", file=sys.stderr)
    finally:
        stop.set()


def _watch(opts: DemoOptions, story: Story, script: Script, watcher: Watcher, console: Console,
           clock: TwinClock, stop: threading.Event, wall0: float) -> None:
    """Refresh the console until the demo should end."""
    deadline = wall0 + opts.duration if opts.duration else float("inf")
    while not stop.wait(0.5):
        with watcher.lock:
            console.show(watcher.tally, clock())
            all_clear = not watcher.tally.active and watcher.tally.alerts and not watcher.tally.open_cases()
        if time.monotonic() >= deadline or clock() >= story.start + story.length_s:
            return
        if not script.pending and all_clear:
            console.say("all clear: every alert has been cancelled and every case closed")
            return


def options(args: argparse.Namespace) -> DemoOptions:
    """`DemoOptions` from ``twin demo`` arguments."""
    return DemoOptions(broker=args.broker, protocol=args.protocol, speed=args.speed, duration=args.duration,
                       grid=args.grid, state=args.state, seed=args.seed, tick_s=args.tick,
                       http=None if args.no_http else args.http, http_token=args.http_token)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand; its ``func`` runs it."""
    story = Story()
    p = subparsers.add_parser(
        "demo", help="watch the live twin work: broker, twin and a scripted New Year's Eve on the Bund",
        description="Run the live twin with a scripted storyline: an evening crowd gathers on the Bund and "
                    "crosses the thresholds, a rainstorm floods the tunnel portals, traffic on Zhongshan East "
                    "Road slows, a citizen calls the 12345 hotline about the water; alerts are raised, routed to the "
                    "nearest field units, acknowledged and cleared; cases are opened from them, dispatched to units "
                    "that follow their tasks, verified and closed. Up to "
                    f"{story.length_s / 60:.0f} simulated minutes: it ends once every alert has cleared and every "
                    "case is closed (about 55), with a summary ending in the ledger.")
    p.add_argument("--broker", help="use this broker (mqtt[s]://user:pass@host:port) instead of starting an "
                                    "embedded one")
    p.add_argument("--protocol", choices=("5", "3.1.1"), help="MQTT version with --broker (default 5)")
    p.add_argument("--speed", type=float, default=30.0, help="simulated seconds per wall second (default 30: "
                                                             "the story takes about 2.5 minutes)")
    p.add_argument("--duration", type=float, help="stop after this many wall seconds (default: at the story's end)")
    p.add_argument("--grid", type=Path, help="Bund grid NetCDF (default: built once into ~/.cache/citytwin)")
    p.add_argument("--state", type=Path, help="keep the twin's state (raw log, alert database, snapshot) in this "
                                              "new folder (default: a temporary folder, removed at the end)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the feeds (default 0)")
    p.add_argument("--tick", type=float, default=DEMO_TICK_S, help=f"tick period in twin seconds "
                                                                   f"(default {DEMO_TICK_S:g})")
    p.add_argument("--http", type=int, default=DEFAULT_HTTP_PORT, metavar="PORT",
                   help=f"dashboard and HTTP API on 127.0.0.1:PORT (default {DEFAULT_HTTP_PORT}; 0: a free port)")
    p.add_argument("--http-token", help="bearer token for the dashboard's acknowledgements (default: a new random "
                                        "one, printed in the dashboard's URL)")
    p.add_argument("--no-http", action="store_true", help="no dashboard")
    p.set_defaults(func=lambda args: run_demo(_checked(options(args))))
    return p


def _checked(opts: DemoOptions) -> DemoOptions:
    problems = [f"--{name} {value} must be > 0" for name, value in
                (("speed", opts.speed), ("duration", opts.duration), ("tick", opts.tick_s))
                if value is not None and not value > 0]
    if opts.http is not None and not 0 <= opts.http <= 65535:
        problems.append(f"--http {opts.http} is not a port (0-65535)")
    if opts.http_token is not None and len(opts.http_token) < 8:
        problems.append("--http-token must have at least 8 characters")
    if problems:
        raise ValueError("; ".join(problems))
    return opts

