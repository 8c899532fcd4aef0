"""Checks around the decoders: size cap, registry (known device, kind, quantities), rate limit, time skew.

``check_message`` runs before decoding (cheapest first: size, device, kind, rate); ``check_batch`` after
(time skew, quantities the device is registered for). Both return a ``Rejection`` or None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.batch import Batch
from ingest.registry import Registry
from ingest.rejection import Reason, Rejection, reject
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


class Validator:
    """Message and batch checks. ``registry=None`` accepts any device (for tools and tests)."""

    def __init__(self, registry: Registry | None, limits: Limits | None = None) -> None:
        self.registry = registry
        self.limits = limits or Limits()
        self.buckets = TokenBuckets(self.limits.rate_per_s, self.limits.burst)

    def check_message(
        self, route: Route, payload: bytes, received_at: float, redelivered: bool = False
    ) -> Rejection | None:
        """Size, known device, kind consistent with the topic, rate (redeliveries are not charged)."""
        if len(payload) > self.limits.max_bytes:
            return reject(
                Reason.TOO_LARGE, f"{len(payload)} bytes > {self.limits.max_bytes}", payload, "payload"
            )
        if self.registry is not None:
            dev = self.registry.get(route.device)
            if dev is None:
                return reject(
                    Reason.UNKNOWN_DEVICE, f"device {route.device[:80]!r} is not registered", payload, "topic"
                )
            allowed = _FAMILY_KINDS.get(route.family, (route.sensor_kind,))
            if dev.kind not in allowed:
                return reject(
                    Reason.IDENTITY_MISMATCH,
                    f"device {route.device!r} is a {dev.kind}, not allowed on this topic",
                    payload,
                    "topic",
                )
        if not redelivered and not self.buckets.allow(route.device, received_at):
            return reject(
                Reason.RATE_LIMITED,
                f"device {route.device!r} above {self.limits.rate_per_s}/s",
                payload,
                "topic",
            )
        return None

    def check_row(self, route: Route, t: float, quantity: str, payload: bytes, received_at: float) -> Rejection | None:
        """``check_batch`` for one record given as scalars (time [s], quantity)."""
        if not received_at - self.limits.max_age_s <= t <= received_at + self.limits.max_future_s:
            return reject(
                Reason.TIME_SKEW, f"record time {t:.3f} is {t - received_at:+.0f} s from receive time", payload, "t"
            )
        if self.registry is not None:
            dev = self.registry.get(route.device)
            if dev is not None and quantity not in dev.quantities:
                return reject(
                    Reason.BAD_SCHEMA, f"device {route.device!r} is not registered for {quantity!r}", payload, "n"
                )
        return None

    def check_batch(self, route: Route, batch: Batch, payload: bytes, received_at: float) -> Rejection | None:
        """Record times within [received_at - max_age_s, received_at + max_future_s]; registered quantities."""
        if len(batch) == 0:
            return None
        lo, hi = received_at - self.limits.max_age_s, received_at + self.limits.max_future_s
        if len(batch) == 1:
            t = float(batch.t[0])
            skewed = not lo <= t <= hi
        else:
            bad = (batch.t < lo) | (batch.t > hi)
            skewed = bool(bad.any())
            t = float(batch.t[np.argmax(bad)])
        if skewed:
            return reject(
                Reason.TIME_SKEW,
                f"record time {t:.3f} is {t - received_at:+.0f} s from receive time",
                payload,
                "t",
            )
        if self.registry is not None and route.family == "sensor":
            dev = self.registry.get(route.device)
            qs = set(batch.quantity.tolist()) if len(batch) > 1 else {batch.quantity[0]}
            if dev is not None and not qs <= set(dev.quantities):
                extra = sorted(qs - set(dev.quantities))
                return reject(
                    Reason.BAD_SCHEMA, f"device {route.device!r} is not registered for {extra}", payload, "n"
                )
        return None
