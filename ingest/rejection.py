"""Rejection reasons and the ``Rejection`` record a decoder or validator returns for bad input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a message was refused (DESIGN.md section 6). The values are the wire strings."""

    TOO_LARGE = "too_large"
    BAD_CHECKSUM = "bad_checksum"
    BAD_SYNTAX = "bad_syntax"
    BAD_SCHEMA = "bad_schema"
    OUT_OF_RANGE = "out_of_range"
    BAD_UNIT = "bad_unit"
    TIME_SKEW = "time_skew"
    UNKNOWN_DEVICE = "unknown_device"
    IDENTITY_MISMATCH = "identity_mismatch"
    OUTSIDE_GRID = "outside_grid"
    RATE_LIMITED = "rate_limited"


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


def reject(reason: Reason, detail: str, payload: bytes, field: str = "") -> Rejection:
    """Build a ``Rejection`` with the digest of ``payload``."""
    return Rejection(reason=reason, detail=detail[:500], field=field, digest=payload_digest(payload))
