"""``Ingestor``: the log-and-ack loop. Transport queue -> durable raw log -> ack -> admission -> sink.

One loop (one thread) does, per group of messages:

1. take the messages waiting on the transport queue, and those arriving within ``linger_s`` (5 ms) of
   the first, up to ``max_group`` -- the queue also fills while the previous group is being committed:
   one fsync covers them all (group commit), so acknowledgement latency is bounded by linger + commit;
2. append them to the raw log with one write and one fsync (retrying on disk errors, never acking first);
3. acknowledge them to the broker (manual QoS 1 ack);
4. hand each to the admission step (``ingest.admission``: route, check, decode, dedupe; no I/O), which
   returns its new records or a ``Rejection``; rejections go to the dead-letter topic, the accepted
   records of the group go to ``sink`` as one ``Batch``.

Nothing raises out of the loop: a bug in a decoder becomes a counted ``bad_syntax`` rejection, a failing
sink is counted and logged (its records are in the raw log and can be replayed).

Liveness (docs/liveness.md): this thread never waits on the transport's network thread, which may itself
be waiting for room on the queue this thread empties. ``ack`` and ``publish`` only queue packets; dead
letters go out with ``publish_droppable`` when the source has it (``MqttTransport``): when too many
publishes await the broker's confirmation, a dead letter is dropped and counted (``deadletters_dropped``)
instead of waited for. ``stop`` closes the source's inbound side (``close_inbound``) and drains only what
was queued at that moment, so it ends during a flood too; later messages stay unacknowledged at the broker,
which delivers them to the next session.

Control records: a message whose topic starts with ``CONTROL_PREFIX`` (``$twin/``; MQTT reserves ``$``
topics for the broker, so none arrives from outside) is put by the application itself, for example a
clock tick. It is logged like any message, never acknowledged to the broker, and handed to ``control``
in its place in the stream: the accepted records before it are delivered first. Replay hands it over
again, so a log replay reproduces the same sequence of records and ticks. ``put_control`` puts it on a
small queue of its own that the loop empties first, at the head of its next group: a tick does not wait
behind a backlog of data (up to the transport's whole queue, about a second at capacity), so the twin
ticks on time while it drains one; its place in the log is where it was taken, which the replay keeps.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.admission import Admission, batch_of, batch_with_origins
from ingest.batch import Batch
from ingest.deadletter import DeadLetters
from ingest.decoders.senml import Row
from ingest.dedupe import Deduper
from ingest.metrics import Metrics
from ingest.rawlog import LOG_START, LogPosition, RawLog, read_log
from ingest.registry import Registry
from ingest.rejection import Rejection, reject
from ingest.transport.client import InboundMessage
from ingest.validation import Limits

log = logging.getLogger(__name__)

Sink = Callable[[Batch], Any]
Control = Callable[[str, bytes, float, LogPosition], Any]
"""(topic, payload, received_at, log position just after the record) -> anything."""
CONTROL_PREFIX = "$twin/"
MAX_CONTROLS = 1024
"""Control records that may wait for the loop at once (ticks are 1 a second); more are refused. [1]"""


def control_message(topic: str, payload: bytes, received_at: float) -> InboundMessage:
    """An application record for the ingest queue (see the module docstring)."""
    if not topic.startswith(CONTROL_PREFIX):
        raise ValueError(f"a control topic starts with {CONTROL_PREFIX!r}, got {topic!r}")
    return InboundMessage(topic, payload, 0, -1, False, False, received_at, -1)


class Source(Protocol):
    """What the ingestor needs from a transport (``MqttTransport`` has it; tests may fake it).

    Optional, used when present: ``publish_droppable(topic, payload, *, qos=1)`` -> bool (never waits;
    False when the message was dropped and counted) for dead letters, and ``close_inbound()`` (called by
    ``Ingestor.stop``: take no more messages in)."""

    queue: queue.Queue | queue.SimpleQueue

    def ack(self, msg: InboundMessage) -> None: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any: ...


@dataclass(frozen=True)
class IngestConfig:
    """Ingest settings.

    Attributes
    ----------
    prefix : str
        Topic prefix, with its trailing slash.
    limits : Limits
        Validation limits (size, time skew, rate).
    max_group : int
        Most messages committed with one fsync [message].
    max_group_bytes : int
        Most payload bytes committed with one fsync [byte] (keeps a commit of large packs short).
    poll_s : float
        Longest wait for the first message of a group [s]; also how late an idle loop may see a control
        record (``put_control``), so it is short (10 ms: 100 wake-ups a second when idle).
    linger_s : float
        After the first message, how long to wait for more before committing [s]: fewer, larger fsyncs
        and ack bursts. A message waits at most ``linger_s`` + one commit before it is acknowledged.
    dedupe_keys : int
        Records remembered for duplicate detection [record].
    report_sources : frozenset of str or None
        Citizen-report sources admitted (`ingest.admission.Admission`); None: any.
    """

    prefix: str = "city/"
    limits: Limits = field(default_factory=Limits)
    max_group: int = 5000
    max_group_bytes: int = 4 * 1024 * 1024
    poll_s: float = 0.01
    linger_s: float = 0.005
    dedupe_keys: int = 2_000_000
    report_sources: frozenset[str] | None = None


class Ingestor:
    """The log-and-ack loop around the admission step; see the module docstring.

    Parameters
    ----------
    source : Source
        Usually an ``MqttTransport`` subscribed to ``routing.subscriptions(prefix)``.
    raw_log : RawLog
        Where every message is made durable before it is acknowledged. Callers without a log (tools,
        the offline demo, tests of the checks) use ``ingest.admission.Admission`` directly.
    registry : Registry or None
        None accepts any device.
    sink : callable
        Called with each group's accepted ``Batch`` (non-empty), from the ingest thread.
    config : IngestConfig
    control : callable or None
        Called with each control record (see the module docstring).
    """

    def __init__(
        self,
        source: Source,
        raw_log: RawLog,
        registry: Registry | None,
        sink: Sink,
        config: IngestConfig | None = None,
        control: Control | None = None,
    ) -> None:
        if not isinstance(raw_log, RawLog):
            raise TypeError(
                f"Ingestor needs a RawLog, got {type(raw_log).__name__}; without a log use ingest.admission.Admission"
            )
        self.source = source
        self._flush_acks = getattr(source, "flush_acks", None)
        """A source that collects acknowledgements (`ingest.transport.receiver.ProcessTransport`) sends them once
        per group."""
        self.control = control
        self.log = raw_log
        self.config = config or IngestConfig()
        self.sink = sink
        self.metrics = Metrics()
        self.admission = Admission(
            registry,
            self.config.limits,
            prefix=self.config.prefix,
            dedupe_keys=self.config.dedupe_keys,
            metrics=self.metrics,
            report_sources=self.config.report_sources,
        )
        publish = getattr(source, "publish_droppable", None) or source.publish
        self.deadletters = DeadLetters(publish, self.config.prefix, self.config.limits.max_bytes)
        self._stop = threading.Event()
        self._abandon = threading.Event()  # stop draining after the current group (``stop`` timed out)
        self._thread: threading.Thread | None = None
        self.abandoned = 0
        """Messages left in the inbound queue when a drain at ``stop`` was abandoned: never logged nor acked, so a
        broker holding the session sends them again."""
        self._delivering: _Delivery | None = None
        self.controls: queue.Queue[InboundMessage] = queue.Queue(MAX_CONTROLS)
        self.controls_refused = 0
        """Control records ``put_control`` refused because ``MAX_CONTROLS`` were waiting (the loop is stuck)."""

    @property
    def deadletters_dropped(self) -> int:
        """Dead letters not published because the transport had too many unconfirmed publishes [1]; each is
        still counted by reason in ``metrics.rejected`` and its message is in the raw log."""
        return self.deadletters.dropped

    @property
    def deduper(self) -> Deduper:
        """The admission step's dedupe memory (a restored snapshot may replace it)."""
        return self.admission.deduper

    @deduper.setter
    def deduper(self, deduper: Deduper) -> None:
        self.admission.deduper = deduper

    def put_control(self, record: InboundMessage) -> bool:
        """Queue a control record (``control_message``) ahead of the data waiting on the transport; never
        waits. False (and counted in ``controls_refused``) when ``MAX_CONTROLS`` are already waiting."""
        try:
            self.controls.put_nowait(record)
        except queue.Full:
            self.controls_refused += 1
            return False
        return True

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Take no more messages in, finish the current group, drain what is queued now, and stop the loop.

        Waits at most ``timeout_s`` [s] for the drain; then the drain is abandoned after the group in hand (a
        tick cannot be cut short) and ``timeout_s`` more is given. True once the loop has ended; False when it is
        still inside one group: the caller must then not close the raw log or anything else the loop writes to.
        """
        self._stop.set()
        close_inbound = getattr(self.source, "close_inbound", None)
        if close_inbound is not None:
            close_inbound()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandon.set()
            log.warning("ingest drain not finished after %.0f s: abandoned after the group in hand", timeout_s)
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Loop until ``stop``; then drain what was queued at that moment (not what arrives during the drain),
        unless ``stop`` abandons the drain."""
        while not self._stop.is_set():
            self.run_once()
        left = self.source.queue.qsize() + self.controls.qsize()
        while left > 0 and not self._abandon.is_set() and (n := self.run_once(poll_s=0.0, limit=left)):
            left -= n
        if self._abandon.is_set():
            self.abandoned = self.source.queue.qsize()
            log.warning("ingest stopped with %d messages not taken in (not acknowledged: a broker holding the "
                        "session sends them again)", self.abandoned)

    # -- one group ------------------------------------------------------------------------------

    def run_once(self, poll_s: float | None = None, limit: int | None = None) -> int:
        """Gather (at most ``limit`` messages), commit, ack and process one group; returns the number handled."""
        msgs = self._gather(self.config.poll_s if poll_s is None else poll_s, limit)
        self.metrics.queue_depth = self.source.queue.qsize()
        if not msgs:
            return 0
        positions = self._commit(msgs)
        for m in msgs:
            if not m.topic.startswith(CONTROL_PREFIX):
                self.source.ack(m)
        if self._flush_acks is not None:
            self._flush_acks()
        self._handle(msgs, [*positions[1:], self.log.position])
        return len(msgs)

    def _handle(self, msgs: list, after: list[LogPosition], *, replaying: bool = False, deliver: bool = True) -> None:
        """Process messages in order: records are delivered in groups, control records in their place.

        ``after[i]`` is the log position just after message i (where a replay would resume). Live messages
        go through ``process`` (rejections are dead-lettered); replayed ones straight to the admission step
        as redeliveries (rejections are counted, not dead-lettered again).
        """
        accepted: list[Batch | Row] = []
        sources: list = []  # the message of each item of ``accepted``
        for m, pos in zip(msgs, after, strict=True):
            if m.topic.startswith(CONTROL_PREFIX):
                if deliver:
                    self._deliver(accepted, sources, replaying)
                    self._control(m.topic, m.payload, m.received_at, pos)
                accepted, sources = [], []
                continue
            if replaying:
                got = self.admission.admit_fast(m.topic, m.payload, m.received_at, redelivered=True)
                got = got if type(got) is not Rejection and _has_records(got) else None
            else:
                got = self.process(m.topic, m.payload, m.received_at, m.dup)
            if got is not None:
                accepted.append(got)
                sources.append(m)
        if deliver:
            self._deliver(accepted, sources, replaying)

    def _take_controls(self, most: int) -> list[InboundMessage]:
        out: list[InboundMessage] = []
        while len(out) < most:
            try:
                out.append(self.controls.get_nowait())
            except queue.Empty:
                break
        return out

    def _control(self, topic: str, payload: bytes, received_at: float, after: LogPosition) -> None:
        if self.control is None:
            return
        try:
            self.control(topic, payload, received_at, after)
        except Exception:
            self.metrics.sink_errors += 1
            log.exception("control record %s failed", topic)

    def _gather(self, poll_s: float, limit: int | None = None) -> list[InboundMessage]:
        """The next group: the waiting control records first (``put_control``), then the transport's messages."""
        most = self.config.max_group if limit is None else min(limit, self.config.max_group)
        msgs = self._take_controls(most)
        q = self.source.queue
        if len(msgs) >= most:
            return msgs
        try:
            first = q.get(timeout=poll_s) if poll_s > 0 and not msgs else q.get_nowait()
        except queue.Empty:
            return msgs
        msgs.append(first)
        size = len(first.payload)
        deadline = time.monotonic() + self.config.linger_s
        while len(msgs) < most and size < self.config.max_group_bytes:
            try:
                m = q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    m = q.get(timeout=left)
                except queue.Empty:
                    break
            msgs.append(m)
            size += len(m.payload)
        return msgs

    def _commit(self, msgs: list[InboundMessage]) -> list[LogPosition]:
        """Append the group to the raw log (one fsync), retrying on disk errors; returns their positions."""
        items = [(m.received_at, m.topic, m.payload) for m in msgs]
        delay = 0.1
        while True:
            t0 = time.perf_counter()
            try:
                positions = self.log.append_many(items)
            except OSError:
                self.metrics.log_errors += 1
                log.exception("raw log append failed; retrying in %.1f s (messages stay unacked)", delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.add_commit(time.perf_counter() - t0, len(items))
            return positions

    def _deliver(self, accepted: list[Batch | Row], sources: list, replaying: bool) -> None:
        """Hand the accepted records to the sink as one batch; while it runs, ``refuse_records`` can trace a
        record the sink refuses back to its message."""
        if not accepted:
            return
        batch, origin = batch_with_origins(accepted)
        self._delivering = _Delivery(origin, sources, replaying)
        try:
            self.sink(batch)
        except Exception:
            self.metrics.sink_errors += 1
            log.exception("sink failed on a batch of %d records", len(batch))
        finally:
            self._delivering = None

    def refuse_records(self, refusals: list[tuple[int, Rejection]]) -> None:
        """Records of the batch being delivered that the sink refuses (e.g. a position outside the twin's grid):
        ``(row in the batch, rejection)`` pairs. Call it from the sink, on the ingest thread.

        Each message with refused records is counted once (``Metrics.reclassify``: moved from accepted to the
        first refusal's reason, with all its refused records) and, live, dead-lettered once with its raw
        payload, so the dead letter's digest is that of the raw log's record. A replayed message is only
        counted (its dead letter went out when it first arrived).
        """
        delivery = self._delivering
        if delivery is None:
            raise RuntimeError("refuse_records is called from the sink, while a batch is delivered")
        by_message: dict[int, list[Rejection]] = {}
        for row, rejection in refusals:
            by_message.setdefault(int(delivery.origin[row]), []).append(rejection)
        for index, rejections in by_message.items():
            first = rejections[0]
            self.metrics.reclassify(first.reason, records=len(rejections))
            if delivery.replaying:
                continue
            m = delivery.sources[index]
            more = f" (and {len(rejections) - 1} more records)" if len(rejections) > 1 else ""
            rejection = reject(first.reason, first.detail + more, m.payload, first.field)
            self._dead_letter(m.topic, rejection, m.received_at, m.payload)

    # -- one message ----------------------------------------------------------------------------

    def process(
        self, topic: str, payload: bytes, received_at: float, redelivered: bool = False
    ) -> Batch | Row | None:
        """Admit one message and dead-letter it if refused; returns its new records, or None if it gave none.

        A one-record SenML message comes back as a plain ``Row`` (see ``Admission.admit_fast``);
        ``batch_of`` turns a group's rows and batches into one ``Batch``.
        """
        got = self.admission.admit_fast(topic, payload, received_at, redelivered)
        if type(got) is Rejection:
            self._dead_letter(topic, got, received_at, payload)
            return None
        return got if _has_records(got) else None

    def reject(self, topic: str, rejection: Rejection, received_at: float, payload: bytes) -> None:
        """Count a rejection decided outside the admission step (e.g. a record the twin refuses) and
        publish it on the dead-letter topic."""
        self.metrics.count_rejection(rejection.reason)
        self._dead_letter(topic, rejection, received_at, payload)

    def _dead_letter(self, topic: str, rejection: Rejection, received_at: float, payload: bytes) -> None:
        log.debug("rejected %s: %s %s", topic, rejection.reason.value, rejection.detail)
        if topic == self.deadletters.topic:  # never dead-letter a dead letter (a loop)
            return
        try:
            sent = self.deadletters.send(topic, rejection, received_at, payload)
        except Exception:
            self.metrics.internal_errors += 1
            log.exception("dead letter for %s not published", topic)
            return
        if sent:
            self.metrics.deadletters += 1
        elif self.deadletters.dropped == 1 or self.deadletters.dropped % 1000 == 0:
            log.warning("dead letter for %s (%s) not published: the broker is behind on confirmations; "
                        "%d dropped so far (counted by reason; the messages are in the raw log)",
                        topic, rejection.reason.value, self.deadletters.dropped)

    # -- replay ---------------------------------------------------------------------------------

    def replay(self, start: LogPosition = LOG_START, *, deliver: bool = True) -> int:
        """Re-process logged messages from ``start`` (after a restart, before consuming live).

        Rebuilds the dedupe memory and, with ``deliver``, hands the records to the sink and the control
        records to ``control`` again, in log order; rejections are counted but not dead-lettered again.
        Returns the number of messages replayed.
        """
        n, chunk = 0, []
        for rec in read_log(self.log.directory, start):
            n += 1
            chunk.append(rec)
            if len(chunk) > 1000:
                self._handle(chunk[:-1], [r.position for r in chunk[1:]], replaying=True, deliver=deliver)
                chunk = chunk[-1:]
        if chunk:
            after = [*(r.position for r in chunk[1:]), self.log.position]
            self._handle(chunk, after, replaying=True, deliver=deliver)
        return n


@dataclass(frozen=True)
class _Delivery:
    """The batch being handed to the sink: for each of its rows, the index of its message in ``sources``."""

    origin: Any
    sources: list
    replaying: bool


def _has_records(got: Batch | Row) -> bool:
    return type(got) is tuple or len(got) > 0


__all__ = ["CONTROL_PREFIX", "Control", "IngestConfig", "Ingestor", "Sink", "Source", "batch_of", "control_message"]
