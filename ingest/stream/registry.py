"""Registry records of the stream: a change of the device registry, for one district's partition.

Whoever applies registry changes in the city deployment (an ingest worker, `ingest.worker`, following the registry
database) publishes, for each registry version step ``(start, to]`` it applies, one ``registry`` record on the
partition of **every** district: the changed devices that district holds (its static devices, and every vehicle
and unit of the city), possibly none. Every district twin thus sees every version step, in stream order with its
batches and ticks, and its registry version is the database's (docs/guides/devices.md).

====================  ================================================================================
header / field        value
====================  ================================================================================
``Twin-Kind``         ``registry``
``Twin-Registry``     ``<start>-<to>``: the registry versions the record covers, ``start < to``
data                  JSON ``{"from": start, "to": to, "devices": [{"feature", "status", "version",
                      "added"}, ...]}``: each changed device as a registry GeoJSON Feature
                      (`ingest.registry`) with its status (``active`` or ``retired``), the version of
                      its change and the version that first registered it, in version order
message id            ``registry:<partition>:<start>-<to>``: the same step published again (a worker's
                      recovery, or two workers that applied the same step) is stored once
====================  ================================================================================

A step whose devices would make a record larger than the stream takes is cut into records of contiguous sub-steps
(``(start, v1]``, ``(v1, v2]`` ... ``(vk, to]``), each a record of its own.

A device that moves from one district to another is *retired* in the old district's record (its messages no longer
go there) and *added* (active) in the new one's. A twin applies a record's changes whose version is above its own
registry version, then is at ``to``; a record whose ``to`` it has reached already is a duplicate (two workers, a
redelivery) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ingest.registry import STATUSES, Device, device_from_feature
from ingest.stream.base import KIND, REGISTRY, Record

RANGE = "Twin-Registry"
"""Header of a registry record: ``<start>-<to>``, the registry versions it covers."""
HEADROOM = 1024
"""Bytes of a record kept for its headers and the JSON around its devices [byte]."""


class RegistryRecordError(ValueError):
    """Bytes that are not a registry record (the message says what is wrong)."""


@dataclass(frozen=True)
class RegistryStep:
    """One registry record: the changed ``devices`` of versions ``(start, to]`` for one district."""

    start: int
    to: int
    devices: tuple[Device, ...]

    def message(self, partition: str) -> tuple[bytes, str, dict[str, str]]:
        """``(data, message id, headers)`` of the record on ``partition`` (module docstring)."""
        data = _encode(self.start, self.to, [device_doc(d) for d in self.devices])
        return data, registry_msg_id(partition, self.start, self.to), {KIND: REGISTRY, RANGE: f"{self.start}-{self.to}"}


def registry_msg_id(partition: str, start: int, to: int) -> str:
    """Message id of the step ``(start, to]`` on ``partition``."""
    return f"registry:{partition}:{int(start)}-{int(to)}"


def registry_steps(start: int, to: int, devices: Iterable[Device], max_bytes: int) -> list[RegistryStep]:
    """The records of one step ``(start, to]`` (its ``devices`` in version order): one, or contiguous sub-steps each
    encoding to at most ``max_bytes`` [byte] (a single device larger than that gets a record of its own)."""
    if not start < to:
        raise ValueError(f"a registry step goes up: from {start} to {to}")
    limit = max(1, int(max_bytes) - HEADROOM)
    out: list[RegistryStep] = []
    chunk: list[Device] = []
    size, at = 0, int(start)
    for device in devices:
        n = len(_encode_doc(device_doc(device))) + 1
        if chunk and size + n > limit and device.version > chunk[-1].version:
            out.append(RegistryStep(at, chunk[-1].version, tuple(chunk)))
            at, chunk, size = chunk[-1].version, [], 0
        chunk.append(device)
        size += n
    out.append(RegistryStep(at, int(to), tuple(chunk)))
    return out


def parse_registry(record: Record) -> RegistryStep:
    """The step a registry record carries; `RegistryRecordError` naming the problem otherwise (never another
    exception)."""
    try:
        doc = json.loads(record.data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RegistryRecordError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryRecordError("not a JSON object")
    start, to, items = doc.get("from"), doc.get("to"), doc.get("devices")
    if not (_whole(start) and _whole(to) and 0 <= start < to):
        raise RegistryRecordError(f"from and to must be whole numbers with 0 <= from < to, got {start!r}, {to!r}")
    if not isinstance(items, list):
        raise RegistryRecordError("devices must be a list")
    return RegistryStep(start, to, tuple(_device(item, i, start, to) for i, item in enumerate(items)))


def _device(item: object, i: int, start: int, to: int) -> Device:
    where = f"device {i}"
    device = device_of_doc(item, where)
    if not start < device.version <= to:
        raise RegistryRecordError(f"{where}: version {device.version} not in ({start}, {to}]")
    return device


def device_of_doc(item: object, where: str) -> Device:
    """The device of one entry of a registry record (`device_doc`); `RegistryRecordError` naming the problem."""
    if not isinstance(item, dict):
        raise RegistryRecordError(f"{where}: not a JSON object")
    status, version, added = item.get("status"), item.get("version"), item.get("added")
    if status not in STATUSES:
        raise RegistryRecordError(f"{where}: status {str(status)[:40]!r} not one of {STATUSES}")
    if not (_whole(version) and version >= 0 and _whole(added)):
        raise RegistryRecordError(f"{where}: version and added must be whole numbers, got {version!r}, {added!r}")
    problems: list[str] = []
    device = device_from_feature(item.get("feature"), where, problems, int(added))
    if problems or device is None:
        raise RegistryRecordError("; ".join(problems[:5]) or f"{where}: not a registry Feature")
    return replace(device, status=status, version=int(version))


def _whole(x: object) -> bool:
    return type(x) is int


def device_doc(device: Device) -> dict:
    """One entry of a registry record: the device's Feature, status, version and ``added`` (module docstring)."""
    return {"feature": device.feature(), "status": device.status, "version": int(device.version),
            "added": int(device.added)}


def _encode_doc(doc: dict) -> bytes:
    """Compact ASCII JSON (non-ASCII text escaped, so a lone surrogate in a name survives the round trip)."""
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def _encode(start: int, to: int, docs: list[dict]) -> bytes:
    return _encode_doc({"from": int(start), "to": int(to), "devices": docs})


__all__ = ["RANGE", "RegistryRecordError", "RegistryStep", "device_doc", "device_of_doc", "parse_registry",
           "registry_msg_id", "registry_steps"]
