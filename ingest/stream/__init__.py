"""The stream between ingest workers and district twins (docs/city-deployment.md section 3).

``Stream`` is the interface; ``JetStream`` (NATS JetStream) and ``MemoryStream`` (in-process, tests) implement
it; ``encode_batch``/``decode_batch`` turn a ``Batch`` into the Arrow IPC bytes of a record and back.
"""

from ingest.stream.base import (
    BATCH,
    HANDOVER,
    KIND,
    REGISTRY,
    TICK,
    TIME,
    Ack,
    Record,
    Stream,
    StreamError,
    StreamTimeoutError,
    check_partition,
    tick_headers,
    tick_msg_id,
    tick_time,
)
from ingest.stream.codec import CodecError, decode_batch, encode_batch
from ingest.stream.memory import MemoryStream

__all__ = ["BATCH", "HANDOVER", "KIND", "REGISTRY", "TICK", "TIME", "Ack", "CodecError", "MemoryStream", "Record",
           "Stream", "StreamError", "StreamTimeoutError", "check_partition", "decode_batch", "encode_batch",
           "tick_headers", "tick_msg_id", "tick_time"]


def __getattr__(name: str):  # JetStream imports nats-py: only when asked for
    if name == "JetStream":
        from ingest.stream.jetstream import JetStream

        return JetStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
