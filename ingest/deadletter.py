"""Dead letters: every rejected message goes to ``{prefix}deadletter`` at QoS 1 (docs/contract/mqtt.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from ingest.rejection import Rejection

Publish = Callable[..., Any]


def deadletter_topic(prefix: str = "city/") -> str:
    """The dead-letter topic for a topic prefix."""
    return f"{prefix}deadletter"


def deadletter_payload(
    topic: str, rejection: Rejection, received_at: float, payload: bytes, max_payload: int = 64 * 1024
) -> bytes:
    """JSON ``{"topic","reason","detail","received_at","payload_b64"}`` plus ``field``, ``digest`` and
    ``payload_truncated`` (payloads above ``max_payload`` bytes are cut; the raw log has them whole)."""
    doc = {
        "topic": topic,
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "received_at": received_at,
        "payload_b64": base64.b64encode(payload[:max_payload]).decode("ascii"),
        "field": rejection.field,
        "digest": rejection.digest,
        "payload_truncated": len(payload) > max_payload,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class DeadLetters:
    """Publishes rejections with ``publish(topic, payload, qos=1)``.

    With an ``MqttTransport`` the ingestor passes ``publish_droppable``, which never waits for the broker
    and returns False when too many publishes await confirmation (docs/liveness.md): the dead letter is
    then not sent, and counted in ``dropped`` (the rejection itself is counted by reason in the ingest
    metrics, and the message is in the raw log). A ``publish`` that returns anything but False counts as
    sent.
    """

    def __init__(self, publish: Publish, prefix: str = "city/", max_payload: int = 64 * 1024) -> None:
        self._publish = publish
        self.topic = deadletter_topic(prefix)
        self.max_payload = max_payload
        self.dropped = 0
        """Dead letters not sent because the transport's budget of unconfirmed publishes was used up [1]."""

    def send(self, topic: str, rejection: Rejection, received_at: float, payload: bytes) -> bool:
        """Publish one dead letter at QoS 1; False (and counted in ``dropped``) if the transport dropped it."""
        body = deadletter_payload(topic, rejection, received_at, payload, self.max_payload)
        if self._publish(self.topic, body, qos=1) is False:
            self.dropped += 1
            return False
        return True
