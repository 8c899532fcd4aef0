"""What the API reads: the live twin's query interface (`twin.live.query.LiveQuery`) plus its layers by name.

Every read is safe from the API's threads (see `twin.live.query`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import xarray as xr

from twin.district.bim import Buildings
from twin.district.dataset import load_twin
from twin.district.layers import LAYERS
from twin.live.query import LiveQuery

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


class TwinView(LiveQuery):
    """The live twin's query interface plus the API's layer lookups (see the module docstring)."""

    def __init__(self, service) -> None:
        super().__init__(service)
        self.static_names = tuple(_grid_layers(self.static))
        self._buildings: tuple[Buildings | None] | None = None
        self._buildings_lock = threading.Lock()

    # ------------------------------------------------------------ buildings
    def buildings(self) -> Buildings | None:
        """The twin's BIM building table (`twin.district.bim.Buildings`, read once from beside the twin file),
        None when the service runs without a twin file or the file has no building table."""
        with self._buildings_lock:
            if self._buildings is None:
                path = self.grid_file
                self._buildings = (load_twin(path)[1] if path is not None else None,)
            return self._buildings[0]

    # ------------------------------------------------------------ layers
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
            return LayerInfo(name, self.static[name], STATIC, None)
        return None

    def all_layers(self) -> list[LayerInfo]:
        """Every static and live layer (live ones from the last tick)."""
        live, t = self.live_layers()
        out = [LayerInfo(n, self.static[n], STATIC, None) for n in self.static_names]
        return out + [LayerInfo(n, live[n], LIVE, t) for n in _grid_layers(live)]

    def cell_values(self, row: int, col: int) -> list[tuple[LayerInfo, float]]:
        """Every layer's value at one cell."""
        return [(info, float(np.asarray(info.data.values[row, col]))) for info in self.all_layers()]

    # ------------------------------------------------------------ alerts
    def active_by_hazard_level(self) -> dict[tuple[str, int], int]:
        """How many alerts are active per (hazard, level)."""
        out: dict[tuple[str, int], int] = {}
        for a in self.active_alerts():
            out[(a.hazard, a.level)] = out.get((a.hazard, a.level), 0) + 1
        return out
