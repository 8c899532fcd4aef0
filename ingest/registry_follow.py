"""An ingest worker follows the registry database: which district each change goes to (docs/guides/ingest-workers.md).

`RegistryFollower` applies the registry database's changes (`ingest.registry_db.RegistryStore.changes_since`) to a
worker's registry (which its admission reads: an added device is admitted from its next message, a retired one
refused as ``retired_device``) and to its `ingest.districts.DistrictRouter` (a new static device's records go to
its district, a moved one's to its new district), and says, per district, which changed devices the district twin
of that district must hear of (`ingest.stream.registry`):

- a **vehicle or unit** (routed by its position, held by every district twin): every district;
- a **static device**: the district it lies in (`DistrictPlacer`: the district map, else its ``district``
  property, else the district its registered point lies in); a device that moves from one district to another is
  *retired* in the old one and *added* in the new one; a retired device goes to the district it was in.

Pure apart from the registry and router it changes; no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ingest.districts import DistrictRaster, DistrictRouter
from ingest.registry import Device, Registry

log = logging.getLogger(__name__)

REGISTRY_TOPIC = "$twin/registry"
"""Control record of the raw log (the live twin's too): JSON ``{"to": version}``, the registry version to reach."""
REGISTRY_CHUNK = 20_000
"""Most registry changes one control record applies (a bulk import reaches a worker in parts). [1]"""
MOVER_KINDS = ("vehicle", "unit")
"""Registry kinds routed by their position (held by every district twin)."""


def anchor(geometry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """A device's point for district lookup: its Point, or the mean vertex of a Polygon's outer ring or of
    a LineString [degree]."""
    if not geometry:
        return None
    coords = geometry.get("coordinates")
    try:
        if geometry.get("type") == "Point":
            return float(coords[0]), float(coords[1])
        if geometry.get("type") == "Polygon":
            ring = np.asarray(coords[0], dtype=float)[:, :2]
            return float(ring[:, 0].mean()), float(ring[:, 1].mean())
        if geometry.get("type") == "LineString":  # a pump station's outfall spread along the bank: its mean vertex
            line = np.asarray(coords, dtype=float)[:, :2]
            return float(line[:, 0].mean()), float(line[:, 1].mean())
    except (TypeError, ValueError, IndexError):
        return None
    return None


class DistrictPlacer:
    """The district of one device, by the rules of `ingest.worker.static_districts`: ``explicit`` (the district
    map), the device's ``district`` property, and for a static device the district its registered geometry lies in
    (``raster``). A mover's district is its home (explicit or property), or None."""

    def __init__(self, raster: DistrictRaster, explicit: Mapping[str, str] | None = None) -> None:
        self.raster = raster
        self.explicit = dict(explicit or {})

    def place(self, device: Device) -> str | None:
        """The device's district code, or None."""
        code = self.explicit.get(device.id) or device.properties.get("district")
        if code:
            return str(code)
        if device.kind in MOVER_KINDS:
            return None
        point = anchor(device.geometry)
        if point is None:
            return None
        found = self.raster.codes_of(np.array([point[0]]), np.array([point[1]]))[0]
        return str(found) if found else None


class RegistryFollower:
    """Applies registry changes to a worker's registry and router; see the module docstring.

    Parameters
    ----------
    registry : Registry
        The admission's registry (changed in place, on the ingest thread).
    router : DistrictRouter
        The worker's router (its device table changed in place).
    placer : DistrictPlacer
    """

    def __init__(self, registry: Registry, router: DistrictRouter, placer: DistrictPlacer) -> None:
        self.registry, self.router, self.placer = registry, router, placer
        self.homeless = 0
        """Changed static devices placed in no district of the stream (their records are refused). [1]"""

    def apply(self, changes: Iterable[Device], to: int) -> dict[str, list[Device]]:
        """Apply the changed devices (in version order) and bring the registry to version ``to``; per district code
        of the router, the devices its twin must hear of (module docstring; every district has an entry)."""
        out: dict[str, list[Device]] = {code: [] for code in self.router.codes}
        for new in changes:
            old = self.registry.find(new.id)
            self.registry.apply([new], new.version)
            if new.kind in MOVER_KINDS:
                for devices in out.values():
                    devices.append(new)
                self._route(new.id, self._known(self.placer.place(new)) if new.active else None, mover=new.active)
                continue
            was = self._known(self.placer.place(old)) if old is not None and old.active else None
            now = self._known(self.placer.place(new)) if new.active else None
            if new.active and now is None:
                self.homeless += 1
                log.warning("registry version %d: device %s lies in no district of the stream; its records will be "
                            "refused (no_district)", new.version, new.id)
            if was is not None and was != now:
                out[was].append(new if not new.active else replace(new, status="retired"))
            if now is not None:
                out[now].append(new)
            self._route(new.id, now, mover=False)
        self.registry.version = max(self.registry.version, int(to))
        return out

    def _known(self, code: str | None) -> str | None:
        """``code`` if the stream has a partition for it, else None."""
        return code if code is not None and code in self.router.codes else None

    def _route(self, device_id: str, code: str | None, mover: bool) -> None:
        """Set the router's entry of a device (`ingest.districts.DistrictRouter.place`)."""
        self.router.place(device_id, code, mover)


__all__ = ["MOVER_KINDS", "REGISTRY_CHUNK", "REGISTRY_TOPIC", "DistrictPlacer", "RegistryFollower", "anchor"]
