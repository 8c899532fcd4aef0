"""Helpers shared by the decoders: topic parsing, JSON parsing, the never-raise guard."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from ingest.batch import Batch
from ingest.rejection import Reason, Rejection, reject

log = logging.getLogger(__name__)

Decoder = Callable[..., "Batch | Rejection"]


def guarded(fn: Decoder) -> Decoder:
    """Wrap a decoder so an unexpected error becomes ``Rejection(bad_syntax)`` instead of raising.

    The caller counts it like any rejection; it is also logged with its traceback because it is a bug.
    """

    @functools.wraps(fn)
    def wrapper(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection:
        try:
            return fn(payload, topic=topic, received_at=received_at)
        except Exception as exc:
            log.exception("decoder %s failed on topic %s", fn.__name__, topic)
            return reject(Reason.BAD_SYNTAX, f"internal decoder error: {exc!r}", bytes(payload), "payload")

    return wrapper


def last_segment(topic: str) -> str:
    """Device id of ``.../{device}`` topics."""
    return topic.rsplit("/", 1)[-1]


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)  # built once: json.loads(**kw) builds one per call


def parse_json(payload: bytes) -> Any | Rejection:
    """Parse UTF-8 JSON, or return a ``bad_syntax`` rejection (NaN/Infinity constants are refused)."""
    try:
        return _JSON.decode(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return reject(Reason.BAD_SYNTAX, f"invalid JSON: {exc}", payload, "payload")


def is_number(x: Any) -> bool:
    """True for a finite JSON number (bool is not a number)."""
    return type(x) in (int, float) and math.isfinite(x)
