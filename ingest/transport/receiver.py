"""``ProcessTransport``: the MQTT subscriber runs in a child process; the consumer's process only takes messages in.

Why: in one Python process paho's network thread (reading and decoding every PUBLISH) and the consumer (raw log,
admission, the twin's state and ticks) share one interpreter lock, so the consumer can never drain faster than
``1 / (paho's cost + its own cost)`` per message. With the subscriber in a child process the two run on two cores:
the child reads, queues and acknowledges; the parent logs, decides and applies (docs/liveness.md section 8).

The contract is `ingest.transport.client.MqttTransport`'s, consumer side and publishing side:

* ``queue``: the inbound messages (`InboundMessage`) in the order the broker sent them, bounded by ``queue_size``
  (the reader thread waits for room, so the pipe fills, the child's queue fills and its network thread waits:
  TCP backpressure, nothing dropped);
* ``ack(msg)`` collects the acknowledgement; ``flush_acks()`` (the ingest loop calls it after each group) sends
  the collected ones to the child, which hands them to paho. Messages of an earlier child or connection are
  skipped (``stats.acks_skipped_stale``): the broker delivers them again;
* ``publish`` / ``publish_droppable`` / ``wait_published`` / ``outstanding`` go to a publish-only
  `MqttTransport` in this process (client id ``client_id + "-out"``, as the in-process transport's publisher);
* ``stats`` merges the child's subscriber counters (sent by the child every ``STATS_EVERY_S`` and on every
  change of connection) with the publisher's; ``connected`` follows the child's connection;
* ``close_inbound`` / ``leave`` / ``stop`` are commands to the child.

Three pipes. Child -> parent: the messages (frames of pickled message tuples, the forwarder thread) and the status
(pickled counters, the command loop: it keeps coming while the message pipe is full). Parent -> child, the commands:
``("ack", [(mid, qos, generation), ...])``, ``("close",)``, ``("leave",)``,
``("stop", end_session)``.

Receive times: the child stamps wall time [s since epoch]; ``wall_to_clock`` (e.g. a compressed demo clock's
``at_wall``) maps it to the consumer's clock.

A child that dies (SIGKILL, a crash) is started again after ``RESTART_DELAY_S`` (counted in
``stats.receiver_restarts``, logged as an error): its unacknowledged messages are delivered again by the broker,
which kept the session. The child dies with its parent (``PR_SET_PDEATHSIG``), so a killed twin leaves no
subscriber holding its session.

Waits (no cycle, each with a way out): while ``queue`` is full the parent's reader polls for room every
``ROOM_POLL_S`` and reads only the status pipe (the ingest loop never waits on the reader; ``close_inbound`` drops
what it holds); the child's forwarder waits on the message pipe (the parent's reader never waits on the child, and
a parent that dies breaks the pipe); the child's command loop waits on its pipe with a timeout and checks its parent
is alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ingest.transport.client import Backoff, InboundMessage, MqttTransport, TransportStats
from ingest.transport.url import BrokerURL, parse_broker_url

log = logging.getLogger(__name__)

GROUP = 500
"""Most messages the child sends in one frame [message]."""
LINGER_S = 0.002
"""After the first message of a frame, the child waits at most this long for more [s]: frames of one message would
cost a pipe write and a wake-up of the parent each."""
STATS_EVERY_S = 0.25
"""The child sends its counters at least this often [s]."""
POLL_S = 0.1
"""Longest single wait of every loop here [s] (each loop checks whether it should end)."""
ROOM_POLL_S = 0.002
"""While the queue is full, the reader looks for room this often [s]."""
ACK_TAKEOVER_S = 0.005
"""Acknowledgements the child's network thread has not sent within this time are sent by its command loop [s]."""
RESTART_DELAY_S = 1.0
"""Pause before a dead child is started again [s]."""
GENERATION_SPAN = 1_000_000
"""``InboundMessage.generation`` = child number * GENERATION_SPAN + the child's connection number."""
SUBSCRIBER_FIELDS = ("connects", "disconnects", "connect_failures", "received", "received_qos0", "acked",
                     "acks_skipped_stale", "queue_full_waits", "queue_full_wait_s", "queue_high_water",
                     "left_unacked", "dropped_qos0", "session_taken_over", "session_lost", "tls_failures",
                     "last_reason")
"""`TransportStats` fields the child's subscriber counts."""


class InboundQueue:
    """The consumer's queue: ``put_many`` by the reader (one call per frame), ``get`` / ``get_nowait`` / ``qsize``
    as `queue.SimpleQueue`'s, by one consumer. A deque (its appends and pops are atomic) and an event: taking a
    message costs a pop, not a lock."""

    def __init__(self) -> None:
        self._items: deque[InboundMessage] = deque()
        self._ready = threading.Event()

    def qsize(self) -> int:
        """Messages waiting [1]."""
        return len(self._items)

    def put(self, item: InboundMessage) -> None:
        """Add one message."""
        self._items.append(item)
        self._ready.set()

    def put_many(self, items: Iterable[InboundMessage]) -> None:
        """Add messages in order."""
        self._items.extend(items)
        self._ready.set()

    def get_nowait(self) -> InboundMessage:
        """The oldest message; `queue.Empty` when there is none."""
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

    def get(self, block: bool = True, timeout: float | None = None) -> InboundMessage:
        """The oldest message, waiting at most ``timeout`` [s] (None: until one comes); `queue.Empty` after that."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            if not block:
                raise queue.Empty
            self._ready.clear()
            if self._items:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if (left is not None and left <= 0) or not self._ready.wait(left):
                raise queue.Empty


class ProcessTransport:
    """`MqttTransport`'s consumer and publishing contract with the subscriber in a child process (module docstring).

    Parameters are `MqttTransport`'s (passed on to the child's subscriber and this process's publisher), and:

    wall_to_clock : callable or None
        Maps the child's wall receive time [s] to the consumer's clock [s]; None keeps wall time.
    """

    def __init__(
        self,
        url: str | BrokerURL,
        *,
        client_id: str,
        subscriptions: Sequence[str] = (),
        share_group: str | None = None,
        protocol: str = "5",
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 1000,
        queue_size: int | None = None,
        keepalive_s: int = 30,
        backoff: Backoff | None = None,
        max_outstanding: int = 10_000,
        droppable_budget: int | None = None,
        publish_timeout_s: float = 10.0,
        tls_ca: str | None = None,
        wall_to_clock: Callable[[float], float] | None = None,
    ) -> None:
        self.url = url if isinstance(url, BrokerURL) else parse_broker_url(url)
        self.client_id = client_id
        self.queue_size = queue_size or 4 * receive_maximum + 1000
        self._child_args: dict[str, Any] = dict(
            url=str(url) if not isinstance(url, BrokerURL) else url, client_id=client_id,
            subscriptions=tuple(subscriptions), share_group=share_group, protocol=protocol,
            session_expiry_s=session_expiry_s, receive_maximum=receive_maximum, queue_size=self.queue_size,
            keepalive_s=keepalive_s, backoff=backoff, tls_ca=tls_ca, separate_publisher=False)
        # constructing the child's transport here checks the arguments at once (bad protocol, share group ...)
        probe = MqttTransport(**self._child_args)
        self.subscriptions = probe.subscriptions
        self.share_group = share_group
        self.publisher = MqttTransport(self.url, client_id=f"{client_id}-out", protocol=protocol,
                                       keepalive_s=keepalive_s, backoff=backoff, max_outstanding=max_outstanding,
                                       droppable_budget=droppable_budget, publish_waits=False,
                                       publish_timeout_s=publish_timeout_s, tls_ca=tls_ca)
        self.publisher_id = self.publisher.client_id
        self.publisher_connected = self.publisher.connected
        self.wall_to_clock = wall_to_clock
        self.queue = InboundQueue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        """Set once the broker has acknowledged a subscription of the child (SUBACK) on its current connection."""
        self.session_present: bool | None = None
        self.receiver_restarts = 0
        """Children started again after they died [1]."""
        self._child_stats: dict[str, Any] = {}
        self._parent_skipped = 0
        self._acks: list[tuple[int, int, int]] = []
        self._incarnation = 0
        self._proc: subprocess.Popen | None = None
        self._cmd: Connection | None = None  # parent end of the command pipe
        self._data: Connection | None = None  # parent end of the message pipe
        self._status_in: Connection | None = None  # parent end of the status pipe
        self._cmd_lock = threading.Lock()
        self._inbound_closed = threading.Event()
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, wait_s: float | None = 10.0) -> bool:
        """Start the child and the publisher; optionally wait for both connections (as `MqttTransport.start`)."""
        self._inbound_closed.clear()
        self._stopping.clear()
        self._spawn()
        self._reader = threading.Thread(target=self._read, name="receiver-reader", daemon=True)
        self._reader.start()
        self.publisher.start(None)
        if wait_s is None:
            return True
        deadline = time.monotonic() + wait_s
        for event in (self.connected, self.publisher_connected):
            while not event.wait(min(0.05, max(deadline - time.monotonic(), 0.0))):
                if self._child_stats.get("tls_failures") or time.monotonic() >= deadline:
                    return False
        return True

    def _spawn(self) -> None:
        """Start a child (``python -m ingest.transport.receiver DATA_FD STATUS_FD COMMAND_FD``) and send it its
        arguments."""
        data_r, data_w = os.pipe()
        status_r, status_w = os.pipe()
        cmd_r, cmd_w = os.pipe()
        root = str(Path(__file__).resolve().parents[2])
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._incarnation += 1
        self._acks = []
        fds = (data_w, status_w, cmd_r)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "ingest.transport.receiver", *map(str, fds)],
                                    pass_fds=fds, stdin=subprocess.DEVNULL, env=env)
        finally:
            for fd in fds:
                os.close(fd)
        self._proc = proc
        self._data = Connection(data_r, writable=False)
        self._status_in = Connection(status_r, writable=False)
        self._cmd = Connection(cmd_w, readable=False)
        self._cmd.send(self._child_args)

    def close_inbound(self) -> None:
        """Take no more messages in (see `MqttTransport.close_inbound`): the child neither queues nor acknowledges
        what arrives, and the reader stops waiting for room."""
        if not self._inbound_closed.is_set():
            self._inbound_closed.set()
            self._command(("close",))
            log.info("inbound closed; %d messages on the queue", self.queue.qsize())

    def leave(self) -> None:
        """Unsubscribe from every filter (see `MqttTransport.leave`)."""
        self.subscriptions = ()
        self._command(("leave",))

    def stop(self, timeout_s: float = 5.0, end_session: bool = False) -> None:
        """Close the inbound side, stop the child (it disconnects, ``end_session`` as `MqttTransport.stop`), then
        the publisher."""
        self.close_inbound()
        self._stopping.set()
        self._command(("stop", end_session))
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("receiver process did not stop within %.0f s: killed", timeout_s)
                proc.kill()
                proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout_s)
        self.publisher.stop(timeout_s)
        self.connected.clear()

    # -- consumer side ------------------------------------------------------------------------

    def ack(self, msg: InboundMessage) -> None:
        """Collect the acknowledgement of ``msg`` (QoS 1); `flush_acks` sends it. Never waits."""
        if msg.qos == 0:
            return
        incarnation, generation = divmod(msg.generation, GENERATION_SPAN)
        if incarnation != self._incarnation:
            self._parent_skipped += 1
            return
        self._acks.append((msg.mid, msg.qos, generation))

    def flush_acks(self) -> None:
        """Send the collected acknowledgements to the child (one frame). A child that is gone takes none: the
        broker delivers those messages again to the next one."""
        if self._acks:
            acks, self._acks = self._acks, []
            self._command(("ack", acks))

    def _command(self, command: tuple) -> None:
        with self._cmd_lock:
            if self._cmd is None or self._cmd.closed:
                return
            with contextlib.suppress(OSError, ValueError):  # the child is gone: the reader starts the next one
                self._cmd.send(command)

    # -- the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        """Take the child's frames until stopped; start a new child when one dies. Never waits for room with the
        pipes unread: while the queue is full it reads only the status pipe (the message pipe fills: backpressure)."""
        pending: list[InboundMessage] = []
        while True:
            pending = self._queue_some(pending)
            watch = [self._status_in] if pending else [self._data, self._status_in]
            try:
                ready = wait(watch, ROOM_POLL_S if pending else POLL_S)
                for conn in ready:
                    frame = conn.recv_bytes()
                    if conn is self._data:
                        pending = self._messages(pickle.loads(frame))
                    else:
                        self._status(pickle.loads(frame))
            except (EOFError, OSError):
                if self._stopping.is_set():
                    return
                pending = []
                self._child_died()

    def _messages(self, items: list[tuple]) -> list[InboundMessage]:
        """A frame's messages, receive times on the consumer's clock and generations numbered by child."""
        if self._inbound_closed.is_set():
            return []  # taken in no more: neither queued nor acknowledged; the broker keeps them
        base = self._incarnation * GENERATION_SPAN
        to_clock = self.wall_to_clock
        return [InboundMessage(topic, payload, qos, mid, dup, retain,
                               received_at if to_clock is None else to_clock(received_at), base + generation)
                for topic, payload, qos, mid, dup, retain, received_at, generation in items]

    def _queue_some(self, pending: list[InboundMessage]) -> list[InboundMessage]:
        """Queue what fits under ``queue_size``; returns the rest (nothing once the inbound side is closed)."""
        if not pending or self._inbound_closed.is_set():
            return []
        room = self.queue_size - self.queue.qsize()
        if room <= 0:
            return pending
        self.queue.put_many(pending[:room])
        return pending[room:]

    def _status(self, doc: dict[str, Any]) -> None:
        self._child_stats = doc
        self.session_present = doc.get("session_present")
        (self.connected.set if doc.get("connected") else self.connected.clear)()
        (self.subscribed.set if doc.get("connected") and doc.get("subscribed") else self.subscribed.clear)()

    def _child_died(self) -> None:
        proc = self._proc
        code = proc.poll() if proc is not None else None
        self.connected.clear()
        self.receiver_restarts += 1
        log.error("ALARM: the receiver process died (exit code %s); starting another in %.0f s (its unacknowledged "
                  "messages come again from the broker's session)", code, RESTART_DELAY_S)
        with self._cmd_lock:
            with contextlib.suppress(OSError):
                self._cmd.close()
            self._cmd = None
        for conn in (self._data, self._status_in):
            with contextlib.suppress(OSError):
                conn.close()
        if self._stopping.wait(RESTART_DELAY_S):
            return
        with self._cmd_lock:
            self._spawn()
        if self._inbound_closed.is_set():
            self._command(("close",))

    # -- publishing (this process) ---------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, droppable: bool = False):
        """`MqttTransport.publish` on this process's publisher (never waits)."""
        return self.publisher.publish(topic, payload, qos=qos, retain=retain, droppable=droppable)

    def publish_droppable(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """`MqttTransport.publish_droppable` on this process's publisher."""
        return self.publisher.publish_droppable(topic, payload, qos=qos, retain=retain)

    def wait_published(self, timeout_s: float) -> bool:
        """`MqttTransport.wait_published` on this process's publisher."""
        return self.publisher.wait_published(timeout_s)

    @property
    def outstanding(self) -> int:
        """Unconfirmed QoS 1 publishes [1]."""
        return self.publisher.outstanding

    @property
    def stats(self) -> TransportStats:
        """The child's subscriber counters with this process's publisher counters (a copy)."""
        pub = self.publisher.stats
        out = TransportStats(publisher_connects=pub.connects, publisher_disconnects=pub.disconnects,
                             published=pub.published, confirmed=pub.confirmed,
                             publish_failures=pub.publish_failures, publish_dropped=pub.publish_dropped,
                             publish_refused=pub.publish_refused)
        child = self._child_stats
        for name in SUBSCRIBER_FIELDS:
            if name in child:
                setattr(out, name, child[name])
        out.acks_skipped_stale += self._parent_skipped
        out.connect_failures += pub.connect_failures
        out.tls_failures += pub.tls_failures
        return out


# -- the child process ------------------------------------------------------------------------------------------


def child_main(data: Connection, status: Connection, cmd: Connection) -> None:
    """The child: an `MqttTransport` subscriber, a forwarder thread (queue -> message pipe) and the command loop,
    which also sends the status. The first command is the transport's arguments."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s receiver %(levelname)s %(message)s")
    if not cmd.poll(30.0):
        return
    transport = MqttTransport(**cmd.recv())
    stop = threading.Event()
    forwarder = threading.Thread(target=_forward, args=(transport, data, stop), name="forwarder", daemon=True)
    transport.start(None)
    forwarder.start()
    end_session = False
    try:
        end_session = _command_loop(transport, status, cmd, stop)
    finally:
        stop.set()
        transport.stop(end_session=end_session)
        forwarder.join(2 * POLL_S + 1)
        for conn in (data, status):
            with contextlib.suppress(OSError):
                conn.close()


def _command_loop(transport: MqttTransport, status: Connection, cmd: Connection, stop: threading.Event) -> bool:
    """Carry out the parent's commands and send the status, until ``stop``, the stop command or the parent's end;
    returns whether the stop command asked to end the session."""
    parent = os.getppid()
    acks = _Acks(transport)
    subacks = _count_subacks(transport)
    last: tuple = ()
    next_at = 0.0
    while not stop.is_set() and os.getppid() == parent:
        now_status = (transport.connected.is_set(), transport.stats.connects, transport.session_present,
                      subacks.get(transport.stats.connects, 0))
        if now_status != last or time.monotonic() >= next_at:
            doc = dataclasses.asdict(transport.stats) | {"connected": now_status[0], "session_present": now_status[2],
                                                         "subscribed": now_status[3] > 0}
            try:
                status.send_bytes(pickle.dumps(doc, pickle.HIGHEST_PROTOCOL))
            except OSError:  # the parent is gone
                return False
            last, next_at = now_status, time.monotonic() + STATS_EVERY_S
        try:
            if acks.pending:
                acks.send(older_than=time.monotonic() - ACK_TAKEOVER_S)
            if not cmd.poll(ACK_TAKEOVER_S if acks.pending else POLL_S):
                continue
            command = cmd.recv()
        except (EOFError, OSError):
            return False
        if command[0] == "ack":
            acks.add(command[1])
        elif command[0] == "close":
            transport.close_inbound()
        elif command[0] == "leave":
            transport.leave()
        elif command[0] == "stop":
            return bool(command[1])
    return False


def _ack_all(transport: MqttTransport, acks: list[tuple[int, int, int]]) -> None:
    for mid, qos, generation in acks:
        transport.ack(InboundMessage("", b"", qos, mid, False, False, 0.0, generation))


def _count_subacks(transport: MqttTransport) -> dict[int, int]:
    """SUBACKs the broker sent, by connection number (``stats.connects`` when they came)."""
    counts: dict[int, int] = {}

    def on_subscribe(*_args) -> None:
        n = transport.stats.connects
        counts[n] = counts.get(n, 0) + 1

    transport._client.on_subscribe = on_subscribe
    return counts


class _Acks:
    """Acknowledgements from the parent, handed to paho by its own network thread (before it takes the next
    message in) -- from the command loop, each PUBACK's wake-up of the network thread would pass the interpreter
    lock back and forth once per acknowledgement -- or by the command loop when the network thread has not taken
    them within `ACK_TAKEOVER_S` (no message comes while the broker waits for them)."""

    def __init__(self, transport: MqttTransport) -> None:
        self.transport = transport
        self.pending: deque[tuple[float, list[tuple[int, int, int]]]] = deque()
        on_message = transport._client.on_message

        def acking_on_message(client, userdata, msg) -> None:
            if self.pending:
                self.send()
            on_message(client, userdata, msg)

        transport._client.on_message = acking_on_message

    def add(self, acks: list[tuple[int, int, int]]) -> None:
        """Acknowledgements to send."""
        self.pending.append((time.monotonic(), acks))

    def send(self, older_than: float | None = None) -> None:
        """Send the waiting acknowledgements (only those queued before ``older_than`` [monotonic s], if given)."""
        while self.pending:
            try:
                queued, acks = self.pending.popleft()
            except IndexError:  # the other thread took them
                return
            if older_than is not None and queued > older_than:
                self.pending.appendleft((queued, acks))
                return
            _ack_all(self.transport, acks)


def _forward(transport: MqttTransport, data: Connection, stop: threading.Event) -> None:
    """Move the transport's messages to the parent in frames of at most `GROUP` (waits on the pipe when the parent's
    queue is full: the transport's queue then fills and its network thread waits, TCP backpressure)."""
    q = transport.queue
    while not stop.is_set():
        try:
            items = [tuple(q.get(timeout=POLL_S))]
        except queue.Empty:
            continue
        _gather(q, items)
        try:
            data.send_bytes(pickle.dumps(items, pickle.HIGHEST_PROTOCOL))
        except (OSError, ValueError):  # the parent is gone
            stop.set()


def _gather(q: queue.SimpleQueue, items: list[tuple]) -> None:
    """Add to ``items`` what comes within `LINGER_S`, up to `GROUP` messages. The linger is a sleep, not a wait on
    the queue: a waiting getter would be woken by every message the network thread puts, passing the interpreter
    lock back and forth once per message."""
    if q.qsize() < GROUP - 1:
        time.sleep(LINGER_S)
    while len(items) < GROUP:
        try:
            items.append(tuple(q.get_nowait()))
        except queue.Empty:
            return


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere the command loop's
    parent check ends it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


if __name__ == "__main__":
    child_main(Connection(int(sys.argv[1]), readable=False), Connection(int(sys.argv[2]), readable=False),
               Connection(int(sys.argv[3]), writable=False))
