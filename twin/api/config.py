"""Settings of the HTTP API (`ApiConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
"""Host names a browser uses for a server on IPv4 loopback (for the Host-header check; Starlette's check
cannot parse IPv6 literals, so a server on ``::1`` goes without it)."""


@dataclass(frozen=True)
class ApiConfig:
    """How the HTTP API behaves.

    Attributes
    ----------
    token : str or None
        Bearer token that writes (``POST /api/alerts/{id}/ack``) must carry. Without one, writes are
        refused (403): the API then only reads.
    cors_origins : tuple of str
        Origins allowed to call the API from a browser page served elsewhere (CORS). Empty: CORS
        is off and only same-origin pages (the dashboard at ``/``) use the API. The same list
        admits cross-origin WebSocket clients on ``/ws``.
    allowed_hosts : tuple of str or None
        Host headers accepted (a defence against DNS rebinding on loopback); None accepts any.
        `twin.api.serve` sets the loopback names when it listens on loopback.
    max_cells : int
        Largest number of cells one ``/api/layers/{name}`` or PNG response may carry; larger
        requests get 413 and should ask for a ``bbox``.
    ws_queue : int
        Events buffered per WebSocket client; a client that falls this far behind is
        disconnected (close code 1013) and resynchronises on reconnecting.
    """

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    max_cells: int = 2_000_000
    ws_queue: int = 1000

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the API token must be at least 8 characters long")
        if self.max_cells < 1 or self.ws_queue < 1:
            raise ValueError("max_cells and ws_queue must be positive")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if self.allowed_hosts is not None:
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
