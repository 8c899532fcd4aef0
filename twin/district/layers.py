"""The twin's layer registry: every variable of the twin dataset, its units and meaning.

This is the one place that says what a layer called ``water_depth`` is. The CIM builder,
the live state, the model components and the NetCDF writer all take names, units and
long names from here, and a test checks that every model component's declared inputs
and outputs agree with it.

Units are UDUNITS-2 / CF strings (``m``, ``m2``, ``km h-1``, ``person m-2``; ``1`` for a
dimensionless fraction). Level layers are small integers: 0 none, 1 blue, 2 yellow,
3 orange, 4 red, and ``LEVEL_NODATA`` (-1) where a cell never had data; a cell whose source
falls silent keeps its held level, flagged in ``level_nodata``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

LEVEL_NODATA = -1
LEVEL_NAMES = MappingProxyType({-1: "nodata", 0: "none", 1: "blue", 2: "yellow", 3: "orange", 4: "red"})

ROAD_CLASSES = ("none", "expressway", "arterial", "secondary", "branch")
"""Codes of the ``road_class`` layer, by index (GB/T 33171-2016 road classes)."""


@dataclass(frozen=True)
class Layer:
    """One variable of the twin dataset.

    Parameters
    ----------
    name : str
        Variable name in the dataset.
    units : str
        CF/UDUNITS units string; ``"1"`` for dimensionless.
    long_name : str
        Human-readable description (CF ``long_name``).
    dtype : str
        numpy dtype of the stored array.
    kind : str
        ``static`` (CIM, built once), ``live`` (observations), ``risk`` (model output, or a per-cell setting of
        the risk tick such as ``crowd_band``) or ``level``.
    """

    name: str
    units: str
    long_name: str
    dtype: str = "float64"
    kind: str = "static"

    def attrs(self) -> dict[str, str]:
        """CF attributes for an xarray variable holding this layer."""
        out = {"units": self.units, "long_name": self.long_name}
        if self.kind == "level":
            out["flag_values"] = "-1 0 1 2 3 4"
            out["flag_meanings"] = "nodata none blue yellow orange red"
        if self.name == "road_class":
            out["flag_values"] = " ".join(str(i) for i in range(len(ROAD_CLASSES)))
            out["flag_meanings"] = " ".join(ROAD_CLASSES)
        return out


def _layers(*items: Layer) -> MappingProxyType:
    return MappingProxyType({layer.name: layer for layer in items})


LAYERS = _layers(
    # --- static CIM layers (docs/architecture.md section 2) ---
    Layer("elevation", "m", "ground or water-surface elevation above datum"),
    Layer("building_fraction", "1", "fraction of the cell covered by building footprints"),
    Layer("building_height", "m", "height of the tallest building in the cell"),
    Layer("floor_area", "m2", "gross floor area of buildings in the cell"),
    Layer("walkable_area", "m2", "open ground in the cell people can stand on"),
    Layer("road_fraction", "1", "fraction of the cell covered by carriageway"),
    Layer("road_class", "1", "highest road class in the cell", dtype="int8"),
    Layer("free_flow_speed", "km h-1", "free-flow speed of the highest road class in the cell"),
    Layer("water_mask", "1", "cell is mostly open water (river, canal)", dtype="int8"),
    Layer("water_fraction", "1", "fraction of the cell covered by open water"),
    Layer("drainage_capacity", "mm h-1", "storm-drainage capacity as a rain intensity"),
    Layer("runoff_coefficient", "1", "share of rain that becomes surface runoff"),
    Layer("vulnerability", "1", "vulnerability of what is in the cell, 0 (none) to 1 (highest)"),
    Layer("underpass", "1", "cell holds an underpass, tunnel portal or sunken road", dtype="int8"),
    # --- live layers ---
    Layer("crowd_count", "person", "people counted in the cell", kind="live"),
    Layer("crowd_density", "person m-2", "people per square metre of walkable area", kind="live"),
    Layer("rain_rate", "mm h-1", "rain intensity", kind="live"),
    Layer("rain_1h", "mm", "rain accumulated over the last hour", kind="live"),
    Layer("rain_6h", "mm", "rain accumulated over the last six hours", kind="live"),
    Layer("water_depth", "m", "water depth over ground", kind="live"),
    Layer("traffic_speed", "km h-1", "space-mean traffic speed", kind="live"),
    Layer("traffic_samples", "1", "probe samples behind the traffic speed", kind="live"),
    Layer("traffic_flow", "h-1", "vehicles per hour over the cell's loop detectors", kind="live"),
    Layer("traffic_occupancy", "%", "share of time a vehicle is over the cell's loop detectors", kind="live"),
    Layer("congestion_level", "1", "GB/T 33171 congestion level, 0 smooth to 4 severe, -1 no road or no data",
          dtype="int8", kind="live"),
    Layer("tpi_like", "1", "TPI-like congestion index, 0 to 10", kind="live"),
    Layer("traffic_incident", "1", "traffic incident in the cell: 1 declared, 0 tested and none, -1 not tested",
          dtype="int8", kind="live"),
    # --- model outputs the live twin keeps (models/ components declare them) ---
    Layer("crowd_trend", "person m-2 s-1", "smoothed rate of change of crowd density", kind="live"),
    Layer("crowd_projected", "person m-2",
          "density the crowd's trend reaches in 5 minutes (a forecast, never an observed level)", kind="live"),
    Layer("crowd_pressure", "s-2", "Helbing crowd pressure, density x velocity variance", kind="live"),
    Layer("water_speed", "m s-1", "depth-averaged water speed at the cell centre", kind="live"),
    Layer("flow_hazard", "m2 s-1", "water depth times speed", kind="live"),
    Layer("rain_signal", "1", "Shanghai rainstorm signal level, 0 none to 4 red", dtype="int8", kind="level"),
    Layer("river_signal", "1", "river level warning level on river cells, 0 none to 4 red", dtype="int8", kind="level"),
    Layer("river_level", "m", "river water level on river cells", kind="live"),
    Layer("wall_overtopping", "m3 s-1", "discharge entering the cell across barrier (flood-wall) faces, mean over "
          "the last step", kind="live"),
    Layer("level_changed", "1", "bitmask of levels changed this tick: 1 crowd, 2 flood, 4 traffic, 8 overall",
          dtype="int8", kind="risk"),
    # --- when each source last reported for the cell (NaN: never) ---
    Layer("updated_crowd", "seconds since 1970-01-01 00:00:00", "last crowd-counter reading covering the cell",
          kind="live"),
    Layer("updated_rain", "seconds since 1970-01-01 00:00:00", "last reading of the cell's rain gauge", kind="live"),
    Layer("updated_water", "seconds since 1970-01-01 00:00:00", "last water-depth reading in the cell",
          kind="live"),
    Layer("updated_traffic", "seconds since 1970-01-01 00:00:00",
          "last loop-detector reading or vehicle ping in the cell", kind="live"),
    # --- risk layers ---
    Layer("risk_crowd", "1", "crowd risk, hazard x exposure x vulnerability", kind="risk"),
    Layer("risk_flood", "1", "flood risk, hazard x exposure x vulnerability", kind="risk"),
    Layer("risk_traffic", "1", "traffic risk, hazard x exposure x vulnerability", kind="risk"),
    Layer("level_crowd", "1", "crowd warning level", dtype="int8", kind="level"),
    Layer("level_flood", "1", "flood warning level", dtype="int8", kind="level"),
    Layer("level_traffic", "1", "traffic warning level", dtype="int8", kind="level"),
    Layer("level", "1", "overall warning level (max over hazards, compound escalation)",
          dtype="int8", kind="level"),
    Layer("level_nodata", "1",
          "bitmask of hazards without data this tick, their level held: 1 crowd, 2 flood, 4 traffic",
          dtype="int8", kind="risk"),
    Layer("level_crowd_forecast", "1", "crowd level the trend-projected density would have (forecast, not observed)",
          dtype="int8", kind="level"),
    # --- settings of the risk tick per cell (not built by the CIM: set from a place-bands file) ---
    Layer("crowd_band", "1",
          "crowd density bands of the cell: 0 the district's, j the j-th place's own (stair, ramp, bridge)",
          dtype="int8", kind="risk"),
)
"""All layers by name."""


def layer(name: str) -> Layer:
    """Look a layer up by name; a clear ``KeyError`` names the known layers otherwise."""
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown layer {name!r}; known layers: {', '.join(LAYERS)}") from None
