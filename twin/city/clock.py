"""The city clock: one tick record into every district partition every ``tick_s`` of twin time.

docs/city-deployment.md section 6, docs/guides/city-tier.md. District twins run ``on_tick`` at every tick record
of their partition (``Twin-Kind: tick``, ``Twin-Time: t``, empty data: `ingest.stream.base.tick_headers`), so all
districts tick at the same twin times, and a replay of the stream reproduces the ticks.

- **Tick times** are whole multiples of ``tick_s`` of twin time (``t = k * tick_s``). The clock reads a
  `twin.live.service.TwinClock` (wall time, or replay time at ``speed`` from ``start``) and publishes every tick
  that has come due since its last one, in order (at most ``max_behind``: when it falls further behind, e.g. after
  a long stall, the older ticks are skipped and counted). Its first tick is the one due when it starts.
- **Message ids** are ``tick:<partition>:<t>`` (`ingest.stream.base.tick_msg_id`), so the stream stores each tick
  of each partition once: a clock restarted within the stream's duplicate window publishes the tick it may have
  published before it stopped, and the stream drops the copy. The same holds if two clocks run at once on the
  same twin time (e.g. two city tiers by mistake): every tick is still stored once per partition. Two clocks on
  *different* times (two replays with other starts) would interleave their ticks: run one clock per city
  (``twin city-tier --no-clock`` runs a tier without one).
- **Failures** (the stream refuses a publish, or its acknowledgements do not come within ``flush_timeout_s``) are
  counted and logged, and the clock keeps running: the ticks not acknowledged are published again at the next
  attempt (same ids, so nothing is doubled), ``retry_s`` later.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.stream.base import Stream, StreamError, check_partition, tick_headers, tick_msg_id

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 5.0
"""Longest wait for the stream's acknowledgements of one round of ticks [s]."""
MAX_BEHIND = 10
"""Most ticks published in one round when the clock has fallen behind; older ones are skipped [1]."""
RETRY_S = 1.0
"""Wall time between attempts after a failure [s]."""
MAX_WAIT_S = 5.0
"""Longest single wait of the clock's thread, so that a changed clock is noticed [s]."""


@dataclass
class ClockStats:
    """Counters of a city clock."""

    ticks: int = 0
    """Ticks acknowledged in every partition [1]."""
    records: int = 0
    """Tick records acknowledged (ticks x partitions) [1]."""
    duplicates: int = 0
    """Tick records the stream already held (a restart, or a second clock) [1]."""
    failures: int = 0
    """Rounds that failed (publish refused or acknowledgements timed out) [1]."""
    skipped: int = 0
    """Ticks skipped because the clock was more than ``max_behind`` ticks behind [1]."""
    last_tick: float | None = None
    """Twin time of the last acknowledged tick [unix s]."""
    last_error: str = ""


class CityClock:
    """Publishes ticks into every partition of a stream (module docstring).

    Parameters
    ----------
    stream : ingest.stream.base.Stream
        The stream (its ``publish`` and ``flush`` are used from the clock's thread only).
    partitions : sequence of str
        The district partitions (``310101``, ``310115-t2``...).
    tick_s : float
        Twin time between ticks [s].
    clock : callable
        Twin time [unix s]; a `twin.live.service.TwinClock` (its ``speed`` turns twin seconds into wall seconds).
    flush_timeout_s, retry_s : float
        See `FLUSH_TIMEOUT_S`, `RETRY_S` [s].
    max_behind : int
        See `MAX_BEHIND`.
    """

    def __init__(self, stream: Stream, partitions: Sequence[str], tick_s: float,
                 clock: Callable[[], float] = time.time, *, flush_timeout_s: float = FLUSH_TIMEOUT_S,
                 retry_s: float = RETRY_S, max_behind: int = MAX_BEHIND) -> None:
        if not (tick_s > 0 and math.isfinite(tick_s)):
            raise ValueError(f"tick_s must be a positive number of seconds, got {tick_s!r}")
        if not partitions:
            raise ValueError("the city clock needs at least one partition")
        if max_behind < 1:
            raise ValueError(f"max_behind must be at least 1, got {max_behind}")
        self.partitions = tuple(check_partition(p) for p in partitions)
        self.stream, self.tick_s, self.clock = stream, float(tick_s), clock
        self.flush_timeout_s, self.retry_s, self.max_behind = flush_timeout_s, retry_s, max_behind
        self.stats = ClockStats()
        self._next_k: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def speed(self) -> float:
        """Twin seconds per wall second (the clock's ``speed``, 1 for a plain time function)."""
        return float(getattr(self.clock, "speed", 1.0))

    def tick_time(self, k: int) -> float:
        """Twin time of tick number ``k`` [unix s]."""
        return k * self.tick_s

    @property
    def next_tick(self) -> float | None:
        """Twin time of the next tick to publish [unix s]; None before the first round."""
        return None if self._next_k is None else self.tick_time(self._next_k)

    def publish_ticks(self, times: Sequence[float]) -> None:
        """Publish the ticks at ``times`` into every partition and wait for the acknowledgements (one flush).
        Raises `ingest.stream.base.StreamError` (nothing lost: publishing the same ticks again is safe)."""
        for t in times:
            headers = tick_headers(t)
            for partition in self.partitions:
                self.stream.publish(partition, b"", tick_msg_id(partition, t), headers)
        acks = self.stream.flush(self.flush_timeout_s)
        self.stats.records += len(acks)
        self.stats.duplicates += sum(1 for a in acks if a.duplicate)

    def step(self, now: float | None = None) -> int:
        """Publish every tick due at twin time ``now`` (default: the clock's) not yet acknowledged; the number of
        ticks acknowledged (0 when none was due or the round failed: see `stats`)."""
        now = self.clock() if now is None else now
        due = math.floor(now / self.tick_s)
        if self._next_k is None:
            self._next_k = due
        if due < self._next_k:
            return 0
        first = self._next_k
        if due - first + 1 > self.max_behind:
            first = due - self.max_behind + 1
            self.stats.skipped += first - self._next_k
            log.warning("the city clock fell %d ticks behind: skipped %d", due - self._next_k + 1, first - self._next_k)
            self._next_k = first
        times = [self.tick_time(k) for k in range(first, due + 1)]
        try:
            self.publish_ticks(times)
        except (StreamError, ValueError) as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            if self.stats.failures == 1 or self.stats.failures % 100 == 0:
                log.warning("city clock: ticks %s not acknowledged (%d failures so far): %s", times,
                            self.stats.failures, exc)
            return 0
        self._next_k = due + 1
        self.stats.ticks += len(times)
        self.stats.last_tick = times[-1]
        return len(times)

    def wait_s(self) -> float:
        """Wall time until the next tick is due [s] (0 when it is due)."""
        if self._next_k is None:
            return 0.0
        return min(MAX_WAIT_S, max(0.0, (self.tick_time(self._next_k) - self.clock()) / self.speed))

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set (the body of the clock's thread)."""
        while not stop.is_set():
            failures = self.stats.failures
            self.step()
            stop.wait(self.retry_s if self.stats.failures > failures else self.wait_s())

    def start(self) -> CityClock:
        """Run in a daemon thread (``city-clock``)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="city-clock", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = FLUSH_TIMEOUT_S + 5.0) -> None:
        """Stop the thread (a round in progress ends within its flush timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the city clock did not stop within %.0f s", timeout_s)
            self._thread = None
