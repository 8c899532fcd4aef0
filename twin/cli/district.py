"""``twin district``: one district twin of the city deployment (docs/guides/district-twins.md).

Wiring only: the twin is ``twin.live.district_twin.DistrictTwin``. ``add_parser(sub)`` registers the command on the
``twin`` parser; ``python -m twin.cli.district ...`` runs it without the other commands (tests, supervisors).

Two ways to name the district: ``--city city.yaml --district CODE`` (the grid twin and registry that
``twin city build`` wrote into the city's cache, the stream, broker, topic prefix and tick from the manifest), or
``--grid FILE --registry FILE --partition NAME`` (any grid twin file; options give the rest). Explicit options win
over the manifest's values.

``--http PORT`` serves the twin's read-only HTTP API and dashboard (`twin.live.district_view.DistrictService` under
`twin.api.serve`): ``GET /api/health``, ``/api/indicators?level=district``, ``/api/alerts`` ... — what the city
tier reads and links to (``twin city-tier --district-api CODE=URL``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.stream.base import StreamError, check_partition

log = logging.getLogger(__name__)

EXIT_USAGE, EXIT_FAILED = 2, 1
DEFAULTS = {"nats": "nats://127.0.0.1:4222", "stream": "TWIN", "subjects": "twin.batches.",
            "broker": "mqtt://127.0.0.1:1883", "prefix": "city/", "tick": 60.0, "max_age_h": 24.0}
"""Values used when neither an option nor the manifest gives one (the manifest's own defaults)."""


class DistrictUsageError(ValueError):
    """A bad option or input file (one line; exit status 2)."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``district`` to the ``twin`` subcommands; returns its parser."""
    p = sub.add_parser(
        "district", help="run one district twin of the city deployment (NATS JetStream partition -> twin -> MQTT)",
        description="Run one district twin: read the district's partition of the NATS JetStream stream (batches from "
                    "the ingest workers, ticks from the city clock) and the shared handover partition, keep the twin "
                    "current, publish its alerts under <prefix>alerts/<district>/ and its status under "
                    "<prefix>twin/status/<district>. It writes a snapshot with its stream positions every "
                    "--snapshot-every seconds of twin time; after a crash it goes on from the last one. Stops "
                    "cleanly on Ctrl-C or SIGTERM.")
    src = p.add_argument_group("the district (either --city and --district, or --grid, --registry and --partition)")
    src.add_argument("--city", type=Path, metavar="CITY.yaml", help="city manifest (twin city build must have run)")
    src.add_argument("--district", metavar="CODE", help="the district's partition key in the manifest (310101, "
                                                        "or 310115-t2 for a tile)")
    src.add_argument("--cache", type=Path, help="the city's build cache (default: twin city build's, "
                                                "var/city/<manifest name>)")
    src.add_argument("--grid", type=Path, help="grid twin file (NetCDF, twin grid build)")
    src.add_argument("--registry", type=Path, help="device registry (GeoJSON or CSV): the district's sensors and "
                                                   "every vehicle and unit of the city")
    src.add_argument("--partition", help="the district's partition of the stream (letters, digits, _ and -)")
    p.add_argument("--registry-db", metavar="URL", help="the device registry database (sqlite:///path/registry.db or "
                   "postgresql://...; the one the ingest workers follow): the twin reads its district's devices from "
                   "it at start and fills from it registry versions no registry record brought "
                   "(docs/guides/devices.md); default: the registry file only")
    p.add_argument("--nats", help=f"NATS server(s), comma-separated (default: the manifest's, else {DEFAULTS['nats']})")
    p.add_argument("--stream", help=f"JetStream stream name (default: the manifest's, else {DEFAULTS['stream']})")
    p.add_argument("--subject-prefix", help=f"subject prefix of the partitions (default: the manifest's "
                                            f"stream.subjects, else {DEFAULTS['subjects']})")
    p.add_argument("--handover-partition", default="handover", help="the partition the district twins share for "
                                                                    "handovers (default handover)")
    p.add_argument("--duplicate-window", type=_positive, default=600.0, metavar="S",
                   help="how long the stream remembers message ids, if this twin creates it [s] (default 600)")
    p.add_argument("--broker", help=f"MQTT broker for the twin's output (default: the manifest's, else "
                                    f"{DEFAULTS['broker']})")
    p.add_argument("--prefix", help=f"MQTT topic prefix (default: the manifest's, else {DEFAULTS['prefix']})")
    p.add_argument("--client-id", help="MQTT client id (default citytwin-district-<partition>)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version (default 5)")
    p.add_argument("--state", type=Path, help="state folder: snapshot, alerts.db, status.json (default "
                                              "var/district/<partition>)")
    p.add_argument("--db", help="alert store URL (default sqlite in the state folder; postgresql://... works)")
    p.add_argument("--tick", type=_positive, help="the city clock's tick [s], the first tick's step (default: the "
                                                  "manifest's, else 60)")
    p.add_argument("--snapshot-every", type=_positive, default=60.0, metavar="S",
                   help="seconds of twin time between snapshots (default 60)")
    p.add_argument("--start", choices=("first", "last"), default="first",
                   help="with an empty state folder, read from the stream's first record (default) or only what "
                        "comes after its last")
    p.add_argument("--status-every", type=_positive, default=10.0, metavar="S",
                   help="seconds between status lines and writes of STATE/status.json (default 10)")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after this many seconds")
    p.add_argument("--no-warm-up", action="store_true", help="do not compile the models' kernels before reading")
    api = p.add_argument_group("the district twin's HTTP API (read-only; the city tier links to it)")
    api.add_argument("--http", type=_port, metavar="PORT", help="serve the twin's HTTP API and dashboard on this port "
                     "(0 picks a free one; the line 'district API on URL' says which)")
    api.add_argument("--http-host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1; any "
                     "other needs --http-token)")
    api.add_argument("--http-token", help="bearer token of the API (default: the TWIN_HTTP_TOKEN environment variable; "
                     "needed to listen beyond loopback; the API only reads all the same)")
    p.set_defaults(func=_command)
    return p


def _command(args: argparse.Namespace) -> int:
    """The ``twin`` entry: bad input becomes the main parser's usage error (exit 2)."""
    from twin.cli.main import UsageError

    try:
        return run_district(args)
    except DistrictUsageError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class Source:
    """Where the district's twin and settings come from."""

    partition: str
    grid: Path
    registry: Path | None
    nats: str
    stream: str
    subjects: str
    max_age_s: float
    broker: str
    prefix: str
    tick_s: float


def resolve(args: argparse.Namespace) -> Source:
    """The district and its settings from the options (and the manifest); `DistrictUsageError` names what is
    wrong."""
    by_city = args.city is not None or args.district is not None
    by_files = any(v is not None for v in (args.grid, args.registry, args.partition))
    if by_city == by_files:
        raise DistrictUsageError("name the district either with --city and --district, or with --grid, --registry "
                                 "and --partition")
    if by_city:
        partition, grid, registry, settings = _from_city(args)
    else:
        needed = ("grid", "partition", *(() if args.registry_db else ("registry",)))
        missing = [f"--{n}" for n in needed if getattr(args, n) is None]
        if missing:
            raise DistrictUsageError(f"{', '.join(missing)} missing: --grid, --registry and --partition go together")
        for label, path in (("grid", args.grid), ("registry", args.registry)):
            if path is not None and not path.is_file():
                raise DistrictUsageError(f"--{label} {path} does not exist")
        partition, grid, registry, settings = args.partition, args.grid, args.registry, {}
    try:
        check_partition(partition)
        check_partition(args.handover_partition)
    except ValueError as exc:
        raise DistrictUsageError(str(exc)) from None
    if partition == args.handover_partition:
        raise DistrictUsageError(f"the partition {partition!r} is the handover partition")
    prefix = args.prefix if args.prefix is not None else settings.get("prefix", DEFAULTS["prefix"])
    if prefix and not prefix.endswith("/"):
        raise DistrictUsageError(f"--prefix must end with '/', got {prefix!r}")
    return Source(partition, grid, registry, args.nats or settings.get("nats", DEFAULTS["nats"]),
                  args.stream or settings.get("stream", DEFAULTS["stream"]),
                  args.subject_prefix or settings.get("subjects", DEFAULTS["subjects"]),
                  settings.get("max_age_s", DEFAULTS["max_age_h"] * 3600.0),
                  args.broker or settings.get("broker", DEFAULTS["broker"]), prefix,
                  args.tick or settings.get("tick_s", DEFAULTS["tick"]))


def _from_city(args: argparse.Namespace) -> tuple[str, Path, Path, dict]:
    from twin.city.city import load_city
    from twin.city.manifest import ManifestError

    if args.city is None or args.district is None:
        raise DistrictUsageError("--city and --district go together")
    try:
        city = load_city(args.city, args.cache)
        district = city.district(args.district)
    except ManifestError as exc:
        raise DistrictUsageError(" ".join(str(exc).split())) from None
    except KeyError as exc:
        raise DistrictUsageError(str(exc.args[0])) from None
    if not district.is_built(network=False) or not district.registry_path.is_file():
        raise DistrictUsageError(f"district {district.partition} of {args.city} is not built in {city.cache}: run "
                                 f"'twin city build {args.city}' first")
    m = city.manifest
    settings = {"nats": m.stream.url, "stream": m.stream.name, "subjects": m.stream.subjects,
                "max_age_s": m.stream.max_age_s,
                "broker": m.mqtt.broker, "prefix": m.mqtt.prefix, "tick_s": m.tick_s}
    return district.partition, district.grid_path, district.registry_path, settings


def run_district(args: argparse.Namespace) -> int:
    """Run until Ctrl-C, SIGTERM or ``--duration``; returns the exit status."""
    from ingest.registry import RegistryError
    from ingest.stream.jetstream import JetStream
    from ingest.transport.client import MqttTransport
    from twin.live.district_twin import DistrictConfig, DistrictTwin, district_core_config
    from twin.live.snapshot import SnapshotError
    from twin.live.warmup import settle_heap

    src = resolve(args)
    token = http_token(args)
    state = args.state or Path("var/district") / src.partition
    state.mkdir(parents=True, exist_ok=True)
    config = DistrictConfig(src.partition, handover_partition=args.handover_partition, prefix=src.prefix,
                            snapshot_every_s=args.snapshot_every, start=args.start, registry_db=args.registry_db,
                            core=district_core_config(src.partition, src.prefix, src.tick_s))
    try:
        transport = MqttTransport(src.broker, client_id=args.client_id or f"citytwin-district-{src.partition}",
                                  protocol=args.protocol)
    except ValueError as exc:
        raise DistrictUsageError(f"--broker: {exc}") from None
    try:
        stream = JetStream(src.nats, stream=src.stream, subject_prefix=src.subjects, max_age_s=src.max_age_s,
                           duplicate_window_s=min(args.duplicate_window, src.max_age_s),
                           name=f"citytwin-district-{src.partition}")
    except (StreamError, ValueError) as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        twin = DistrictTwin.from_files(src.grid, src.registry, stream, state, config, transport, args.db)
    except (SnapshotError, RegistryError, OSError, ValueError) as exc:
        stream.close()
        raise DistrictUsageError(" ".join(str(exc).split())) from None
    try:
        api = serve_district_api(twin, src.grid, args, token)
    except DistrictUsageError:
        twin.close()
        stream.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return _serve(twin, args, src, state, stop, settle_heap)
    finally:
        if api is not None:
            api.stop()
        twin.stop()
        _write_status(twin, state, poll_stream=False)
        stream.close()


def http_token(args: argparse.Namespace) -> str | None:
    """The API token (``--http-token``, else ``TWIN_HTTP_TOKEN``), checked against ``--http-host``:
    `DistrictUsageError` for a host beyond loopback without one, or one shorter than 8 characters."""
    from twin.api.server import is_loopback

    token = args.http_token or os.environ.get("TWIN_HTTP_TOKEN") or None
    if args.http is None:
        return token
    if token is not None and len(token) < 8:
        raise DistrictUsageError("--http-token must be at least 8 characters long")
    if not is_loopback(args.http_host) and not token:
        raise DistrictUsageError(f"refusing to serve the district API on {args.http_host}, beyond loopback, without "
                                 "a token: give --http-token (or TWIN_HTTP_TOKEN) or listen on 127.0.0.1")
    return token


def serve_district_api(twin, grid: Path, args: argparse.Namespace, token: str | None):
    """The twin's read-only API on ``--http`` (None without the option): `twin.api.server.ServerHandle`.
    `DistrictUsageError` when the address cannot be used."""
    if args.http is None:
        return None
    from twin.api.server import serve
    from twin.live.district_view import DistrictService

    service = DistrictService(twin, grid)
    try:
        handle = serve(service, host=args.http_host, port=args.http, token=token)
    except (OSError, ValueError) as exc:
        service.close()
        raise DistrictUsageError(f"cannot serve the district API on {args.http_host}:{args.http}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
    print(f"district API on {handle.url} (read-only; health {handle.url}/api/health, dashboard {handle.url}/)",
          flush=True)
    return handle


def _serve(twin, args: argparse.Namespace, src: Source, state: Path, stop: threading.Event, settle_heap) -> int:
    if twin.restored:
        print(f"recovered: last snapshot loaded, reading {src.partition} from stream sequence {twin.snapshot_seq + 1}",
              flush=True)
    try:
        connected = twin.start(warm=not args.no_warm_up)
    except StreamError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settle_heap()
    if not connected:
        print(f"broker {src.broker} not reachable yet: retrying in the background (the outbox keeps the output)",
              flush=True)
    print(f"district twin {src.partition} running: stream {src.stream} at {src.nats}, broker {src.broker}, state "
          f"{state} (Ctrl-C to stop)", flush=True)
    end = time.monotonic() + args.duration if args.duration else float("inf")
    while not stop.wait(min(args.status_every, max(0.0, end - time.monotonic()))):
        s = _write_status(twin, state)
        print(f"applied {s['applied_seq']} (lag {s['lag']}), {s['ticks']} ticks, {s['rows']} rows, "
              f"alerts active {s['alerts_active']}, outbox {s['outbox']}", flush=True)
        if time.monotonic() >= end:
            break
    print("stopping: writing a snapshot, flushing the outbox", flush=True)
    return 0


def _write_status(twin, state: Path, poll_stream: bool = True) -> dict:
    """``STATE/status.json``: the twin's status (atomic rename); returns it."""
    status = twin.status(poll_stream=poll_stream)
    tmp = state / "status.json.tmp"
    tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    tmp.replace(state / "status.json")
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m twin.cli.district``: the ``district`` command alone."""
    parser = argparse.ArgumentParser(prog="twin")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["district", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_district(args)
    except DistrictUsageError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
