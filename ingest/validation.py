"""Checks around the decoders: size cap, registry (known device, kind, quantities), rate limit, time skew.

Each check raises ``Refusal`` (the admission step turns it into a ``Rejection``). The registry checks take
the ``Device`` the caller looked up once (``None``: not registered; a retired one: its retired entry), never the
registry itself.
Before decoding, cheapest first: ``check_size``, ``check_device``, then the refusal guard of the
``RateLimiter``; after decoding: ``check_time`` / ``check_times``, ``check_quantities``, and -- for a
message with new records -- the rate (``check_rate``).

The rate limit (``RateLimiter``) is charged on the device's own clock, the time of its records, never on
the receive time alone: a backlog the broker delivers in one burst after an outage carries the times at
which the device sent it, so it is admitted in full, and the same log gives the same decisions live and
on replay. See ``RateLimiter`` for the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.registry import Device
from ingest.rejection import Reason, Refusal
from ingest.routing import Route


@dataclass(frozen=True)
class Limits:
    """Validation limits.

    Attributes
    ----------
    max_bytes : int
        Largest payload accepted [byte].
    max_future_s : float
        How far a record time may be ahead of the receive time [s].
    max_age_s : float
        How far a record time may be behind the receive time [s] (buffered data after an outage is fine).
    rate_per_s : float
        Messages per device per second of the device's own time [message s-1] (``RateLimiter``); 0 disables
        rate limiting.
    burst : float
        Token-bucket capacity per device [message].
    """

    max_bytes: int = 64 * 1024
    max_future_s: float = 300.0
    max_age_s: float = 86_400.0
    rate_per_s: float = 20.0
    burst: float = 200.0


# the state of one device: a mutable list, indexed by these
_TOKENS, _OWN, _ANCHOR, _CLOCK, _GUARD, _GUARD_CLOCK = range(6)
STATE_FIELDS = ("tokens", "own_clock", "own_anchor", "clock", "guard", "guard_clock")


class RateLimiter:
    """Per-device rate limit on the device's own clock, with a guard against floods of refused messages.

    **The rate limit.** A token bucket per device (capacity ``burst``) that refills at ``rate_per_s`` per
    second of the device's clock; a message with new records costs one token; empty: ``rate_limited``.
    The device's clock is its *own* clock -- the latest record time it has sent, never going back -- plus
    the receive time that has passed since that own clock last advanced, and never goes back either:

        clock = max(clock, own_clock + (received_at - receive time when own_clock last advanced))

    - A backlog delivered in one burst after an outage (receive times milliseconds apart, record times at
      the device's normal cadence) advances the clock by its own times and is admitted in full.
    - A device sending more messages per second of its own time than ``rate_per_s`` (its times compressed)
      is limited, whether they arrive live or in a backlog.
    - While its times do not advance (repeated or going back, a stuck or reset clock), the receive time
      drives the clock instead, at the same rate.
    - The two never add up: an advance of the own clock restarts the receive-time term, so a device
      alternating the two gets no more than either.
    - Messages whose records were all seen before (redeliveries) are recognised as duplicates before this
      check and cost nothing. Record times more than ``max_future_s`` ahead or ``max_age_s`` behind the
      receive time were refused as ``time_skew`` before it, so over any period P a device gets at most
      ``burst + rate_per_s * (P + max_age_s + max_future_s)`` messages, the last term being the one-off
      allowance of a backlog as old as ``max_age_s``.

    **The refusal guard.** A second bucket per device, on the receive time only, checked *before* decoding
    so that a flood of garbage costs no parsing: each refused message of the device (bad syntax, schema,
    checksum, range, unit, time skew, identity, rate limited) takes a token, and so does each message
    without records (NMEA epochs without a fix only), each accepted message with records gives one back,
    and it refills at ``rate_per_s`` per second of receive time (capacity ``burst``). Empty: the device's
    messages are refused (``rate_limited``) without being decoded, until it refills. A device that sends
    valid messages within its rate never meets it; one that sends only garbage has ``rate_per_s`` of it
    decoded per second.

    Everything is a function of the messages in log order and their logged receive times, so the live
    loop and a replay of the raw log decide the same; ``save_state`` / ``restore_state`` carry the state
    through a snapshot (``Deduper`` saves it with the dedupe memory).
    """

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = float(rate_per_s), float(burst)
        self._state: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        """False when ``rate_per_s`` is 0 (no limit, no guard)."""
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._state)

    def state(self, device: str, received_at: float) -> list[float]:
        """The device's state (created full on first sight); pass it to the other methods."""
        st = self._state.get(device)
        if st is None:
            st = self._state[device] = [self.burst, -math.inf, received_at, -math.inf, self.burst, received_at]
        return st

    def enter(self, device: str, received_at: float) -> list[float] | None:
        """``state`` of the device if its refusal guard is open, else None (the guard refilled by the receive
        time first): the one call before decoding."""
        st = self._state.get(device)
        if st is None:
            st = self._state[device] = [self.burst, -math.inf, received_at, -math.inf, self.burst, received_at]
            return st
        if received_at > st[_GUARD_CLOCK]:
            st[_GUARD] = min(self.burst, st[_GUARD] + (received_at - st[_GUARD_CLOCK]) * self.rate)
            st[_GUARD_CLOCK] = received_at
        return st if st[_GUARD] >= 1.0 else None

    def charge(self, st: list[float], own_t: float, received_at: float) -> bool:
        """Take a token for a message with new records whose latest record time is ``own_t``; False (nothing
        taken) if the bucket is empty."""
        if own_t > st[_OWN]:
            st[_OWN], st[_ANCHOR] = own_t, received_at
        elapsed = received_at - st[_ANCHOR]
        clock = st[_OWN] + elapsed if elapsed > 0 else st[_OWN]
        if clock > st[_CLOCK]:  # -inf on first sight: a full refill, capped
            st[_TOKENS] = min(self.burst, st[_TOKENS] + (clock - st[_CLOCK]) * self.rate)
            st[_CLOCK] = clock
        if st[_TOKENS] < 1.0:
            return False
        st[_TOKENS] -= 1.0
        if st[_GUARD] < self.burst:
            st[_GUARD] = min(self.burst, st[_GUARD] + 1.0)
        return True

    def refused(self, st: list[float]) -> None:
        """A message of the device was refused after the guard let it through, or had no records: the
        guard takes a token."""
        st[_GUARD] = max(0.0, st[_GUARD] - 1.0)

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """Plain arrays: ``device`` and ``state`` (one row per device, columns ``STATE_FIELDS``)."""
        devices = list(self._state)
        rows = np.array([self._state[d] for d in devices], dtype=np.float64).reshape(len(devices), len(STATE_FIELDS))
        return {"device": np.array(devices, dtype=str), "state": rows}

    def restore_state(self, state: dict) -> None:
        """Take back what ``save_state`` gave (replacing the current state)."""
        rows = np.asarray(state["state"], dtype=np.float64).reshape(-1, len(STATE_FIELDS))
        self._state = {d: row for d, row in zip(np.asarray(state["device"]).tolist(), rows.tolist(), strict=True)}


_FAMILY_KINDS = {"beidou": ("vehicle", "unit"), "ack": ("unit",), "task": ("unit",)}


def check_size(payload: bytes, limits: Limits) -> None:
    """At most ``limits.max_bytes``."""
    if len(payload) > limits.max_bytes:
        raise Refusal(Reason.TOO_LARGE, f"{len(payload)} bytes > {limits.max_bytes}", "payload")


def check_device(route: Route, device: Device | None) -> None:
    """The topic's device is registered (``device`` is its registry entry), active, and of a kind the topic
    allows. A retired device (its entry as it was retired, ``status`` ``retired``) is refused ``retired_device``."""
    if device is None:
        raise Refusal(Reason.UNKNOWN_DEVICE, f"device {route.device[:80]!r} is not registered", "topic")
    if device.status != "active":  # an attribute, not the property: this runs for every message
        raise Refusal(Reason.RETIRED_DEVICE, f"device {route.device[:80]!r} was retired (registry version "
                      f"{device.version}); register it again to admit its messages", "topic")
    if device.kind not in _FAMILY_KINDS.get(route.family, (route.sensor_kind,)):
        raise Refusal(
            Reason.IDENTITY_MISMATCH, f"device {route.device!r} is a {device.kind}, not allowed on this topic", "topic"
        )


def check_guard(route: Route, limiter: RateLimiter, received_at: float) -> list[float]:
    """The device's rate state, if its refusal guard is open (before decoding; see ``RateLimiter``)."""
    st = limiter.enter(route.device, received_at)
    if st is None:
        raise guard_refusal(route, limiter)
    return st


def guard_refusal(route: Route, limiter: RateLimiter) -> Refusal:
    """The refusal of a message whose device's refusal guard is empty."""
    return Refusal(
        Reason.RATE_LIMITED,
        f"device {route.device[:80]!r} had too many messages refused; refused without decoding until"
        f" {limiter.rate:g}/s of receive time refill its allowance",
        "topic",
    )


def check_rate(route: Route, limiter: RateLimiter, st: list[float], own_t: float, received_at: float) -> None:
    """A token for a message with new records, whose latest record time is ``own_t`` (see ``RateLimiter``)."""
    if not limiter.charge(st, own_t, received_at):
        raise rate_refusal(route, limiter)


def rate_refusal(route: Route, limiter: RateLimiter) -> Refusal:
    """The refusal of a message over its device's rate limit."""
    return Refusal(
        Reason.RATE_LIMITED,
        f"device {route.device[:80]!r} above {limiter.rate:g} messages per second of its own time"
        f" (burst {limiter.burst:g})",
        "t",
    )


def check_time(t: float, received_at: float, limits: Limits) -> None:
    """One record time within [received_at - max_age_s, received_at + max_future_s]."""
    if not received_at - limits.max_age_s <= t <= received_at + limits.max_future_s:
        raise _skew(t, received_at)


def check_times(t: np.ndarray, received_at: float, limits: Limits) -> None:
    """``check_time`` for every record time of a batch."""
    if len(t) == 1:
        check_time(float(t[0]), received_at, limits)
    elif len(t):
        bad = (t < received_at - limits.max_age_s) | (t > received_at + limits.max_future_s)
        if bad.any():
            raise _skew(float(t[np.argmax(bad)]), received_at)


def _skew(t: float, received_at: float) -> Refusal:
    return Refusal(Reason.TIME_SKEW, f"record time {t:.3f} is {t - received_at:+.0f} s from receive time", "t")


def check_quantity(route: Route, device: Device, quantity: str) -> None:
    """``quantity`` is one ``device`` is registered for."""
    if quantity not in device.quantities:
        raise Refusal(Reason.BAD_SCHEMA, f"device {route.device!r} is not registered for {quantity!r}", "n")


def check_quantities(route: Route, device: Device, quantities: np.ndarray) -> None:
    """``check_quantity`` for every record of a batch (its ``quantity`` column)."""
    if len(quantities) == 1:
        check_quantity(route, device, quantities[0])
    elif len(quantities):
        extra = set(quantities.tolist()).difference(device.quantities)
        if extra:
            raise Refusal(Reason.BAD_SCHEMA, f"device {route.device!r} is not registered for {sorted(extra)}", "n")
