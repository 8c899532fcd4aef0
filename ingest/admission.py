"""The admission step: one message in, its new records (a ``Batch``) or a ``Rejection`` out. No I/O.

``Admission.admit(topic, payload, received_at)`` does, once each and in this order (cheapest first):

1. route the topic (family, device, sensor kind) -- the decoders get the device and kind from the route;
2. check the size;
3. look the device up in the registry, once, and check it is registered with a kind the topic allows;
4. take a rate-limit token (not for redeliveries);
5. parse the payload once (JSON: the parsed document is handed to the decoder) and decode it;
6. check the records with the device looked up in 3 (time skew, registered quantities);
7. drop records already seen (dedupe).

Every refusal is a ``Refusal`` raised by the check or decoder that finds it and turned into a
``Rejection`` here; any other exception is a bug, counted in ``internal_errors`` and rejected as
``bad_syntax`` (told apart by type, not by message). ``admit`` never raises.

State, none of it I/O: the registry (read only), the token buckets, the dedupe memory and the counters
(``metrics``: received, accepted, accepted_records, duplicates, ignored, rejected by reason,
internal_errors). The ingest loop (``ingest.pipeline.Ingestor``) logs, acknowledges and dead-letters
around it; the offline demo, replay and tests call it directly.
"""

from __future__ import annotations

import logging

from ingest.batch import Batch
from ingest.decoders import Row, ack_records, beidou_records, load_json, row_batch, senml_records
from ingest.dedupe import Deduper
from ingest.metrics import Metrics
from ingest.registry import Registry
from ingest.rejection import Reason, Refusal, Rejection, reject
from ingest.routing import Route, route
from ingest.validation import (
    Limits,
    TokenBuckets,
    check_device,
    check_quantities,
    check_quantity,
    check_rate,
    check_size,
    check_time,
    check_times,
)

log = logging.getLogger(__name__)

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
    """

    def __init__(
        self,
        registry: Registry | None,
        limits: Limits | None = None,
        *,
        prefix: str = "city/",
        dedupe_keys: int = 2_000_000,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or Limits()
        self.prefix = prefix
        self.buckets = TokenBuckets(self.limits.rate_per_s, self.limits.burst)
        self.deduper = Deduper(dedupe_keys)
        self.metrics = metrics if metrics is not None else Metrics()

    def admit(self, topic: str, payload: bytes, received_at: float, redelivered: bool = False) -> Batch | Rejection:
        """The new records of one message (an empty ``Batch`` when all were duplicates or skipped NMEA
        sentences), or why it is refused. Counts it. Never raises.

        ``received_at`` is the receive time [s since epoch]; ``redelivered`` messages (broker
        redeliveries, replays of the raw log) are not charged to the rate limit.
        """
        out = self.admit_fast(topic, payload, received_at, redelivered)
        return row_batch(out) if type(out) is tuple else out

    def admit_fast(
        self, topic: str, payload: bytes, received_at: float, redelivered: bool = False
    ) -> Batch | Row | Rejection:
        """``admit`` returning a one-record SenML message as a plain ``Row`` (device, t, quantity, value):
        the ingest loop's fast path, no numpy arrays per message. ``batch_of`` gathers rows and batches."""
        m = self.metrics
        m.received += 1
        try:
            out = self._decide(topic, payload, received_at, redelivered)
        except Refusal as bad:
            out = bad.rejection(payload)
        except Exception as exc:  # a bug of ours, not bad input
            m.internal_errors += 1
            log.exception("admission failed on topic %.120s", topic)
            out = reject(Reason.BAD_SYNTAX, f"internal error: {exc!r}", bytes(payload), "payload")
        if type(out) is tuple:
            m.accepted += 1
            if self.deduper.admit_one(out[0], out[1], out[2]):
                m.accepted_records += 1
                return out
            m.duplicates += 1
            return Batch.empty()
        if type(out) is Rejection:
            m.count_rejection(out.reason)
            return out
        m.accepted += 1
        m.ignored += out.ignored
        fresh, dups = self.deduper.filter(out)
        m.duplicates += dups
        m.accepted_records += len(fresh)
        return fresh

    def _decide(self, topic: str, payload: bytes, received_at: float, redelivered: bool) -> Row | Batch:
        """Checked records of one message, before dedupe; raises ``Refusal``."""
        r = route(topic, self.prefix)
        if r is None:
            raise Refusal(Reason.BAD_SCHEMA, f"no inbound topic pattern matches {topic[:120]!r}", "topic")
        check_size(payload, self.limits)
        device = None
        if self.registry is not None:
            device = self.registry.get(r.device)  # the one registry look-up of the message
            check_device(r, device)
        if not redelivered:
            check_rate(r, self.buckets, received_at)
        records = decode(r, payload, received_at)
        if type(records) is tuple:
            check_time(records[1], received_at, self.limits)
            if device is not None:
                check_quantity(r, device, records[2])
            return records
        check_times(records.t, received_at, self.limits)
        if device is not None and r.family == "sensor":
            check_quantities(r, device, records.quantity)
        return records


def decode(r: Route, payload: bytes, received_at: float) -> Row | Batch:
    """The records of a routed payload, parsed once; raises ``Refusal`` for bad input."""
    if r.family == "sensor":
        return senml_records(load_json(payload), kind=r.sensor_kind, device=r.device, received_at=received_at)
    if r.family == "beidou":
        return beidou_records(payload, device=r.device, received_at=received_at)
    return ack_records(load_json(payload), unit=r.device)


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
