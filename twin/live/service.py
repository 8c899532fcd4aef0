"""The live service: broker -> ingest -> twin core every tick -> store/outbox -> broker.

Threads:

- paho's network thread fills the transport's bounded queue;
- the ingest thread logs every message durably, acknowledges it, decodes it and applies the
  batch to the core; the tick thread only puts a ``$twin/tick`` control record on the ingest
  loop's control queue, which the loop empties at the head of its next group, so ticks are logged
  and processed in order with the data (the log is the clock) and never wait behind a backlog;
- an operator's acknowledgement (`LiveService.acknowledge`, from the HTTP API through
  `twin.live.query.LiveQuery`) is a ``$twin/ack`` control record on the same queue too: logged,
  then applied by the core on the ingest thread while the caller waits, so a restart replays it;
- a unit's acknowledgement of an alert it was not sent (or of no alert) is refused by the core:
  dead-lettered (counted) and answered on the unit's ``units/{id}/ack/errors`` topic;
- an operator's case action (`LiveService.case_command`: open, dispatch, a status change, a note, an
  attachment, a priority, a report, a field unit's answer from its page) is a ``$twin/case`` control
  record, logged and applied in order like an acknowledgement; a unit's task answer the case desk refuses
  (``unknown_case``, ``not_assigned``, ``bad_transition``) is dead-lettered and answered on
  ``units/{id}/tasks/errors``, and a refused citizen report (``unknown_source``, ``unknown_category``) is
  dead-lettered;
- the outbox publisher sends stored messages in order and marks each published only when
  the broker confirmed it;
- the device registry lives in a database (`ingest.registry_db`, docs/guides/devices.md): a change (from the HTTP
  API through `LiveService.add_device` and its siblings, or found by the registry thread, which looks for changes
  made by others every ``registry_poll_s``) is a ``$twin/registry`` control record naming the version to reach,
  logged and applied in order like an acknowledgement: the admission's registry and the core's per-sensor tables
  change between two messages, and a replay applies it at the same place.

Registry at start: an empty registry database is filled from ``ServiceConfig.registry`` (the GeoJSON of ``twin run
--registry``); one that holds devices is the truth and the file is not read. The twin starts from the registry as it
was where its replay starts (the version a snapshot names) and catches up from there.

Recovery: every ``snapshot_every_s`` of twin time, right after a tick, the core's state and the
ingest deduplication memory are written as a versioned snapshot (`twin.live.snapshot`: JSON plus
numpy arrays in one zip, no pickle) with the raw-log position just after that tick. At start the
last snapshot is restored and the log replayed from its position, which gives the state of a run
that never stopped. A snapshot that cannot be restored (an old pickle, a newer version, another
grid) stops the start with a `SnapshotError` that says what to do. The live layers are also
written beside it as NetCDF for people and other tools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ingest.batch import Batch
from ingest.pipeline import IngestConfig, Ingestor, control_message
from ingest.rawlog import LogPosition, RawLog
from ingest.registry import Device, RegistryError, device_from_feature
from ingest.registry_db import Change, DeviceConflict, RegistryStore, UnknownDeviceError, follow_versions
from ingest.rejection import Reason, Rejection
from ingest.routing import subscriptions
from ingest.transport.client import MqttTransport, is_confirmed
from ingest.transport.receiver import ProcessTransport
from ingest.validation import Limits
from twin.alerting.lifecycle import AlertEvent
from twin.alerting.store import Store
from twin.cases.book import CaseBook
from twin.cases.model import CaseError
from twin.district.dataset import grid_of, load_twin, save_twin
from twin.district.roads import load_road_network
from twin.live import snapshot
from twin.live.case_desk import ACTIONS
from twin.live.core import CoreConfig, TickReport, TwinCore
from twin.live.query import AckTimeoutError, AckUnavailableError, AlertNotActiveError, DeviceError
from twin.live.state import Rejected
from twin.live.warmup import settle_heap, warm_up

log = logging.getLogger(__name__)

TICK_TOPIC = "$twin/tick"
ACK_TOPIC = "$twin/ack"
"""Control record of an operator's acknowledgement: JSON ``{"alert", "operator", "note", "t", "request"}``
(``t`` null: the record's receive time, never before the last tick; ``request`` pairs it with its waiter)."""
CASE_TOPIC = "$twin/case"
"""Control record of a case action: JSON ``{"action", "body", "request"}`` (`twin.live.case_desk.ACTIONS`; applied
at the record's receive time, never before the last tick; ``request`` pairs it with its waiter)."""
REGISTRY_TOPIC = "$twin/registry"
"""Control record of registry changes: JSON ``{"to": version, "request"}``: the ingest thread applies the registry
database's changes after the version the twin is at, up to ``to`` (`LiveService._apply_registry`), in order with the
data, so the admission judges every message by the registry of its place in the log, live and replayed."""
REGISTRY_CHUNK = 20_000
"""Most registry changes one ``$twin/registry`` record applies: a bulk import reaches a running twin in parts, with
data between them. [change]"""
ACK_TIMEOUT_S = 10.0
"""How long `LiveService.acknowledge` waits for its record to be applied by default. [s]"""
MAX_PENDING_ACKS = 64
"""Operators' acknowledgements and case actions that may wait to be applied at once; more are refused. [1]"""
TWIN_REASONS = {"outside_grid": Reason.OUTSIDE_GRID, "unknown_alert": Reason.UNKNOWN_ALERT,
                "not_sent": Reason.NOT_SENT, "unknown_case": Reason.UNKNOWN_CASE, "not_assigned": Reason.NOT_ASSIGNED,
                "bad_transition": Reason.BAD_TRANSITION, "unknown_source": Reason.UNKNOWN_SOURCE,
                "unknown_category": Reason.UNKNOWN_CATEGORY, "bad_report": Reason.BAD_SCHEMA}
"""The dead-letter reason of each of the twin's own refusals (`twin.live.state.Rejected.reason`)."""
SNAPSHOT = snapshot.FILE
PROCESS_RECEIVE_MAXIMUM = 10_000
"""MQTT 5 Receive Maximum of the child-process subscriber [message]: the broker keeps sending while the twin is inside
a tick (up to a few hundred ms) and the acknowledgements wait; 10,000 covers half a second at 20,000 msg/s. The
inbound queue holds 4x that (`ingest.transport.client.MqttTransport`'s rule), a few tens of MB at most."""
SEQUENCES = "sequences.json"
"""The alert and case numbers and the registry version the raw log of a state folder started from
(`LiveService._number_from_base`)."""


class _PendingAck:
    """An operator's acknowledgement or case action waiting to be applied: the core's answer, or its error."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: AlertEvent | dict | None = None
        """What the core answered: the `AlertEvent` of an acknowledgement, the dict of a case action."""
        self.error: BaseException | None = None


class TwinClock:
    """The twin's time [unix s]: wall time, or simulated time running ``speed`` times faster.

    ``start`` is the simulated time at the moment the clock is made (default: now). Receive
    times, ticks and the status all read this clock, so a demo can compress an evening into
    minutes while the raw log, the replay and the alerts stay consistent.
    """

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self.speed = speed
        self.wall0 = time.time()
        self.sim0 = self.wall0 if start is None else start

    def __call__(self) -> float:
        return self.sim0 + (time.time() - self.wall0) * self.speed

    def at_wall(self, wall_t: float) -> float:
        """The twin's time at wall time ``wall_t`` [unix s]."""
        return self.sim0 + (wall_t - self.wall0) * self.speed

    def wall_seconds(self, twin_seconds: float) -> float:
        """Wall time that ``twin_seconds`` of twin time take. [s]"""
        return twin_seconds / self.speed


@dataclass
class ServiceConfig:
    """Settings of `LiveService` (``twin run`` fills them from its options)."""

    broker: str
    grid: Path
    registry: Path
    state_dir: Path
    db: str | None = None
    registry_db: str | None = None
    """The device registry's database (`ingest.registry_db`); None: the alert store's when ``db`` is PostgreSQL,
    else ``registry.db`` in the state folder (`registry_url`)."""
    registry_poll_s: float = 5.0
    """How often the twin looks for registry changes made by others (``twin devices``, another twin's API). [s]"""
    tick_s: float = 1.0
    prefix: str = "city/"
    client_id: str = "citytwin-bund"
    protocol: str = "5"
    snapshot_every_s: float = 60.0
    core: CoreConfig = field(default_factory=CoreConfig)
    limits: Limits = field(default_factory=Limits)
    clock: TwinClock = field(default_factory=TwinClock)
    end_session_on_stop: bool = False
    """Drop the broker-side session when stopping (a demo's one-off client id), MQTT 5 only."""
    receiver: str = "thread"
    """Where the MQTT subscriber runs: ``"thread"`` (paho's network thread in this process,
    `ingest.transport.client.MqttTransport`) or ``"process"`` (a child process,
    `ingest.transport.receiver.ProcessTransport`: reading messages no longer takes the interpreter lock from the
    twin, about twice the throughput on two cores). ``twin run`` and ``twin demo`` use ``"process"``."""
    freeze_heap: bool = False
    """After the warm-up, collect and freeze the process's heap (`settle_heap`) so that Python's full garbage
    collections no longer walk the twin's long-lived objects. ``twin run`` and ``twin demo`` set it: the process is
    theirs. Off for a service embedded in another program, whose heap is not the service's to freeze."""


class OutboxPublisher:
    """Publishes the store's outbox in order; a row is marked published once the broker confirmed it."""

    def __init__(self, store: Store, transport: MqttTransport, window: int = 100) -> None:
        self.store, self.transport, self.window = store, transport, window
        self.inflight: deque = deque()
        self.last_seq = 0
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="outbox", daemon=True)

    def run(self) -> None:
        """Loop until stopped (then flush what the broker confirms within a few seconds)."""
        while not self._stop.is_set():
            if not self.step():
                self.wake.wait(0.05)
                self.wake.clear()
        deadline = time.monotonic() + 5.0
        while self.inflight and time.monotonic() < deadline:
            self.step()
            time.sleep(0.01)

    def step(self) -> bool:
        """Confirm what the broker acknowledged, send what is waiting; True if anything moved."""
        moved = False
        while self.inflight and is_confirmed(self.inflight[0][1]):
            seq, _ = self.inflight.popleft()
            self.store.mark_published(seq)
            moved = True
        room = self.window - len(self.inflight)
        if room > 0 and not self._stop.is_set():
            for item in [i for i in self.store.pending(self.window * 2) if i.seq > self.last_seq][:room]:
                info = self.transport.publish(item.topic, item.payload or b"", qos=1, retain=item.retain)
                self.inflight.append((item.seq, info))
                self.last_seq = item.seq
                moved = True
        return moved

    def start(self) -> None:
        """Start the publisher thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop after flushing what can be confirmed."""
        self._stop.set()
        self.wake.set()
        self.thread.join(10)


class LiveService:
    """The live twin against an MQTT broker (see the module docstring)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = cfg = config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.static, _ = load_twin(cfg.grid)
        self._with_road_network()
        self.registry_store = RegistryStore.open(registry_url(cfg))
        self.registry_origin = ""
        """One line saying where the registry came from at start (``twin run`` prints it)."""
        self._seed_registry()
        self._registry_lock = threading.Lock()
        self._registry_queued = 0
        """The highest registry version a ``$twin/registry`` record was queued for."""
        self.store = Store.open(cfg.db or f"sqlite:///{cfg.state_dir / 'alerts.db'}")
        self.started = time.time()
        self._run_state = "new"  # new -> running (start) -> stopped (stop)
        self._inline_lock = threading.Lock()  # a service never started applies acknowledgements on the caller
        self._acks_lock = threading.Lock()
        self._pending_acks: dict[str, _PendingAck] = {}
        self.core, start = self._restore()
        self.raw_log = RawLog(cfg.state_dir / "rawlog")
        self.clock = cfg.clock
        self.transport = inbound_transport(cfg)
        self.ingestor = Ingestor(self.transport, self.raw_log, self.registry, self._on_batch,
                                 IngestConfig(prefix=cfg.prefix, limits=cfg.limits,
                                              report_sources=self._report_sources()),
                                 control=self._on_control)
        if self._dedupe_state is not None:
            self.ingestor.deduper.restore_state(self._dedupe_state)
        self.publisher = OutboxPublisher(self.store, self.transport)
        self._tick_stop = threading.Event()
        self._tick_waiting = threading.Event()  # a tick is queued and not yet handled: the ticker puts no other
        self.ticks_skipped = 0
        """Ticks not queued because the one before was still waiting: a core slower than its clock ticks as fast
        as it can instead of building a backlog of ticks (each tick covers the time since the last)."""
        self._tick_thread = threading.Thread(target=self._ticker, name="ticker", daemon=True)
        self._registry_thread = threading.Thread(target=self._watch_registry, name="registry", daemon=True)
        self._last_snapshot_t = float("-inf")
        self._snapshot_lock = threading.Lock()
        self.last_report = None
        self.listeners: list[Callable[[TickReport], None]] = []
        """Called on the ingest thread after every live tick (not during replay); keep them quick."""
        self._live = False  # no status messages while replaying the log
        self.replayed = self.ingestor.replay(start)
        log.info("replayed %d logged messages since %s", self.replayed, start)

    def _report_sources(self) -> frozenset[str]:
        """The citizen-report sources the ingest admits: the service catalogue's (none without the case loop)."""
        desk = self.core.desk
        return frozenset(desk.catalogue.sources) if desk is not None else frozenset()

    # ------------------------------------------------------------ life cycle
    def start(self, wait_s: float = 10.0) -> bool:
        """Compile the kernels (`warm_up`), connect and start the threads; True once connected to the broker."""
        warm_up(self.static, self.registry, self.config.core)
        _ = self.core.models.units  # the places alerts are named after: built now, not inside the first tick
        if self.config.freeze_heap:
            settle_heap()
        self._live = True
        with self._inline_lock:
            self._run_state = "running"
        connected = self.transport.start(wait_s)
        self.ingestor.start()
        self.publisher.start()
        self._tick_thread.start()
        self._registry_thread.start()
        return connected

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop cleanly: no more ticks or acknowledgements, drain ingest, snapshot, flush the outbox, disconnect.

        The ingest drain gets ``wait_s`` [s], then is abandoned after the group in hand (`Ingestor.stop`); a tick
        still running after that keeps the raw log and the store open (see the warning logged)."""
        with self._acks_lock:
            self._run_state = "stopped"
        self._tick_stop.set()
        self._tick_thread.join(5)
        if self._registry_thread.is_alive():
            self._registry_thread.join(5)
        drained = self.ingestor.stop(wait_s)
        if drained:
            self._snapshot(self.raw_log.position)
        else:
            log.warning("the ingest thread is still inside a tick: no snapshot at stop, and its raw log and store "
                        "are left open to it (every group is already durable; a restart replays from the last "
                        "snapshot)")
        self.publisher.stop()
        self.transport.wait_published(5)
        self.transport.stop(end_session=self.config.end_session_on_stop)
        if drained:
            self.raw_log.close()
            self.store.close()
            self.registry_store.close()

    # ------------------------------------------------------------ ticks
    def _ticker(self) -> None:
        period = self.clock.wall_seconds(self.config.tick_s)  # a tick is tick_s of twin time
        next_t = time.time()
        while not self._tick_stop.is_set():
            next_t += period
            self._tick_stop.wait(max(0.0, next_t - time.time()))
            if self._tick_stop.is_set():
                break
            if self._tick_waiting.is_set():  # the last tick is not handled yet: the core is slower than the clock
                self.ticks_skipped += 1
                continue
            now = self.clock()
            self._tick_waiting.set()
            if not self.ingestor.put_control(control_message(TICK_TOPIC, f"{now:.3f}".encode(), now)):
                self._tick_waiting.clear()
                log.warning("tick at %.3f not queued: %d control records already wait (the ingest loop is stuck)",
                            now, self.ingestor.controls.qsize())

    def _on_control(self, topic: str, payload: bytes, received_at: float, after: LogPosition) -> None:
        if topic == ACK_TOPIC:
            self._apply_ack(payload, received_at)
            return
        if topic == CASE_TOPIC:
            self._apply_case(payload, received_at)
            return
        if topic == REGISTRY_TOPIC:
            self._apply_registry(payload)
            return
        if topic != TICK_TOPIC:
            return
        self._tick_waiting.clear()
        t = float(payload)
        report = self.core.on_tick(t)
        self.last_report = report
        self.publisher.wake.set()
        if self._live:
            self._publish_status(t, report.tick_ms)
            self._notify(report)
        if t - self._last_snapshot_t >= self.config.snapshot_every_s:
            self._snapshot(after)

    def _notify(self, report: TickReport) -> None:
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception:  # a listener must never stop the twin
                log.exception("tick listener %r failed", listener)

    # ------------------------------------------------------------ operators' acknowledgements
    def acknowledge(self, alert_id: str, operator: str, note: str = "", t: float | None = None,
                    timeout_s: float | None = None) -> AlertEvent | None:
        """An operator acknowledges an active alert, durably; what `TwinCore.acknowledge` returns (None: this
        operator had already acknowledged it).

        The acknowledgement goes on the ingest queue as a ``$twin/ack`` control record (`ACK_TOPIC`), the
        way ticks do: the ingest thread writes it to the raw log, then the core applies it in order with
        the data and the ticks, and a restart replays it. This waits for that, at most ``timeout_s`` [s]
        (default `ACK_TIMEOUT_S`). A service never started (tools, tests) logs and applies it on the
        caller's thread instead.

        Raises `AlertNotActiveError` (not active, now or when applied), `AckTimeoutError` (not applied in
        time: it stays queued), `AckUnavailableError` (stopped, or `MAX_PENDING_ACKS` already waiting).
        """
        if not self.core.is_active(alert_id):
            raise AlertNotActiveError(alert_id)
        request = uuid.uuid4().hex
        body = {"alert": alert_id, "operator": operator, "note": note, "t": t, "request": request}
        pending = self._wait_applied(ACK_TOPIC, body, timeout_s,
                                     f"the acknowledgement of {alert_id} by {operator} was not applied")
        return pending.result

    def _wait_applied(self, topic: str, body: dict, timeout_s: float | None, what: str) -> _PendingAck:
        """Queue a control record (``body`` with its ``request``) and wait until the ingest thread applied it (or,
        never started, apply it here); raises its error, `AckTimeoutError` or `AckUnavailableError`."""
        timeout_s = ACK_TIMEOUT_S if timeout_s is None else timeout_s
        request = body["request"]
        record = control_message(topic, json.dumps(body, separators=(",", ":")).encode(),
                                 self.clock())
        pending = _PendingAck()
        with self._acks_lock:
            if self._run_state == "stopped":
                raise AckUnavailableError("the live service has stopped; it takes no acknowledgement or case action")
            if len(self._pending_acks) >= MAX_PENDING_ACKS:
                raise AckUnavailableError(f"{len(self._pending_acks)} acknowledgements and case actions are waiting "
                                          "to be applied; try again shortly")
            self._pending_acks[request] = pending  # before the record is queued: it may be applied at once
            if not self.ingestor.put_control(record):
                del self._pending_acks[request]
                raise AckUnavailableError("too many control records wait for the ingest loop; try again shortly")
        try:
            with self._inline_lock:
                while self._run_state == "new" and not pending.done.is_set() and self.ingestor.run_once(0.0):
                    pass
            if not pending.done.wait(timeout_s):
                again = ("asking again is safe" if topic == ACK_TOPIC else
                         "look at the case before asking again: a repeated open, report or dispatch to the first "
                         "suggestion would be applied twice")
                raise AckTimeoutError(f"{what} within {timeout_s:g} s (the twin is behind); it stays queued and is "
                                      f"applied in order; {again}")
        finally:
            with self._acks_lock:
                self._pending_acks.pop(request, None)
        if pending.error is not None:
            raise pending.error
        return pending

    def _apply_ack(self, payload: bytes, received_at: float) -> None:
        """Apply a logged ``$twin/ack`` record (live, or replayed after a restart) and answer its waiter."""
        doc = json.loads(payload)
        t = doc.get("t")

        def not_applied(_exc: Exception) -> None:  # cancelled between the request and its turn in the log
            log.info("logged acknowledgement of %s by %s not applied: the alert is not active",
                     doc.get("alert"), doc.get("operator"))

        self._settle(doc, lambda: self.core.acknowledge(str(doc["alert"]), str(doc["operator"]),
                                                        None if t is None else float(t), str(doc.get("note") or ""),
                                                        now=received_at),
                     AlertNotActiveError, not_applied)

    def _settle(self, doc: dict, apply: Callable[[], object], refusal: type[Exception],
                not_applied: Callable[[Exception], None]) -> None:
        """Apply one logged control record and answer its waiter (if it has one: a replay has none).

        ``refusal`` (the core said no) goes to the waiter, or to ``not_applied`` when nobody waits; any other error
        goes to the waiter and on to the ingest loop, which counts and logs it."""
        with self._acks_lock:
            pending = self._pending_acks.get(doc.get("request"))
        try:
            result = apply()
        except refusal as exc:
            if pending is None:
                not_applied(exc)
            else:
                pending.error = exc
        except Exception as exc:
            if pending is not None:
                pending.error = exc
            raise
        else:
            if pending is not None:
                pending.result = result
            self.publisher.wake.set()
        finally:
            if pending is not None:
                pending.done.set()

    # ------------------------------------------------------------ case actions
    def case_command(self, action: str, body: dict, timeout_s: float | None = None) -> dict:
        """An operator's or the API's case action (`twin.live.case_desk.ACTIONS`), durably: a ``$twin/case``
        control record (`CASE_TOPIC`) logged and applied by the core in order with the data and the ticks, like
        `acknowledge` (a restart replays it). Returns what `TwinCore.case_command` returns.

        Raises `twin.cases.model.CaseError` (a refusal: now, or when applied), `AckTimeoutError` (not applied
        within ``timeout_s`` [s]: it stays queued), `AckUnavailableError` (stopped, or too many waiting).
        """
        if action not in ACTIONS:
            raise CaseError("bad_request", f"unknown action {str(action)[:40]!r}; actions: {', '.join(ACTIONS)}")
        if not isinstance(body, dict):
            raise CaseError("bad_request", "the body of a case action is a JSON object")
        if self.core.desk is None:
            raise CaseError("bad_request", "the twin runs without its case loop (twin run --no-cases)")
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CaseError("bad_request", f"the body must be plain JSON values: {exc}") from None
        doc = {"action": action, "body": body, "request": uuid.uuid4().hex}
        pending = self._wait_applied(CASE_TOPIC, doc, timeout_s, f"the case action {action} was not applied")
        return pending.result

    def _apply_case(self, payload: bytes, received_at: float) -> None:
        """Apply a logged ``$twin/case`` record (live, or replayed after a restart) and answer its waiter."""
        doc = json.loads(payload)

        def apply() -> object:
            try:
                return self.core.case_command(str(doc.get("action")), doc.get("body"), now=received_at)
            except CaseError as exc:  # refused: the caller hears why; replayed, it was refused the first time too
                if doc.get("action") == "report":
                    self._refuse_report(doc.get("body"), exc, received_at)
                raise

        self._settle(doc, apply, CaseError,
                     lambda exc: log.info("logged case action %s not applied: %s", doc.get("action"), exc))

    def _refuse_report(self, body: object, exc: CaseError, received_at: float) -> None:
        """A citizen report refused over HTTP (Open311) is counted and, live, dead-lettered like one refused over
        MQTT, on the topic it would have had (``reports/{source}``; the reporter's contact left out)."""
        body = body if isinstance(body, dict) else {}
        reason = Reason(exc.reason or Reason.BAD_SCHEMA)
        if not self._live:
            self.ingestor.metrics.count_rejection(reason)
            return
        source = str(body.get("source") or "unknown")[:64]
        payload = json.dumps(body.get("doc"), ensure_ascii=False, separators=(",", ":"), default=str).encode()
        self.ingestor.reject(f"{self.config.prefix}reports/{source}", Rejection(reason, exc.detail), received_at,
                             payload)

    # ------------------------------------------------------------ batches
    def _on_batch(self, batch: Batch) -> None:
        enqueued = self.store.enqueued
        refused = self.core.on_batch(batch)
        if refused:
            self._refuse(refused)
        if self.store.enqueued != enqueued:  # e.g. a unit's acknowledgement answered: publish it now
            self.publisher.wake.set()

    def _refuse(self, refused: list[Rejected]) -> None:
        """Records the twin refused: the ingest loop counts each message once and, live, dead-letters it with its
        raw payload (`Ingestor.refuse_records`); a live refused unit ack is also answered on the unit's
        ``units/{id}/ack/errors``, a refused task answer on ``units/{id}/tasks/errors``. Replayed, they are only
        counted: they were answered when they first arrived."""
        self.ingestor.refuse_records([
            (r.row, Rejection(TWIN_REASONS[r.reason], r.detail, r.field))
            for r in refused])
        if not self._live:
            return
        for r in refused:
            if r.is_ack:
                answer = {"alert": r.alert, "status": r.status, "t": r.t, "error": r.reason, "detail": r.detail}
                self.transport.publish(f"{self.config.prefix}units/{r.device}/ack/errors",
                                       json.dumps(answer, separators=(",", ":")).encode(), qos=1, retain=False)
            elif r.is_task:
                answer = {"case": r.case, "status": r.status, "t": r.t, "error": r.reason, "detail": r.detail}
                self.transport.publish(f"{self.config.prefix}units/{r.device}/tasks/errors",
                                       json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode(),
                                       qos=1, retain=False)

    # ------------------------------------------------------------ status
    def status(self, t: float | None = None, tick_ms: float | None = None) -> dict[str, object]:
        """The ``city/twin/status`` document."""
        m = self.ingestor.metrics.snapshot()
        now = self.clock()
        t = now if t is None else t
        if tick_ms is None:
            tick_ms = self.last_report.tick_ms if self.last_report else 0.0
        core = self.core.status()
        return {"t": round(t, 3), "uptime_s": round(time.time() - self.started, 1),
                "received": m.get("received", 0), "accepted": m.get("accepted", 0),
                "duplicates": m.get("duplicates", 0), "rejected": m.get("rejected", {}),
                "devices_seen": core["devices_seen"], "units_tracked": core["units_tracked"],
                "alerts_active": core["alerts_active"], "river": core["river"],
                "tick_ms": round(tick_ms, 1),
                "lag_ms": round(max(0.0, now - t) * 1e3 / self.clock.speed, 1), "outbox": self.store.outbox_depth(),
                "alarms": self._alarms()}

    def _alarms(self) -> dict[str, int]:
        """Counters an operator must see (docs/liveness.md): ``session_taken_over``, times another client took
        over the twin's MQTT session (MQTT 5 reason 0x8E); ``session_lost``, reconnects that found no session on
        the broker (how a takeover shows on Mosquitto 2.0, which closes without a reason); ``tls_failures``,
        broker certificates that did not verify; ``deadletters_dropped``, dead letters not published because
        too many were unconfirmed (each still counted by reason and in the raw log); ``ticks_skipped``, ticks not
        queued because the one before was still waiting (the twin is slower than its clock; the next tick covers
        the time)."""
        stats = getattr(self.transport, "stats", None)
        out = {name: int(getattr(stats, name, 0) or 0) for name in ("session_taken_over", "session_lost",
                                                                     "tls_failures")}
        out["deadletters_dropped"] = int(getattr(self.ingestor, "deadletters_dropped", 0) or 0)
        out["ticks_skipped"] = int(self.ticks_skipped)
        return out

    def _publish_status(self, t: float, tick_ms: float) -> None:
        body = json.dumps(self.status(t, tick_ms), separators=(",", ":")).encode()
        # droppable: a status never waits for room, and a long broker outage cannot fill the publish cap
        self.transport.publish(f"{self.config.prefix}twin/status", body, qos=1, retain=True, droppable=True)

    # ------------------------------------------------------------ snapshots
    def _snapshot(self, after: LogPosition) -> None:
        with self._snapshot_lock:  # the ingest thread (after a tick) and stop() both write snapshots
            self._write_snapshot(after)

    def _write_snapshot(self, after: LogPosition) -> None:
        with self.core.lock:
            state = {**self.core.save_state(), "dedupe": self.ingestor.deduper.save_state()}
            snapshot.write(self.config.state_dir, state, self.core.state.grid, tuple(after), time.time())
        self._last_snapshot_t = self.core.last_tick
        layers = self.core.models.layers
        if layers.data_vars:  # snapshot_time: the tick the layers are of (unix s), where a fork starts ("--from-live")
            tick = self.core.last_tick
            attrs = {**self.static.attrs, **({"snapshot_time": float(tick)} if math.isfinite(tick) else {})}
            save_twin(self.config.state_dir / "live.nc", layers.assign_attrs(attrs))

    def _with_road_network(self) -> None:
        """Use the road network written beside the twin file (`twin.district.roads`) for the probes' link speeds,
        unless the core's config names one; without one the twin has no link speeds (logged once)."""
        live = self.config.core.live
        if live.road_network is not None:
            return
        try:
            network = load_road_network(self.config.grid, grid_of(self.static))
        except (FileNotFoundError, ValueError) as exc:
            log.info("no road links: %s", exc)
            return
        core = dataclasses.replace(self.config.core, live=dataclasses.replace(live, road_network=network))
        self.config = dataclasses.replace(self.config, core=core)

    def _number_from_base(self, core: TwinCore) -> None:
        """Without a snapshot the raw log replays from its start, so the alert and case numbers must start where
        they started when this log began: kept in ``sequences.json`` beside it, written once from the store's
        numbers (an alert store shared with an earlier state folder then gives no id twice, and a crash before the
        first snapshot replays to the same ids)."""
        path = self.config.state_dir / SEQUENCES
        if path.is_file():
            base = json.loads(path.read_text(encoding="utf-8"))
        else:
            cases = CaseBook.load(self.store, core.config.district).sequence if core.desk is not None else 0
            base = {"alert_sequence": int(core.book.sequence), "case_sequence": int(cases),
                    "registry_version": int(core.state.registry.version)}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(base), encoding="utf-8")
            os.replace(tmp, path)
        core.book.sequence = int(base["alert_sequence"])
        if core.desk is not None:
            core.desk.book.sequence = int(base["case_sequence"])

    def _restore(self) -> tuple[TwinCore, LogPosition]:
        """A fresh core, with the last snapshot's state when there is one; the log position to replay from.

        The registry is read as it was where the replay starts: at the version the snapshot names, or, without one,
        at the version the raw log started from (``sequences.json``); the replay applies the ``$twin/registry``
        records after it, and the registry thread then catches up with the database (docs/guides/devices.md)."""
        self.restored = snapshot.exists(self.config.state_dir)
        snap = snapshot.read(self.config.state_dir, grid_of(self.static)) if self.restored else None
        at = snapshot_registry_version(snap.state) if snap is not None else self._base_registry_version()
        self.registry = self.registry_store.registry(at=at)
        core = TwinCore(self.static, self.registry, self.store, self.config.core)
        self._dedupe_state = None
        if snap is None:
            self._number_from_base(core)
            return core, LogPosition(0, 0)
        core.restore_state(snap.state)
        self._dedupe_state = snap.state.get("dedupe")
        log.info("restored snapshot of %s", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.written_at)))
        return core, LogPosition(*snap.position)

    def _base_registry_version(self) -> int | None:
        """The registry version the raw log of the state folder started from (None: not kept, read the latest)."""
        path = self.config.state_dir / SEQUENCES
        if not path.is_file():
            return None
        version = json.loads(path.read_text(encoding="utf-8")).get("registry_version")
        return None if version is None else int(version)

    # ------------------------------------------------------------ the device registry (docs/guides/devices.md)
    def _seed_registry(self) -> None:
        """An empty registry database is filled from the ``registry`` GeoJSON (or CSV) file; one that holds devices
        is the truth, and the file is not read."""
        store, path = self.registry_store, self.config.registry
        if not store.is_empty():
            self.registry_origin = (f"device registry {_safe_url(store.url)}: {store.count(status='active')} active "
                                    f"devices at version {store.version()} (the database is the truth: {path} is "
                                    "not read)")
            log.info(self.registry_origin)
            return
        try:
            report = store.import_file(path, actor="twin run")
        except RegistryError as exc:
            raise RegistryError([f"{path}: {p}" for p in exc.problems]) from None
        self.registry_origin = (f"device registry {_safe_url(store.url)}: {report.added} devices imported from "
                                f"{path} (version {report.last_version})")
        log.info(self.registry_origin)

    def _watch_registry(self) -> None:
        """Queue the registry changes made by others (``twin devices``, another twin): at start, then every
        ``registry_poll_s``."""
        follow_versions(self.queue_registry_changes, self._tick_stop, self.config.registry_poll_s)

    def queue_registry_changes(self, upto: int | None = None) -> int:
        """Queue ``$twin/registry`` records for the changes after those already queued, up to ``upto`` (default: the
        database's version now), `REGISTRY_CHUNK` changes a record; returns the version queued up to."""
        latest = self.registry_store.version() if upto is None else int(upto)
        with self._registry_lock:
            start = max(self._registry_queued, self.registry.version)
            while start < latest:
                to = min(latest, start + REGISTRY_CHUNK)
                body = json.dumps({"to": to, "request": None}).encode()
                if not self.ingestor.put_control(control_message(REGISTRY_TOPIC, body, self.clock())):
                    log.warning("registry changes up to version %d not queued: the ingest loop is behind", to)
                    break
                self._registry_queued = start = to
            return self._registry_queued

    def _apply_registry(self, payload: bytes) -> None:
        """Apply a logged ``$twin/registry`` record (live, or replayed after a restart) and answer its waiter."""
        doc = json.loads(payload)

        def apply() -> int:
            to, at = int(doc["to"]), self.registry.version
            if to > at:
                changes = self.registry_store.changes_since(at, upto=to)
                kinds = self.core.apply_devices([c.device for c in changes], to)
                log.info("registry version %d -> %d: %d changes (%s)", at, to, len(changes), ", ".join(sorted(kinds)))
            return self.registry.version

        self._settle(doc, apply, DeviceError, lambda exc: None)

    def _registry_applied(self, change: Change | None, timeout_s: float | None) -> None:
        """Wait until the twin has applied the registry up to ``change`` (logged as a ``$twin/registry`` record)."""
        if change is None or self.registry.version >= change.version:
            return
        self._wait_applied(REGISTRY_TOPIC, {"to": change.version, "request": uuid.uuid4().hex}, timeout_s,
                           f"the registry change {change.version} ({change.op} {change.device.id}) was not applied")

    def add_device(self, feature: object, actor: str = "api", timeout_s: float | None = None) -> Change:
        """Register a new device from a GeoJSON Feature (the registry's rules, `ingest.registry`), durably in the
        registry database, then applied by the twin (its next message is admitted). Raises `DeviceError`
        (``invalid_device``, ``device_exists``), `AckTimeoutError` (stored, not applied yet), `AckUnavailableError`."""
        device = checked_device(feature)
        try:
            change = self.registry_store.add(device, actor)
        except DeviceConflict as exc:
            raise DeviceError(exc.code, exc.detail) from None
        self._registry_applied(change, timeout_s)
        return change

    def update_device(self, device_id: str, feature: object, actor: str = "api",
                      timeout_s: float | None = None) -> Device:
        """A registered device's new entry from a GeoJSON Feature (its id the path's; a retired device is
        registered again); the entry as stored. Raises `DeviceError` (``invalid_device``, ``unknown_device``,
        ``kind_change``), `AckTimeoutError`, `AckUnavailableError`."""
        device = checked_device(feature, device_id)
        try:
            change = self.registry_store.update(device, actor)
        except UnknownDeviceError:
            raise DeviceError("unknown_device", f"no device {device_id!r}: register it with POST") from None
        except DeviceConflict as exc:
            raise DeviceError(exc.code, exc.detail) from None
        self._registry_applied(change, timeout_s)
        return change.device if change is not None else self.registry_store.device(device_id)

    def retire_device(self, device_id: str, actor: str = "api", timeout_s: float | None = None) -> Change:
        """Take a device out of service (its row and history kept): its messages are refused as ``retired_device``
        once the twin has applied it. Raises `DeviceError` (``unknown_device``, ``already_retired``),
        `AckTimeoutError`, `AckUnavailableError`."""
        try:
            change = self.registry_store.retire(device_id, actor)
        except UnknownDeviceError:
            raise DeviceError("unknown_device", f"no device {device_id!r}") from None
        except DeviceConflict as exc:
            raise DeviceError(exc.code, exc.detail) from None
        self._registry_applied(change, timeout_s)
        return change


def inbound_transport(cfg: ServiceConfig) -> MqttTransport | ProcessTransport:
    """The transport ``cfg.receiver`` names, subscribed to the twin's topics."""
    if cfg.receiver == "process":
        return ProcessTransport(cfg.broker, client_id=cfg.client_id, protocol=cfg.protocol,
                                subscriptions=subscriptions(cfg.prefix), wall_to_clock=cfg.clock.at_wall,
                                receive_maximum=PROCESS_RECEIVE_MAXIMUM)
    if cfg.receiver != "thread":
        raise ValueError(f"receiver must be 'thread' or 'process', got {cfg.receiver!r}")
    return MqttTransport(cfg.broker, client_id=cfg.client_id, protocol=cfg.protocol,
                         subscriptions=subscriptions(cfg.prefix), clock=cfg.clock)


def checked_device(feature: object, device_id: str | None = None) -> Device:
    """The device of a GeoJSON Feature by the registry's rules (with ``device_id``, the id it must have; a Feature
    without one takes it); `DeviceError` ``invalid_device`` lists every problem."""
    if device_id is not None and isinstance(feature, dict) and isinstance(feature.get("properties"), dict):
        given = feature["properties"].get("id", device_id)
        if given != device_id:
            raise DeviceError("invalid_device", f"the body's id {str(given)[:80]!r} is not the path's {device_id!r}")
        feature = {**feature, "properties": {**feature["properties"], "id": device_id}}
    problems: list[str] = []
    device = device_from_feature(feature, "the Feature", problems)
    if problems or device is None:
        raise DeviceError("invalid_device", "; ".join(problems[:20]) or "not a device", problems)
    return device


def snapshot_registry_version(state: dict) -> int | None:
    """The registry version a snapshot's state was taken at (None: a snapshot from before the registry had
    versions)."""
    version = state.get("core", {}).get("registry_version")
    return None if version is None else int(version)


def registry_url(config: ServiceConfig) -> str:
    """The device registry's database: ``registry_db``; else the alert store's when it is PostgreSQL; else
    ``registry.db`` in the state folder."""
    if config.registry_db:
        return config.registry_db
    if config.db and config.db.startswith(("postgresql://", "postgres://")):
        return config.db
    return f"sqlite:///{config.state_dir / 'registry.db'}"


def _safe_url(url: str) -> str:
    """A database URL without its password, for the log."""
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@", 1) if password else url
