"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://...`` (TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker address. ``password`` is never shown in ``repr``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"BrokerURL({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port})"

    __str__ = __repr__


def parse_broker_url(url: str) -> BrokerURL:
    """Parse a broker URL; default ports 1883 (mqtt) and 8883 (mqtts). Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got {url.split('://')[0]!r}")
    if not parts.hostname:
        raise ValueError("broker URL has no host")
    tls = parts.scheme == "mqtts"
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return BrokerURL(parts.hostname, port, tls, user, password)
