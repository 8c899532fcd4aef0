"""An MQTT broker inside the project, for zero set-up (``twin demo``, ``twin run`` without --broker).

amqtt (a maintained pure-Python broker) runs in a child process on 127.0.0.1 and a free port.
Its limits, found when it was tried here (docs/maintainers/recipes.md 2):

- it speaks MQTT 3.1.1 only, so clients use ``protocol="3.1.1"``;
- it queues QoS 1 messages for an offline persistent session only when the client logged in
  with a username (anonymous sessions get nothing queued), so every client sends one: the
  broker URL carries ``twin@``; no password is checked on loopback;
- sessions and retained messages live in memory and are gone when it stops;
- it waits 5 s for a subscriber's PUBACK and then forgets the delivery (no redelivery): our consumer
  acknowledges after the raw log's fsync, which a busy twin can delay past that, so a consumer
  crash in that window could lose messages.

For anything beyond a demo use Mosquitto with ``deploy/mosquitto.conf``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

BROKER_CONFIG = {
    "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
    # an auth plugin is mandatory; allow_anonymous False: clients must send a username (any), which
    # is what makes amqtt keep their persistent sessions' messages while they are offline
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
}


def _serve(conn: Connection, log_level: int) -> None:
    """The broker process: report the port (or the error) on ``conn``, stop on "stop" or when the parent is gone."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # amqtt logs every late PUBACK as an error with a traceback: quiet unless the parent logs debug
    logging.getLogger("amqtt").setLevel(log_level if log_level <= logging.DEBUG else logging.CRITICAL)
    try:
        asyncio.run(_main(conn))
    except Exception as exc:  # reported to the parent, which raises it in start()
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


async def _main(conn: Connection) -> None:
    from amqtt.broker import Broker

    broker = Broker(BROKER_CONFIG)
    await broker.start()
    server = broker._servers["default"].instance  # amqtt exposes no public way to read the bound port
    conn.send(("port", server.sockets[0].getsockname()[1]))
    with contextlib.suppress(EOFError, OSError):  # "stop", or EOFError: the parent is gone
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await broker.shutdown()


class EmbeddedBroker:
    """amqtt on 127.0.0.1 and a free port, in a child process; a context manager.

    A process of its own keeps the broker's Python work off the twin's interpreter lock; it ends
    when `stop` is called or, should the parent die, when its end of the pipe closes.
    """

    def __init__(self) -> None:
        self.port = 0
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    @property
    def url(self) -> str:
        """Broker URL for clients (MQTT 3.1.1, with the username amqtt needs for offline queueing)."""
        return f"mqtt://twin@127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        """Start and wait until it listens."""
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, logging.getLogger().getEffectiveLevel()),
                                    name="embedded-mqtt-broker", daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(timeout_s):
            self.stop()
            raise RuntimeError("the embedded MQTT broker did not start")
        kind, value = self._conn.recv()
        if kind != "port":
            self.stop()
            raise RuntimeError(f"the embedded MQTT broker failed to start: {value}")
        self.port = int(value)
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) on 127.0.0.1:%d", self.port)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it and wait for its process; the port is free afterwards."""
        if self._process is None:
            return
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def broker_or_embedded(url: str | None, protocol: str | None,
                       say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """(url, protocol) of the broker given, or of an embedded broker started here and stopped on exit (``twin demo``
    and ``twin replay`` without ``--broker``)."""
    if url:
        yield url, protocol or "5"
        return
    with EmbeddedBroker() as embedded:
        say(f"no --broker given: started an embedded MQTT broker (amqtt, MQTT 3.1.1) at {embedded.url}")
        yield embedded.url, "3.1.1"
