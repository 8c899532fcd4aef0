"""``IngestWorker``: the ``Ingestor`` with the stream as its sink (docs/city-deployment.md section 2).

An ingest worker takes its share of the inbound MQTT messages (a shared subscription), logs them with one fsync
per group and acknowledges them (``ingest.pipeline.Ingestor``, unchanged), then splits each group's accepted
records by district (``ingest.districts.DistrictRouter``) and publishes one Arrow IPC batch per district
(``ingest.stream.codec``) on partition ``<district>`` of the stream, with the message id
``<worker>:<epoch>-<segment>-<offset>:<district>``. ``<segment>-<offset>`` is the raw-log position just after the
group, ``<epoch>`` a random name of this raw log (a worker whose state folder was wiped starts a new epoch, so its
new positions never collide with old ids still in the stream's duplicate window).

Exactly once in the stream. Each group is published and its acknowledgements waited for before the next group
is taken (``flush``; the transport's queue fills meanwhile, so the next group is larger: the cost is one round
trip per group, not per message). The checkpoint file (``checkpoint.json``, written by atomic rename) holds

* ``acked``: every record logged before this position is in the stream;
* ``attempt``: the end of the one group being published (written *before* publishing it).

A worker killed at any moment restarts with ``recover``: it re-reads the raw log from ``acked``, re-admits the
messages (the admission step depends only on the messages in log order and their logged times) and publishes
``[acked, attempt)`` as the group it was, with the same message ids -- the stream drops what it already holds --
and ``[attempt, end of log)``, which was never published, as one new group. Only one group can be in flight, so
no other group boundary needs to be kept. A publish that fails (NATS down) is retried with the same ids, with
backoff, until it is acknowledged or the worker stops; meanwhile the ingest loop takes no more messages, so the
broker holds them (backpressure), as for a failing disk.

The ingest loop hands each group to the sink once: control records (``Ingestor.put_control``) are taken at the head
of a group, before its data. Should a group ever reach the sink twice, the worker stops with a clear error rather
than publish two batches under one id. Ticks are not made here (the city clock publishes them).

The registry (docs/guides/devices.md). With a registry database (``registry_store``) the worker follows it at run time:
a thread compares the database's version with the worker's every ``WorkerConfig.registry_poll_s`` and queues a
``$twin/registry`` control record (``{"to": version}``) on the ingest loop, as ``twin run`` does. The loop logs it in
the raw log and hands it over at the head of its group, before that group's messages are admitted: the worker reads
the changes up to that version from the database, applies them to the admission's registry and the router
(`ingest.registry_follow`), and publishes one ``registry`` record per district (`ingest.stream.registry`), waiting
for the stream's acknowledgement, before the group's batches. So each district's partition holds the change in its
place among the batches, and every message is admitted by the registry of its place in the raw log. Recovery
replays the logged control records in their places: the checkpoint keeps the registry version at its ``warm``
position, the registry is read from the database as it was at that version (`registry_at_checkpoint`), and the
registry records are published again under their ids (the stream drops those it holds).

Refusals: a record whose position lies in no district is dead-lettered ``outside_grid`` (detail "outside every
district of the city"; counted here as ``outside_city``), a record with no position whose device is in no
district likewise (``no_district``).

Not thread-safe: the ingest thread runs the sink; ``recover`` runs before ``start``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.admission import batch_of
from ingest.batch import Batch
from ingest.districts import DistrictRaster, DistrictRouter
from ingest.metrics import Metrics
from ingest.pipeline import CONTROL_PREFIX, IngestConfig, Ingestor, Source, control_message
from ingest.rawlog import LOG_START, LogPosition, RawLog, read_log
from ingest.registry import Registry
from ingest.registry_db import follow_versions
from ingest.registry_follow import (
    MOVER_KINDS,
    REGISTRY_CHUNK,
    REGISTRY_TOPIC,
    DistrictPlacer,
    RegistryFollower,
    anchor,
)
from ingest.rejection import Reason, Rejection, reject
from ingest.stream.base import BATCH, KIND, REGISTRY, Stream, StreamError, check_partition
from ingest.stream.codec import encode_batch
from ingest.stream.registry import registry_steps

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.json"
WARM_S = 30.0
"""Default of ``WorkerConfig.warm_s`` [s]."""
HEADROOM = 1024
"""Bytes of a stream record kept for its headers [byte]."""
REGISTRY_POLL_S = 5.0
"""Default of ``WorkerConfig.registry_poll_s`` [s]."""
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, math.inf)
"""Upper bounds of the publish-latency histogram [ms]."""


class WorkerStoppedError(RuntimeError):
    """The worker is stopping (or broken): a group is left to ``recover`` on the next start."""


# -- the checkpoint ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """What the stream holds of the raw log (see the module docstring).

    ``warm`` is an older ``acked`` position, at least ``WorkerConfig.warm_s`` before the newest: on recovery the
    messages from ``warm`` to ``acked`` are admitted again (not published) to refill the dedupe memory, so that a
    message the broker sends again because our PUBACK was lost in the crash is recognised as a duplicate.

    ``registry`` is the registry version at ``warm`` (-1: not known, a worker without a registry database or a
    checkpoint of an older worker): recovery reads the registry as it was there and replays the logged
    ``$twin/registry`` records after it.
    """

    epoch: str
    acked: LogPosition
    attempt: LogPosition
    warm: LogPosition = LOG_START
    registry: int = -1

    def position_id(self, position: LogPosition) -> str:
        """The raw-log position part of a message id: ``<epoch>-<segment>-<offset>``."""
        return f"{self.epoch}-{position.segment}-{position.offset}"

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename). Not fsynced: a SIGKILL keeps it (the page cache
        survives the process); after a power loss an older checkpoint only means more is re-published."""
        doc = {"version": 1, "epoch": self.epoch, "acked": list(self.acked), "attempt": list(self.attempt),
               "warm": list(self.warm), "registry": int(self.registry)}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path``; None if there is none; ValueError naming the problem if it is damaged."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint {path} is unreadable: {exc}") from None
        try:
            acked, attempt = LogPosition(*map(int, doc["acked"])), LogPosition(*map(int, doc["attempt"]))
            warm = LogPosition(*map(int, doc.get("warm", LOG_START)))
            epoch = str(doc["epoch"])
            registry = int(doc.get("registry", -1))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} is damaged: {exc!r}") from None
        return cls(epoch, acked, max(acked, attempt), min(warm, acked), registry)

    @classmethod
    def fresh(cls, start: LogPosition = LOG_START, registry: int = -1) -> Checkpoint:
        """A new epoch whose stream holds nothing before ``start`` (where the registry is at version ``registry``)."""
        return cls(secrets.token_hex(4), start, start, start, registry)

    def moved(self, acked: LogPosition, attempt: LogPosition, warm: LogPosition, registry: int) -> Checkpoint:
        """This epoch's checkpoint at other positions."""
        return Checkpoint(self.epoch, acked, attempt, warm, registry)


# -- counters ------------------------------------------------------------------------------------------------


@dataclass
class WorkerMetrics:
    """Counters of a worker (records [1], latencies [ms]); ``snapshot`` is JSON-ready."""

    records_in: dict[str, int] = field(default_factory=dict)
    """Records routed to each district (published or about to be)."""
    records_out: dict[str, int] = field(default_factory=dict)
    """Records the stream stored, by district (duplicates of a re-publish not counted)."""
    batches_out: int = 0
    batches_duplicate: int = 0
    """Batches the stream already held (a re-publish after a restart or a retry)."""
    dead_letters: dict[str, int] = field(default_factory=lambda: {"outside_city": 0, "no_district": 0})
    """Records refused by the router, by reason."""
    publish_retries: int = 0
    replayed_messages: int = 0
    registry_version: int = 0
    """The registry version the admission judges by."""
    registry_changes: int = 0
    """Registry changes applied since start (devices added, updated or retired; replayed ones included). [1]"""
    registry_records: int = 0
    """``registry`` records the stream stored (one per district and version step; duplicates not counted). [1]"""
    groups: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    """Publish latency histogram (publish + wait for every ack of a group), upper bounds ``LATENCY_BUCKETS_MS``."""
    latency_max_ms: float = 0.0
    latency_total_ms: float = 0.0

    def add_latency(self, seconds: float) -> None:
        """One group's publish latency [s]."""
        ms = seconds * 1000.0
        self.groups += 1
        self.latency_total_ms += ms
        self.latency_max_ms = max(self.latency_max_ms, ms)
        self.latency_buckets[next(i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b)] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy with ``latency_mean_ms`` (and ``latency_buckets_ms``, the bounds)."""
        out = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
               for k, v in self.__dict__.items()}
        out["latency_mean_ms"] = self.latency_total_ms / self.groups if self.groups else 0.0
        out["latency_buckets_ms"] = [str(b) for b in LATENCY_BUCKETS_MS]
        return out


# -- the worker ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of an ingest worker.

    Attributes
    ----------
    worker_id : str
        This worker's name, unique among the workers (letters, digits, ``_``, ``-``; part of every message id).
    publish_timeout_s : float
        Longest wait for the stream's acks of one group before it is published again [s].
    retry_max_s : float
        Longest pause between publish attempts [s] (backoff from 0.1 s).
    compression : str or None
        Arrow IPC compression of the batches (None, ``lz4`` or ``zstd``).
    warm_s : float
        How far back (in time of acknowledgement) recovery refills the dedupe memory [s] (``Checkpoint``); the
        broker's redelivery of messages whose PUBACK a crash lost falls well inside it.
    registry_poll_s : float
        How often the worker asks the registry database for its version (with a ``registry_store``) [s].
    ingest : IngestConfig
        The ingest loop's settings (prefix, limits, group size).
    """

    worker_id: str
    publish_timeout_s: float = 10.0
    retry_max_s: float = 5.0
    compression: str | None = None
    warm_s: float = WARM_S
    registry_poll_s: float = REGISTRY_POLL_S
    ingest: IngestConfig = field(default_factory=IngestConfig)


class IngestWorker:
    """An ``Ingestor`` whose sink publishes to a ``Stream`` by district; see the module docstring.

    Parameters
    ----------
    source : Source
        Usually an ``MqttTransport`` with a ``share_group``.
    raw_log : RawLog
        The worker's raw log (in its state folder; the checkpoint file is written beside it).
    registry : Registry or None
    stream : Stream
    router : DistrictRouter
    config : WorkerConfig
    registry_store : RegistryStore or None
        The registry database to follow (`ingest.registry_db`); None: the registry never changes. ``registry`` must
        then be the database's registry at the checkpoint's version (`registry_at_checkpoint`), and ``router``
        built from it.
    district_map : mapping of str to str or None
        Device id -> district code that wins over the registry (``--district-map``), for changed devices too.
    """

    def __init__(self, source: Source, raw_log: RawLog, registry: Registry | None, stream: Stream,
                 router: DistrictRouter, config: WorkerConfig, registry_store=None,
                 district_map: Mapping[str, str] | None = None) -> None:
        check_partition(config.worker_id)
        for code in router.codes:
            check_partition(code)
        if not (math.isfinite(config.registry_poll_s) and config.registry_poll_s > 0):
            raise ValueError(f"registry_poll_s must be a positive number of seconds, got {config.registry_poll_s!r}")
        if registry_store is not None and registry is None:
            raise ValueError("a worker that follows a registry database needs the registry read from it")
        self.config = config
        self.stream = stream
        self.router = router
        self.raw_log = raw_log
        self.metrics = WorkerMetrics()
        self.ingestor = Ingestor(source, raw_log, registry, self._sink, config.ingest, control=self._on_control)
        self.registry = registry
        self.registry_store = registry_store
        self.follower = RegistryFollower(registry, router, DistrictPlacer(router.raster, district_map)) \
            if registry_store is not None else None
        self.metrics.registry_version = int(registry.version) if registry is not None else 0
        self._registry_queued = 0
        self._watcher: threading.Thread | None = None
        self.checkpoint_path = checkpoint_path(raw_log.directory)
        self.checkpoint = self._open_checkpoint()
        self.broken: str | None = None
        """Why the worker stopped publishing (None while it works); its raw log keeps everything for a restart."""
        self._stopping = threading.Event()
        self._acked_history: deque[tuple[float, LogPosition, int]] = deque(maxlen=100_000)

    def _open_checkpoint(self) -> Checkpoint:
        found = Checkpoint.load(self.checkpoint_path)
        if found is not None:
            return found
        end = self.raw_log.position
        if end != LOG_START:
            log.warning("raw log %s has records but no checkpoint: all of it is published again (a new epoch: "
                        "records already in the stream may be stored twice)", self.raw_log.directory)
        fresh = Checkpoint.fresh(registry=self._registry_version())
        fresh.save(self.checkpoint_path)
        return fresh

    def _registry_version(self) -> int:
        """The version of the registry the admission judges by (-1: it does not follow a registry database)."""
        return int(self.registry.version) if self.follower is not None else -1

    # -- life cycle ----------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Publish what the raw log holds after the checkpoint (see the module docstring); call before ``start``.
        Returns the number of messages read again."""
        self.stream.ensure(self.router.codes)
        end = self.raw_log.position
        ck = self.checkpoint
        self._warm(ck.warm, ck.acked)
        if ck.acked >= end:
            return 0
        bounds = [b for b in (ck.attempt,) if ck.acked < b < end] + [end]
        admission = self.ingestor.admission
        items: list = []
        n = 0
        for rec in read_log(self.raw_log.directory, ck.acked):
            while rec.position >= bounds[0]:
                self._publish_group(batch_of(items), bounds.pop(0), live=False)
                items = []
            n += 1
            if rec.topic.startswith(CONTROL_PREFIX):  # a group began here (control records head their group)
                if items:
                    self._publish_group(batch_of(items), rec.position, live=False)
                    items = []
                self._replay_control(rec.topic, rec.payload, publish=True)
                continue
            got = admission.admit_fast(rec.topic, rec.payload, rec.received_at, redelivered=True)
            if type(got) is not Rejection and (type(got) is tuple or len(got) > 0):
                items.append(got)
        for bound in bounds:
            self._publish_group(batch_of(items), bound, live=False)
            items = []
        self.metrics.replayed_messages += n
        log.info("recovered: %d logged messages after the checkpoint published again", n)
        return n

    def _warm(self, start: LogPosition, stop: LogPosition) -> int:
        """Admit the logged messages in ``[start, stop)`` again, counted apart, to refill the dedupe memory."""
        admission = self.ingestor.admission
        counted, admission.metrics = admission.metrics, Metrics()
        n = 0
        try:
            for rec in read_log(self.raw_log.directory, start):
                if rec.position >= stop:
                    break
                if rec.topic.startswith(CONTROL_PREFIX):
                    self._replay_control(rec.topic, rec.payload, publish=False)
                else:
                    admission.admit_fast(rec.topic, rec.payload, rec.received_at, redelivered=True)
                n += 1
        finally:
            admission.metrics = counted
        return n

    def start(self) -> None:
        """Run the ingest loop in its thread (after ``recover``), and the registry watcher with a registry store."""
        self._stopping.clear()
        self.ingestor.start()
        if self.registry_store is not None:
            self._watcher = threading.Thread(target=self._watch_registry, name="registry", daemon=True)
            self._watcher.start()

    def interrupt(self) -> None:
        """End a publish being retried (in ``recover`` or live) with ``WorkerStoppedError``; ``stop`` does it too."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop taking messages, end a publish being retried, drain the ingest loop (see ``Ingestor.stop``)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout_s)
        return self.ingestor.stop(timeout_s)

    def status(self) -> dict[str, Any]:
        """Counters of the ingest loop (``ingest``) and of the publishing (``stream``), and the checkpoint."""
        return {"worker": self.config.worker_id, "broken": self.broken, "ingest": self.ingestor.metrics.snapshot(),
                "stream": self.metrics.snapshot(), "epoch": self.checkpoint.epoch,
                "acked": list(self.checkpoint.acked)}

    # -- one group -----------------------------------------------------------------------------------------

    def _sink(self, batch: Batch) -> None:
        """The ingest loop's sink: called once per group, right after the group's commit."""
        if self.broken is not None:
            raise WorkerStoppedError(f"worker {self.config.worker_id} publishes nothing more: {self.broken}")
        end = self.raw_log.position
        try:
            if end == self.checkpoint.acked:  # a second delivery of one group: a control record split it
                raise WorkerStoppedError("one group reached the sink twice: it would be published under one id twice")
            self._publish_group(batch, end, live=True)
        except Exception as exc:
            self.broken = str(exc) or type(exc).__name__
            raise

    def _publish_group(self, batch: Batch, end: LogPosition, *, live: bool) -> None:
        """Route, publish and wait for the acks of one group ending at raw-log position ``end``."""
        split = self.router.split(batch)
        self._refuse(split.outside, "outside_city", "outside every district of the city", live)
        self._refuse(split.unplaced, "no_district", "no position, and the device has no district", live)
        messages = self._messages(batch, split.parts, end)
        ck = self.checkpoint
        if messages:
            self.checkpoint = ck.moved(ck.acked, end, ck.warm, ck.registry)
            self.checkpoint.save(self.checkpoint_path)
            self._publish(messages)
        self.checkpoint = self.checkpoint.moved(end, end, *self._warm_position(end))
        self.checkpoint.save(self.checkpoint_path)

    def _warm_position(self, acked: LogPosition) -> tuple[LogPosition, int]:
        """The newest acked position at least ``WARM_S`` old, and the registry version there (see ``Checkpoint``)."""
        now = time.monotonic()
        history = self._acked_history
        history.append((now, acked, self._registry_version()))
        warm, registry = self.checkpoint.warm, self.checkpoint.registry
        while history and now - history[0][0] >= self.config.warm_s:
            _, warm, registry = history.popleft()
        return warm, registry

    def _messages(self, batch: Batch, parts: Mapping[str, np.ndarray], end: LogPosition) -> list:
        """The stream records of one group: per district, chunks of ``rows_per_record`` rows (see ``_chunks``)."""
        position = self.checkpoint.position_id(end)
        out = []
        for district, rows in parts.items():
            base = f"{self.config.worker_id}:{position}:{district}"
            for suffix, chunk, data in self._chunks(batch, rows, ""):
                headers = {KIND: BATCH, "Twin-Records": str(len(chunk))}
                out.append((district, data, base + suffix, headers, len(chunk)))
            self.metrics.records_in[district] = self.metrics.records_in.get(district, 0) + len(rows)
        return out

    @property
    def rows_per_record(self) -> int:
        """Rows per stream record: a fixed number (about 85 bytes a row fit ``max_bytes`` with room to spare), so a
        group re-admitted after a crash is cut where it was the first time (``_chunks``)."""
        return max(256, (self.stream.max_bytes - HEADROOM) // 128)

    def _chunks(self, batch: Batch, rows: np.ndarray, suffix: str):
        """``(id suffix, rows, Arrow bytes)`` of one district's rows: chunk ``k`` > 0 gets the id suffix ``:k``.

        Chunks are ``rows_per_record`` rows; one that still encodes larger than the stream takes (long strings, such
        as report notes) is halved again (suffix ``:k.h``). Re-admission after a crash accepts the records accepted
        the first time and maybe more, so a record lands in the same or a later chunk: a chunk the stream already
        holds is dropped by its id and nothing is lost (a record may then be stored twice; district twins drop it
        by its dedupe key).
        """
        size = self.rows_per_record
        limit = self.stream.max_bytes - HEADROOM
        for k, start in enumerate(range(0, len(rows), size)):
            yield from self._fitted(batch, rows[start:start + size], f"{suffix}:{k}" if k else suffix, limit)

    def _fitted(self, batch: Batch, rows: np.ndarray, suffix: str, limit: int):
        part = batch if len(rows) == len(batch) else batch.take(rows)
        data = encode_batch(part, self.config.compression)
        if len(data) <= limit:
            yield suffix, rows, data
            return
        if len(rows) == 1:  # cannot happen with the default limits (64 KiB messages, 1 MiB records)
            self.metrics.dead_letters["too_large"] = self.metrics.dead_letters.get("too_large", 0) + 1
            log.error("a record of %s encodes to %d bytes, more than the stream takes (%d): not published (it is "
                      "in the raw log)", batch.device[rows[0]], len(data), limit)
            return
        half = len(rows) // 2
        yield from self._fitted(batch, rows[:half], f"{suffix}.0", limit)
        yield from self._fitted(batch, rows[half:], f"{suffix}.1", limit)

    def _publish(self, messages: list) -> None:
        """Publish and flush, again with the same ids after a failure, until acked or stopping."""
        delay = 0.1
        while True:
            t0 = time.perf_counter()
            try:
                for district, data, msg_id, headers, _ in messages:
                    self.stream.publish(district, data, msg_id, headers)
                acks = self.stream.flush(self.config.publish_timeout_s)
                break
            except StreamError as exc:
                self.metrics.publish_retries += 1
                log.warning("publish of a group to the stream failed (%s); again in %.1f s", exc, delay)
            if self._stopping.wait(delay):
                raise WorkerStoppedError("stopping while a group was not acknowledged by the stream")
            delay = min(delay * 2.0, self.config.retry_max_s)
        self.metrics.add_latency(time.perf_counter() - t0)
        for (district, _, _, headers, n), ack in zip(messages, acks, strict=True):
            if headers.get(KIND) == REGISTRY:
                self.metrics.registry_records += 0 if ack.duplicate else 1
            elif ack.duplicate:
                self.metrics.batches_duplicate += 1
            else:
                self.metrics.batches_out += 1
                self.metrics.records_out[district] = self.metrics.records_out.get(district, 0) + n

    def _refuse(self, rows: np.ndarray, reason: str, detail: str, live: bool) -> None:
        """Count refused rows and, live, dead-letter their messages (``outside_grid``, with ``detail``)."""
        if not len(rows):
            return
        self.metrics.dead_letters[reason] = self.metrics.dead_letters.get(reason, 0) + len(rows)
        if live:
            rejection = reject(Reason.OUTSIDE_GRID, f"{detail} ({reason})", b"", "lon" if reason == "outside_city"
                               else "device")
            self.ingestor.refuse_records([(int(r), rejection) for r in rows])


    # -- the registry database (module docstring) ------------------------------------------------------------

    def _watch_registry(self) -> None:
        """Queue ``$twin/registry`` records for the database's new versions: now, then every ``registry_poll_s``."""
        follow_versions(self.queue_registry_changes, self._stopping, self.config.registry_poll_s)

    def queue_registry_changes(self, upto: int | None = None) -> int:
        """Queue ``$twin/registry`` control records for the changes after those queued already, up to ``upto``
        (default: the database's version now), `REGISTRY_CHUNK` changes a record; the version queued up to."""
        latest = self.registry_store.version() if upto is None else int(upto)
        start = max(self._registry_queued, self.registry.version)
        while start < latest:
            to = min(latest, start + REGISTRY_CHUNK)
            body = json.dumps({"to": to}).encode()
            if not self.ingestor.put_control(control_message(REGISTRY_TOPIC, body, time.time())):
                log.warning("registry changes up to version %d not queued: the ingest loop is behind", to)
                break
            self._registry_queued = start = to
        return self._registry_queued

    def _on_control(self, topic: str, payload: bytes, received_at: float, after: LogPosition) -> None:
        """The ingest loop's control records (live): a registry change is applied and published before the group's
        data; if it cannot be published the worker stops publishing (``broken``) so that no batch overtakes it."""
        if self.broken is not None:
            return
        try:
            self._replay_control(topic, payload, publish=True)
        except WorkerStoppedError:
            self.broken = "stopping while a registry change was not acknowledged by the stream"
        except Exception as exc:  # the database failed: the raw log keeps the record, a restart applies it
            self.broken = f"registry change not applied: {exc or type(exc).__name__}"
            log.error("the worker stops publishing: %s (the raw log keeps everything; restart it)", self.broken)

    def _replay_control(self, topic: str, payload: bytes, *, publish: bool) -> None:
        """Apply a logged ``$twin/registry`` record (live or in recovery) and, with ``publish``, publish its
        ``registry`` records and wait for their acknowledgement. Other control topics are passed over."""
        if topic != REGISTRY_TOPIC or self.follower is None:
            return
        try:
            to = int(json.loads(payload)["to"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("a $twin/registry record of the raw log is damaged (%r): passed over", exc)
            return
        start = int(self.registry.version)
        if to <= start:
            return
        changes = [c.device for c in self.registry_store.changes_since(start, upto=to)]
        parts = self.follower.apply(changes, to)
        self.metrics.registry_changes += len(changes)
        self.metrics.registry_version = int(self.registry.version)
        log.info("registry version %d -> %d: %d changes", start, to, len(changes))
        if publish:
            self._publish(self._registry_messages(start, to, parts))

    def _registry_messages(self, start: int, to: int, parts: Mapping[str, list]) -> list:
        """The ``registry`` records of one version step, one or more per district (`ingest.stream.registry`)."""
        out = []
        for district, devices in parts.items():
            for step in registry_steps(start, to, devices, self.stream.max_bytes):
                data, msg_id, headers = step.message(district)
                if len(data) > self.stream.max_bytes - HEADROOM:  # one device's entry alone is too large
                    self.metrics.dead_letters["registry_too_large"] = \
                        self.metrics.dead_letters.get("registry_too_large", 0) + 1
                    log.error("registry versions %d-%d for %s encode to %d bytes, more than the stream takes: not "
                              "published (the district twin sees a gap)", step.start, step.to, district, len(data))
                    continue
                out.append((district, data, msg_id, headers, 0))
        return out


def checkpoint_path(raw_log_dir: Path) -> Path:
    """Where the worker whose raw log is in ``raw_log_dir`` keeps its checkpoint (beside that folder)."""
    raw_log_dir = Path(raw_log_dir)
    return raw_log_dir.parent / f"{raw_log_dir.name}.{CHECKPOINT}"


def registry_at_checkpoint(raw_log_dir: Path, store) -> Registry:
    """The registry a worker following ``store`` (`ingest.registry_db.RegistryStore`) starts from: as it was at its
    checkpoint's ``warm`` position (recovery replays the logged changes after it), or as it is now for a worker
    without a checkpoint (or with one that does not name a version). Raises ValueError for a damaged checkpoint."""
    found = Checkpoint.load(checkpoint_path(raw_log_dir))
    return store.registry(at=found.registry if found is not None and found.registry >= 0 else None)


# -- routing from the registry -------------------------------------------------------------------------------


def movers_of(registry: Registry) -> frozenset[str]:
    """Ids of the registry's moving devices (kinds ``MOVER_KINDS``)."""
    return frozenset(d.id for d in registry.devices.values() if d.kind in MOVER_KINDS)


def static_districts(registry: Registry, raster: DistrictRaster,
                     explicit: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Device id -> district code for the registry's devices, and the ids of static devices left without one.

    In this order: ``explicit`` (e.g. the city manifest's map), the device's ``district`` property, the district
    its registered geometry lies in (a Point, or the mean of a Polygon's outer ring). Movers get a district only
    from the first two (their home, for records without a position).
    """
    explicit = dict(explicit or {})
    out: dict[str, str] = {}
    missing: list[str] = []
    pending: list[tuple[str, float, float]] = []
    for dev in registry.devices.values():
        code = explicit.get(dev.id) or dev.properties.get("district")
        if code:
            out[dev.id] = str(code)
        elif dev.kind not in MOVER_KINDS:
            point = anchor(dev.geometry)
            if point is None:
                missing.append(dev.id)
            else:
                pending.append((dev.id, *point))
    if pending:
        ids, lon, lat = zip(*pending, strict=True)
        for dev_id, code in zip(ids, raster.codes_of(np.array(lon), np.array(lat)).tolist(), strict=True):
            if code:
                out[dev_id] = code
            else:
                missing.append(dev_id)
    return out, missing


__all__ = ["Checkpoint", "IngestWorker", "WorkerConfig", "WorkerMetrics", "WorkerStoppedError", "checkpoint_path",
           "movers_of", "registry_at_checkpoint", "static_districts"]
