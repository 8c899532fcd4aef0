"""Decoders: ``(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection``.

They import no paho and no pyproj, never raise on bad input, and each has an encoder for tests.
``decode_beidou`` picks JSON or NMEA by the first non-blank byte of a ``city/beidou/{device}`` payload.
"""

from __future__ import annotations

from ingest.batch import Batch
from ingest.decoders._common import guarded
from ingest.decoders.ack import decode_ack, encode_ack
from ingest.decoders.nmea import decode_nmea, encode_nmea
from ingest.decoders.position import decode_position, encode_position
from ingest.decoders.senml import decode_senml, encode_senml, resolve_pack
from ingest.rejection import Reason, Rejection, reject

__all__ = [
    "Batch",
    "Reason",
    "Rejection",
    "decode_ack",
    "decode_beidou",
    "decode_nmea",
    "decode_position",
    "decode_senml",
    "encode_ack",
    "encode_nmea",
    "encode_position",
    "encode_senml",
    "resolve_pack",
]


@guarded
def decode_beidou(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection:
    """JSON position (``{`` or ``[``) or NMEA (``$``), chosen by the first non-blank byte."""
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        return decode_position(payload, topic=topic, received_at=received_at)
    if head == b"$":
        return decode_nmea(payload, topic=topic, received_at=received_at)
    return reject(Reason.BAD_SYNTAX, "Beidou payload is neither JSON nor NMEA", payload, "payload")
