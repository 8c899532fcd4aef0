"""``twin ingest-worker``: one ingest worker of the city deployment (docs/guides/ingest-workers.md).

Wiring only: the worker itself is ``ingest.worker.IngestWorker``. ``add_parser(sub)`` registers the command on the
``twin`` parser; ``python -m twin.cli.worker ...`` runs it without the other commands (tests, supervisors).
``worker_from_args`` builds everything from the options so that a later ``--city city.yaml`` only has to produce
the same pieces (raster, device -> district map) from the city manifest.

The registry: ``--registry FILE`` alone is read once (it never changes while the worker runs). With
``--registry-db URL`` the worker follows the registry database at run time (docs/guides/devices.md): an empty
database is filled from ``--registry`` first; one that holds devices is the truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.districts import DistrictRaster, DistrictRouter
from ingest.pipeline import IngestConfig
from ingest.rawlog import RawLog
from ingest.registry import Registry, RegistryError, load_registry
from ingest.registry_db import RegistryStore
from ingest.routing import subscriptions
from ingest.stream.base import Stream, StreamError
from ingest.transport.client import MqttTransport
from ingest.worker import (
    REGISTRY_POLL_S,
    IngestWorker,
    WorkerConfig,
    WorkerStoppedError,
    movers_of,
    registry_at_checkpoint,
    static_districts,
)
from twin.district.geo import gcj02_to_wgs84

log = logging.getLogger(__name__)

DEFAULT_GROUP = "citytwin-ingest"
LEAVE_QUIET_S, LEAVE_MOST_S = 2.0, 120.0
"""``--leave``: the worker ends its session once nothing has arrived for this long, or after the longest wait [s]."""
EXIT_USAGE, EXIT_FAILED = 2, 1


class WorkerUsageError(ValueError):
    """A bad option or input file (one line; exit status 2)."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ingest-worker`` to the ``twin`` subcommands; returns its parser."""
    p = sub.add_parser(
        "ingest-worker", help="run one ingest worker of the city deployment (MQTT shared subscription -> NATS)",
        description="Take a share of the city's MQTT feeds (a shared subscription), log and check them, and publish "
                    "the accepted records to the NATS JetStream stream, one Arrow batch per district. Stops cleanly "
                    "on Ctrl-C or SIGTERM; after a crash it re-publishes its raw log from its checkpoint.")
    p.add_argument("--broker", required=True, help="MQTT 5 broker with shared subscriptions: mqtt://host:1883 or "
                                                   "mqtts://... (the embedded amqtt broker has none)")
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server(s), comma-separated "
                                                                   "(default nats://127.0.0.1:4222)")
    p.add_argument("--id", required=True, dest="worker_id", help="this worker's name, unique among the workers "
                   "(letters, digits, _ and -); part of its MQTT client id and of every message id")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"MQTT share group (default {DEFAULT_GROUP})")
    p.add_argument("--state", type=Path, required=True, help="state folder: raw log and checkpoint")
    p.add_argument("--registry", type=Path, help="device registry (GeoJSON or CSV); with --registry-db it only fills "
                   "an empty database")
    p.add_argument("--registry-db", metavar="URL", help="follow the device registry database at run time "
                   "(sqlite:///path/registry.db or postgresql://...; docs/guides/devices.md): devices added, changed "
                   "or retired are admitted or refused without a restart, and the district twins hear of them")
    p.add_argument("--registry-poll", type=float, default=REGISTRY_POLL_S, metavar="S",
                   help=f"with --registry-db: seconds between two looks at the database's version (default "
                        f"{REGISTRY_POLL_S:g})")
    p.add_argument("--districts-raster", type=Path, required=True, metavar="FILE.npz",
                   help="district raster (.npz: codes, index, bounds; ingest.districts.DistrictRaster.save)")
    p.add_argument("--district-map", type=Path, metavar="FILE", help="device -> district: a JSON object, or "
                   "GeoJSON features with properties id and district (default: the registry's district property, "
                   "else the district each device's position lies in)")
    p.add_argument("--prefix", default="city/", help="MQTT topic prefix (default city/)")
    p.add_argument("--stream", default="TWIN", help="JetStream stream name (default TWIN)")
    p.add_argument("--subject-prefix", default="twin.batches.", help="subject prefix of the district partitions "
                                                                     "(default twin.batches.)")
    p.add_argument("--duplicate-window", type=float, default=600.0, metavar="S", help="how long the stream "
                   "remembers message ids, when it creates the stream [s] (default 600; longer than a restart)")
    p.add_argument("--max-age", type=float, default=86400.0, metavar="S", help="how long the stream keeps records, "
                   "when this worker creates it [s] (default 86400; a city manifest's stream.max_age_h)")
    p.add_argument("--client-id", help="MQTT client id (default citytwin-ingest-<id>; fixed: the session persists)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version (default 5)")
    p.add_argument("--status-every", type=float, default=10.0, metavar="S",
                   help="seconds between status lines and writes of STATE/status.json (default 10)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after this many seconds")
    p.add_argument("--leave", action="store_true", help="on stop, retire from the share group for good: unsubscribe, "
                   "take in what the broker still holds for this worker, then end its session (without it, a stopped "
                   "worker's share waits in the broker for its return)")
    p.set_defaults(func=_command)
    return p


def _command(args: argparse.Namespace) -> int:
    """The ``twin`` entry: bad input becomes the main parser's usage error (exit 2)."""
    from twin.cli.main import UsageError

    try:
        return run_worker(args)
    except WorkerUsageError as exc:
        raise UsageError(str(exc)) from None


@dataclass
class Parts:
    """What ``worker_from_args`` builds; ``close`` releases it in the right order."""

    worker: IngestWorker
    transport: MqttTransport
    raw_log: RawLog
    stream: Stream
    registry_store: RegistryStore | None = None

    def close(self, end_session: bool = False) -> None:
        self.transport.stop(end_session=end_session)
        self.raw_log.close()
        self.stream.close()
        if self.registry_store is not None:
            self.registry_store.close()


def load_district_map(path: Path) -> dict[str, str]:
    """``--district-map``: a JSON object of device id -> code, or GeoJSON features with ``id`` and ``district``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkerUsageError(f"--district-map {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkerUsageError(f"--district-map {path}: not JSON ({exc})") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        props = [f.get("properties") or {} for f in doc.get("features") or [] if isinstance(f, dict)]
        pairs = {p.get("id"): p.get("district") for p in props if p.get("district") is not None}
    else:
        pairs = doc
    if not isinstance(pairs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise WorkerUsageError(f"--district-map {path}: must map device ids to district codes (strings)")
    return pairs


def worker_from_args(args: argparse.Namespace) -> Parts:
    """Registry, raster, router, stream, raw log, transport and worker from the options (not started)."""
    from ingest.stream.jetstream import JetStream

    try:
        raster = DistrictRaster.load(args.districts_raster)
    except (ValueError, OSError) as exc:
        raise WorkerUsageError(f"--districts-raster: {exc}") from None
    registry, store = open_registry(args)
    explicit = load_district_map(args.district_map) if args.district_map else None
    static, missing = static_districts(registry, raster, explicit)
    if missing:
        print(f"warning: {len(missing)} static devices lie in no district (e.g. {missing[0]}): their records will "
              "be refused (no_district)", file=sys.stderr)
    router = DistrictRouter(raster, static, movers_of(registry), to_wgs84=gcj02_to_wgs84)
    config = WorkerConfig(args.worker_id, registry_poll_s=args.registry_poll, ingest=IngestConfig(prefix=args.prefix))
    try:
        transport = MqttTransport(args.broker, client_id=args.client_id or f"citytwin-ingest-{args.worker_id}",
                                  subscriptions=subscriptions(args.prefix), share_group=args.group,
                                  protocol=args.protocol)
    except ValueError as exc:
        raise WorkerUsageError(str(exc)) from None
    stream = JetStream(args.nats, stream=args.stream, subject_prefix=args.subject_prefix, max_age_s=args.max_age,
                       duplicate_window_s=min(args.duplicate_window, args.max_age),
                       name=f"citytwin-ingest-{args.worker_id}")
    raw_log = RawLog(args.state / "rawlog")
    try:
        worker = IngestWorker(transport, raw_log, registry, stream, router, config, store, explicit)
    except ValueError as exc:
        raw_log.close()
        stream.close()
        if store is not None:
            store.close()
        raise WorkerUsageError(str(exc)) from None
    return Parts(worker, transport, raw_log, stream, store)


def open_registry(args: argparse.Namespace) -> tuple[Registry, RegistryStore | None]:
    """The worker's registry: ``--registry`` read once, or with ``--registry-db`` the database's registry as it was at
    the worker's checkpoint (an empty database filled from ``--registry`` first) and the database to follow."""
    if args.registry_db is None:
        if args.registry is None:
            raise WorkerUsageError("give --registry FILE or --registry-db URL")
        try:
            return load_registry(args.registry), None
        except (RegistryError, OSError) as exc:
            raise WorkerUsageError(f"--registry {args.registry}: {exc}") from None
    try:
        store = RegistryStore.open(args.registry_db)
    except Exception as exc:  # sqlite3 / psycopg errors: the URL or the server
        raise WorkerUsageError(f"--registry-db: {exc}") from None
    try:
        _fill(store, args)
        return registry_at_checkpoint(args.state / "rawlog", store), store
    except ValueError as exc:  # a damaged checkpoint
        store.close()
        raise WorkerUsageError(str(exc)) from None
    except BaseException:
        store.close()
        raise


def _fill(store: RegistryStore, args: argparse.Namespace) -> None:
    """An empty registry database filled from ``--registry`` (one that holds devices is the truth)."""
    if not store.is_empty():
        if args.registry is not None:
            print(f"registry database holds {store.count(status='active')} active devices at version "
                  f"{store.version()}: it is the truth, {args.registry} is not read", flush=True)
        return
    if args.registry is None:
        raise WorkerUsageError("--registry-db: the registry database is empty; give --registry FILE to fill it")
    try:
        report = store.import_file(args.registry, actor=f"twin ingest-worker {args.worker_id}")
    except (RegistryError, OSError) as exc:
        raise WorkerUsageError(f"--registry {args.registry}: {exc}") from None
    print(f"registry database filled from {args.registry}: {report.added} devices (version {report.last_version})",
          flush=True)


def run_worker(args: argparse.Namespace) -> int:
    """Run until Ctrl-C, SIGTERM, ``--duration`` or a broken worker; returns the exit status."""
    if args.status_every <= 0 or (args.duration is not None and args.duration <= 0) or not 0 < args.registry_poll < 1e6:
        raise WorkerUsageError("--status-every, --duration and --registry-poll must be positive")
    if not (0 < args.duplicate_window < float("inf") and 0 < args.max_age < float("inf")):
        raise WorkerUsageError("--duplicate-window and --max-age must be positive numbers of seconds")
    args.state.mkdir(parents=True, exist_ok=True)
    try:
        parts = worker_from_args(args)
    except StreamError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()
    worker = parts.worker

    def on_signal(*_: object) -> None:
        stop.set()
        worker.interrupt()  # ends a publish being retried while NATS is away

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        replayed = worker.recover()
        if replayed:
            print(f"recovered: {replayed} logged messages after the checkpoint published again", flush=True)
        if stop.is_set():
            return 0
        if not parts.transport.start():
            print(f"broker {args.broker} not reachable yet: retrying in the background", flush=True)
        worker.start()
        print(f"ingest worker {args.worker_id} running: share group {args.group}, {len(worker.router.codes)} "
              f"districts, stream {args.stream} (Ctrl-C to stop)", flush=True)
        return _loop(worker, args, stop)
    except WorkerStoppedError:
        print("stopped before the raw log was published again: the next start does it", file=sys.stderr)
        return 0
    except StreamError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if args.leave and worker.broken is None:
            _leave(parts)
        worker.stop()
        _write_status(worker, args.state)
        parts.close(end_session=args.leave and worker.broken is None)


def _leave(parts: Parts, quiet_s: float = LEAVE_QUIET_S, most_s: float = LEAVE_MOST_S) -> None:
    """Unsubscribe, then wait until nothing has arrived for ``quiet_s`` and the queue is empty (at most ``most_s``)."""
    transport = parts.transport
    transport.leave()
    print(f"leaving the share group: taking in what the broker holds for this worker (quiet for {quiet_s:g} s)",
          flush=True)
    deadline = time.monotonic() + most_s
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        received = transport.stats.received
        if received != seen or transport.queue.qsize():
            seen, since = received, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)  # polling pace of the counters, bounded by the deadline
    print(f"still receiving after {most_s:g} s: leaving anyway (the rest stays queued in the broker's session)",
          file=sys.stderr)


def _loop(worker: IngestWorker, args: argparse.Namespace, stop: threading.Event) -> int:
    end = time.monotonic() + args.duration if args.duration else float("inf")
    while not stop.wait(min(args.status_every, max(0.0, end - time.monotonic()))):
        _write_status(worker, args.state)
        s = worker.status()
        print(f"received {s['ingest']['received']}, published {sum(s['stream']['records_out'].values())} records "
              f"in {s['stream']['batches_out']} batches, refused {s['ingest']['rejected_total']}, "
              f"publish {s['stream']['latency_mean_ms']:.1f} ms", flush=True)
        if worker.broken is not None:
            print(f"twin: error: the worker stopped publishing: {worker.broken}", file=sys.stderr)
            return EXIT_FAILED
        if time.monotonic() >= end:
            break
    return 0


def _write_status(worker: IngestWorker, state: Path) -> None:
    """``STATE/status.json``: the worker's counters (atomic rename)."""
    tmp = state / "status.json.tmp"
    tmp.write_text(json.dumps(worker.status(), indent=1), encoding="utf-8")
    tmp.replace(state / "status.json")


def main(argv: list[str] | None = None) -> int:
    """``python -m twin.cli.worker``: the ``ingest-worker`` command alone."""
    parser = argparse.ArgumentParser(prog="twin")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["ingest-worker", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_worker(args)
    except WorkerUsageError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
