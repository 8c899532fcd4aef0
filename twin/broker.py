"""An MQTT broker inside the project, for zero set-up (``twin demo``, ``twin run`` without --broker).

amqtt (a maintained pure-Python broker) runs on its own asyncio loop in a background thread,
on 127.0.0.1 and a free port. Its limits, found when it was tried here (shared/RECIPES.md 2):

- it speaks MQTT 3.1.1 only, so clients use ``protocol="3.1.1"``;
- it queues QoS 1 messages for an offline persistent session only when the client logged in
  with a username (anonymous sessions get nothing queued), so every client sends one: the
  broker URL carries ``twin@``; no password is checked on loopback;
- sessions and retained messages live in memory and are gone when it stops.

For anything beyond a demo use Mosquitto with ``deploy/mosquitto.conf``.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger(__name__)

BROKER_CONFIG = {
    "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
    # an auth plugin is mandatory; allow_anonymous False: clients must send a username (any), which
    # is what makes amqtt keep their persistent sessions' messages while they are offline
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
}


class EmbeddedBroker:
    """amqtt on 127.0.0.1 and a free port, in a background thread; a context manager."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)

    @property
    def url(self) -> str:
        """Broker URL for clients (MQTT 3.1.1, with the username amqtt needs for offline queueing)."""
        return f"mqtt://twin@127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(), which raises it in the caller's thread
            self._failed = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        from amqtt.broker import Broker

        self._stop = asyncio.Event()
        broker = Broker(BROKER_CONFIG)
        await broker.start()
        server = broker._servers["default"].instance  # amqtt exposes no public way to read the bound port
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await broker.shutdown()

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        """Start and wait until it listens."""
        quiet = logging.getLogger("amqtt")
        if quiet.getEffectiveLevel() > logging.DEBUG:  # its per-message warnings would drown the demo's output
            quiet.setLevel(logging.ERROR)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the embedded MQTT broker did not start")
        if self._failed is not None:
            raise RuntimeError(f"the embedded MQTT broker failed to start: {self._failed}") from self._failed
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) on 127.0.0.1:%d", self.port)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it and wait for its thread; the port is free afterwards."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
