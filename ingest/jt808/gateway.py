"""The JT/T 808 gateway: an asyncio TCP server for vehicle terminals that publishes their reports over MQTT.

Terminals (TCP, JT/T 808-2013 / -2019 frames) → ``Gateway`` → MQTT → twin. The gateway answers the link-level
messages itself (registration 0x0100/0x8100, authentication 0x0102, heartbeat 0x0002, deregistration 0x0003,
general replies 0x0001/0x8001; ``ingest.jt808.session``) and publishes every location report 0x0200 and batch
0x0704 of an authenticated terminal as one whole JT/T 808 frame at QoS 1 on ``{prefix}beidou/{device}``,
answering the terminal only once the broker confirmed it. Frames it cannot accept become dead letters on
``{prefix}deadletter``, counted by reason. Unit alerts (``{prefix}units/+/alerts``) go to the units' terminals
as 0x8300 texts (``ingest.jt808.downlink``).

Exposure: it listens on loopback unless ``GatewayConfig.allow`` lists the terminal networks (CIDR); connections
from elsewhere are then closed at once and counted. At most ``max_connections`` connections; idle ones are
closed after ``idle_timeout_s``.

Hosting: ``await start()`` / ``await stop()`` in an event loop; ``run_in_thread()`` / ``stop_thread()`` for a
synchronous program; ``serve(...)`` for a command line (runs until ``stop`` is set or Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ingest.deadletter import DeadLetters
from ingest.jt808.bridge import MqttBridge
from ingest.jt808.config import READ_LIMIT, GatewayConfig, GatewayStats
from ingest.jt808.downlink import Downlink
from ingest.jt808.session import Session
from ingest.jt808.terminals import Terminals
from ingest.registry import Registry
from ingest.rejection import Rejection

log = logging.getLogger(__name__)


class Gateway:
    """The server (see the module docstring). ``terminals`` maps phones to devices; ``bridge`` speaks MQTT."""

    def __init__(self, config: GatewayConfig, terminals: Terminals, bridge: MqttBridge) -> None:
        self.config, self.terminals, self.bridge = config, terminals, bridge
        self.sessions: set[Session] = set()
        self.by_device: dict[str, Session] = {}
        """Authenticated sessions by device id."""
        self.stats = GatewayStats(mqtt=bridge.stats)
        self.downlink = Downlink(config.prefix, terminals.has_device, self.by_device.get, stats=self.stats)
        self.deadletters = DeadLetters(lambda topic, body, qos=1: bridge.publish_droppable(topic, body), config.prefix)
        self.port: int | None = None
        """The bound port (after ``start``)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._handlers: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- life cycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker (in the background) and listen; raises ``OSError`` when the port is taken."""
        loop = asyncio.get_running_loop()
        self.bridge.start(loop, [self.downlink.subscription], self.downlink.on_alert)
        self._server = await asyncio.start_server(self._on_connection, self.config.host, self.config.port,
                                                  limit=READ_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._log_every_interval())
        log.info("JT/T 808 gateway listening on %s:%d (%d terminals)", self.config.host, self.port,
                 len(self.terminals))

    async def stop(self) -> None:
        """Stop listening, close every connection, disconnect from the broker."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        if self._handlers:  # connection handlers end once their transports are closed
            await asyncio.wait(list(self._handlers), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.bridge.stop)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        if not self.config.allows(str(peer[0])):
            self.stats.peers_refused += 1
            writer.transport.abort()
            return
        if len(self.sessions) >= self.config.max_connections:
            self.stats.connections_refused += 1
            writer.transport.abort()
            return
        session = Session(self, reader, writer)
        self.sessions.add(session)
        self.stats.connections += 1
        self.stats.open_connections = len(self.sessions)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            await session.run()
        finally:
            self._handlers.discard(handler)

    # -- sessions ------------------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        """A session authenticated: it now speaks for its device (an older connection of the device is closed)."""
        device = session.device
        old = self.by_device.get(device)
        if old is not None and old is not session:
            self.stats.replaced += 1
            old.close()
        self.by_device[device] = session
        self.downlink.on_authenticated(device, session)

    def detach(self, session: Session) -> None:
        """A session no longer speaks for its device (deregistered or closed)."""
        if session.device is not None and self.by_device.get(session.device) is session:
            del self.by_device[session.device]

    def session_closed(self, session: Session) -> None:
        self.detach(session)
        self.sessions.discard(session)
        self.stats.open_connections = len(self.sessions)

    def dead_letter(self, topic: str, rejection: Rejection, raw: bytes) -> None:
        """Publish a dead letter (never waits; dropped and counted when the broker is far behind)."""
        if self.deadletters.send(topic, rejection, time.time(), raw):
            self.stats.dead_letters += 1
        else:
            self.stats.dead_letters_dropped += 1

    async def _log_every_interval(self) -> None:
        last = -1
        while True:
            await asyncio.sleep(self.config.log_interval_s)
            if self.stats.frames != last:
                last = self.stats.frames
                log.info("jt808: %s", self.summary())

    def summary(self) -> str:
        """One line of the main counters."""
        s = self.stats
        refused = ", ".join(f"{k} {v}" for k, v in sorted(s.refused.items())) or "none"
        return (f"{s.open_connections} connections open ({s.connections} accepted), {s.frames} frames, "
                f"{s.published} reports published, {s.publish_unconfirmed} unconfirmed, refused: {refused}, "
                f"{s.dead_letters} dead letters, {s.texts_sent} texts sent, {s.texts_acked} acknowledged")

    # -- hosting in a thread -------------------------------------------------------------------------

    def run_in_thread(self, timeout_s: float = 10.0) -> int:
        """Run in a daemon thread with its own event loop; returns the bound port once listening (raises what
        ``start`` raised, or ``TimeoutError``)."""
        started = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                started.set()
                await asyncio.to_thread(self.bridge.stop)
                return
            started.set()
            await self._thread_stop.wait()
            await self.stop()

        def run() -> None:
            loop = self._thread_loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="jt808-gateway", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise TimeoutError(f"the JT/T 808 gateway did not start within {timeout_s:g} s")
        if failure:
            self._thread.join(timeout_s)
            raise failure[0]
        return int(self.port or 0)

    def stop_thread(self, timeout_s: float = 10.0) -> bool:
        """Stop the gateway of ``run_in_thread``; whether its thread ended within ``timeout_s``."""
        thread, loop, stop = self._thread, self._thread_loop, self._thread_stop
        if thread is None:
            return True
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout_s)
        return not thread.is_alive()


def serve(config: GatewayConfig, registry: Registry, broker_url: str, *, stop: threading.Event | None = None,
          progress: Callable[[str], None] | None = None, status_every_s: float | None = None,
          protocol: str = "5") -> int:
    """Run a gateway until ``stop`` is set or Ctrl-C; the exit code (0, 1 when it cannot listen, 2 for a bad
    broker URL). ``progress`` gets one-line messages: listening, the counters (`Gateway.summary`) every
    ``status_every_s`` seconds when given, and the counters at the end. ``registry`` may change while it runs
    (``Registry.apply`` from another thread): the terminals follow its ``version``."""
    say = progress or (lambda text: None)
    try:
        bridge = MqttBridge(broker_url, client_id=config.client_id, max_inflight=config.max_inflight,
                            confirm_timeout_s=config.confirm_timeout_s, protocol=protocol)
    except ValueError as exc:
        say(f"bad broker URL: {exc}")
        return 2
    terminals = Terminals(registry, state_path=config.state_path, secret=config.auth_secret)
    gateway = Gateway(config, terminals, bridge)

    async def main() -> None:
        await gateway.start()
        say(f"JT/T 808 gateway listening on {config.host}:{gateway.port} for {len(terminals)} terminals, "
            f"publishing to {bridge.url}")
        next_status = time.monotonic() + (status_every_s or float("inf"))
        try:
            while stop is None or not stop.is_set():
                await asyncio.sleep(0.2)  # the pace at which a stop from another thread is noticed
                if time.monotonic() >= next_status:
                    next_status += status_every_s or float("inf")
                    say(f"jt808: {gateway.summary()}")
        finally:
            await gateway.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        say(f"cannot listen on {config.host}:{config.port}: {exc}")
        return 1
    finally:
        terminals.close()
    say(f"JT/T 808 gateway stopped: {gateway.summary()}")
    return 0
