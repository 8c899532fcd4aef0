"""Moving entities: vehicles (traffic probes) and field units with their last known positions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.district.grid import GridSpec


@dataclass
class Entity:
    """The last known state of one vehicle or field unit (positions in CGCS2000 / grid CRS)."""

    id: str
    kind: str
    unit_type: str = ""
    t: float = float("nan")
    lon: float = float("nan")
    lat: float = float("nan")
    x: float = float("nan")
    y: float = float("nan")
    row: int = -1
    col: int = -1
    speed_kmh: float = float("nan")
    course_deg: float = float("nan")

    @property
    def located(self) -> bool:
        """The entity has reported a position inside the grid."""
        return self.row >= 0

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON and snapshots."""
        return dict(self.__dict__)


@dataclass
class EntityTable:
    """Vehicles and field units by id; positions only move forward in time."""

    grid: GridSpec
    entities: dict[str, Entity] = field(default_factory=dict)

    def register(self, device_id: str, kind: str, unit_type: str = "") -> None:
        """Make a vehicle or unit known before its first position."""
        self.entities.setdefault(device_id, Entity(device_id, kind, unit_type))

    def update(self, device: np.ndarray, t: np.ndarray, lon: np.ndarray, lat: np.ndarray, x: np.ndarray,
               y: np.ndarray, row: np.ndarray, col: np.ndarray, speed: np.ndarray, course: np.ndarray) -> list[str]:
        """Apply positions (CGCS2000 lon/lat [degree], grid x/y [m] and cell); returns the ids that moved.

        Records are applied in time order; a position older than the entity's last one is ignored
        (a late, redelivered fix must not move a unit backwards).
        """
        device, t, lon, lat, x, y, row, col, speed, course = (
            np.atleast_1d(a) for a in (device, t, lon, lat, x, y, row, col, speed, course))
        moved = []
        for i in np.argsort(t, kind="stable"):
            e = self.entities.get(str(device[i]))
            if e is None or not (t[i] > e.t or np.isnan(e.t)):
                continue
            e.t, e.lon, e.lat, e.x, e.y = float(t[i]), float(lon[i]), float(lat[i]), float(x[i]), float(y[i])
            e.row, e.col = int(row[i]), int(col[i])
            e.speed_kmh, e.course_deg = float(speed[i]), float(course[i])
            moved.append(e.id)
        return list(dict.fromkeys(moved))

    def of_kind(self, kind: str) -> list[Entity]:
        """Entities of a kind (``vehicle`` or ``unit``), by id."""
        return sorted((e for e in self.entities.values() if e.kind == kind), key=lambda e: e.id)

    def located_units(self) -> list[Entity]:
        """Field units with a known position inside the grid."""
        return [e for e in self.of_kind("unit") if e.located]

    def save_state(self) -> dict[str, object]:
        """Every entity as plain values, by id (for snapshots)."""
        return {"entities": [e.as_dict() for e in sorted(self.entities.values(), key=lambda e: e.id)]}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave."""
        self.entities = {str(r["id"]): Entity(**r) for r in state["entities"]}
