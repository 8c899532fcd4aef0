"""Checks around the decoders: size cap, registry (known device, kind, quantities), rate limit, time skew.

Each check raises ``Refusal`` (the admission step turns it into a ``Rejection``). The registry checks take
the ``Device`` the caller looked up once (``None``: not registered), never the registry itself.
Before decoding, cheapest first: ``check_size``, ``check_device``, then the rate (``TokenBuckets``);
after decoding: ``check_time`` / ``check_times`` and ``check_quantities``.
"""

from __future__ import annotations

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
        Token-bucket refill per device [message s-1]; 0 disables rate limiting.
    burst : float
        Token-bucket capacity per device [message].
    """

    max_bytes: int = 64 * 1024
    max_future_s: float = 300.0
    max_age_s: float = 86_400.0
    rate_per_s: float = 20.0
    burst: float = 200.0


class TokenBuckets:
    """One token bucket per device; a message costs one token. Times are receive times [s]."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._state: dict[str, tuple[float, float]] = {}

    def allow(self, device: str, now: float) -> bool:
        """Take a token for ``device`` at time ``now``; False if the bucket is empty."""
        if self.rate <= 0:
            return True
        tokens, last = self._state.get(device, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._state[device] = (tokens, now)
            return False
        self._state[device] = (tokens - 1.0, now)
        return True


_FAMILY_KINDS = {"beidou": ("vehicle", "unit"), "ack": ("unit",)}


def check_size(payload: bytes, limits: Limits) -> None:
    """At most ``limits.max_bytes``."""
    if len(payload) > limits.max_bytes:
        raise Refusal(Reason.TOO_LARGE, f"{len(payload)} bytes > {limits.max_bytes}", "payload")


def check_device(route: Route, device: Device | None) -> None:
    """The topic's device is registered (``device`` is its registry entry) with a kind the topic allows."""
    if device is None:
        raise Refusal(Reason.UNKNOWN_DEVICE, f"device {route.device[:80]!r} is not registered", "topic")
    if device.kind not in _FAMILY_KINDS.get(route.family, (route.sensor_kind,)):
        raise Refusal(
            Reason.IDENTITY_MISMATCH, f"device {route.device!r} is a {device.kind}, not allowed on this topic", "topic"
        )


def check_rate(route: Route, buckets: TokenBuckets, received_at: float) -> None:
    """A token for the device (charge only first deliveries: redeliveries were charged already)."""
    if not buckets.allow(route.device, received_at):
        raise Refusal(Reason.RATE_LIMITED, f"device {route.device!r} above {buckets.rate}/s", "topic")


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
