"""A fake transport for pipeline tests without a broker."""

from __future__ import annotations

import itertools
import queue
import time

from ingest.transport.client import InboundMessage


class FakeSource:
    """Has the ``queue``/``ack``/``publish`` surface of ``MqttTransport``; records acks and publishes."""

    def __init__(self) -> None:
        self.queue: queue.Queue[InboundMessage] = queue.Queue()
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes, int]] = []
        self._mid = itertools.count(1)

    def put(self, topic: str, payload: bytes, received_at: float | None = None, dup: bool = False) -> None:
        self.queue.put(
            InboundMessage(
                topic,
                payload,
                1,
                next(self._mid),
                dup,
                False,
                time.time() if received_at is None else received_at,
                1,
            )
        )

    def ack(self, msg: InboundMessage) -> None:
        self.acked.append(msg.mid)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload, qos))
