"""Helpers shared by the decoders: JSON parsing, number checks, the never-raise guard of the bytes API.

Hostile input is bad input, never a bug: NaN/Infinity literals, integers beyond 4,300 digits and nesting
deeper than the interpreter allows are ``bad_syntax`` (``load_json``); a number that is valid JSON but
beyond what a float holds (a 400-digit integer, ``1e400``) is ``out_of_range`` (``number``); a value
quoted in a refusal's detail is cut short whatever its type or depth (``preview``).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
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


_FLOAT_MAX = sys.float_info.max


def is_number(x: Any) -> bool:
    """True for a JSON number a float holds: a finite float, or an int within the float range (bool is not a
    number). Never raises: a huge int is compared, not converted."""
    t = type(x)
    if t is float:
        return x - x == 0.0  # False for inf and nan
    return t is int and -_FLOAT_MAX <= x <= _FLOAT_MAX


def number(x: Any, field: str, name: str) -> float:
    """``x`` as a float; raises ``Refusal``: ``bad_schema`` if it is not a JSON number, ``out_of_range`` if it
    is one no float holds (a huge integer, or a literal such as ``1e400`` that parsed to infinity)."""
    if is_number(x):
        return float(x)
    if type(x) in (int, float):
        raise Refusal(Reason.OUT_OF_RANGE, f"{name} is too large for a number ({preview(x)})", field)
    raise Refusal(Reason.BAD_SCHEMA, f"{name} must be a finite number, not {preview(x)}", field)


def preview(x: Any, n: int = 30) -> str:
    """A short, safe rendering of a decoded JSON value for a refusal's detail: strings and numbers cut to
    ``n`` characters, containers by their type and size only (no recursion into hostile nesting)."""
    t = type(x)
    if t is str:
        return repr(x[:n]) + ("..." if len(x) > n else "")
    if t is int:
        if -(10**n) < x < 10**n:
            return str(x)
        return f"<integer of about {x.bit_length() * 0.30103:.0f} digits>"
    if t in (float, bool) or x is None:
        return repr(x)
    if t in (list, dict):
        return f"<{'array' if t is list else 'object'} of {len(x)}>"
    return f"<{t.__name__}>"
