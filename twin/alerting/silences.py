"""Silences (静默): an operator mutes the delivery of matching alerts for a while (issue 16).

A silence is a list of label matchers (`twin.alerting.labels.Matcher`, Alertmanager's ``=``, ``!=``, ``=~``,
``!~``; all must hold), a time window [``starts_at``, ``ends_at``) in twin time [unix s], who made it and why.
[src: Prometheus Alertmanager, "Silences": a silence mutes alerts that match all its matchers during its window;
it is pending before its start, active in its window and expired after its end or when expired early.]

A silenced alert is still recorded, published on ``city/alerts/{id}`` and shown (greyed) on the dashboard; it is
not delivered to units. `SilenceBook` keeps the silences in the alert store (`twin.alerting.store.Store`) with an
audit row for every change (who, when, what, the state before and after), and answers `SilenceBook.matching`
from memory (the core asks every tick).

A silence must have at least one matcher that an alert without that label would fail (``hazard=~".*"`` alone
would mute everything), a creator and a reason, and may last at most `MAX_DURATION_S`.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from twin.alerting.labels import AlertLabels, Matcher, matches_all

MAX_MATCHERS = 16
MAX_WHO = 64
"""Longest creator or expirer name [characters]."""
MAX_WHY = 500
"""Longest comment [characters]."""
MAX_DURATION_S = 31 * 86400.0
"""Longest silence [s] [design: a silence is for an incident or maintenance work; a mute for longer than a month
belongs in the configuration, where it is reviewed]."""
STATES = ("pending", "active", "expired")


def _text(what: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty: say who and why")
    if len(value) > limit:
        raise ValueError(f"{what} is too long ({len(value)} characters, at most {limit})")
    if not value.isprintable():
        raise ValueError(f"{what} must be printable (no control or line-separator characters)")
    return value


def _time(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite time [unix s], got {value!r}")
    return float(value)


def check_matchers(matchers: Iterable) -> tuple[Matcher, ...]:
    """Matchers from `Matcher` objects, ``(label, op, value)`` triples or ``{"label", "op", "value"}`` dicts;
    ValueError names the first problem."""
    out: list[Matcher] = []
    for k, m in enumerate(matchers):
        try:
            if isinstance(m, Matcher):
                out.append(Matcher.of(m.label, m.op, m.value))
            elif isinstance(m, dict):
                out.append(Matcher.of(m.get("label", ""), m.get("op", "="), m.get("value", "")))
            else:
                label, op, value = m
                out.append(Matcher.of(label, op, value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"matcher {k + 1}: {exc}") from None
    if not out:
        raise ValueError("a silence needs at least one matcher, e.g. hazard=\"flood\"")
    if len(out) > MAX_MATCHERS:
        raise ValueError(f"too many matchers ({len(out)}, at most {MAX_MATCHERS})")
    if all(m.matches_empty() for m in out):
        raise ValueError("these matchers would silence every alert: at least one must need a label value "
                         "(e.g. hazard=\"flood\" or place=~\"flood:point:.*\")")
    return tuple(out)


@dataclass(frozen=True)
class Silence:
    """One silence. Times are twin time [unix s]; ``expired_at``/``expired_by``/``expired_comment`` are set when
    it was ended early (`SilenceBook.expire`)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    expired_at: float | None = None
    expired_by: str | None = None
    expired_comment: str | None = None

    def state(self, t: float) -> str:
        """``pending`` (before its start), ``active`` or ``expired`` (after its end, or ended early) at ``t``."""
        if self.expired_at is not None or t >= self.ends_at:
            return "expired"
        return "pending" if t < self.starts_at else "active"

    def mutes(self, labels: AlertLabels, t: float) -> bool:
        """Whether it is active at ``t`` and every matcher holds for the alert."""
        return self.state(t) == "active" and matches_all(self.matchers, labels)

    def to_row(self) -> dict:
        """Plain values (the store's columns; the API's answer without ``state``)."""
        return {"id": self.id, "matchers": [m.to_dict() for m in self.matchers], "starts_at": self.starts_at,
                "ends_at": self.ends_at, "created_by": self.created_by, "comment": self.comment,
                "created_at": self.created_at, "expired_at": self.expired_at, "expired_by": self.expired_by,
                "expired_comment": self.expired_comment}

    @classmethod
    def of_row(cls, row: dict) -> Silence:
        """Take back `to_row` (a stored row, already checked when it was made)."""
        matchers = tuple(Matcher.of(m["label"], m["op"], m["value"]) for m in row["matchers"])
        expired = row.get("expired_at")
        return cls(str(row["id"]), matchers, float(row["starts_at"]), float(row["ends_at"]), str(row["created_by"]),
                   str(row["comment"]), float(row["created_at"]), None if expired is None else float(expired),
                   row.get("expired_by"), row.get("expired_comment"))


def new_silence(matchers: Iterable, starts_at: float | None, ends_at: float, created_by: str, comment: str,
                now: float, silence_id: str | None = None) -> Silence:
    """A checked new silence at twin time ``now``; a start in the past (or None) is ``now``.

    ValueError, with a message an API can return: bad matchers, end not after start, end in the past, longer than
    `MAX_DURATION_S`, empty or too long creator or comment.
    """
    now = _time("now", now)
    checked = check_matchers(matchers)
    start = now if starts_at is None else max(_time("starts_at", starts_at), now)
    end = _time("ends_at", ends_at)
    if end <= start:
        raise ValueError(f"ends_at ({end:.0f}) must be after starts_at ({start:.0f}) and after now ({now:.0f})")
    if end - start > MAX_DURATION_S:
        raise ValueError(f"a silence may last at most {MAX_DURATION_S / 86400:.0f} days; this one lasts "
                         f"{(end - start) / 86400:.1f}")
    who = _text("created_by", created_by, MAX_WHO)
    why = _text("comment", comment, MAX_WHY)
    return Silence(silence_id or uuid.uuid4().hex, checked, start, end, who, why, now)


@dataclass
class SilenceBook:
    """The silences of one twin, kept in its alert store (see the module docstring). Thread-safe: the API creates
    and expires silences while the core asks `matching` every tick.

    ``new_id``: makes the identifier of a new silence (a random UUID by default; tests pass a counter).
    """

    store: object
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Silence] = {r["id"]: Silence.of_row(r) for r in self.store.silences()}

    def create(self, matchers: Iterable, ends_at: float, created_by: str, comment: str, now: float,
               starts_at: float | None = None) -> Silence:
        """A new silence (checked, see `new_silence`), stored with its audit row."""
        silence = new_silence(matchers, starts_at, ends_at, created_by, comment, now, self.new_id())
        with self._lock:
            self.store.write_silence(silence.to_row(), "create", silence.created_by, now, silence.comment, None)
            self._by_id[silence.id] = silence
        return silence

    def expire(self, silence_id: str, who: str, why: str, now: float) -> Silence:
        """End a pending or active silence now; KeyError if there is no such silence, ValueError (with the reason)
        if it has already expired or who/why are missing."""
        who, why, now = _text("who", who, MAX_WHO), _text("why", why, MAX_WHY), _time("now", now)
        with self._lock:
            old = self._by_id.get(silence_id)
            if old is None:
                raise KeyError(silence_id)
            if old.state(now) == "expired":
                raise ValueError(f"silence {silence_id} has already expired")
            new = replace(old, expired_at=now, expired_by=who, expired_comment=why)
            self.store.write_silence(new.to_row(), "expire", who, now, why, old.to_row())
            self._by_id[silence_id] = new
        return new

    def get(self, silence_id: str) -> Silence | None:
        """One silence by its id."""
        with self._lock:
            return self._by_id.get(silence_id)

    def list(self, t: float, state: str = "all") -> list[Silence]:
        """Silences in ``state`` (pending, active, expired or all) at ``t``, oldest first."""
        if state not in (*STATES, "all"):
            raise ValueError(f"unknown state {state!r}; states: {', '.join(STATES)}, all")
        with self._lock:
            silences = sorted(self._by_id.values(), key=lambda s: (s.created_at, s.id))
        return [s for s in silences if state == "all" or s.state(t) == state]

    def matching(self, labels: AlertLabels, t: float) -> Silence | None:
        """The active silence at ``t`` that mutes this alert (the one ending last, then the oldest), or None."""
        with self._lock:
            hits = [s for s in self._by_id.values() if s.mutes(labels, t)]
        return max(hits, key=lambda s: (s.ends_at, -s.created_at, s.id)) if hits else None

    def audit(self, silence_id: str | None = None, limit: int = 1000) -> list[dict]:
        """The audit trail (see `twin.alerting.store.Store.silence_audit`)."""
        return self.store.silence_audit(silence_id, limit)
