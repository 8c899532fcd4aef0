"""The admission step: one message in, its new records (a ``Batch``) or a ``Rejection`` out. No I/O.

``Admission.admit(topic, payload, received_at)`` does, once each and in this order (cheapest first):

1. route the topic (family, device, sensor kind) -- the decoders get the device and kind from the route;
2. check the size;
3. look the device up in the registry, once, and check it is registered, active (a retired device is refused
   ``retired_device``: its retired entry is looked up on that refusal path only) and of a kind the topic allows
   (a unit's task answer as its acks: a registered ``unit``; a citizen report's source is no registry device
   and is not looked up -- the twin checks sources);
4. the device's refusal guard: a device whose recent messages were mostly refused is refused here,
   before any parsing (``rate_limited``; ``ingest.validation.RateLimiter``);
5. parse the payload once (JSON: the parsed document is handed to the decoder) and decode it;
6. check the records with the device looked up in 3 (time skew, registered quantities);
7. a message whose records were all seen before is a duplicate (a redelivery): counted, never charged;
8. take a rate-limit token, on the device's own clock (the latest time of the message's records);
9. remember the new records (dedupe) and return them.

Every refusal is a ``Refusal`` raised by the check or decoder that finds it and turned into a
``Rejection`` here; any other exception is a bug, counted in ``internal_errors`` and rejected as
``bad_syntax`` (told apart by type, not by message). ``admit`` never raises.

Each message has exactly one outcome, counted in one place (``_count``): accepted, duplicate or
rejected by reason, so ``received = accepted + duplicates + rejected`` (``ingest.metrics``).

The same rule holds live and on replay: nothing depends on whether a message is a first delivery, a
broker redelivery or a replay of the raw log (the ``redelivered`` argument is accepted and ignored), only
on the messages in log order and their logged receive times.

State, none of it I/O: the registry (read here; it changes at run time only on the thread that admits, between
messages: `ingest.registry.Registry.apply`, docs/guides/devices.md), the dedupe memory with the rate state
(``deduper``, ``deduper.rates``) and the counters (``metrics``). The ingest loop
(``ingest.pipeline.Ingestor``) logs, acknowledges and dead-letters around it; the offline demo, replay and
tests call it directly.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from ingest.batch import Batch
from ingest.decoders import (
    SHALLOW_DEPTH,
    Row,
    ack_records,
    beidou_records,
    load_json,
    report_records,
    row_batch,
    senml_payload_records,
    senml_records,
    task_records,
)
from ingest.dedupe import Deduper
from ingest.metrics import Metrics
from ingest.registry import Device, Registry, terminal_phone
from ingest.rejection import Reason, Refusal, Rejection, reject
from ingest.routing import Route, route
from ingest.validation import (
    Limits,
    RateLimiter,
    check_device,
    check_guard,
    check_quantities,
    check_quantity,
    check_rate,
    check_size,
    check_time,
    check_times,
    rate_refusal,
)

log = logging.getLogger(__name__)


class _Fresh(NamedTuple):
    """An accepted message of several records (or none): the new ones, and how many were already seen."""

    batch: Batch
    duplicate_records: int
    ignored: int


class _Duplicate(NamedTuple):
    """A message whose ``records`` records were all seen before."""

    records: int


class Admission:
    """Route, check, decode and dedupe messages; see the module docstring.

    Parameters
    ----------
    registry : Registry or None
        None accepts any device (no device, kind or quantity checks).
    limits : Limits
        Size, time skew and rate limits.
    prefix : str
        Topic prefix, with its trailing slash.
    dedupe_keys : int
        Records remembered for duplicate detection [record].
    metrics : Metrics or None
        Where to count (the ingest loop shares its own); a fresh one if None.
    report_sources : frozenset of str or None
        The citizen-report sources (``{prefix}reports/{source}``) admitted; others are refused ``unknown_source``
        before any state is kept for them (a source is no registry device, so without this list every new
        source name would get a rate-limit entry). None admits any source (the twin then checks it).
    """

    def __init__(
        self,
        registry: Registry | None,
        limits: Limits | None = None,
        *,
        prefix: str = "city/",
        dedupe_keys: int = 2_000_000,
        metrics: Metrics | None = None,
        report_sources: frozenset[str] | None = None,
    ) -> None:
        self.registry = registry
        self.report_sources = report_sources
        self.limits = limits or Limits()
        self.prefix = prefix
        self._deduper = Deduper(dedupe_keys, rates=RateLimiter(self.limits.rate_per_s, self.limits.burst))
        self.metrics = metrics if metrics is not None else Metrics()
        self._rate_state: list[float] | None = None  # the device state of the message being admitted

    def _retired(self, device_id: str) -> Device | None:
        """The retired entry of a device the registry's active table does not hold (the refusal path only)."""
        registry = self.registry
        return registry.retired.get(device_id) if isinstance(registry, Registry) else None

    @property
    def deduper(self) -> Deduper:
        """The dedupe memory, with the rate state (``deduper.rates``)."""
        return self._deduper

    @deduper.setter
    def deduper(self, deduper: Deduper) -> None:
        if deduper.rates is None:  # a deduper built elsewhere takes over our rate state
            deduper.rates = self._deduper.rates
        self._deduper = deduper

    @property
    def rates(self) -> RateLimiter:
        """The per-device rate state (``ingest.validation.RateLimiter``)."""
        rates = self._deduper.rates
        assert rates is not None  # set in __init__ and kept by the setter
        return rates

    def admit(self, topic: str, payload: bytes, received_at: float, redelivered: bool = False) -> Batch | Rejection:
        """The new records of one message (an empty ``Batch`` when all were duplicates or skipped NMEA
        sentences), or why it is refused. Counts it. Never raises.

        ``received_at`` is the receive time [s since epoch], as logged. ``redelivered`` is ignored: broker
        redeliveries and replays of the raw log are admitted by the same rule as first deliveries (their
        records are recognised as duplicates, which cost nothing).
        """
        out = self.admit_fast(topic, payload, received_at, redelivered)
        return row_batch(out) if type(out) is tuple else out

    def admit_fast(
        self, topic: str, payload: bytes, received_at: float, redelivered: bool = False
    ) -> Batch | Row | Rejection:
        """``admit`` returning a one-record SenML message as a plain ``Row`` (device, t, quantity, value):
        the ingest loop's fast path, no numpy arrays per message. ``batch_of`` gathers rows and batches."""
        self._rate_state = None
        try:
            out = self._decide(topic, payload, received_at)
        except Refusal as bad:
            out = bad.rejection(payload)
        except Exception as exc:  # a bug of ours, not bad input
            self.metrics.internal_errors += 1
            log.exception("admission failed on topic %.120s", topic)
            out = reject(Reason.BAD_SYNTAX, f"internal error: {exc!r}", bytes(payload), "payload")
        return self._count(out)

    def _count(self, out: Row | _Fresh | _Duplicate | Rejection) -> Batch | Row | Rejection:
        """The one place a message's outcome is counted, exactly once."""
        m = self.metrics
        if type(out) is tuple:  # a Row: one new record (the common case first)
            m.accept(1)
            return out
        if isinstance(out, _Fresh):
            m.accept(len(out.batch), out.duplicate_records, out.ignored)
            return out.batch
        if isinstance(out, _Duplicate):
            m.duplicate(out.records)
            return Batch.empty()
        assert isinstance(out, Rejection)
        if self._rate_state is not None and self._deduper.rates is not None:  # refused after the guard
            self._deduper.rates.refused(self._rate_state)
        m.refuse(out.reason)
        return out

    def _decide(self, topic: str, payload: bytes, received_at: float) -> Row | _Fresh | _Duplicate:
        """The outcome of one message, or raises ``Refusal``; remembers the new records."""
        r = route(topic, self.prefix)
        if r is None:
            raise Refusal(Reason.BAD_SCHEMA, f"no inbound topic pattern matches {topic[:120]!r}", "topic")
        check_size(payload, self.limits)
        device = None
        if self.registry is not None and r.family not in UNREGISTERED_FAMILIES:
            device = self.registry.get(r.device)  # the one registry look-up of the message
            check_device(r, device if device is not None else self._retired(r.device))
        if r.family == "report" and self.report_sources is not None and r.device not in self.report_sources:
            raise Refusal(Reason.UNKNOWN_SOURCE, f"report source {r.device[:64]!r} is not one of the twin's "
                          f"sources: {', '.join(sorted(self.report_sources))}", "topic")
        deduper = self._deduper
        limiter = deduper.rates if deduper.rates is not None and deduper.rates.enabled else None
        st: list[float] = []
        if limiter is not None:
            st = check_guard(r, limiter, received_at)  # refused here: the guard is not charged again
            self._rate_state = st
        records = decode(r, payload, received_at, device)
        if type(records) is tuple:  # one SenML record
            dev, t, q, _ = records
            check_time(t, received_at, self.limits)
            if device is not None:
                check_quantity(r, device, q)
            if deduper.seen_one(dev, t, q):
                return _Duplicate(1)
            if limiter is not None and not limiter.charge(st, t, received_at):
                raise rate_refusal(r, limiter)
            deduper.remember_one(dev, t, q)
            return records
        check_times(records.t, received_at, self.limits)
        if device is not None and r.family == "sensor":
            check_quantities(r, device, records.quantity)
        n = len(records)
        if n == 0:  # only NMEA sentences skipped on purpose: accepted, nothing to rate, a guard token taken
            if limiter is not None:
                limiter.refused(st)
            return _Fresh(records, 0, records.ignored)
        if deduper.all_seen(records):
            return _Duplicate(n)
        if limiter is not None:
            check_rate(r, limiter, st, float(records.t.max()), received_at)
        fresh, dups = deduper.filter(records)
        return _Fresh(fresh, dups, records.ignored)


UNREGISTERED_FAMILIES = frozenset({"report"})
"""Families whose topic names no registry device: a citizen report's source (the twin checks sources itself)."""


def decode(r: Route, payload: bytes, received_at: float, device: Device | None = None) -> Row | Batch:
    """The records of a routed payload, parsed once; raises ``Refusal`` for bad input. ``device``, the registry's
    entry of the topic's device (None: unchecked), gives a JT/T 808 frame the terminal phone number it must carry."""
    family = r.family
    if family == "sensor":
        if len(payload) > 2 * SHALLOW_DEPTH:  # a pack: parsed once, its nesting proved by the pack fast path
            return senml_payload_records(payload, kind=r.sensor_kind, device=r.device, received_at=received_at)
        return senml_records(load_json(payload), kind=r.sensor_kind, device=r.device, received_at=received_at)
    if family == "beidou":
        terminal = terminal_phone(device) if device is not None and payload[:1] == b"\x7e" else None
        return beidou_records(payload, device=r.device, received_at=received_at, terminal=terminal)
    if family == "ack":
        return ack_records(load_json(payload), unit=r.device)
    if family == "task":
        return task_records(load_json(payload), unit=r.device)
    if family == "report":
        return report_records(load_json(payload), source=r.device)
    raise ValueError(f"no decoder for family {family!r}")  # a routing bug, not bad input


def batch_with_origins(items: list[Batch | Row]) -> tuple[Batch, np.ndarray]:
    """``batch_of(items)`` and, for each of its rows, the index in ``items`` of the message it came from.

    For a caller that must trace a record refused later (by the twin) back to its message: its raw payload
    for the dead letter, and ``Metrics.reclassify`` once per message."""
    sizes = np.fromiter((1 if type(item) is tuple else len(item) for item in items), dtype=np.int64, count=len(items))
    return batch_of(items), np.repeat(np.arange(len(items)), sizes)


def batch_of(items: list[Batch | Row]) -> Batch:
    """One batch of what ``Admission.admit_fast`` accepted for a group of messages, in order."""
    out: list[Batch] = []
    rows: list[Row] = []
    for item in items:
        if type(item) is tuple:
            rows.append(item)
            continue
        if rows:
            out.append(_rows_batch(rows))
            rows = []
        out.append(item)
    if rows:
        out.append(_rows_batch(rows))
    return Batch.concat(out)


def _rows_batch(rows: list[Row]) -> Batch:
    device, t, quantity, value = zip(*rows, strict=True)
    return Batch.build(len(rows), device=list(device), t=t, quantity=list(quantity), value=value)
