"""Decoders, in two layers.

* The bytes API, ``decode_*(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection``:
  takes the device from the topic and never raises (a bug becomes a logged ``bad_syntax`` rejection).
* The records API, ``*_records``: takes what the caller already knows (the routed device and sensor
  kind) and, for JSON formats, the parsed document, so nothing is parsed twice; returns the records and
  raises ``Refusal`` for bad input. Any other exception is a bug; the ingest's admission step tells the
  two apart by type.

They import no paho and no pyproj, and each format has an encoder for tests.
``decode_beidou`` picks JSON, NMEA or a JT/T 808 frame (``ingest.decoders.jt808``, docs/guides/jt808.md) by the
first byte of a ``city/beidou/{device}`` payload.
"""

from __future__ import annotations

from ingest.batch import Batch
from ingest.decoders._common import SHALLOW_DEPTH, guarded, last_segment, load_json
from ingest.decoders.ack import ack_records, decode_ack, encode_ack
from ingest.decoders.jt808 import encode_jt808, jt808_records
from ingest.decoders.nmea import decode_nmea, encode_nmea, nmea_records
from ingest.decoders.position import decode_position, encode_position, position_records
from ingest.decoders.report import decode_report, encode_report, report_note, report_records
from ingest.decoders.senml import (
    Row,
    decode_senml,
    encode_senml,
    resolve_pack,
    row_batch,
    senml_payload_records,
    senml_records,
)
from ingest.decoders.task import decode_task, encode_task_status, task_records
from ingest.rejection import Reason, Refusal, Rejection

__all__ = [
    "SHALLOW_DEPTH",
    "Batch",
    "Reason",
    "Refusal",
    "Rejection",
    "Row",
    "ack_records",
    "beidou_records",
    "decode_ack",
    "decode_beidou",
    "decode_nmea",
    "decode_position",
    "decode_report",
    "decode_senml",
    "decode_task",
    "encode_ack",
    "encode_jt808",
    "encode_nmea",
    "encode_position",
    "encode_report",
    "encode_senml",
    "encode_task_status",
    "jt808_records",
    "load_json",
    "nmea_records",
    "position_records",
    "report_note",
    "report_records",
    "resolve_pack",
    "row_batch",
    "senml_payload_records",
    "senml_records",
    "task_records",
]


def beidou_records(payload: bytes, *, device: str, received_at: float, terminal: str | None = None) -> Batch:
    """Records of a ``city/beidou/{device}`` payload: a JT/T 808 location frame (first byte ``0x7e``, published by
    the gateway; ``terminal``, the registry's phone number of the device, is checked against the frame's), JSON
    position (``{`` or ``[``) or NMEA (``$``), chosen by the first non-blank byte; raises ``Refusal`` for bad
    input."""
    if payload[:1] == b"\x7e":
        return jt808_records(payload, device=device, received_at=received_at, terminal=terminal)
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        return position_records(load_json(payload), device=device)
    if head == b"$":
        return nmea_records(payload, device=device, received_at=received_at)
    raise Refusal(Reason.BAD_SYNTAX, "Beidou payload is neither JSON, NMEA nor a JT/T 808 frame", "payload")


@guarded
def decode_beidou(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """A JT/T 808 frame (``0x7e``), JSON position (``{`` or ``[``) or NMEA (``$``), chosen by the first byte."""
    return beidou_records(payload, device=last_segment(topic), received_at=received_at)
