"""Topic routing: which decoder a topic goes to, and which device it names (docs/contract/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.decoders import decode_ack, decode_beidou, decode_report, decode_senml, decode_task
from ingest.decoders.units import SENSOR_KINDS

DECODERS = {
    "sensor": decode_senml,
    "beidou": decode_beidou,
    "ack": decode_ack,
    "task": decode_task,
    "report": decode_report,
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where an inbound topic goes."""

    family: str
    """``sensor``, ``beidou``, ``ack``, ``task`` (a unit's task answer) or ``report`` (a citizen report)."""
    device: str
    """The registry device the topic names; for ``report``, the report's source (not a registry device)."""
    sensor_kind: str = ""


def subscriptions(prefix: str = "city/") -> list[str]:
    """Topic filters the ingest subscribes to."""
    return [
        f"{prefix}sensors/+/+",
        f"{prefix}beidou/+",
        f"{prefix}units/+/ack",
        f"{prefix}units/+/tasks/status",
        f"{prefix}reports/+",
    ]


def route(topic: str, prefix: str = "city/") -> Route | None:
    """Route of ``topic`` under ``prefix``, or None when it matches no inbound pattern."""
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) == 3 and parts[0] == "sensors" and parts[1] in SENSOR_KINDS and parts[2]:
        return Route("sensor", parts[2], parts[1])
    if len(parts) == 2 and parts[0] == "beidou" and parts[1]:
        return Route("beidou", parts[1])
    if len(parts) == 3 and parts[0] == "units" and parts[2] == "ack" and parts[1]:
        return Route("ack", parts[1])
    if len(parts) == 4 and parts[0] == "units" and parts[2:] == ["tasks", "status"] and parts[1]:
        return Route("task", parts[1])
    if len(parts) == 2 and parts[0] == "reports" and parts[1]:
        return Route("report", parts[1])
    return None
