"""Read access to a running `twin.live.service.LiveService`, safe to call from the API's threads.

The service mutates its core on the ingest thread; everything here that reads mutable core
state does so under ``core.lock`` and returns copies or immutable snapshots (the live layers
dataset is rebuilt every tick, never changed in place, so a reference taken under the lock
stays valid). The store has its own lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from twin.district.dataset import grid_of
from twin.district.grid import GridSpec
from twin.district.layers import LAYERS

LIVE, STATIC = "live", "static"


@dataclass(frozen=True)
class LayerInfo:
    """One layer the API serves: its values and where it comes from."""

    name: str
    data: xr.DataArray
    source: str
    t: float | None

    @property
    def kind(self) -> str:
        """``static``, ``live``, ``risk`` or ``level`` (from `twin.district.layers`; ``source`` if unregistered)."""
        spec = LAYERS.get(self.name)
        return spec.kind if spec else self.source

    @property
    def units(self) -> str:
        """CF units string of the layer."""
        return str(self.data.attrs.get("units", LAYERS[self.name].units if self.name in LAYERS else ""))

    @property
    def long_name(self) -> str:
        """Human-readable description."""
        spec = LAYERS.get(self.name)
        return str(self.data.attrs.get("long_name", spec.long_name if spec else self.name))


def _grid_layers(ds: xr.Dataset) -> list[str]:
    return [str(n) for n, v in ds.data_vars.items() if v.dims == ("y", "x")]


class TwinView:
    """Locked, copying accessors over a live service (see the module docstring)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.grid: GridSpec = grid_of(service.static)
        self.static_names = tuple(_grid_layers(service.static))

    # ------------------------------------------------------------ plain references
    @property
    def core(self) -> Any:
        """The service's `TwinCore`."""
        return self.service.core

    @property
    def store(self) -> Any:
        """The service's alert `Store`."""
        return self.service.store

    @property
    def prefix(self) -> str:
        """MQTT topic prefix with its trailing slash."""
        return self.core.config.prefix

    def now(self) -> float:
        """The twin's clock. [unix s]"""
        return float(self.service.clock())

    @property
    def tick_s(self) -> float:
        """Nominal tick period of twin time. [s]"""
        return float(self.service.config.tick_s)

    def last_tick(self) -> float | None:
        """Time of the last tick [unix s], None before the first."""
        t = self.core.last_tick
        return None if math.isnan(t) else float(t)

    def wake_publisher(self) -> None:
        """Have the outbox publisher look for new rows now rather than at its next poll."""
        self.service.publisher.wake.set()

    # ------------------------------------------------------------ layers
    def live_layers(self) -> tuple[xr.Dataset, float | None]:
        """The live and risk layers of the last tick and that tick's time (None before the first)."""
        with self.core.lock:
            return self.core.models.layers, self.last_tick()

    def layer_names(self) -> dict[str, str]:
        """Every layer served now, name -> ``static`` or ``live``."""
        live, _ = self.live_layers()
        return {**dict.fromkeys(self.static_names, STATIC), **dict.fromkeys(_grid_layers(live), LIVE)}

    def layer(self, name: str) -> LayerInfo | None:
        """A static or live layer by name; None if no such layer is served (names are never paths)."""
        live, t = self.live_layers()
        if name in live.data_vars and live[name].dims == ("y", "x"):
            return LayerInfo(name, live[name], LIVE, t)
        if name in self.static_names:
            return LayerInfo(name, self.service.static[name], STATIC, None)
        return None

    def all_layers(self) -> list[LayerInfo]:
        """Every static and live layer (live ones from the last tick)."""
        live, t = self.live_layers()
        out = [LayerInfo(n, self.service.static[n], STATIC, None) for n in self.static_names]
        return out + [LayerInfo(n, live[n], LIVE, t) for n in _grid_layers(live)]

    # ------------------------------------------------------------ alerts
    def alert_rows(self, state: str | None = "active") -> list[dict]:
        """Stored alerts (``active``, ``cancelled`` or None for all), oldest first, with their last message."""
        return self.store.alerts(state)

    def alert_row(self, identifier: str) -> dict | None:
        """One stored alert by identifier (active ones looked up first), or None."""
        for state in ("active", None):
            for row in self.store.alerts(state):
                if row["identifier"] == identifier:
                    return row
        return None

    def acks(self, identifier: str) -> list[dict]:
        """Acknowledgements of an alert (units and operators), in the order received."""
        return self.store.acks(identifier)

    def arrivals(self, identifier: str) -> list[dict]:
        """Units recorded on scene for an alert."""
        return self.store.arrivals(identifier)

    def active_ids(self) -> list[str]:
        """Identifiers of the alerts active in the core now."""
        with self.core.lock:
            return list(self.core.book.active)

    def active_by_hazard_level(self) -> dict[tuple[str, int], int]:
        """How many alerts are active per (hazard, level)."""
        out: dict[tuple[str, int], int] = {}
        with self.core.lock:
            for a in self.core.book.active.values():
                out[(a.hazard, int(a.level))] = out.get((a.hazard, int(a.level)), 0) + 1
        return out

    # ------------------------------------------------------------ entities
    def entities(self, kinds: tuple[str, ...] = ("unit", "vehicle")) -> list[dict]:
        """Located vehicles and units as plain dicts, with the active alerts each unit was sent
        (``alerts``) and those it is on scene of (``on_scene``)."""
        core = self.core
        with core.lock:
            areas = list(core.router.areas.values())
            rows = []
            for e in sorted(core.state.entities.entities.values(), key=lambda e: e.id):
                if e.kind not in kinds or not e.located:
                    continue
                row = e.as_dict()
                row["alerts"] = [a.identifier for a in areas if e.id in a.delivered]
                row["on_scene"] = [a.identifier for a in areas if e.id in a.on_scene]
                rows.append(row)
            return rows

    # ------------------------------------------------------------ status and counters
    def status(self) -> dict[str, Any]:
        """The ``city/twin/status`` document (DESIGN.md 3.1) plus ``outbox``, as of the last tick: ``t`` is
        that tick and ``lag_ms`` the wall time since it (now, before the first tick)."""
        return self.service.status(self.last_tick())

    def ingest_metrics(self) -> dict[str, Any]:
        """A copy of the ingest counters."""
        return self.service.ingestor.metrics.snapshot()

    def cell_values(self, row: int, col: int) -> list[tuple[LayerInfo, float]]:
        """Every layer's value at one cell."""
        return [(info, float(np.asarray(info.data.values[row, col]))) for info in self.all_layers()]
