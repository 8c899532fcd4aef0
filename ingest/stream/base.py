"""The stream between ingest workers and district twins: one small interface, two implementations.

docs/city-deployment.md section 3. A *stream* holds ordered records in named *partitions* (one per district,
``twin.batches.<district>`` on NATS JetStream). Every record has a stream sequence number, increasing across the
whole stream (so a partition's sequence numbers increase but have gaps). A publish carries a message id: a second
publish with the same id within the stream's duplicate window is not stored again, its ``Ack`` says
``duplicate`` and gives the sequence of the first. That is what makes a worker's re-publish after a crash
exactly-once in the stream.

Publishing is asynchronous: ``publish`` queues a record and never waits for the server, ``flush`` waits (with a
timeout) for the acknowledgements of everything published since the last flush and returns them in publish
order. ``read`` returns the records of a partition after a sequence number, waiting up to a timeout for the
first one.

Record kinds are told by the header ``Twin-Kind``: ``batch`` (an Arrow IPC ``Batch``, ``ingest.stream.codec``),
``tick`` (a control record of the city clock, header ``Twin-Time`` [s since 1970-01-01 UTC], empty data),
``handover`` (section 5) and ``registry`` (a change of the device registry: the changed devices of the partition's
district, with the registry versions it covers; `ingest.stream.registry`).

Implementations: ``ingest.stream.jetstream.JetStream`` (NATS JetStream, the deployment) and
``ingest.stream.memory.MemoryStream`` (in-process, for unit tests of the logic on top).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

KIND = "Twin-Kind"
"""Header naming the kind of a record: ``batch``, ``tick``, ``handover`` or ``registry``."""
TIME = "Twin-Time"
"""Header of a tick record: the tick's twin time [s since 1970-01-01 UTC], as ``repr(float)``."""
BATCH, TICK, HANDOVER, REGISTRY = "batch", "tick", "handover", "registry"
_PARTITION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StreamError(RuntimeError):
    """The stream server refused an operation or could not be reached; the message says which and why."""


class StreamTimeoutError(StreamError):
    """A wait on the stream server (acknowledgements, a connection) ended at its timeout."""


class Ack(NamedTuple):
    """The stream's acknowledgement of one published record."""

    partition: str
    """The partition the record was published to."""
    seq: int
    """Stream sequence of the stored record (of the first one with this message id when ``duplicate``)."""
    duplicate: bool
    """True when a record with the same message id was already stored (this one was dropped)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from a partition."""

    seq: int
    """Stream sequence number [1], > 0."""
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The ``Twin-Kind`` header ("" when absent)."""
        return self.headers.get(KIND, "")


@runtime_checkable
class Stream(Protocol):
    """What ingest workers, district twins and the city clock need of a stream (see the module docstring)."""

    max_bytes: int
    """Largest record the stream takes (data and headers) [byte]; the NATS server's ``max_payload``."""

    def ensure(self, partitions: Iterable[str]) -> None:
        """Create the stream if it is missing and check the partition names (raises ValueError for a bad one)."""

    def publish(self, partition: str, data: bytes, msg_id: str, headers: Mapping[str, str] | None = None) -> None:
        """Queue one record for ``partition``; never waits for the server (``flush`` does)."""

    def flush(self, timeout_s: float) -> list[Ack]:
        """Wait up to ``timeout_s`` [s] for the acks of every record published since the last flush; in publish
        order. Raises ``StreamTimeoutError`` (nothing is lost: publish the same ids again) or ``StreamError``."""

    def read(self, partition: str, after_seq: int, max_n: int, timeout_s: float) -> list[Record]:
        """Up to ``max_n`` records of ``partition`` with ``seq > after_seq``, in order; waits up to ``timeout_s``
        [s] for the first one, returns [] if none came."""

    def last_seq(self, partition: str) -> int:
        """Sequence of the last record of ``partition``; 0 when it has none."""

    def close(self) -> None:
        """Release the connection (records published and not flushed may be lost: flush first)."""


def check_partition(name: str) -> str:
    """``name`` if it can be a partition (a NATS subject token: letters, digits, ``_`` and ``-``, at most 64);
    ValueError otherwise."""
    if not isinstance(name, str) or not _PARTITION.match(name):
        raise ValueError(f"bad partition name {name!r}: use 1-64 letters, digits, '_' or '-'")
    return name


def check_msg_id(msg_id: str) -> str:
    """``msg_id`` if it is a usable message id (non-empty, printable ASCII without spaces, at most 256)."""
    if not isinstance(msg_id, str) or not 0 < len(msg_id) <= 256 or not msg_id.isascii() or not msg_id.isprintable() \
            or " " in msg_id:
        raise ValueError(f"bad message id {msg_id!r}: 1-256 printable ASCII characters without spaces")
    return msg_id


def tick_headers(t: float) -> dict[str, str]:
    """Headers of a tick record at twin time ``t`` [s since 1970-01-01 UTC] (its data is empty)."""
    if not math.isfinite(t):
        raise ValueError(f"a tick time must be finite, got {t!r}")
    return {KIND: TICK, TIME: repr(float(t))}


def tick_msg_id(partition: str, t: float) -> str:
    """Message id of the tick at ``t`` in ``partition``: the same tick published twice is stored once."""
    return f"tick:{partition}:{float(t)!r}"


def tick_time(record: Record) -> float | None:
    """The twin time of a tick record [s since 1970-01-01 UTC]; None if it is not a tick or its time is bad."""
    if record.kind != TICK:
        return None
    try:
        t = float(record.headers.get(TIME, ""))
    except ValueError:
        return None
    return t if math.isfinite(t) else None


__all__ = ["BATCH", "HANDOVER", "KIND", "REGISTRY", "TICK", "TIME", "Ack", "Record", "Stream", "StreamError",
           "StreamTimeoutError", "check_msg_id", "check_partition", "tick_headers", "tick_msg_id", "tick_time"]
