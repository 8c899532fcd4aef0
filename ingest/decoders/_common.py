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

import orjson

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

LONG_INTEGER_DIGITS = 19
"""Digits from which an integer literal may lie outside the 64-bit range, which ``orjson`` parses as a float
where ``json`` keeps an int: a payload with a run of this many digits is parsed by ``json`` [digit]."""
SHALLOW_DEPTH = 256
"""Nesting depth the standard library parses wherever it is called from (its limit is the interpreter's 1,000
frames less the caller's) [level]. ``orjson`` parses 1,024 levels, so a deeper document could be one the reference
refuses: ``load_json`` takes ``orjson``'s result only for a payload that cannot be nested deeper than this."""
_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else b for b in range(256))  # every ASCII digit -> b"0"
_LONG_RUN = b"0" * LONG_INTEGER_DIGITS


def load_json(payload: bytes) -> Any:
    """Parse UTF-8 JSON; raises ``Refusal(bad_syntax)`` (NaN/Infinity constants are refused).

    The result is that of the standard library's ``json`` (``load_json_reference``), got faster: ``orjson`` parses
    first, and the standard library parses what ``orjson`` refuses (it decides and words the refusal; it accepts
    a few texts ``orjson`` does not, such as lone surrogate escapes or ``1e400``, an infinity that ``number``
    refuses as ``out_of_range``), any payload with a run of ``LONG_INTEGER_DIGITS`` digits (an integer beyond
    64 bits is an ``int`` there, a ``float`` in ``orjson``) and any payload that may be nested deeper than
    ``SHALLOW_DEPTH`` (more brackets and braces than that). Elsewhere the two agree (RFC 8259 grammar, correctly
    rounded floats, the last of duplicate keys kept in the first one's place): tests/ingest/test_senml_pack_fast.py
    checks it on arbitrary JSON."""
    doc, shallow = load_json_fast(payload)
    if shallow or is_shallow(payload, doc):
        return doc
    return load_json_reference(payload)


def load_json_fast(payload: bytes) -> tuple[Any, bool]:
    """``(document, shallow)``: ``load_json`` of the payload, except that a payload of more than ``2 *
    SHALLOW_DEPTH`` bytes is not checked for its nesting (``shallow`` False): its document may be nested deeper
    than the reference parses. The caller proves it is not (the SenML pack path: records of scalars are two
    levels deep; ``is_shallow``) or parses it again with ``load_json_reference``. Raises ``Refusal(bad_syntax)``
    as ``load_json``."""
    if _LONG_RUN not in payload.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(payload), len(payload) <= 2 * SHALLOW_DEPTH
        except orjson.JSONDecodeError:
            pass  # the reference decides, with its own words
    return load_json_reference(payload), True


def is_shallow(payload: bytes, doc: Any) -> bool:
    """Whether ``doc``, parsed from ``payload``, is nested at most ``SHALLOW_DEPTH`` levels: the payload has no more
    brackets and braces than that (counted in C), or else a walk of the document finds no deeper container."""
    if payload.count(b"[") + payload.count(b"{") <= SHALLOW_DEPTH:
        return True
    stack = [(doc, 1)] if type(doc) in (list, dict) else []
    while stack:
        node, depth = stack.pop()
        if depth > SHALLOW_DEPTH:
            return False
        for child in node if type(node) is list else node.values():
            if type(child) is list or type(child) is dict:
                stack.append((child, depth + 1))
    return True


def load_json_reference(payload: bytes) -> Any:
    """``load_json`` by the standard library's ``json`` alone (the reference ``load_json`` agrees with)."""
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
