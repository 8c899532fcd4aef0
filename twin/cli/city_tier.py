"""``twin city-tier --city city.yaml``: the city tier of the partitioned deployment (docs/guides/city-tier.md).

Wiring only: the tier is `twin.city.tier.CityTier`. ``add_serve_parser(sub)`` registers the command on the ``twin``
parser; ``python -m twin.cli.city_tier ...`` runs it alone (tests, supervisors). Bad options end with one line on
stderr and exit status 2; a NATS server that cannot be reached at start, exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from twin.cli.run import add_clock_options, twin_clock

EXIT_USAGE, EXIT_FAILED = 2, 1
DEFAULT_HTTP_PORT = 8090


class CityTierUsageError(ValueError):
    """A bad option or input file (one line; exit status 2)."""


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _api(text: str) -> tuple[str, str]:
    key, sep, url = text.partition("=")
    if not sep or not key or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected CODE=http://host:port (a district and its twin's API), "
                                         f"got {text!r}")
    return key, url.rstrip("/")


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``city-tier`` to the ``twin`` subcommands; returns its parser."""
    p = sub.add_parser(
        "city-tier", help="run the city tier: city clock, alert merging across districts, units, city API",
        description="Run the city tier of the partitioned deployment: the city clock (a tick into every district "
                    "partition every tick_s), the merging of district alerts that cross a border into city "
                    "alerts (MQTT <prefix>cityalerts/<id>, retained), the routing of city alerts to field units in "
                    "other districts, and the city API (/api/city/...). Stops cleanly on Ctrl-C or SIGTERM.")
    p.add_argument("--city", type=Path, required=True, help="city manifest (YAML), e.g. data/city/bund4.yaml")
    p.add_argument("--cache", type=Path, default=None, help="the city's cache folder, where its district raster is "
                   "kept (default var/city/<manifest name>, as twin city build)")
    p.add_argument("--nats", default=None, help="NATS server(s) for the clock (default: the manifest's stream.url)")
    p.add_argument("--no-clock", action="store_true", help="run no city clock (the ticks come from elsewhere; one "
                                                           "clock per city)")
    p.add_argument("--broker", default=None, help="MQTT broker (default: the manifest's mqtt.broker)")
    p.add_argument("--http", type=int, default=DEFAULT_HTTP_PORT, metavar="PORT",
                   help=f"port of the city API and the city page at / (default {DEFAULT_HTTP_PORT}; 0 picks a free "
                        "one)")
    p.add_argument("--no-http", action="store_true", help="serve no city API")
    p.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1; any other "
                                                       "needs --token)")
    p.add_argument("--token", default=None, help="API token (at least 8 characters) for writes")
    p.add_argument("--district-api", type=_api, action="append", default=[], metavar="CODE=URL",
                   help="a district twin's API base URL, e.g. 310101=http://127.0.0.1:8101 (repeatable); the "
                        "city API links to it and reads its health and vital signs")
    p.add_argument("--tolerance", type=_number, default=10.0, metavar="M",
                   help="alerts whose areas are closer than this merge across a border [m] (default 10, one cell)")
    p.add_argument("--buffer", type=_number, default=500.0, metavar="M",
                   help="reach of a city alert around its area for field units [m] (default 500, as twin run)")
    p.add_argument("--settle", type=_number, default=1.0, metavar="S",
                   help="seconds the merger takes in retained alerts before it publishes at start (default 1)")
    p.add_argument("--client-id", default="citytwin-city-tier", help="MQTT client id (fixed: the session persists)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version (default 5)")
    p.add_argument("--duration", type=_number, default=None, metavar="S", help="stop after this many seconds")
    add_clock_options(p)  # --clock wall|replay, --start, --speed: as twin run (the clock's ticks follow it)
    p.set_defaults(func=_command)
    return p


def _command(args: argparse.Namespace) -> int:
    """The ``twin`` entry: bad input becomes the main parser's usage error (exit 2)."""
    from twin.cli.main import UsageError

    try:
        return run_city_tier(args)
    except CityTierUsageError as exc:
        raise UsageError(str(exc)) from None


def _clock(args: argparse.Namespace):
    """The twin clock of ``--clock``, ``--start``, ``--speed`` (`twin.cli.run.twin_clock`)."""
    try:
        return twin_clock(args)
    except ValueError as exc:
        raise CityTierUsageError(str(exc)) from None


def tier_from_args(args: argparse.Namespace):
    """The `twin.city.tier.CityTier` the options describe (not started)."""
    from ingest.registry import RegistryError
    from ingest.transport.url import parse_broker_url
    from twin.city.boundaries import BoundaryError
    from twin.city.city import load_city
    from twin.city.manifest import ManifestError
    from twin.city.tier import TierConfig, city_units, tier_from_city

    try:
        city = load_city(args.city, args.cache)
    except (ManifestError, BoundaryError) as exc:
        raise CityTierUsageError(str(exc)) from None
    apis = dict(args.district_api)
    unknown = sorted(k for k in apis if k not in city.partitions and k not in {d.code for d in city.manifest.districts})
    if unknown:
        raise CityTierUsageError(f"--district-api: no district {', '.join(unknown)} in {args.city}")
    if args.token is not None and len(args.token) < 8:
        raise CityTierUsageError("--token must be at least 8 characters long")
    broker = args.broker or city.manifest.mqtt.broker
    try:
        parse_broker_url(broker)
        units = city_units(city)
    except (RegistryError, OSError, ValueError) as exc:
        raise CityTierUsageError(str(exc)) from None
    clock = _clock(args)
    config = TierConfig(broker, city.manifest.mqtt.prefix, args.client_id, args.protocol, args.tolerance, args.buffer,
                        args.settle, args.host, None if args.no_http else args.http, args.token, units=units)
    stream = None
    if not args.no_clock:
        from ingest.stream.jetstream import JetStream

        settings = city.manifest.stream
        stream = JetStream(args.nats or settings.url, stream=settings.name, subject_prefix=settings.subjects,
                           max_age_s=settings.max_age_s,
                           duplicate_window_s=min(600.0, settings.max_age_s), name="citytwin-city-tier")
    try:
        return tier_from_city(city, config, apis=apis, clock=clock, stream=stream)
    except BaseException as exc:
        if stream is not None:
            stream.close()
        if isinstance(exc, OSError | ValueError):
            raise CityTierUsageError(str(exc)) from None
        raise


def run_city_tier(args: argparse.Namespace) -> int:
    """Run until Ctrl-C, SIGTERM or ``--duration``; returns the exit status."""
    from ingest.stream.base import StreamError

    try:
        tier = tier_from_args(args)
    except StreamError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        tier.start()
    except (OSError, ValueError) as exc:
        tier.stop()
        raise CityTierUsageError(f"cannot serve the city API on {args.host}:{args.http}: {exc}") from None
    if hasattr(tier.clock, "release"):  # a replay clock holds at --start until the tier runs
        tier.clock.release()
    clock = tier.city_clock
    print(f"city tier running: {len(tier.board.districts)} districts, "
          f"clock {'off' if clock is None else f'every {clock.tick_s:g} s'}, "
          f"API {tier.server.url if tier.server else 'off'}"
          f"{f', city page {tier.server.url}/' if tier.server else ''} (Ctrl-C to stop)", flush=True)
    end = time.monotonic() + args.duration if args.duration else float("inf")
    try:
        while not stop.wait(min(10.0, max(0.0, end - time.monotonic()))):
            if time.monotonic() >= end:
                break
    finally:
        tier.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m twin.cli.city_tier``: the ``city-tier`` command alone."""
    parser = argparse.ArgumentParser(prog="twin")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    args = parser.parse_args(["city-tier", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_city_tier(args)
    except CityTierUsageError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
