"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://...[?cafile=PATH]`` (TLS).

``cafile`` (``mqtts://`` only) names the PEM file of the certificate authorities the broker's certificate is
checked against, e.g. a private CA: ``mqtts://citytwin:secret@broker.example:8883?cafile=/etc/citytwin/ca.pem``.
Without it the system's trusted CAs are used. Any other query parameter is refused, so a typo is not ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

QUERY_PARAMETERS = ("cafile",)


@dataclass(frozen=True)
class BrokerURL:
    """A parsed broker address. ``password`` is never shown in ``repr``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    """PEM file of the CAs that verify the broker's certificate (``mqtts://`` only; None: the system's)."""

    def __repr__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        query = f"?cafile={self.cafile}" if self.cafile else ""
        return f"BrokerURL({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}{query})"

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
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False) if parts.query else {}
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        known = ", ".join(QUERY_PARAMETERS)
        raise ValueError(f"broker URL: unknown parameter(s) {', '.join(unknown)} (known: {known})")
    cafile = None
    if "cafile" in query:
        values = query["cafile"]
        if len(values) != 1 or not values[0]:
            raise ValueError("broker URL: cafile needs exactly one file path, e.g. ?cafile=/etc/citytwin/ca.pem")
        if not tls:
            raise ValueError("broker URL: cafile is for TLS; use mqtts://")
        cafile = values[0]
    return BrokerURL(parts.hostname, port, tls, user, password, cafile)
