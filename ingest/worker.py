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
from ingest.pipeline import IngestConfig, Ingestor, Source
from ingest.rawlog import LOG_START, LogPosition, RawLog, read_log
from ingest.registry import Registry
from ingest.rejection import Reason, Rejection, reject
from ingest.stream.base import BATCH, KIND, Stream, StreamError, check_partition
from ingest.stream.codec import encode_batch

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.json"
MOVER_KINDS = ("vehicle", "unit")
"""Registry kinds routed by their position."""
WARM_S = 30.0
"""Default of ``WorkerConfig.warm_s`` [s]."""
HEADROOM = 1024
"""Bytes of a stream record kept for its headers [byte]."""
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
    """

    epoch: str
    acked: LogPosition
    attempt: LogPosition
    warm: LogPosition = LOG_START

    def position_id(self, position: LogPosition) -> str:
        """The raw-log position part of a message id: ``<epoch>-<segment>-<offset>``."""
        return f"{self.epoch}-{position.segment}-{position.offset}"

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename). Not fsynced: a SIGKILL keeps it (the page cache
        survives the process); after a power loss an older checkpoint only means more is re-published."""
        doc = {"version": 1, "epoch": self.epoch, "acked": list(self.acked), "attempt": list(self.attempt),
               "warm": list(self.warm)}
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
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} is damaged: {exc!r}") from None
        return cls(epoch, acked, max(acked, attempt), min(warm, acked))

    @classmethod
    def fresh(cls, start: LogPosition = LOG_START) -> Checkpoint:
        """A new epoch whose stream holds nothing before ``start``."""
        return cls(secrets.token_hex(4), start, start, start)


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
    ingest : IngestConfig
        The ingest loop's settings (prefix, limits, group size).
    """

    worker_id: str
    publish_timeout_s: float = 10.0
    retry_max_s: float = 5.0
    compression: str | None = None
    warm_s: float = WARM_S
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
    """

    def __init__(self, source: Source, raw_log: RawLog, registry: Registry | None, stream: Stream,
                 router: DistrictRouter, config: WorkerConfig) -> None:
        check_partition(config.worker_id)
        for code in router.codes:
            check_partition(code)
        self.config = config
        self.stream = stream
        self.router = router
        self.raw_log = raw_log
        self.metrics = WorkerMetrics()
        self.ingestor = Ingestor(source, raw_log, registry, self._sink, config.ingest)
        self.checkpoint_path = raw_log.directory.parent / f"{raw_log.directory.name}.{CHECKPOINT}"
        self.checkpoint = self._open_checkpoint()
        self.broken: str | None = None
        """Why the worker stopped publishing (None while it works); its raw log keeps everything for a restart."""
        self._stopping = threading.Event()
        self._acked_history: deque[tuple[float, LogPosition]] = deque(maxlen=100_000)

    def _open_checkpoint(self) -> Checkpoint:
        found = Checkpoint.load(self.checkpoint_path)
        if found is not None:
            return found
        end = self.raw_log.position
        if end != LOG_START:
            log.warning("raw log %s has records but no checkpoint: all of it is published again (a new epoch: "
                        "records already in the stream may be stored twice)", self.raw_log.directory)
        fresh = Checkpoint.fresh()
        fresh.save(self.checkpoint_path)
        return fresh

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
                admission.admit_fast(rec.topic, rec.payload, rec.received_at, redelivered=True)
                n += 1
        finally:
            admission.metrics = counted
        return n

    def start(self) -> None:
        """Run the ingest loop in its thread (after ``recover``)."""
        self._stopping.clear()
        self.ingestor.start()

    def interrupt(self) -> None:
        """End a publish being retried (in ``recover`` or live) with ``WorkerStoppedError``; ``stop`` does it too."""
        self._stopping.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop taking messages, end a publish being retried, drain the ingest loop (see ``Ingestor.stop``)."""
        self._stopping.set()
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
        if messages:
            self.checkpoint = Checkpoint(self.checkpoint.epoch, self.checkpoint.acked, end, self.checkpoint.warm)
            self.checkpoint.save(self.checkpoint_path)
            self._publish(messages)
        self.checkpoint = Checkpoint(self.checkpoint.epoch, end, end, self._warm_position(end))
        self.checkpoint.save(self.checkpoint_path)

    def _warm_position(self, acked: LogPosition) -> LogPosition:
        """The newest acked position at least ``WARM_S`` old (see ``Checkpoint``)."""
        now = time.monotonic()
        history = self._acked_history
        history.append((now, acked))
        warm = self.checkpoint.warm
        while history and now - history[0][0] >= self.config.warm_s:
            warm = history.popleft()[1]
        return warm

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
        for (district, *_, n), ack in zip(messages, acks, strict=True):
            if ack.duplicate:
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
            point = _anchor(dev.geometry)
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


def _anchor(geometry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """A device's point for district lookup: its Point, or the mean vertex of a Polygon's outer ring [degree]."""
    if not geometry:
        return None
    coords = geometry.get("coordinates")
    try:
        if geometry.get("type") == "Point":
            return float(coords[0]), float(coords[1])
        if geometry.get("type") == "Polygon":
            ring = np.asarray(coords[0], dtype=float)[:, :2]
            return float(ring[:, 0].mean()), float(ring[:, 1].mean())
    except (TypeError, ValueError, IndexError):
        return None
    return None


__all__ = ["Checkpoint", "IngestWorker", "WorkerConfig", "WorkerMetrics", "WorkerStoppedError", "movers_of",
           "static_districts"]
