"""The Huangpu in the live twin: the river works in the flood model, the river level from the gauges, and the pump
stations' discharges (issue 22; docs/contract/mqtt.md, docs/science/river.md).

`LiveRiver` is the river part of the live field provider (`twin.live.models.ObservedFields.before_flood` calls it
every tick, before the flood model runs):

- the district's river works (`twin.district.river.load_river_works`: the flood wall's crests, the storm-drain
  outfalls and the river cells) go into the flood model at the first tick (`RiverWorks.apply`);
- every tick the river cells take the river level of the freshest river-level gauge (`LiveRiver.level`); a gauge
  silent past ``LiveConfig.stale_s["level"]`` is held for ``LiveConfig.river_hold_s``, then the river falls back to
  ``LiveConfig.river_fallback_m``; each change of source is logged once;
- every fresh pump station's discharge goes into the model at its outfall's cells (`LiveRiver.pump_inflows`); a
  pump that cannot be placed is logged once and kept in `LiveRiver.pump_problems`.

Levels are metres above the Wusong datum (吴淞高程); the works convert them to the grid's datum. Only the readings
decide the river, so a replayed or restored twin gets the same one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import models
from ingest.registry import DATUM_OFFSET
from models.flood import Hydrograph, Inflow
from twin.district import geo
from twin.district.river import RiverWorks, load_river_works, river_config
from twin.live.state import TwinState

if TYPE_CHECKING:
    from twin.live.models import LiveConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiverNow:
    """The river level the live flood model runs with this tick and where it comes from.

    ``source``: ``gauge`` (the freshest ``level`` gauge, fresh), ``held`` (its last reading, stale for less than
    `LiveConfig.river_hold_s`), ``fallback`` (`LiveConfig.river_fallback_m`: no reading, or too old) or ``off``
    (no river works: the river is a plain outlet). ``level_m`` [m above the Wusong datum] (NaN when off),
    ``device`` the gauge (empty for fallback), ``t`` the reading's time [unix s] (NaN without one)."""

    source: str
    level_m: float
    device: str = ""
    t: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        """Plain values for the status document (NaN as None)."""
        return {"source": self.source, "level_m": None if np.isnan(self.level_m) else round(self.level_m, 3),
                "device": self.device, "t": None if np.isnan(self.t) else self.t}


class LiveRiver:
    """The river and the pump stations of one live twin (`twin.live.models.ObservedFields` owns one).

    Reads ``state.readings["level"]`` (quantity ``level`` [m], plus each gauge's registry ``datum_offset_m`` [m])
    and ``state.readings["pump"]`` (quantity ``discharge`` [m3 s-1]); settings from `twin.live.models.LiveConfig`:
    ``river_works``, ``stale_s["level"]``, ``stale_s["pump"]`` [s], ``river_hold_s`` [s], ``river_fallback_m``
    [m, Wusong].
    """

    def __init__(self, state: TwinState, config: LiveConfig) -> None:
        self.state, self.config = state, config
        self.works: RiverWorks | None = load_river_works(state.static) if config.river_works else None
        """The district's river works (flood wall, outfalls, river cells), None without (`LiveConfig.river_works`);
        put into the flood model at the first tick (`before_flood`)."""
        self.works_applied = False
        self.now = RiverNow("off", float("nan"))
        """The river level of the last tick and its source (`level`)."""
        self._pump_places: dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | None] = {}
        self.pump_problems: dict[str, str] = {}
        """Pump stations whose discharge cannot go into the flood model, and why (outfall outside the grid or on a
        wall cell): logged once, left out of the inflows."""

    def risk_config(self, risk: models.RiskConfig) -> models.RiskConfig:
        """``risk`` with the river warning's thresholds from the gauge file and the wall
        (`twin.district.river.river_config`); ``risk`` as it is without river works."""
        if self.works is None:
            return risk
        return dataclasses.replace(risk, river=river_config(self.works, risk.river))

    def as_dict(self) -> dict[str, object]:
        """The river of the last tick for the status document (`RiverNow.as_dict`)."""
        return self.now.as_dict()

    def before_flood(self, t: float, flood: models.FloodModel) -> None:
        """The river works at the first tick (flood wall, outfalls, river cells: `RiverWorks.apply`), then every
        tick the river level (`level`) and the pump stations' discharges (`pump_inflows`), at ``t`` [unix s].
        Without river works (`LiveConfig.river_works` False) only the discharges."""
        if self.works is not None:
            level = self.level(t).level_m  # Wusong metres: the works convert to the grid's datum
            if not self.works_applied:
                self.works.apply(flood, level)  # barriers and outfalls once, with the river
                self.works_applied = True
            else:
                self.works.set_level(flood, level)
        flood.set_inflows(self.pump_inflows(t, flood))

    def level(self, t: float) -> RiverNow:
        """The river level at ``t`` [unix s]: the newest reading of any ``level`` gauge (plus the gauge's registry
        ``datum_offset_m``) while it is at most ``stale_s["level"]`` old (``gauge``) or at most ``river_hold_s``
        older than that (``held``), else `LiveConfig.river_fallback_m` (``fallback``). Each change of source is
        logged once. Only the readings decide, so a replayed or restored twin gets the same river."""
        r, cfg = self.state.readings["level"], self.config
        value, t_read = r.latest("level")
        ok = np.isfinite(value) & np.isfinite(t_read) & (t_read <= t)
        now = RiverNow("fallback", float(cfg.river_fallback_m))
        if ok.any():
            i = int(np.flatnonzero(ok)[np.argmax(t_read[ok])])
            age = t - float(t_read[i])
            source = "gauge" if age <= cfg.stale_s["level"] else \
                "held" if age <= cfg.stale_s["level"] + cfg.river_hold_s else ""
            if source:
                device = r.ids[i]
                found = self.state.registry.get(device)
                offset = float(found.properties.get(DATUM_OFFSET, 0.0)) if found is not None else 0.0
                now = RiverNow(source, float(value[i]) + offset, device, float(t_read[i]))
        self._log_river(now)
        self.now = now
        return now

    def _log_river(self, now: RiverNow) -> None:
        before = self.now
        if now.source == before.source and (now.source != "gauge" or now.device == before.device):
            return
        if now.source == "gauge":
            log.info("river level from gauge %s: %.2f m (Wusong)", now.device, now.level_m)
        elif now.source == "held":
            log.warning("river-level gauge %s silent for over %.0f s: holding its last level %.2f m (Wusong) for up "
                        "to %.0f s", now.device, self.config.stale_s["level"], now.level_m, self.config.river_hold_s)
        else:
            log.warning("no river-level reading within %.0f s: the river is at the fallback level %.2f m (Wusong)",
                        self.config.stale_s["level"] + self.config.river_hold_s, now.level_m)

    def pump_inflows(self, t: float, flood: models.FloodModel) -> list[Inflow]:
        """A constant inflow (`models.flood.Hydrograph.constant`) of each pump station with a fresh discharge
        reading (at most ``stale_s["pump"]`` old, > 0 m3 s-1) at its outfall's cells (`pump_place`); a silent
        pump puts no water in. Pumps that cannot be placed are left out (`pump_problems`)."""
        r = self.state.readings["pump"]
        q, _ = r.latest("discharge")
        fresh = r.fresh("discharge", t, self.config.stale_s["pump"]) & np.isfinite(q) & (q > 0)
        out = []
        for i in np.flatnonzero(fresh):
            place = self.pump_place(r.ids[int(i)], flood)
            if place is not None:
                out.append(Inflow(r.ids[int(i)], place[0], place[1], Hydrograph.constant(float(q[i]))))
        return out

    def pump_place(self, device: str, flood: models.FloodModel) -> tuple[np.ndarray, np.ndarray] | None:
        """(flat cells, weights) of a pump station's outfall on the grid, or None (its problem logged once and kept
        in `pump_problems`). A Point outfall: its cell. A LineString (an outfall spread along the bank): the cells
        it crosses, each weighted by the length of line in it (sampled every quarter cell); parts outside the grid
        or on wall cells are left out. An outfall with no cell left (outside the grid, or on a building: a wall
        cell of the flood model) cannot take water. Cached per device and geometry, so a moved pump is placed
        again."""
        found = self.state.registry.get(device)
        geometry = found.geometry if found is not None else None
        key = (device, json.dumps(geometry, sort_keys=True))
        if key in self._pump_places:
            return self._pump_places[key]
        place, problem = self._place(geometry, flood)
        self._pump_places[key] = place
        if problem:
            self.pump_problems[device] = problem
            log.warning("pump station %s: %s: its discharge is not put into the flood model", device, problem)
        else:
            self.pump_problems.pop(device, None)
        return place

    def _place(self, geometry: dict | None, flood: models.FloodModel
               ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
        grid = self.state.grid
        if not geometry or geometry.get("type") not in ("Point", "LineString"):
            return None, "no Point or LineString outfall"
        pts = np.atleast_2d(np.asarray(geometry["coordinates"], float))[:, :2]
        x, y = geo.to_projected(pts[:, 0], pts[:, 1], grid.crs)
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        if pts.shape[0] > 1:  # sample the line every quarter cell
            seg = np.hypot(np.diff(x), np.diff(y))
            s = np.concatenate([[0.0], np.cumsum(seg)])
            at = np.arange(grid.cell_size / 8, s[-1], grid.cell_size / 4) if s[-1] > 0 else np.zeros(1)
            x, y = np.interp(at, s, x), np.interp(at, s, y)
        row, col = grid.cell_of(x, y)
        inside = row >= 0
        where = f"outfall at {pts[0, 0]:.6f},{pts[0, 1]:.6f}"
        if not inside.any():
            return None, f"{where} is outside the twin's grid"
        cells = np.asarray(grid.flat_index(row[inside], col[inside]), np.int64)
        open_ = flood.wall.ravel()[cells] == 0
        if not open_.any():
            return None, f"{where} is on a wall cell of the flood model (a building)"
        cells, counts = np.unique(cells[open_], return_counts=True)
        return (cells, counts / counts.sum()), ""
