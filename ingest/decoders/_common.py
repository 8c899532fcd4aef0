"""Helpers shared by the decoders: JSON parsing, the never-raise guard of the bytes API."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from ingest.batch import Batch
from ingest.rejection import Reason, Refusal, Rejection, reject

log = logging.getLogger(__name__)

Decoder = Callable[..., "Batch | Rejection"]


def guarded(fn: Callable[..., Batch]) -> Decoder:
    """Make a bytes decoder that raises ``Refusal`` on bad input into one that never raises.

    A ``Refusal`` becomes its ``Rejection``; any other exception is a bug: it is logged with its traceback
    and becomes ``Rejection(bad_syntax)``. (The ingest's admission step calls the unguarded ``*_records``
    functions and tells bugs from bad input by the exception's type.)
    """

    @functools.wraps(fn)
    def wrapper(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection:
        try:
            return fn(payload, topic=topic, received_at=received_at)
        except Refusal as bad:
            return bad.rejection(bytes(payload))
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


def load_json(payload: bytes) -> Any:
    """Parse UTF-8 JSON; raises ``Refusal(bad_syntax)`` (NaN/Infinity constants are refused)."""
    try:
        return _JSON.decode(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Refusal(Reason.BAD_SYNTAX, f"invalid JSON: {exc}", "payload") from None


def is_number(x: Any) -> bool:
    """True for a finite JSON number (bool is not a number)."""
    return type(x) in (int, float) and math.isfinite(x)
