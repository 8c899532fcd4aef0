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


PERSONAL_FIELDS = ("contact", "email", "phone", "first_name", "last_name")
"""Fields of a citizen report that identify the reporter: never published, not even in a dead letter."""


def without_personal_data(payload: bytes) -> tuple[bytes | None, list[str]]:
    """A citizen report's payload fit to publish: the JSON object without `PERSONAL_FIELDS` and the names removed;
    ``(None, [])`` when it is not a JSON object (it might hold personal data we cannot find: withheld)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, []
    if not isinstance(doc, dict):
        return None, []
    removed = [k for k in PERSONAL_FIELDS if k in doc]
    if not removed:
        return payload, []
    clean = {k: v for k, v in doc.items() if k not in PERSONAL_FIELDS}
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":")).encode(), removed


def deadletter_payload(
    topic: str, rejection: Rejection, received_at: float, payload: bytes, max_payload: int = 64 * 1024,
    personal: bool = False,
) -> bytes:
    """JSON ``{"topic","reason","detail","received_at","payload_b64"}`` plus ``field``, ``digest`` and
    ``payload_truncated`` (payloads above ``max_payload`` bytes are cut; the raw log has them whole).

    ``personal`` (a citizen report): the payload is published without the reporter's contact fields
    (``payload_redacted`` lists them), or not at all when it cannot be parsed (``payload_withheld``); the digest
    still finds the message in the raw log."""
    redacted: list[str] = []
    if personal:
        payload, redacted = without_personal_data(payload)
        if payload is None:
            return _letter(topic, rejection, received_at, b"", max_payload, payload_withheld=True)
    extra = {"payload_redacted": redacted} if redacted else {}
    return _letter(topic, rejection, received_at, payload, max_payload, **extra)


def _letter(topic: str, rejection: Rejection, received_at: float, payload: bytes, max_payload: int,
            **extra: object) -> bytes:
    doc = {
        "topic": topic,
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "received_at": received_at,
        "payload_b64": base64.b64encode(payload[:max_payload]).decode("ascii"),
        "field": rejection.field,
        "digest": rejection.digest,
        "payload_truncated": len(payload) > max_payload,
        **extra,
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
        self.reports = f"{prefix}reports/"
        """Topics under this carry citizen reports: their dead letters leave out the reporter's contact."""
        self.max_payload = max_payload
        self.dropped = 0
        """Dead letters not sent because the transport's budget of unconfirmed publishes was used up [1]."""

    def send(self, topic: str, rejection: Rejection, received_at: float, payload: bytes) -> bool:
        """Publish one dead letter at QoS 1; False (and counted in ``dropped``) if the transport dropped it."""
        body = deadletter_payload(topic, rejection, received_at, payload, self.max_payload,
                                  personal=topic.startswith(self.reports))
        if self._publish(self.topic, body, qos=1) is False:
            self.dropped += 1
            return False
        return True
