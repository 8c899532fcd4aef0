"""Rejection reasons, the ``Rejection`` record of a refused message, and ``Refusal``, the exception that
carries one out of a decoder or check (the caller turns it into a ``Rejection`` with the payload's digest).

Bad input is a ``Refusal``; any other exception out of a decoder or check is a bug of ours (an internal
error), told apart by its type, never by its message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a message was refused (docs/reliability.md 6.5). The values are the wire strings."""

    TOO_LARGE = "too_large"
    BAD_CHECKSUM = "bad_checksum"
    BAD_SYNTAX = "bad_syntax"
    BAD_SCHEMA = "bad_schema"
    OUT_OF_RANGE = "out_of_range"
    BAD_UNIT = "bad_unit"
    TIME_SKEW = "time_skew"
    UNKNOWN_DEVICE = "unknown_device"
    IDENTITY_MISMATCH = "identity_mismatch"
    RETIRED_DEVICE = "retired_device"
    """The device is in the registry but retired (taken out of service: docs/guides/devices.md)."""
    OUTSIDE_GRID = "outside_grid"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_ALERT = "unknown_alert"
    NOT_SENT = "not_sent"
    # decided by the twin's case loop (a unit's task answer, a citizen report)
    UNKNOWN_CASE = "unknown_case"
    NOT_ASSIGNED = "not_assigned"
    BAD_TRANSITION = "bad_transition"
    UNKNOWN_SOURCE = "unknown_source"
    UNKNOWN_CATEGORY = "unknown_category"


def payload_digest(payload: bytes) -> str:
    """Short, stable digest of a payload (BLAKE2b, 8 bytes, hex) to find it again in the raw log."""
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused message.

    Attributes
    ----------
    reason : Reason
        One of the fixed reasons.
    detail : str
        Human-readable explanation (one line).
    field : str
        The offending field (JSON key, NMEA sentence/field, ``topic``, ``payload``...), or "".
    digest : str
        ``payload_digest`` of the whole payload.
    """

    reason: Reason
    detail: str
    field: str = ""
    digest: str = ""


MAX_DETAIL = 500
"""Longest ``Rejection.detail`` [character]."""
MAX_FIELD = 200
"""Longest ``Rejection.field`` [character] (a hostile payload may have a 60,000-character key)."""


def reject(reason: Reason, detail: str, payload: bytes, field: str = "") -> Rejection:
    """Build a ``Rejection`` with the digest of ``payload`` (``detail`` and ``field`` cut to their bounds)."""
    return Rejection(reason=reason, detail=detail[:MAX_DETAIL], field=field[:MAX_FIELD], digest=payload_digest(payload))


class Refusal(Exception):  # noqa: N818 -- bad input refused, not an error of ours
    """Bad input, raised where it is found; ``rejection(payload)`` is the ``Rejection`` to report.

    Attributes
    ----------
    reason : Reason
    detail : str
    field : str
    """

    def __init__(self, reason: Reason, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.reason, self.detail, self.field = reason, detail, field

    def rejection(self, payload: bytes) -> Rejection:
        """The ``Rejection`` of ``payload`` (with its digest)."""
        return reject(self.reason, self.detail, payload, self.field)
