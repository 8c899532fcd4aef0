"""``twin run --city city.yaml``: the whole partitioned deployment on one machine, from one command.

docs/city-deployment.md. It builds (or finds in the cache) the city's district twins (`twin.city.city.City`), makes
sure NATS JetStream and an MQTT 5 broker with shared subscriptions are there (it starts a private ``nats-server -js``
and Mosquitto from the PATH when the manifest's loopback addresses have none), then runs, under one supervisor
(`twin.cli.supervise`): ``--workers`` ingest workers (`twin ingest-worker`), one district twin per partition
(`twin district`) and the city tier (`twin city-tier`). Ctrl-C or SIGTERM stops them all; a part that dies is
restarted.

Each district twin serves its read-only API on a free loopback port (``twin district --http PORT``, picked here
when the parts are made, `district_api_ports`), and the city tier gets the matching ``--district-api CODE=URL``, so
the city API and page show every district's health and vital signs and link to its twin's own page
(``--no-district-api`` turns that off). A restarted district twin keeps its port.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from twin.cli.supervise import Child, Supervisor, twin_command

STATUS_EVERY_S = 10.0
"""Seconds between the supervisor's status lines."""
MOSQUITTO_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"
"""The zero-loss broker configuration a private Mosquitto starts from (docs/reliability.md)."""


@dataclass(frozen=True)
class Endpoint:
    """A service's host and port (from a URL such as ``nats://127.0.0.1:4222``)."""

    host: str
    port: int

    @classmethod
    def of(cls, url: str, default_port: int) -> Endpoint:
        parts = urlsplit(url.split(",")[0])
        return cls(parts.hostname or "127.0.0.1", parts.port or default_port)

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    def listening(self, timeout_s: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout_s):
                return True
        except OSError:
            return False


def add_city_options(parser: argparse.ArgumentParser) -> None:
    """``twin run``'s options of the city deployment."""
    g = parser.add_argument_group("the city deployment (docs/city-deployment.md)")
    g.add_argument("--city", type=Path, metavar="CITY.yaml", help="run the partitioned deployment of this city "
                   "manifest on this machine (e.g. data/city/bund4.yaml): ingest workers, one twin per district and "
                   "the city tier, over NATS JetStream and an MQTT 5 broker")
    g.add_argument("--workers", type=int, default=2, metavar="N", help="with --city: ingest workers (default 2)")
    g.add_argument("--city-cache", type=Path, metavar="DIR", help="with --city: the city's build cache (default "
                   "var/city/<manifest name>)")
    g.add_argument("--city-http", type=int, default=8090, metavar="PORT", help="with --city: the city API's and "
                   "city page's port (default 8090; 0: none)")
    g.add_argument("--no-district-api", action="store_true", help="with --city: the district twins serve no HTTP "
                   "API (by default each serves one on a free loopback port, and the city page links to it)")


def mqtt_names(manifest) -> dict[str, str]:
    """The MQTT client ids and the share group of a city's parts, named after its stream (one stream per city
    deployment): ``citytwin-<stream>-ingest-w1``, ``citytwin-<stream>-district-310101``,
    ``citytwin-<stream>-city-tier``, group ``citytwin-<stream>-ingest``. Two deployments on one broker (two cities,
    a test beside a running city) thus never take over each other's persistent sessions or share groups."""
    base = f"citytwin-{manifest.stream.name}"
    return {"base": base, "group": f"{base}-ingest", "tier": f"{base}-city-tier"}


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the system's pick for port 0). Another program may take it before the
    district twin binds it: the twin then ends with a one-line error and the supervisor restarts it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def district_api_ports(partitions, args: argparse.Namespace) -> dict[str, int]:
    """A free loopback port per district twin for its API ({} with ``--no-district-api``); distinct ports."""
    if getattr(args, "no_district_api", False):
        return {}
    ports: dict[str, int] = {}
    for partition in partitions:
        port = free_loopback_port()
        while port in ports.values():
            port = free_loopback_port()
        ports[partition] = port
    return ports


def city_children(city, args: argparse.Namespace, nats: str, broker: str, state: Path) -> list[Child]:
    """The deployment's parts as supervised children: ingest workers, district twins (each with its API on a port of
    `district_api_ports`), the city tier (told where those APIs are)."""
    manifest = city.manifest
    apis = district_api_ports([d.partition for d in city.districts], args)
    names = mqtt_names(manifest)
    raster = city.cache / "raster-100m.npz"
    registry_db = ["--registry-db", registry_db_url(state)]  # filled by `fill_registry_db` before the parts start
    common = ["--nats", nats, "--broker", broker, "--prefix", manifest.mqtt.prefix, "--stream", manifest.stream.name,
              "--subject-prefix", manifest.stream.subjects]
    children = [Child(f"ingest-w{k}", twin_command(
        "ingest-worker", "--id", f"w{k}", "--state", str(state / "ingest" / f"w{k}"), "--registry",
        str(city.cache / "registry.geojson"), "--districts-raster", str(raster), "--group", names["group"],
        "--client-id", f"{names['base']}-ingest-w{k}", "--max-age", f"{manifest.stream.max_age_s:g}", *registry_db,
        *common))
        for k in range(1, args.workers + 1)]
    children += [Child(f"district-{d.partition}", twin_command(
        "district", "--city", str(args.city), "--cache", str(city.cache), "--district", d.partition,
        "--state", str(state / "districts" / d.partition), "--client-id", f"{names['base']}-district-{d.partition}",
        *registry_db, *common, *(["--http", str(apis[d.partition])] if d.partition in apis else [])))
        for d in city.districts]
    http = ["--http", str(args.city_http)] if args.city_http else ["--no-http"]
    links = [arg for partition, port in apis.items()
             for arg in ("--district-api", f"{partition}=http://127.0.0.1:{port}")]
    children.append(Child("city-tier", twin_command(
        "city-tier", "--city", str(args.city), "--cache", str(city.cache), "--nats", nats, "--broker", broker,
        "--client-id", names["tier"], *http, *links)))
    return children


def registry_db_url(state: Path) -> str:
    """The city's device registry database: SQLite in the deployment's state folder."""
    return f"sqlite:///{state / 'registry.db'}"


def fill_registry_db(city, state: Path, say) -> None:
    """Fill the city's registry database from the city build's ``registry.geojson`` when it is empty (once, before the
    parts start: the workers and district twins then follow it; `twin devices` changes it at run time)."""
    from ingest.registry_db import RegistryStore

    state.mkdir(parents=True, exist_ok=True)
    store = RegistryStore.open(registry_db_url(state))
    try:
        if store.is_empty():
            report = store.import_file(city.cache / "registry.geojson", actor="twin run --city")
            say(f"[supervisor] registry database {state / 'registry.db'} filled: {report.added} devices")
        else:
            say(f"[supervisor] registry database {state / 'registry.db'}: {store.count(status='active')} active "
                f"devices at version {store.version()} (twin devices changes it)")
    finally:
        store.close()


def service_children(nats: Endpoint, broker: Endpoint, state: Path, say) -> list[Child]:
    """A private nats-server and Mosquitto when the manifest's loopback addresses have none (else nothing)."""
    out = []
    if not nats.listening():
        if not nats.loopback or shutil.which("nats-server") is None:
            raise ConnectionError(f"no NATS server at {nats.host}:{nats.port} (start `nats-server -js`, "
                                  "docs/city-deployment.md section 8)")
        say(f"[supervisor] no NATS at {nats.host}:{nats.port}: starting nats-server -js (state {state / 'nats'})")
        (state / "nats").mkdir(parents=True, exist_ok=True)
        out.append(Child("nats", ["nats-server", "-js", "-a", nats.host, "-p", str(nats.port),
                                  "-sd", str(state / "nats")]))
    if not broker.listening():
        if not broker.loopback or shutil.which("mosquitto") is None:
            raise ConnectionError(f"no MQTT broker at {broker.host}:{broker.port} (the city deployment needs MQTT 5 "
                                  "shared subscriptions: Mosquitto with deploy/mosquitto.conf)")
        say(f"[supervisor] no MQTT broker at {broker.host}:{broker.port}: starting Mosquitto with "
            "deploy/mosquitto.conf")
        out.append(Child("mosquitto", ["mosquitto", "-c", str(private_mosquitto_conf(broker, state))]))
    return out


def private_mosquitto_conf(broker: Endpoint, state: Path) -> Path:
    """deploy/mosquitto.conf with the manifest's port and a persistence folder in the state folder."""
    data = state / "mosquitto"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in MOSQUITTO_CONF.read_text().splitlines():
        if line.startswith("listener "):
            line = f"listener {broker.port} {broker.host}"
        elif line.startswith("persistence_location "):
            line = f"persistence_location {data}/"
        lines.append(line)
    lines.append("user root")  # a private broker stays the user that started it, so it can write its state
    conf = state / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def wait_listening(endpoints: list[Endpoint], timeout_s: float = 15.0) -> None:
    """Wait until every endpoint accepts connections; ConnectionError naming those that do not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        missing = [e for e in endpoints if not e.listening(0.2)]
        if not missing:
            return
        time.sleep(0.1)  # polling pace while a private service starts (bounded by the deadline)
    raise ConnectionError("not listening after {:g} s: {}".format(
        timeout_s, ", ".join(f"{e.host}:{e.port}" for e in missing)))


def run_city(args: argparse.Namespace) -> int:
    """Build the city, start its services and parts, supervise them until stopped; the exit status."""
    from twin.city.city import load_city

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers} must be at least 1")
    city = load_city(args.city, args.city_cache)
    say = _say
    say(f"[supervisor] {city.name} / {city.name_en}: {len(city.districts)} district twins, building or checking "
        f"the cache {city.cache}")
    report = city.build(progress=lambda part, step: say(f"[build] {part}: {step}"))
    city.raster()
    say(f"[supervisor] city ready in {report.seconds:.1f} s")
    state = Path(args.state) / "city" / city.manifest.path.stem
    fill_registry_db(city, state, say)
    nats, broker = city.manifest.stream.url, city.manifest.mqtt.broker
    nats_at, broker_at = Endpoint.of(nats, 4222), Endpoint.of(broker, 1883)
    services = service_children(nats_at, broker_at, state, say)
    supervisor = Supervisor(services, say=say)
    supervisor.start()
    try:
        wait_listening([nats_at, broker_at])
        parts = city_children(city, args, nats, broker, state)
        supervisor.add(parts)
        say(f"[supervisor] started {len(parts)} parts: " + ", ".join(c.name for c in parts)
            + (f"; city page http://127.0.0.1:{args.city_http}/, city API "
               f"http://127.0.0.1:{args.city_http}/api/city/districts" if args.city_http else ""))
        _supervise(supervisor, args.duration, say)
    finally:
        codes = supervisor.stop()
    failed = {name: code for name, code in codes.items() if code not in (0, None, -signal.SIGTERM)}
    say(f"[supervisor] stopped{'; ended badly: ' + str(failed) if failed else ''}")
    return 0


def _supervise(supervisor: Supervisor, duration: float | None, say) -> None:
    """Watch until Ctrl-C, SIGTERM or ``duration`` [s]; a status line every `STATUS_EVERY_S`."""
    stop = {"now": False}

    def on_signal(signum, _frame) -> None:
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    end = time.monotonic() + duration if duration else float("inf")
    next_status = time.monotonic() + STATUS_EVERY_S
    try:
        while not stop["now"] and time.monotonic() < end:
            supervisor.check()
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                running = sum(s["running"] for s in supervisor.status())
                restarts = sum(s["restarts"] for s in supervisor.status())
                say(f"[supervisor] {running}/{len(supervisor.children)} parts running, {restarts} restarts")
            time.sleep(supervisor.poll_s)  # the watch's pace
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _say(line: str) -> None:
    print(line, flush=True)
