"""The gateway's settings (`GatewayConfig`: address, allow-list, bounds) and counters (`GatewayStats`).

Exposure (docs/guides/jt808.md section 5): the gateway listens on loopback unless ``allow`` lists the terminal
networks (CIDR); a non-loopback address without one is refused when the settings are made.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field

from ingest.jt808.bridge import BridgeStats
from ingest.jt808.downlink import DownlinkStats
from ingest.rejection import Reason

HEARTBEAT_S = 60.0
"""The heartbeat interval terminals are expected to keep (JT/T 808 parameter 0x0001) [s]."""
READ_LIMIT = 64 * 1024
"""Per-connection read buffer bound [byte]."""


@dataclass
class GatewayConfig:
    """Settings of the gateway; ``ValueError`` with a one-line reason for bad ones.

    ``allow``: terminal networks (CIDR, e.g. ``10.20.0.0/16``); without it the gateway listens only on loopback.
    ``state_path``: SQLite file keeping the authentication secret and code generations across restarts.
    ``write_queue`` [frame] and ``write_buffer_bytes`` [byte] bound what waits for a terminal that does not read.
    """

    host: str = "127.0.0.1"
    port: int = 6808
    prefix: str = "city/"
    allow: tuple[str, ...] = ()
    idle_timeout_s: float = 3 * HEARTBEAT_S
    max_connections: int = 20_000
    write_queue: int = 256
    write_buffer_bytes: int = 64 * 1024
    state_path: str | os.PathLike | None = None
    auth_secret: bytes | None = None
    client_id: str = "citytwin-jt808"
    confirm_timeout_s: float = 30.0
    max_inflight: int = 10_000
    log_interval_s: float = 60.0
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.allow = tuple(self.allow)
        try:
            self.networks = tuple(ipaddress.ip_network(a, strict=False) for a in self.allow)
        except ValueError as exc:
            raise ValueError(f"allow: {exc} (terminal networks in CIDR, e.g. 10.20.0.0/16)") from None
        if not is_loopback(self.host) and not self.networks:
            raise ValueError(f"listening on {self.host} reaches beyond loopback: give the terminal networks "
                             "allowed to connect (--allow CIDR, e.g. 10.20.0.0/16)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 0..65535")
        if any(c in self.prefix for c in "+#"):
            raise ValueError(f"prefix {self.prefix!r} must not contain MQTT wildcards")
        for name in ("idle_timeout_s", "max_connections", "write_queue", "write_buffer_bytes", "confirm_timeout_s",
                     "max_inflight", "log_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")

    def allows(self, ip: str) -> bool:
        """Whether a peer address may connect (always, without an allow-list)."""
        if not self.networks:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


def host_port(text: str, *, lowest_port: int = 0) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port), or None when it is not one (or the port is below
    ``lowest_port``)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        return None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class GatewayStats(DownlinkStats):
    """Counters of the gateway [1] (the downlink's too)."""

    connections: int = 0
    """Connections accepted."""
    open_connections: int = 0
    connections_refused: int = 0
    """Connections closed at once: ``max_connections`` were open."""
    peers_refused: int = 0
    """Connections closed at once: the peer is outside the allow-list."""
    idle_closed: int = 0
    slow_closed: int = 0
    """Connections dropped because the terminal did not read its answers."""
    replaced: int = 0
    """Connections closed because the same device authenticated on a newer one."""
    frames: int = 0
    garbage_bytes: int = 0
    by_msg: dict[str, int] = field(default_factory=dict)
    """Frames parsed by message id (``0x0200`` ...)."""
    registrations: int = 0
    auth_ok: int = 0
    auth_failed: int = 0
    unauthenticated: int = 0
    """Messages before (or without) authentication, answered result 1."""
    deregistrations: int = 0
    unsupported: int = 0
    """Unknown message ids and encrypted messages, answered result 3."""
    published: int = 0
    """Reports published and confirmed by the broker (then answered result 0)."""
    publish_unconfirmed: int = 0
    """Reports not confirmed (refused, failed, timed out): left unanswered, the terminal resends."""
    confirm_backlog: int = 0
    """Reports left unanswered: too many of the connection awaited the broker."""
    refused: dict[str, int] = field(default_factory=dict)
    """Refusals by reason (``bad_checksum``, ``unknown_device`` ...)."""
    dead_letters: int = 0
    dead_letters_dropped: int = 0
    internal_errors: int = 0
    mqtt: BridgeStats | None = None

    def count_message(self, msg_id: int) -> None:
        key = f"0x{msg_id:04x}"
        self.by_msg[key] = self.by_msg.get(key, 0) + 1

    def refuse(self, reason: Reason) -> None:
        self.refused[reason.value] = self.refused.get(reason.value, 0) + 1

    def as_dict(self) -> dict:
        return asdict(self)
