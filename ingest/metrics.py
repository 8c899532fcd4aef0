"""Ingest counters: received, accepted, duplicates, rejected by reason, queue depth, log fsync latency."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ingest.rejection import Reason


@dataclass
class Metrics:
    """Counters updated by the ingest loop (one thread); ``snapshot`` may be called from any thread.

    ``received``, ``accepted`` and ``rejected`` count messages; ``accepted_records`` and ``duplicates``
    count records; ``ignored`` counts NMEA sentences/epochs skipped on purpose.
    """

    received: int = 0
    accepted: int = 0
    accepted_records: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Reason})
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

    def count_rejection(self, reason: Reason) -> None:
        """Count one rejected message."""
        self.rejected[reason.value] += 1

    def add_commit(self, seconds: float, records: int) -> None:
        """Record one group commit of ``records`` messages that took ``seconds`` [s]."""
        ms = seconds * 1000.0
        self.log_commits += 1
        self.log_records += records
        self.fsync_last_ms = ms
        self.fsync_total_ms += ms
        self.fsync_max_ms = max(self.fsync_max_ms, ms)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy (``fsync_mean_ms`` derived)."""
        with self._lock:
            out = {
                k: (dict(v) if isinstance(v, dict) else v)
                for k, v in self.__dict__.items()
                if not k.startswith("_")
            }
        out["rejected_total"] = sum(out["rejected"].values())
        out["fsync_mean_ms"] = self.fsync_total_ms / self.log_commits if self.log_commits else 0.0
        return out
