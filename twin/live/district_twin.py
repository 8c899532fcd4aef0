"""A district twin fed from the stream (docs/city-deployment.md sections 4 and 5, docs/guides/district-twins.md).

`DistrictTwin` is the live twin's `TwinCore` with its own alert store and outbox, fed from its partition of the
stream (`ingest.stream`) instead of MQTT:

- one thread reads its partition and the shared ``handover`` partition in stream-sequence order
  (`twin.live.district_feed.OrderedFeed`), with bounded waits;
- a ``batch`` record (Arrow IPC, `ingest.stream.codec`) is decoded, its rows already seen are dropped by their
  dedupe key (`ingest.dedupe.Deduper`: a batch an ingest worker re-published after its duplicate window) and the
  rest applied (`TwinCore.on_batch`). The core's refusals are counted by reason and dead-lettered on
  ``{prefix}deadletter``; a refused unit acknowledgement or task answer is also answered on the unit's topic, as
  `twin run` does;
- a ``tick`` record of the city clock runs `TwinCore.on_tick` at its time: the twin never ticks on its own, so
  every district ticks at the same twin times and a replay of the stream reproduces the ticks;
- a ``registry`` record (`ingest.stream.registry`, published by the ingest workers that follow the registry
  database) changes the twin's registry in its place among the batches (`twin.live.district_registry`): the twin
  holds its own district's sensors and every vehicle and unit of the city, and a replay of the stream meets each
  batch with the registry it met;
- a vehicle's or unit's fix it did not hold makes it claim the entity on the ``handover`` partition, and the
  claims of the others make it drop the entities it held with an older fix
  (`twin.live.district_handover`).

Output: the core's outbox is published by `twin.live.service.OutboxPublisher` on a publish-only
`ingest.transport.client.MqttTransport` (at least once across a crash, docs/reliability.md), with the district in
the alert topics: ``{prefix}alerts/<partition>/<identifier>`` (the city tier merges them). Unit and case topics stay
city-wide. After every tick the twin's status (`DistrictTwin.status`) goes, retained, to
``{prefix}twin/status/<partition>``.

Recovery = snapshot + stream position. Every ``snapshot_every_s`` of twin time, right after a tick, the core's
state, the dedupe memory and the twin's counters are written (`twin.live.snapshot`) with the sequence of the last
record applied from each partition. At start the snapshot is restored and both partitions are read from those
sequences + 1: the records, their order and so the state are those of a twin that never stopped (the stream keeps
24 h, far longer than the snapshot interval). Without a snapshot the twin reads from where it first started
(``district-start.json``, written once, which also keeps the alert and case numbers and the registry version it
started from, so a crash before the first snapshot replays to the same alert identifiers). The snapshot carries the
registry version and the devices changed since the base registry, so the restored registry is the one the snapshot's
state was built on.

A district twin keeps no raw log: the stream is its log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ingest.batch import Batch
from ingest.deadletter import deadletter_payload, deadletter_topic
from ingest.dedupe import Deduper
from ingest.registry import Registry, load_registry
from ingest.registry_db import RegistryStore
from ingest.rejection import Reason, reject
from ingest.stream.base import BATCH, REGISTRY, TICK, Record, Stream, StreamError, check_partition, tick_time
from ingest.stream.codec import CodecError, decode_batch
from ingest.stream.registry import RegistryRecordError, parse_registry
from twin.alerting.store import Store
from twin.cases.book import CaseBook
from twin.district.dataset import grid_of, load_twin
from twin.live import snapshot
from twin.live.core import CoreConfig, TickReport, TwinCore
from twin.live.district_feed import OrderedFeed
from twin.live.district_handover import HANDOVER_PARTITION, Handover, answer, movers_in, new_holds, parse_handover
from twin.live.district_registry import DistrictRegistry, district_devices
from twin.live.service import TWIN_REASONS, OutboxPublisher
from twin.live.state import Rejected
from twin.live.warmup import warm_up

log = logging.getLogger(__name__)

START_FILE = "district-start.json"
"""Where a district twin's state folder keeps the stream positions and alert/case numbers it first started from."""
MAX_PENDING_CLAIMS = 10_000
"""Handover claims waiting for the stream's acknowledgement at most; more drop the oldest (counted). [1]"""
STOP_S = 5.0
"""Default of `DistrictTwin.stop`'s wait for the reader thread [s]."""
MAX_BACKOFF_S = 5.0
"""Longest pause between two reads of a stream that fails [s]."""


@dataclass(frozen=True)
class DistrictConfig:
    """Settings of a district twin.

    Attributes
    ----------
    partition : str
        The twin's partition of the stream: its district code (``310101``) or tile (``310115-t2``).
    handover_partition : str
        The partition all district twins share for handover records.
    prefix : str
        MQTT topic prefix with its trailing slash.
    snapshot_every_s : float
        Twin time between two snapshots, each taken right after a tick. [s]
    read_max : int
        Records taken per read of a partition. [1]
    read_wait_s : float
        Longest wait of one read for the next record of the own partition (bounds how fast `DistrictTwin.stop`
        ends). [s]
    publish_timeout_s : float
        Longest wait for the stream's acknowledgement of the handover claims. [s]
    dedupe_keys : int
        Record keys remembered to drop rows stored twice (`ingest.dedupe.Deduper`; 24 bytes each). [1]
    start : {"first", "last"}
        Where a twin with an empty state folder starts reading: the first record the stream holds, or after the
        last one (a twin that joins a running city and needs no history).
    core : CoreConfig
        The twin core's settings (its ``district`` and ``sender`` name the alerts).
    registry_db : str or None
        The registry database (``sqlite:///...`` or ``postgresql://...``, `ingest.registry_db`): the twin reads its
        district's devices from it at start (as they were at the version its snapshot or first start names) and
        fills from it the registry versions no ``registry`` record brought (`twin.live.district_registry`). None:
        the registry given (a file) is the base. An empty database falls back to the registry given.
    """

    partition: str
    handover_partition: str = HANDOVER_PARTITION
    prefix: str = "city/"
    snapshot_every_s: float = 60.0
    read_max: int = 256
    read_wait_s: float = 0.2
    publish_timeout_s: float = 5.0
    dedupe_keys: int = 1_000_000
    start: str = "first"
    core: CoreConfig = field(default_factory=CoreConfig)
    registry_db: str | None = None

    def __post_init__(self) -> None:
        check_partition(self.partition)
        check_partition(self.handover_partition)
        problems = []
        if self.partition == self.handover_partition:
            problems.append(f"the partition {self.partition!r} is the handover partition")
        for name in ("snapshot_every_s", "read_wait_s", "publish_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("read_max", "dedupe_keys"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.start not in ("first", "last"):
            problems.append(f"start must be 'first' or 'last', got {self.start!r}")
        if problems:
            raise ValueError("DistrictConfig: " + "; ".join(problems))


def district_core_config(partition: str, prefix: str = "city/", tick_s: float = 60.0, **more: object) -> CoreConfig:
    """A core config whose alerts are named after the district: ``district`` = the partition, ``sender``
    ``twin.<partition>@citytwin`` (alert identifiers are then unique across the city)."""
    return CoreConfig(prefix=prefix, district=partition, sender=f"twin.{partition}@citytwin", tick_s=tick_s,
                      **more)


@dataclass
class Counts:
    """What the records applied did (kept in the snapshot: a restored twin counts on as one that never stopped)."""

    records: int = 0
    """Batch records applied. [1]"""
    rows: int = 0
    """Rows of those records applied (after the dedupe). [1]"""
    duplicates: int = 0
    """Rows dropped as already applied (the same dedupe key). [1]"""
    ticks: int = 0
    ticks_skipped: int = 0
    """Tick records not after the last tick (a clock that went back): not run. [1]"""
    refused: dict[str, int] = field(default_factory=dict)
    """Rows the core refused, by reason (``outside_grid``, ``not_sent`` ...). [1]"""
    bad_records: dict[str, int] = field(default_factory=dict)
    """Records that could not be used, by reason: ``bad_batch`` (not a batch of the codec's layout), ``bad_tick``
    (no finite ``Twin-Time``), ``bad_handover``, ``bad_registry``, ``unknown_kind``. [1]"""
    claims: int = 0
    """Handover claims made (new holds and reclaims). [1]"""
    reclaims: int = 0
    handovers_read: int = 0
    """Other twins' claims read. [1]"""
    dropped: int = 0
    """Entities dropped on another twin's newer claim. [1]"""


@dataclass
class Faults:
    """Counters of this process's troubles (not in the snapshot)."""

    read_errors: int = 0
    publish_errors: int = 0
    """Flushes of handover claims the stream did not acknowledge (published again at the next round). [1]"""
    claims_published: int = 0
    claims_duplicate: int = 0
    claims_dropped: int = 0
    """Claims dropped because `MAX_PENDING_CLAIMS` waited already. [1]"""
    apply_errors: int = 0
    """Records whose application raised (a bug: logged with the record's sequence). [1]"""
    deadletters_dropped: int = 0
    out_of_order: int = 0


class DistrictTopics:
    """The MQTT transport as the outbox publisher sees it: alert topics get the district,
    ``{prefix}alerts/<id>`` -> ``{prefix}alerts/<partition>/<id>``; every other topic is kept."""

    def __init__(self, transport, prefix: str, partition: str) -> None:
        self.transport, self.alerts, self.partition = transport, f"{prefix}alerts/", partition

    def topic(self, topic: str) -> str:
        """The district's topic for a topic of the core."""
        if topic.startswith(self.alerts):
            return f"{self.alerts}{self.partition}/{topic[len(self.alerts):]}"
        return topic

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, droppable: bool = False):
        """``MqttTransport.publish`` on the district's topic."""
        return self.transport.publish(self.topic(topic), payload, qos=qos, retain=retain, droppable=droppable)


class DistrictTwin:
    """A twin core fed from its partition of a stream (see the module docstring).

    Parameters
    ----------
    static : xarray.Dataset
        The district's grid twin.
    registry : Registry or None
        Devices: the twin keeps its own district's sensors and every vehicle and unit of the city
        (`twin.live.district_registry.district_devices`). None with ``config.registry_db`` (read from there).
    stream : Stream
        Read from the reader thread (and the status); handover claims are published and flushed on the reader
        thread only (``Stream`` wants one publishing thread).
    state_dir : Path
        Snapshot, ``alerts.db`` (unless ``db``) and ``district-start.json``.
    config : DistrictConfig
    transport : MqttTransport or None
        Publish-only; None: nothing is published (the outbox stays in the store; tests, tools).
    db : str or None
        The alert store's URL (default ``sqlite:///<state_dir>/alerts.db``).
    """

    def __init__(self, static: xr.Dataset, registry: Registry | None, stream: Stream, state_dir: Path,
                 config: DistrictConfig, transport=None, db: str | None = None) -> None:
        self.config = cfg = config
        self.static, self.stream = static, stream
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.main, self.side = cfg.partition, cfg.handover_partition
        self.store = Store.open(db or f"sqlite:///{self.state_dir / 'alerts.db'}")
        self.registry_store = None
        try:
            self.registry_store = _open_registry(cfg.registry_db) if cfg.registry_db else None
            self.registry_book = DistrictRegistry(self.main, static, self.registry_store)
            snap = snapshot.read(self.state_dir, grid_of(static)) if snapshot.exists(self.state_dir) else None
            self.registry = self._base_registry(registry, snap)
            self.core = TwinCore(static, self.registry, self.store, cfg.core)
        except BaseException:
            self._close_stores()
            raise
        self.deduper = Deduper(cfg.dedupe_keys)
        self.counts, self.faults = Counts(), Faults()
        self.pending: dict[str, Handover] = {}
        """Claims published and not yet acknowledged by the stream, by message id."""
        self.positions = {self.main: 0, self.side: 0}
        """Per partition, the sequence of the last record applied."""
        self.last_snapshot_t = float("-inf")
        self.snapshot_seq = 0
        """Sequence of the own partition's last record covered by the last snapshot written or restored."""
        try:
            self.restored = self._restore(snap)
        except BaseException:
            self._close_stores()
            raise
        self.applied_seq = self.positions[self.main]
        """Sequence of the last record of the own partition applied completely (``positions`` moves before a record
        is applied, so that a snapshot taken inside a tick covers that tick)."""
        self.feed = OrderedFeed(stream, self.main, self.side, self.positions, cfg.read_max)
        self.transport = transport
        self.publisher = OutboxPublisher(self.store, DistrictTopics(transport, cfg.prefix, self.main)) \
            if transport is not None else None
        self.last_report: TickReport | None = None
        self.listeners: list[Callable[[TickReport], None]] = []
        """Called on the reader thread after every tick; keep them quick."""
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"district-{self.main}", daemon=True)
        self._closed = False

    @classmethod
    def from_files(cls, grid: Path, registry: Path | None, stream: Stream, state_dir: Path, config: DistrictConfig,
                   transport=None, db: str | None = None) -> DistrictTwin:
        """A district twin of a grid twin file and a registry file (GeoJSON or CSV; None with ``config.registry_db``);
        the road network written beside the grid file (`twin.district.roads`) gives the probes' link speeds when the
        config names none."""
        static, _ = load_twin(grid)
        live = config.core.live
        if live.road_network is None:
            from twin.district.roads import load_road_network

            try:
                network = load_road_network(grid, grid_of(static))
            except (FileNotFoundError, ValueError) as exc:
                log.info("no road links: %s", exc)
            else:
                core = dataclasses.replace(config.core, live=dataclasses.replace(live, road_network=network))
                config = dataclasses.replace(config, core=core)
        return cls(static, load_registry(registry) if registry is not None else None, stream, state_dir, config,
                   transport, db)

    def _base_registry(self, given: Registry | None, snap) -> Registry:
        """The registry the core is built on: the district's devices of the registry database (at the version the
        snapshot, or the first start, names) or of ``given``, brought to the snapshot's state."""
        doc = (snap.state.get("district") or {}).get("registry") if snap is not None else None
        first = doc if doc else {"base": self._start_file().get("registry_version"),
                                 "source": self._start_file().get("registry_source")}
        store = self.registry_store
        if store is not None and not store.is_empty() and (first.get("source") != "file" or given is None):
            at = first.get("base") if first.get("source") == "db" else None
            base = self.registry_book.read_base(None if at is None else int(at))
        elif given is not None:
            base = district_devices(given, self.main, self.static)
            self.registry_book.source = "file"
        elif store is not None:
            log.warning("%s: the registry database %s is empty and no registry file is given: no devices yet",
                        self.main, store.url)
            base = Registry({})
        else:
            raise ValueError("a district twin needs a registry (a file) or a registry database (registry_db)")
        self.registry_book.restore(base, doc)
        return base

    def _start_file(self) -> dict:
        """``district-start.json`` as written at the first start ({} before it)."""
        path = self.state_dir / START_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    # ------------------------------------------------------------ life cycle
    def start(self, wait_s: float = 10.0, warm: bool = True) -> bool:
        """Check the stream, compile the kernels (`warm_up`), connect and start the reader; True once connected to
        the broker (always True without a transport). Raises ``StreamError`` when the stream cannot be used."""
        self.stream.ensure([self.main, self.side])
        last = self.stream.last_seq(self.main)
        if self.positions[self.main] > last:
            log.warning("the stream's partition %s ends at sequence %d, before this twin's position %d: its records "
                        "expired (the twin was down longer than the stream keeps them), or the stream was made anew "
                        "(then move the state folder %s away: the twin would wait for sequence %d)", self.main, last,
                        self.positions[self.main], self.state_dir, self.positions[self.main] + 1)
        if warm:
            warm_up(self.static, self.registry, self.config.core)
        connected = True
        if self.transport is not None:
            connected = self.transport.start(wait_s)
            self.publisher.start()
        self._thread.start()
        return connected

    def stop(self, timeout_s: float = STOP_S) -> bool:
        """Stop reading (within ``timeout_s`` [s] plus one read's wait), write a snapshot, flush the outbox and
        disconnect. False when the reader did not end in time: then no snapshot is written and the store is left
        open to it (a restart goes on from the last snapshot)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        clean = not self._thread.is_alive()
        if clean and not self._closed:
            self._flush_claims()
            self._snapshot()
        elif not clean:
            log.warning("the reader of %s did not stop within %g s: no snapshot at stop", self.main, timeout_s)
        if self.publisher is not None and self.publisher.thread.is_alive():
            self.publisher.stop()
        if self.transport is not None:
            self.transport.stop(timeout_s=2.0)
        if clean:
            self.close()
        return clean

    def close(self) -> None:
        """Close the stores (a twin never started, or stopped)."""
        if not self._closed:
            self._closed = True
            self._close_stores()

    def _close_stores(self) -> None:
        self.store.close()
        if self.registry_store is not None:
            self.registry_store.close()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self.step(self.config.read_wait_s)
                delay = 0.1
            except StreamError as exc:
                self.faults.read_errors += 1
                if self.faults.read_errors == 1 or self.faults.read_errors % 100 == 0:
                    log.warning("reading %s failed (%s; %d failures so far); again in %.1f s", self.main, exc,
                                self.faults.read_errors, delay)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2.0, MAX_BACKOFF_S)

    # ------------------------------------------------------------ one round
    def step(self, wait_s: float = 0.0) -> int:
        """Read both partitions (waiting up to ``wait_s`` [s]), apply what may go in sequence order, publish the
        claims it made; the number of records applied. The reader thread calls it; a twin never started can be
        driven by calling it (tests). Raises ``StreamError`` when the stream fails."""
        records = self.feed.poll(wait_s)
        self.faults.out_of_order = self.feed.out_of_order
        for partition, record in records:
            self._apply(partition, record)
            if partition == self.main:
                self.applied_seq = self.positions[self.main]
        self._flush_claims()
        if records:
            with self._progress:
                self._progress.notify_all()
        return len(records)

    def catch_up(self, timeout_s: float = 10.0) -> int:
        """(A twin not started.) Step until the own partition is applied up to the stream's last record, at most
        ``timeout_s`` [s]; the records applied. Raises ``TimeoutError`` when it does not get there."""
        deadline, n = time.monotonic() + timeout_s, 0
        while True:
            last = self.stream.last_seq(self.main)
            if self.positions[self.main] >= last and self.positions[self.side] >= self.stream.last_seq(self.side):
                return n
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.main} applied up to {self.positions[self.main]}, the stream is at {last}")
            n += self.step(0.05)

    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        """Wait until the own partition is applied up to sequence ``seq``; False after ``timeout_s`` [s]."""
        with self._progress:
            return self._progress.wait_for(lambda: self.applied_seq >= seq, timeout_s)

    def _apply(self, partition: str, record: Record) -> None:
        self.positions[partition] = max(self.positions[partition], record.seq)
        try:
            if partition == self.side:
                self._on_claim(record)
            elif record.kind == TICK:
                self._on_tick(record)
            elif record.kind in (BATCH, ""):
                self._on_batch(record)
            elif record.kind == REGISTRY:
                self._on_registry(record)
            else:
                self._bad(record, "unknown_kind", f"record kind {record.kind[:40]!r} (known: batch, tick, registry)")
        except Exception:  # a bug of ours: the twin goes on with the next record, counted and logged
            self.faults.apply_errors += 1
            log.exception("applying record %d of %s failed", record.seq, partition)

    # ------------------------------------------------------------ batches
    def _on_batch(self, record: Record) -> None:
        try:
            batch = decode_batch(record.data)
        except CodecError as exc:
            self._bad(record, "bad_batch", str(exc))
            return
        batch, duplicates = self.deduper.filter(batch)
        self.counts.records += 1
        self.counts.duplicates += duplicates
        if not len(batch):
            return
        core = self.core
        with core.lock:
            before = movers_in(batch, core.state.entities)
            refused = core.on_batch(batch)
            claims = new_holds(before, core.state.entities, self.main) if before else []
        self.counts.rows += len(batch)
        for claim in claims:
            self._claim(claim)
        if refused:
            self._refuse(record, batch, refused)
        if self.publisher is not None:
            self.publisher.wake.set()

    def _refuse(self, record: Record, batch: Batch, refused: list[Rejected]) -> None:
        """Count the core's refusals by reason; dead-letter each (a refused unit acknowledgement or task answer is
        also answered on the unit's topic, as `twin run` does)."""
        by_reason: dict[str, int] = {}
        for r in refused:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        self.counts.refused = _added(self.counts.refused, by_reason)
        if self.transport is None:
            return
        prefix = self.config.prefix
        for r in refused:
            row = _row_json(batch, r.row) if 0 <= r.row < len(batch) else b"{}"
            rejection = reject(TWIN_REASONS.get(r.reason, Reason.BAD_SCHEMA), r.detail, row, r.field)
            self._publish_droppable(deadletter_topic(prefix), deadletter_payload(
                f"stream/{self.main}/{record.seq}", rejection, time.time(), row))
            if r.is_ack:
                answer_doc = {"alert": r.alert, "status": r.status, "t": r.t, "error": r.reason, "detail": r.detail}
                self._publish_droppable(f"{prefix}units/{r.device}/ack/errors", _json(answer_doc))
            elif r.is_task:
                answer_doc = {"case": r.case, "status": r.status, "t": r.t, "error": r.reason, "detail": r.detail}
                self._publish_droppable(f"{prefix}units/{r.device}/tasks/errors", _json(answer_doc))

    def _bad(self, record: Record, reason: str, detail: str) -> None:
        """A record that cannot be used: counted by reason, logged, dead-lettered with its bytes."""
        self.counts.bad_records = _added(self.counts.bad_records, {reason: 1})
        log.warning("record %d of %s refused (%s): %s", record.seq, self.main, reason, detail[:200])
        if self.transport is not None:
            rejection = reject(Reason.BAD_SCHEMA, f"{reason}: {detail}", record.data, "record")
            self._publish_droppable(deadletter_topic(self.config.prefix), deadletter_payload(
                f"stream/{self.main}/{record.seq}", rejection, time.time(), record.data))

    def _publish_droppable(self, topic: str, payload: bytes) -> None:
        if not self.transport.publish_droppable(topic, payload, qos=1):
            self.faults.deadletters_dropped += 1

    # ------------------------------------------------------------ registry changes (twin.live.district_registry)
    def _on_registry(self, record: Record) -> None:
        try:
            step = parse_registry(record)
        except RegistryRecordError as exc:
            self._bad(record, "bad_registry", str(exc))
            return
        at = self.registry.version
        n = self.registry_book.apply(self.core, step)
        if self.registry.version != at:
            log.info("%s: registry version %d -> %d: %d changes", self.main, at, self.registry.version, n)

    # ------------------------------------------------------------ ticks
    def _on_tick(self, record: Record) -> None:
        t = tick_time(record)
        if t is None:
            self._bad(record, "bad_tick", f"no finite Twin-Time header ({dict(record.headers)!r:.120})")
            return
        if not np.isnan(self.core.last_tick) and t <= self.core.last_tick:
            self.counts.ticks_skipped += 1
            return
        report = self.core.on_tick(t)
        self.counts.ticks += 1
        self.last_report = report
        if self.publisher is not None:
            self.publisher.wake.set()
            self._publish_status()
        for listener in list(self.listeners):
            try:
                listener(report)
            except Exception:  # a listener must never stop the twin
                log.exception("tick listener %r failed", listener)
        if t - self.last_snapshot_t >= self.config.snapshot_every_s:
            self._flush_claims()
            self._snapshot()

    # ------------------------------------------------------------ handover (twin.live.district_handover)
    def _on_claim(self, record: Record) -> None:
        claim = parse_handover(record)
        if claim is None:
            self._bad(record, "bad_handover", "not a handover record (JSON device, t, district)")
            return
        if claim.district == self.main:
            return
        self.counts.handovers_read += 1
        entities = self.core.state.entities
        with self.core.lock:
            what = answer(entities, claim, self.main)
            t_own = entities.entities[claim.device].t if what == "reclaim" else None
        if what == "drop":
            self.counts.dropped += 1
        elif what == "reclaim":
            self.counts.reclaims += 1
            self._claim(Handover(claim.device, float(t_own), self.main))

    def _claim(self, claim: Handover) -> None:
        _, msg_id, _ = claim.message()
        if msg_id not in self.pending and len(self.pending) >= MAX_PENDING_CLAIMS:
            del self.pending[next(iter(self.pending))]
            self.faults.claims_dropped += 1
        self.pending[msg_id] = claim
        self.counts.claims += 1

    def _flush_claims(self) -> None:
        """Publish the pending claims and wait for the stream's acknowledgement; on failure they stay pending."""
        if not self.pending:
            return
        items = list(self.pending.items())
        try:
            for msg_id, claim in items:
                data, _, headers = claim.message()
                self.stream.publish(self.side, data, msg_id, headers)
            acks = self.stream.flush(self.config.publish_timeout_s)
        except StreamError as exc:
            self.faults.publish_errors += 1
            log.warning("handover claims of %s not acknowledged (%s): published again at the next round", self.main,
                        exc)
            return
        for msg_id, _ in items:
            self.pending.pop(msg_id, None)
        self.faults.claims_duplicate += sum(1 for a in acks if a.duplicate)
        self.faults.claims_published += sum(1 for a in acks if not a.duplicate)

    # ------------------------------------------------------------ snapshots
    def _snapshot(self) -> None:
        core = self.core
        with core.lock:
            state = {**core.save_state(), "dedupe": self.deduper.save_state(),
                     "district": {"partition": self.main, "counts": dataclasses.asdict(self.counts),
                                  "pending": [[c.device, c.t, c.district] for c in self.pending.values()],
                                  "registry": self.registry_book.save_state(self.registry)}}
            snapshot.write(self.state_dir, state, core.state.grid, (0, 0), time.time(), stream=dict(self.positions))
        self.last_snapshot_t = core.last_tick
        self.snapshot_seq = self.positions[self.main]

    def _restore(self, snap) -> bool:
        """The last snapshot's state and stream positions (True), or the start file's (False)."""
        if snap is None:
            self._start_from_base()
            return False
        district = snap.state.get("district") or {}
        if self.main not in snap.stream or district.get("partition") != self.main:
            raise snapshot.SnapshotError(
                f"{self.state_dir / snapshot.FILE} was not written by the district twin of {self.main} (partition "
                f"{district.get('partition')!r}, stream positions {sorted(snap.stream)}); give this twin its own "
                "state folder")
        self.core.restore_state(snap.state)
        if snap.state.get("dedupe"):
            self.deduper.restore_state(snap.state["dedupe"])
        known = {f.name for f in dataclasses.fields(Counts)}
        self.counts = Counts(**{k: v for k, v in (district.get("counts") or {}).items() if k in known})
        for device, t, who in district.get("pending", []):
            self._claim(Handover(str(device), float(t), str(who)))
            self.counts.claims -= 1  # counted when first made
        self.positions = {self.main: int(snap.stream[self.main]), self.side: int(snap.stream.get(self.side, 0))}
        self.last_snapshot_t, self.snapshot_seq = self.core.last_tick, self.positions[self.main]
        log.info("%s: restored the snapshot of %s at stream sequence %d", self.main,
                 time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.written_at)), self.snapshot_seq)
        return True

    def _start_from_base(self) -> None:
        """Without a snapshot: the stream positions, alert and case numbers of the first start (written now at the
        first start), so that a crash before the first snapshot replays to the same alert identifiers."""
        path = self.state_dir / START_FILE
        if path.is_file():
            base = json.loads(path.read_text(encoding="utf-8"))
        else:
            first = self.config.start == "first"
            cases = CaseBook.load(self.store, self.core.config.district).sequence if self.core.desk is not None else 0
            base = {"partition": self.main, "alert_sequence": int(self.core.book.sequence),
                    "case_sequence": int(cases), "registry_version": int(self.registry_book.base),
                    "registry_source": self.registry_book.source,
                    "stream": {p: 0 if first else int(self.stream.last_seq(p)) for p in (self.main, self.side)}}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(base), encoding="utf-8")
            os.replace(tmp, path)
        if base.get("partition", self.main) != self.main:
            raise snapshot.SnapshotError(f"{path} belongs to the district twin of {base.get('partition')!r}, not "
                                         f"{self.main}; give this twin its own state folder")
        self.core.book.sequence = int(base["alert_sequence"])
        if self.core.desk is not None:
            self.core.desk.book.sequence = int(base["case_sequence"])
        self.positions = {p: int(base["stream"].get(p, 0)) for p in (self.main, self.side)}

    # ------------------------------------------------------------ status
    def status(self, poll_stream: bool = True) -> dict[str, object]:
        """The twin's status: positions and lag, counters, the core's figures, outbox depth, faults.

        ``lag`` is the stream's last sequence of the partition minus the last applied [sequence numbers: the
        stream's sequence runs over all partitions, so this is an upper bound of the records behind]; 0 when caught
        up, None when the stream could not be asked (or ``poll_stream`` is False)."""
        last = None
        if poll_stream:
            try:
                last = self.stream.last_seq(self.main)
            except StreamError:
                last = None
        applied = self.applied_seq
        t = self.core.last_tick
        return {"partition": self.main, "t": None if np.isnan(t) else round(float(t), 3),
                "applied_seq": applied, "handover_seq": self.positions[self.side], "stream_last_seq": last,
                "lag": None if last is None else max(0, last - applied), "buffered": self.feed.buffered,
                "snapshot_seq": self.snapshot_seq, "restored": self.restored,
                "registry_version": int(self.registry.version),
                "registry": dataclasses.asdict(self.registry_book.counts),
                "tick_ms": round(self.last_report.tick_ms, 1) if self.last_report else 0.0,
                **dataclasses.asdict(self.counts), **self.core.status(),
                "outbox": self.store.outbox_depth() if not self._closed else None,
                "claims_pending": len(self.pending), "faults": dataclasses.asdict(self.faults)}

    def _publish_status(self) -> None:
        body = json.dumps(self.status(), separators=(",", ":")).encode()
        self.transport.publish(f"{self.config.prefix}twin/status/{self.main}", body, qos=1, retain=True,
                               droppable=True)


def _open_registry(url: str) -> RegistryStore:
    """The registry database at ``url``; ValueError naming it when it cannot be opened."""
    try:
        return RegistryStore.open(url)
    except Exception as exc:  # sqlite3 / psycopg errors: a bad path, a server away
        raise ValueError(f"the registry database cannot be opened: {exc}") from None


def _added(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """A new dict of ``counts`` plus ``more`` (the reader thread replaces its counters' dicts instead of changing
    them, so `DistrictTwin.status` on another thread never iterates a dict that grows)."""
    out = dict(counts)
    for key, n in more.items():
        out[key] = out.get(key, 0) + n
    return out


def _row_json(batch: Batch, row: int) -> bytes:
    """One row of a batch as compact JSON (the payload of its dead letter)."""
    doc = {"device": batch.device[row], "t": float(batch.t[row]), "quantity": batch.quantity[row],
           "value": float(batch.value[row]), "lon": float(batch.lon[row]), "lat": float(batch.lat[row]),
           "datum": batch.datum[row], "ref": batch.ref[row]}
    return json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in doc.items()},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _json(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


__all__ = ["MAX_PENDING_CLAIMS", "START_FILE", "Counts", "DistrictConfig", "DistrictTopics", "DistrictTwin", "Faults",
           "district_core_config"]
