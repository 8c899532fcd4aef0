"""`serve`: the API under uvicorn in a background thread, with a handle to stop it.

The listening socket is bound here, in the caller's thread, so a busy port or a bad host is
an ordinary `OSError` at once, and port 0 gives the real port before anything is served.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn

from twin.api.app import create_app
from twin.api.config import LOOPBACK_HOSTS, ApiConfig

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0


def is_loopback(host: str) -> bool:
    """The host is a loopback address or ``localhost`` (names other than localhost are not trusted)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class ServerHandle:
    """A running API server: ``url`` (with the real port) and `stop`."""

    url: str
    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Shut down cleanly (open WebSockets are closed) and free the port."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            log.warning("the HTTP server did not stop within %.0f s: forcing it", timeout_s)
            self.server.force_exit = True
            self.thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(service, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          cors: Sequence[str] = (), config: ApiConfig | None = None) -> ServerHandle:
    """Serve the API of a live service from a background thread; returns once it accepts connections.

    Parameters
    ----------
    service : twin.live.service.LiveService
        The running twin.
    host, port : str, int
        Where to listen; port 0 picks a free port (``handle.url`` has the real one).
    token : str or None
        Bearer token for writes. Required to listen on anything but loopback.
    cors : sequence of str
        Origins allowed to call the API from other sites (CORS is off when empty).
    config : ApiConfig, optional
        Other settings; its token and CORS origins are replaced by ``token`` and ``cors``.

    Raises
    ------
    ValueError
        A non-loopback host without a token.
    OSError
        The address cannot be bound (port in use, unknown host).
    """
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve the API on {host}, beyond loopback, without a token: "
                         "give an API token (writes need it) or listen on 127.0.0.1")
    base = config or ApiConfig()
    hosts = LOOPBACK_HOSTS if is_loopback(host) and ":" not in host else base.allowed_hosts
    config = dataclasses.replace(base, token=token, cors_origins=tuple(cors), allowed_hosts=hosts)
    return serve_app(create_app(service, config), host, port)


def serve_app(app, host: str, port: int, thread_name: str = "twin-http", what: str = "the HTTP API") -> ServerHandle:
    """Serve an ASGI ``app`` with uvicorn from a background thread (the twin's API, the city tier's); returns once it
    accepts connections. Port 0 picks a free port (``handle.url`` has the real one). OSError when the address
    cannot be bound or the server does not start within `STARTUP_TIMEOUT_S`."""
    sock = _bind(host, port)
    real_port = sock.getsockname()[1]
    uv = uvicorn.Config(app, log_level="warning", ws="wsproto", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(uv)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=thread_name, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise OSError(f"{what} did not start on {host}:{real_port}")
        time.sleep(0.01)  # polling pace until uvicorn reports it started (bounded by the deadline)
    url_host = f"[{host.strip('[]')}]" if ":" in host else host
    log.info("%s on http://%s:%d", what, url_host, real_port)
    return ServerHandle(f"http://{url_host}:{real_port}", host, real_port, server, thread, sock)
