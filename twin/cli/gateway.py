"""``twin gateway jt808``: the JT/T 808 gateway on its own (docs/guides/jt808.md); ``twin run --jt808`` hosts it.

Wiring only: the gateway is ``ingest.jt808.gateway``. ``add_parser(sub)`` registers ``twin gateway`` with its one
subcommand ``jt808``; ``jt808_options(parser)`` adds ``twin run``'s ``--jt808`` options and ``host_jt808(service,
args)`` starts the gateway inside the twin.

The registry: ``--registry FILE`` is read once; ``--registry-db URL`` is followed (a terminal added, changed or retired
in the database is known to the gateway within ``--registry-poll`` seconds, without a restart).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from ingest.jt808.config import host_port
from ingest.jt808.gateway import Gateway, GatewayConfig, serve
from ingest.registry import Registry, RegistryError, load_registry
from ingest.registry_db import RegistryStore, follow_versions

DEFAULT_PORT = 6808
"""The gateway's default TCP port (JT/T 808 names none; vendors' platforms commonly listen on 6808 or 7611)."""
DEFAULT_STATE = Path("var/jt808/terminals.db")
REGISTRY_POLL_S = 5.0


class GatewayUsageError(ValueError):
    """A bad option or input file (one line; exit status 2)."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``gateway`` (with ``jt808``) to the ``twin`` subcommands; returns the ``jt808`` parser."""
    gateway = sub.add_parser("gateway", help="protocol gateways that bring devices onto the MQTT contract",
                             description="Protocol gateways: devices that do not speak MQTT reach the twin through "
                                         "one (docs/guides/jt808.md).")
    gsub = gateway.add_subparsers(dest="gateway", required=True, metavar="PROTOCOL")
    p = gsub.add_parser(
        "jt808", help="JT/T 808 vehicle terminals (TCP) -> MQTT",
        description="Accept JT/T 808-2013/-2019 vehicle terminals over TCP: registration, authentication, heartbeats; "
                    "publish their location reports (0x0200, 0x0704) on {prefix}beidou/{device} at QoS 1, answering a "
                    "terminal only once the broker has the report; send field units their alerts as 0x8300 text. "
                    "Terminals are registry devices with a jt808_phone. Stops on Ctrl-C or SIGTERM.")
    p.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"address to listen on (default 127.0.0.1:{DEFAULT_PORT}); beyond loopback it needs --allow")
    p.add_argument("--broker", required=True, help="mqtt://user:pass@host:1883 or mqtts://... (TLS)")
    p.add_argument("--registry", type=Path, help="device registry (GeoJSON or CSV), read once")
    p.add_argument("--registry-db", metavar="URL", help="follow the device registry database (sqlite:///path or "
                                                         "postgresql://...; docs/guides/devices.md)")
    p.add_argument("--registry-poll", type=float, default=REGISTRY_POLL_S, metavar="S",
                   help=f"with --registry-db: seconds between two looks for changes (default {REGISTRY_POLL_S:g})")
    add_common_options(p, prefix="")
    p.add_argument("--prefix", default="city/", help="MQTT topic prefix (default city/)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
    p.add_argument("--client-id", default="citytwin-jt808", help="MQTT client id (default citytwin-jt808)")
    p.add_argument("--status-every", type=float, default=60.0, metavar="S",
                   help="seconds between two lines of counters (default 60)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after this many seconds")
    p.set_defaults(func=_command)
    return p


def add_common_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """The options ``twin gateway jt808`` and ``twin run`` share (``prefix`` "jt808-" for ``twin run``)."""
    p.add_argument(f"--{prefix}allow", action="append", default=[], metavar="CIDR",
                   help="a terminal network allowed to connect, e.g. 10.20.0.0/16 (repeatable); required to listen "
                        "beyond loopback, and then connections from elsewhere are closed at once")
    p.add_argument(f"--{prefix}state" if prefix else "--state", type=Path, metavar="FILE",
                   dest=f"{prefix.replace('-', '_')}state",
                   help="SQLite file keeping the authentication secret and codes across restarts (default "
                        f"{'jt808.db in the state folder' if prefix else DEFAULT_STATE})")


def jt808_options(parser: argparse.ArgumentParser) -> None:
    """``twin run``'s options: ``--jt808 PORT`` hosts the gateway inside the twin."""
    parser.add_argument("--jt808", type=int, metavar="PORT", help="run the JT/T 808 gateway inside the twin on this "
                        "TCP port (0: a free one; docs/guides/jt808.md)")
    parser.add_argument("--jt808-host", default="127.0.0.1", help="the gateway's address (default 127.0.0.1; any "
                                                                   "other needs --jt808-allow)")
    add_common_options(parser, prefix="jt808-")


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ``GatewayUsageError`` when it is not one."""
    address = host_port(text)
    if address is None:
        raise GatewayUsageError(f"--listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_PORT})")
    return address


def gateway_config(host: str, port: int, allow: list[str], state: Path | None, prefix: str,
                   client_id: str) -> GatewayConfig:
    """A checked ``GatewayConfig``; ``GatewayUsageError`` with the reason."""
    try:
        return GatewayConfig(host=host, port=port, allow=tuple(allow), state_path=state, prefix=prefix,
                             client_id=client_id)
    except ValueError as exc:
        raise GatewayUsageError(f"JT/T 808 gateway: {exc}") from None


def _command(args: argparse.Namespace) -> int:
    from twin.cli.main import UsageError

    try:
        return run_gateway(args)
    except GatewayUsageError as exc:
        raise UsageError(str(exc)) from None


def run_gateway(args: argparse.Namespace) -> int:
    """Run ``twin gateway jt808`` until Ctrl-C, SIGTERM or ``--duration``; the exit status."""
    host, port = listen_address(args.listen)
    state = args.state or DEFAULT_STATE
    config = gateway_config(host, port, args.allow, state, args.prefix, args.client_id)
    registry, store = _registry(args)
    state.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    _stop_on_signals(stop)
    followers = []
    if store is not None:
        followers.append(threading.Thread(target=follow_versions, name="registry", daemon=True, args=(
            lambda: _apply_changes(registry, store), stop, args.registry_poll)))
    if args.duration:
        followers.append(threading.Thread(target=lambda: stop.wait(args.duration) or stop.set(), daemon=True))
    for thread in followers:
        thread.start()
    try:
        return serve(config, registry, args.broker, stop=stop, progress=_say, status_every_s=args.status_every,
                     protocol=args.protocol)
    finally:
        stop.set()
        if store is not None:
            store.close()


def _say(text: str) -> None:
    print(text, file=sys.stderr if text.startswith(("bad broker", "cannot listen")) else sys.stdout, flush=True)


def _stop_on_signals(stop: threading.Event) -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())


def _registry(args: argparse.Namespace) -> tuple[Registry, RegistryStore | None]:
    """The registry to serve: ``--registry`` read once, or ``--registry-db``'s (then followed)."""
    if (args.registry is None) == (args.registry_db is None):
        raise GatewayUsageError("give one of --registry FILE or --registry-db URL")
    if args.registry is not None:
        try:
            return load_registry(args.registry), None
        except (RegistryError, OSError) as exc:
            raise GatewayUsageError(f"--registry {args.registry}: {exc}") from None
    try:
        store = RegistryStore.open(args.registry_db)
        return store.registry(), store
    except Exception as exc:  # a bad URL, an unreachable database: one line, exit 2
        raise GatewayUsageError(f"--registry-db: {exc}") from None


def _apply_changes(registry: Registry, store: RegistryStore) -> int:
    """Bring ``registry`` to the database's version (the gateway's terminals follow its version)."""
    changes = store.changes_since(registry.version)
    if changes:
        registry.apply([c.device for c in changes], changes[-1].version)
    return registry.version


def host_jt808(service: Any, args: argparse.Namespace) -> Gateway | None:
    """Start the gateway inside ``twin run`` when ``--jt808`` is given (on the twin's registry and broker); None
    otherwise. Raises ``GatewayUsageError`` for bad options and ``OSError`` when the port is taken."""
    if args.jt808 is None:
        return None
    from ingest.jt808.bridge import MqttBridge
    from ingest.jt808.terminals import Terminals

    state = args.jt808_state or Path(args.state) / "jt808.db"
    config = check_jt808(args)
    state.parent.mkdir(parents=True, exist_ok=True)
    terminals = Terminals(service.registry, state_path=state)
    bridge = MqttBridge(args.broker, client_id=f"{args.client_id}-jt808", protocol=args.protocol or "5",
                        max_inflight=config.max_inflight, confirm_timeout_s=config.confirm_timeout_s)
    gateway = Gateway(config, terminals, bridge)
    port = gateway.run_in_thread()
    print(f"JT/T 808 gateway listening on {config.host}:{port} for {len(terminals)} terminals")
    return gateway


def check_jt808(args: argparse.Namespace) -> GatewayConfig:
    """``twin run``'s gateway settings, checked before anything starts (``GatewayUsageError``)."""
    return gateway_config(args.jt808_host, args.jt808, args.jt808_allow, None, args.prefix,
                          f"{args.client_id}-jt808")


def stop_jt808(gateway: Gateway | None) -> None:
    """Stop a gateway of `host_jt808` and close its state file."""
    if gateway is None:
        return
    gateway.stop_thread(10.0)
    gateway.terminals.close()
