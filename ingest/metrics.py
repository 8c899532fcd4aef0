"""Ingest counters: received, accepted, duplicates, rejected by reason, queue depth, log fsync latency.

Every message has exactly one outcome, and the message counters add up by construction:

    received = accepted + duplicates + rejected_total

``received`` is not a counter of its own but that sum, and the outcome methods (``accept``,
``duplicate``, ``refuse``) each count one message under one outcome. A message refused after it was
accepted -- by the twin (``outside_grid``, a refused acknowledgement) -- is *moved* from accepted to
rejected by ``reclassify``, so the identity holds then too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ingest.rejection import Reason

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Counters updated by the ingest loop (one thread); ``snapshot`` may be called from any thread (its
    ``received`` is the sum of the outcomes it copied, so it adds up whenever it is taken).

    Messages: ``accepted`` (new records, or only NMEA sentences skipped on purpose), ``duplicates`` (every
    record already seen: a redelivery), ``rejected`` by reason, and ``received``, their sum. Records:
    ``accepted_records`` (new records delivered), ``duplicate_records`` (records recognised as already
    seen, in duplicate messages and inside accepted ones), ``ignored`` (NMEA sentences/epochs skipped on
    purpose).
    """

    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Reason})
    accepted_records: int = 0
    duplicate_records: int = 0
    ignored: int = 0
    internal_errors: int = 0
    deadletters: int = 0
    sink_errors: int = 0
    log_errors: int = 0
    log_records: int = 0
    log_commits: int = 0
    fsync_last_ms: float = 0.0
    fsync_max_ms: float = 0.0
    fsync_total_ms: float = 0.0
    queue_depth: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def received(self) -> int:
        """Messages received: accepted + duplicates + rejected, whatever happened to them."""
        return self.accepted + self.duplicates + sum(self.rejected.values())

    # -- the one outcome of each message -------------------------------------------------------------

    def accept(self, records: int, duplicate_records: int = 0, ignored: int = 0) -> None:
        """One accepted message: ``records`` new records, ``duplicate_records`` already seen, ``ignored``
        NMEA sentences skipped on purpose."""
        self.accepted += 1
        self.accepted_records += records
        if duplicate_records:
            self.duplicate_records += duplicate_records
        if ignored:
            self.ignored += ignored

    def duplicate(self, records: int) -> None:
        """One message whose ``records`` records were all seen before (a redelivery)."""
        self.duplicates += 1
        self.duplicate_records += records

    def refuse(self, reason: Reason) -> None:
        """One message refused by the admission step."""
        self.rejected[reason.value] += 1

    def reclassify(self, reason: Reason, records: int = 1) -> None:
        """One accepted message refused later (by the twin): moved from ``accepted`` to ``rejected[reason]``,
        and its ``records`` refused records taken off ``accepted_records``. Call it once per message, however
        many of its records were refused (``received`` does not change)."""
        with self._lock:
            if self.accepted > 0:
                self.accepted -= 1
                self.accepted_records = max(0, self.accepted_records - records)
            else:  # not a message we accepted (a caller's bug): counted as a refused message, not lost
                log.warning("reclassify(%s) with no accepted message: counted as a new rejected message", reason)
            self.rejected[reason.value] += 1

    def count_rejection(self, reason: Reason) -> None:
        """A rejection decided after admission, of a one-record message: ``reclassify(reason, 1)``.

        Kept for the callers of before issue 13 (``Ingestor.reject``, the service during replay); new code
        calls ``reclassify`` once per message."""
        self.reclassify(reason, 1)

    # -- the log ---------------------------------------------------------------------------------------

    def add_commit(self, seconds: float, records: int) -> None:
        """Record one group commit of ``records`` messages that took ``seconds`` [s]."""
        ms = seconds * 1000.0
        self.log_commits += 1
        self.log_records += records
        self.fsync_last_ms = ms
        self.fsync_total_ms += ms
        self.fsync_max_ms = max(self.fsync_max_ms, ms)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy (``received``, ``rejected_total`` and ``fsync_mean_ms`` derived)."""
        with self._lock:
            out = {
                k: (dict(v) if isinstance(v, dict) else v)
                for k, v in self.__dict__.items()
                if not k.startswith("_")
            }
        out["rejected_total"] = sum(out["rejected"].values())
        out["received"] = out["accepted"] + out["duplicates"] + out["rejected_total"]
        out["fsync_mean_ms"] = self.fsync_total_ms / self.log_commits if self.log_commits else 0.0
        return out
