"""Waiting on events in tests (the project's rule: wait on events, never sleep and then count).

* ``wait_until(predicate, timeout_s, what)``: poll a condition until it holds; past the deadline the
  test fails with ``timed out after N s waiting for <what>``. Returns the predicate's (truthy) value.
* ``TickWatch(service)``: a tick listener on a ``LiveService`` (``service.listeners``); wait for the
  next n ticks or for a tick whose report satisfies a condition, with the same way out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str | Callable[[], str],
               interval_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; after ``timeout_s`` [s]
    fail the test with ``what`` (a string, or a callable giving one, e.g. the counters at that moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {_describe(what)}")
        time.sleep(interval_s)  # the polling pace, not a wait for time to pass


class TickWatch:
    """Keeps the reports of a live service's ticks (it registers itself in ``service.listeners``).

    ``next(n, ...)`` waits for n ticks after the call; ``until(pred, ...)`` for the first tick after the
    call whose ``TickReport`` satisfies ``pred``. Use it as a context manager to remove the listener."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.reports: list[Any] = []
        self._cond = threading.Condition()
        service.listeners.append(self._on_tick)

    def _on_tick(self, report: Any) -> None:  # the service's ingest thread: quick
        with self._cond:
            self.reports.append(report)
            self._cond.notify_all()

    @property
    def count(self) -> int:
        """Ticks seen so far."""
        with self._cond:
            return len(self.reports)

    def next(self, n: int, timeout_s: float, what: str = "") -> list[Any]:
        """The reports of the next ``n`` ticks; fails after ``timeout_s`` [s]."""
        with self._cond:
            start = len(self.reports)
            if not self._cond.wait_for(lambda: len(self.reports) >= start + n, timeout_s):
                got = len(self.reports) - start
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what or f'{n} ticks'} "
                                     f"({got} ticks came)")
            return self.reports[start:start + n]

    def until(self, predicate: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
        """The first report after this call that satisfies ``predicate``; fails after ``timeout_s`` [s]."""
        with self._cond:
            start = len(self.reports)
            found: list[Any] = []

            def seen() -> bool:
                found[:] = [r for r in self.reports[start:] if predicate(r)][:1]
                return bool(found)

            if not self._cond.wait_for(seen, timeout_s):
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} "
                                     f"({len(self.reports) - start} ticks came)")
            return found[0]

    def close(self) -> None:
        """Stop listening."""
        if self._on_tick in self.service.listeners:
            self.service.listeners.remove(self._on_tick)

    def __enter__(self) -> TickWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
