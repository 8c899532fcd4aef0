"""What ``twin run`` does: build or load the twin, run the live service until told to stop."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

from twin.alerting.inhibition import Inhibitor
from twin.api.config import ApiConfig
from twin.cases.limits import TimeLimits
from twin.cases.rules import CaseRules
from twin.cases.services import Catalogue
from twin.cli.gateway import check_jt808, host_jt808, stop_jt808
from twin.district.admin import read_units_file
from twin.district.sources import data_dir
from twin.district.thresholds import load_place_bands
from twin.live.alert_output import OutputConfig
from twin.live.case_desk import CaseConfig
from twin.live.core import CoreConfig
from twin.live.models import LiveConfig
from twin.live.replay import ReplayClock, iso_time, last_logged_time, parse_time
from twin.live.service import LiveService, ServiceConfig, TwinClock

log = logging.getLogger(__name__)


def default_grid(state_dir: Path, cell: float = 10.0) -> Path:
    """The bundled Bund twin at ``cell`` metres, built once into the state folder."""
    from twin.district.gridfile import build_grid_file
    from twin.district.roads import road_network_for

    path = state_dir / f"bund-{cell:g}m.nc"
    if not path.is_file():
        print(f"building the Bund twin at {cell:g} m into {path} (once)")
        build_grid_file(out=path, cell=cell, district="bund", progress=True)
        road_network_for(path)  # the road links beside it (twin.district.roads)
    return path


def crowd_bands_file(args: argparse.Namespace) -> Path | None:
    """The ``--crowd-bands`` file, checked (`twin.district.thresholds.load_place_bands`): FileNotFoundError, or
    PlaceBandsError (a ValueError) naming the file and every problem in one line."""
    bands = getattr(args, "crowd_bands", None)
    if bands is None:
        return None
    if not Path(bands).is_file():
        raise FileNotFoundError(f"--crowd-bands {bands} does not exist")
    load_place_bands(bands)
    return Path(bands)


def units_file(args: argparse.Namespace) -> Path | None:
    """The ``--units`` file of management grid units, checked (`twin.district.admin.read_units_file`: a ValueError in
    one line for a missing file, a feature that is not a polygon, a missing or duplicate id); whether its polygons
    meet the twin's grid is checked when the core starts."""
    path = getattr(args, "units", None)
    if path is None:
        return None
    read_units_file(path)
    return Path(path)


def inhibit_file(args: argparse.Namespace) -> Path | None:
    """The ``--inhibit`` rules file, checked (`twin.alerting.inhibition.Inhibitor.from_file`: an error naming the
    file, line and field), or None for the packaged rules."""
    rules = getattr(args, "inhibit", None)
    if rules is None:
        return None
    if not Path(rules).is_file():
        raise FileNotFoundError(f"--inhibit {rules} does not exist")
    Inhibitor.from_file(rules)
    return Path(rules)


CASE_OPTIONS = (("--case-rules", "rules", CaseRules.load), ("--case-limits", "limits", TimeLimits.load),
                ("--services", "services", Catalogue.load))
"""``twin run`` options of the case loop (their help: twin/cli/main.py): (option, `CaseConfig` field, the loader
that checks the file)."""


def case_config(args: argparse.Namespace) -> CaseConfig:
    """The case loop's settings from ``twin run`` options, each file checked (FileNotFoundError, or a ValueError
    naming the file and key)."""
    paths = {}
    for option, name, load in CASE_OPTIONS:
        path = getattr(args, option[2:].replace("-", "_"), None)
        if path is None:
            continue
        if not Path(path).is_file():
            raise FileNotFoundError(f"{option} {path} does not exist")
        load(path)
        paths[name] = str(path)
    return CaseConfig(enabled=not getattr(args, "no_cases", False), **paths)


def alert_output(args: argparse.Namespace) -> tuple[OutputConfig, str]:
    """Inhibition rules, storm control and the CAP ``web`` base from ``twin run`` options."""
    storm = getattr(args, "storm_max", 10)
    if not isinstance(storm, int) or storm < 1:
        raise ValueError(f"--storm-max must be a whole number >= 1, got {storm}")
    rules = inhibit_file(args)
    web = getattr(args, "web_base", None) or ""
    if not web and getattr(args, "http", None):
        web = f"http://{getattr(args, 'http_host', '127.0.0.1')}:{args.http}"
    return OutputConfig(inhibit_rules=str(rules) if rules else None, storm_max_new_per_min=storm), web


CLOCKS = ("wall", "replay")
"""``twin run --clock``: the twin's time is the wall's, or a replay clock from ``--start`` (docs/guides/replay.md)."""


def add_clock_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--clock``, ``--start`` and ``--speed`` to the ``twin run`` parser (checked by `twin_clock`)."""
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="the twin's time: wall (default: now; records stamped more than a day before it, or 5 "
                             "minutes after, are refused as time_skew) or replay (starts at --start and runs --speed "
                             "times faster than the wall, so recorded data stamped around that time is accepted; "
                             "docs/guides/replay.md)")
    parser.add_argument("--start", metavar="T",
                        help="with --clock replay (required there): the twin's time when it starts taking in data, "
                             "ISO 8601 with a UTC offset (2024-12-31T23:50:00+08:00) or unix seconds")
    parser.add_argument("--speed", metavar="S",
                        help="with --clock replay: twin seconds per wall second (default 1)")


def twin_clock(args: argparse.Namespace) -> TwinClock:
    """The twin's clock from ``--clock``, ``--start`` and ``--speed`` (a ValueError in one line for a bad or
    misplaced one): the wall's, or a `ReplayClock` that holds at ``--start`` until the twin has started."""
    clock = getattr(args, "clock", None) or "wall"
    start, speed = getattr(args, "start", None), getattr(args, "speed", None)
    if clock not in CLOCKS:
        raise ValueError(f"--clock {clock!r}: choose wall or replay")
    if clock == "wall":
        misplaced = [name for name, value in (("--start", start), ("--speed", speed)) if value is not None]
        if misplaced:
            verb = "needs" if len(misplaced) == 1 else "need"
            raise ValueError(f"{' and '.join(misplaced)} {verb} --clock replay (the wall clock starts now, at 1x)")
        return TwinClock()
    if start is None:
        raise ValueError("--clock replay needs --start T: the recorded time the twin's clock starts at "
                         "(ISO 8601 with a UTC offset, or unix seconds)")
    try:
        t0 = parse_time(start)
    except ValueError as exc:
        raise ValueError(f"--start: {exc}") from None
    return ReplayClock(replay_speed(speed), t0)


def replay_speed(text: object) -> float:
    """``--speed`` [twin s per wall s]: 1 when not given; a ValueError unless a positive finite number."""
    if text is None:
        return 1.0
    try:
        speed = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"--speed must be a number, got {text!r}") from None
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"--speed must be a positive finite number, got {text!r}")
    return speed


def check_state_time(state_dir: Path, clock: TwinClock) -> None:
    """A replay clock cannot start before the time a state folder's twin has already run to (its raw log's last
    record): a ValueError in one line says so. The wall clock is not checked."""
    if not isinstance(clock, ReplayClock):
        return
    last = last_logged_time(Path(state_dir) / "rawlog")
    if last is not None and last > clock.sim0:
        raise ValueError(f"--state {state_dir} holds a twin that has run to {iso_time(last)}, after --start "
                         f"{iso_time(clock.sim0)}: its time cannot go back; use a fresh --state or a later --start")


def service_config(args: argparse.Namespace) -> ServiceConfig:
    """Service settings from ``twin run`` options."""
    bands = crowd_bands_file(args)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    grid = Path(args.grid) if args.grid else default_grid(state)
    registry = Path(args.registry) if args.registry else data_dir() / "bund" / "registry.geojson"
    walkable = getattr(args, "walkable", None)
    for label, path in (("grid", grid), ("registry", registry), ("walkable", walkable)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{label} {path} does not exist")
    live = LiveConfig(walkable_override=str(walkable) if walkable else None,
                      place_bands_file=str(bands) if bands else None)
    output, web = alert_output(args)
    units = units_file(args)
    core = CoreConfig(prefix=args.prefix, tick_s=args.tick, unit_buffer_m=args.buffer, live=live, output=output,
                      web_base=web, cases=case_config(args), units_file=str(units) if units else None)
    return ServiceConfig(broker=args.broker, grid=grid, registry=registry, state_dir=state, db=args.db,
                         tick_s=args.tick, prefix=args.prefix, client_id=args.client_id,
                         protocol=args.protocol or "5", receiver=getattr(args, "receiver", "process"),
                         snapshot_every_s=args.snapshot_every, core=core, clock=twin_clock(args), freeze_heap=True,
                         registry_db=getattr(args, "registry_db", None))


def run_service(args: argparse.Namespace) -> int:
    """Run until Ctrl-C, SIGTERM or ``--duration``; returns the exit status."""
    if getattr(args, "city", None) is not None:
        from twin.cli.city_run import run_city

        if getattr(args, "jt808", None) is not None:
            raise ValueError("--jt808 runs the gateway inside a one-process twin; beside --city run 'twin gateway "
                             "jt808 --registry-db URL' on the city's registry database (docs/guides/jt808.md)")
        return run_city(args)  # the partitioned deployment (docs/city-deployment.md)
    if getattr(args, "jt808", None) is not None:
        check_jt808(args)  # a gateway beyond loopback without an allow-list ends here, before anything starts
    crowd_bands_file(args)  # a bad file ends here, before a broker is started or a twin built
    units_file(args)
    alert_output(args)
    case_config(args)
    api_config(args)
    check_state_time(args.state, twin_clock(args))
    embedded = None
    if not args.broker:
        from twin.live.broker import EmbeddedBroker

        embedded = EmbeddedBroker().start()
        args.broker, args.protocol = embedded.url, "3.1.1"
        print(f"no --broker given: started an embedded MQTT broker (amqtt, MQTT 3.1.1) at {embedded.url}")
    try:
        return _run(args)
    finally:
        if embedded is not None:
            embedded.stop()


def _run(args: argparse.Namespace) -> int:
    cfg = service_config(args)
    service = LiveService(cfg)
    print(service.registry_origin)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if service.restored:
        print(f"recovered: last snapshot loaded, replayed {service.replayed} logged messages since it")
    if not service.start():
        print(f"broker {cfg.broker} not reachable yet: retrying in the background")
    if isinstance(service.clock, ReplayClock):
        service.clock.release()  # the twin's time starts at --start now that it takes data in
    http = None
    try:
        http = _serve_http(service, args)
        gateway = host_jt808(service, args) if getattr(args, "jt808", None) is not None else None
    except (OSError, ValueError):
        if http is not None:
            http.stop()
        service.stop()
        raise
    print(f"twin running: broker {cfg.broker}, tick {cfg.tick_s:g} s, {clock_text(service.clock)}, "
          f"state {cfg.state_dir} (Ctrl-C to stop)")
    end = time.monotonic() + args.duration if args.duration else float("inf")
    while not stop.wait(min(10.0, max(0.0, end - time.monotonic()))):
        if time.monotonic() >= end:
            break
        s = service.status()
        print(f"received {s['received']}, rejected {sum(s['rejected'].values())}, "
              f"alerts active {s['alerts_active']}, outbox {s['outbox']}, tick {s['tick_ms']} ms", flush=True)
    print("stopping: draining ingest, writing a snapshot, flushing the outbox")
    if http is not None:
        http.stop()
    stop_jt808(gateway)
    service.stop()
    return 0


def clock_text(clock: TwinClock) -> str:
    """How the twin's clock runs, for people: ``wall clock``, or ``replay clock from <T> at <S>x``."""
    if isinstance(clock, ReplayClock):
        return f"replay clock from {iso_time(clock.sim0)} at {clock.speed:g}x"
    return "wall clock"


def unit_tokens(path: Path | None) -> dict[str, str]:
    """``--unit-tokens FILE``: a JSON object of unit id -> token ({} without the option)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"--unit-tokens {path} does not exist")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--unit-tokens {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise ValueError(f"--unit-tokens {path}: must be a JSON object of unit id -> token (strings)")
    return doc


def api_config(args: argparse.Namespace) -> ApiConfig:
    """The HTTP API's settings from ``twin run`` options, checked (a ValueError says what is wrong)."""
    token = getattr(args, "http_token", None) or os.environ.get("TWIN_HTTP_TOKEN") or None
    return ApiConfig(token=token, unit_tokens=unit_tokens(getattr(args, "unit_tokens", None)),
                     open311_keys=tuple(getattr(args, "open311_key", None) or ()))


def _serve_http(service: LiveService, args: argparse.Namespace):
    """The HTTP API and dashboard when ``--http`` is given (token from ``--http-token`` or TWIN_HTTP_TOKEN)."""
    if args.http is None:
        return None
    from twin.api import serve

    config = api_config(args)
    token = config.token
    try:
        handle = serve(service, host=args.http_host, port=args.http, token=token, cors=tuple(args.cors),
                       config=config)
    except OSError as exc:
        raise OSError(f"cannot serve HTTP on {args.http_host}:{args.http}: {exc.strerror or exc}") from exc
    writes = "acknowledgements need the bearer token" if token else "read-only (no token: acknowledgements refused)"
    print(f"dashboard and HTTP API: {handle.url}/  (docs {handle.url}/docs; {writes})")
    return handle
