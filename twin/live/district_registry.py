"""A district twin's device registry: its own district's devices, following the city's registry in stream order
(docs/guides/devices.md, "The city deployment").

What a district twin holds (`district_devices`):

- every **vehicle and unit** of the city (they are routed by position and handed over between districts,
  `twin.live.district_handover`, so every twin must know them);
- the **static devices** (sensors) of its district only: those whose ``district`` property (written by ``twin city
  build``, `twin.city.devices`) names its partition, or, for a device without one, whose registered point (or the
  mean vertex of its coverage polygon) lies in the twin's grid, and in its district's cells when the grid has an
  ``in_district`` layer.

How it changes (`DistrictRegistry.apply`): the ingest workers publish every registry version step on every
district's partition as a ``registry`` record (`ingest.stream.registry`) carrying that district's changed devices.
The twin applies a record's changes whose version is above its own registry version, in its place among the batches
and ticks, then is at the record's ``to``; a record it has reached already (a second worker's copy of the step, a
redelivery) changes nothing. A record that starts above the twin's version (a step no worker published to it, e.g.
made while no worker ran) is a *gap*: with a registry database the twin reads the missing changes of its district
from it (the database never forgets, so a replay reads the same); without one it counts the gap and logs it.

Recovery: the snapshot carries the registry version, the version the twin's base registry was read at, and every
device the twin changed since (the latest entry per device). A restarted twin builds its registry from that base
plus those devices, so its per-sensor rows are those of the twin that wrote the snapshot. A device new to the twin
takes ``added`` past every device it knows (a sensor that moves in is appended, as the live tables append it), and
a device it knew keeps its ``added`` (it takes its row back).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr

from ingest.registry import Device, Registry
from ingest.registry_follow import MOVER_KINDS, anchor
from ingest.stream.registry import RegistryStep, device_doc, device_of_doc
from twin.district.dataset import grid_of

log = logging.getLogger(__name__)


def district_devices(registry: Registry, partition: str, static: xr.Dataset) -> Registry:
    """The devices of ``registry`` a district twin of ``partition`` on the grid twin ``static`` holds (module
    docstring), active and retired, at the registry's version."""
    keep = {d.id for d in _mine([*registry.devices.values(), *registry.retired.values()], partition, static)}
    return Registry({i: d for i, d in registry.devices.items() if i in keep},
                    {i: d for i, d in registry.retired.items() if i in keep}, registry.version)


def _mine(devices: list[Device], partition: str, static: xr.Dataset) -> list[Device]:
    """The devices (in their order) that belong to the district twin of ``partition``."""
    out: dict[str, Device] = {}
    pending: list[tuple[Device, float, float]] = []
    for d in devices:
        code = d.properties.get("district")
        if d.kind in MOVER_KINDS or code == partition:
            out[d.id] = d
        elif not code:
            point = anchor(d.geometry)
            if point is not None:
                pending.append((d, *point))
    if pending:
        lon = np.array([p[1] for p in pending])
        lat = np.array([p[2] for p in pending])
        inside = _in_district(static, lon, lat)
        for (d, _, _), ok in zip(pending, inside.tolist(), strict=True):
            if ok:
                out[d.id] = d
    return [d for d in devices if d.id in out]


def _in_district(static: xr.Dataset, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Whether each point [degree] lies in the grid, and in its district's cells (``in_district``) if it has them."""
    row, col = grid_of(static).cell_of_lonlat(lon, lat)
    row, col = np.asarray(row), np.asarray(col)
    inside = (row >= 0) & (col >= 0)
    if "in_district" in static and inside.any():
        mask = np.asarray(static["in_district"].values) != 0
        inside[inside] = mask[row[inside], col[inside]]
    return inside


@dataclass
class RegistryCounts:
    """What the registry records did (kept in the snapshot)."""

    records: int = 0
    """Registry records that changed the twin's version. [1]"""
    stale: int = 0
    """Registry records whose versions the twin had reached already (another worker's copy, a redelivery). [1]"""
    changes: int = 0
    """Device changes applied. [1]"""
    gaps: int = 0
    """Records that started above the twin's version. [1]"""
    gap_changes: int = 0
    """Changes of the twin's district read from the registry database to fill gaps. [1]"""


@dataclass
class DistrictRegistry:
    """The registry bookkeeping of one district twin (module docstring).

    Parameters
    ----------
    partition : str
    static : xarray.Dataset
        The district's grid twin (for `district_devices`).
    store : RegistryStore or None
        The registry database (`ingest.registry_db`), to read the base registry and fill gaps; None: a registry file.
    """

    partition: str
    static: xr.Dataset
    store: Any = None
    base: int = 0
    """The registry version the base registry was read at (0: a file)."""
    source: str = "none"
    """Where the base registry came from: ``db`` (the registry database), ``file`` or ``none``."""
    changed: dict[str, Device] = field(default_factory=dict)
    """Devices the twin changed since the base, the latest entry of each."""
    counts: RegistryCounts = field(default_factory=RegistryCounts)
    _top: int | None = None
    """The highest ``added`` of the devices the twin knows (found at the first change)."""

    def read_base(self, at: int | None) -> Registry:
        """The district's devices from the registry database as it was at version ``at`` (None: now)."""
        registry = self.store.registry(at=at)
        self.base, self.source = int(registry.version), "db"
        return district_devices(registry, self.partition, self.static)

    def restore(self, registry: Registry, doc: dict | None) -> None:
        """Bring a base registry to the snapshot's state (``save_state``'s ``doc``), before the core is built on it."""
        if not doc:
            return
        self.base = int(doc.get("base", self.base))
        self.source = str(doc.get("source", self.source))
        devices = [device_of_doc(item, f"snapshot device {i}") for i, item in enumerate(doc.get("devices", []))]
        registry.apply(devices, int(doc.get("version", registry.version)))
        self.changed = {d.id: d for d in devices}
        known = {f for f in RegistryCounts.__dataclass_fields__}
        self.counts = RegistryCounts(**{k: int(v) for k, v in (doc.get("counts") or {}).items() if k in known})

    def save_state(self, registry: Registry) -> dict:
        """The registry's part of the snapshot: versions, the changed devices, the counters."""
        return {"version": int(registry.version), "base": int(self.base), "source": self.source,
                "devices": [device_doc(d) for d in self.changed.values()], "counts": dict(vars(self.counts))}

    def apply(self, core, step: RegistryStep) -> int:
        """Apply one registry record to ``core`` (`TwinCore.apply_devices`) in its place; the changes applied."""
        registry: Registry = core.state.registry
        at = int(registry.version)
        if step.to <= at:
            self.counts.stale += 1
            return 0
        devices = [d for d in step.devices if d.version > at]
        if step.start > at:
            devices = self._gap(at, step.start) + devices
        devices = self._numbered(registry, devices)
        core.apply_devices(devices, step.to)
        self.changed.update((d.id, d) for d in devices)
        self.counts.records += 1
        self.counts.changes += len(devices)
        return len(devices)

    def _gap(self, at: int, start: int) -> list[Device]:
        """The district's changes in ``(at, start]``, from the registry database (none without one)."""
        self.counts.gaps += 1
        if self.store is None:
            log.warning("%s: registry versions %d to %d reached no district twin (no worker published them) and no "
                        "registry database is given to read them from", self.partition, at + 1, start)
            return []
        changes = [c.device for c in self.store.changes_since(at, upto=start)]
        mine = _mine(changes, self.partition, self.static)
        self.counts.gap_changes += len(mine)
        return mine

    def _numbered(self, registry: Registry, devices: Iterable[Device]) -> list[Device]:
        """The devices with the ``added`` the twin gives them: a device it knows keeps its own, a new one comes after
        every device it knows (module docstring)."""
        out: list[Device] = []
        if self._top is None:
            self._top = max((d.added for d in (*registry.devices.values(), *registry.retired.values())), default=-1)
        last = self._top
        seen: dict[str, int] = {}
        for d in devices:
            known = registry.find(d.id)
            if known is not None:
                out.append(replace(d, added=known.added))
            elif d.id in seen:
                out.append(replace(d, added=seen[d.id]))
            else:
                last = max(last + 1, d.added)
                seen[d.id] = last
                out.append(replace(d, added=last))
        self._top = last
        return out


__all__ = ["DistrictRegistry", "RegistryCounts", "district_devices"]
