"""The hazard registry: every hazard the twin warns of, defined once.

Each entry says what decides its level (the metric, its layer and unit), where its thresholds are in
`models.config.RiskConfig`, what its CAP message calls it (event, category, certainty, urgency, the
instruction), which layer is the evidence in the message and which sensors report it. The risk tick
(`models.risk`), the live twin, the scenario runner, the alert composer and the API all read this table;
none of them names a hazard's layers or thresholds on its own.

Level hazards (``LEVEL_HAZARDS``, the kernel's order) have a level machine per cell in `models.risk.AlertLevels`.
``rain`` is the Shanghai rainstorm signal (district-wide, from the rolling rain totals), ``river`` the river level
warning at the reference tide gauge (one level for the river, on its cells: `models.risk.RiverSignal`,
docs/science/river.md) and ``crowd_forecast`` is the trend-projected crowd level, a forecast (CAP certainty Likely,
urgency Expected), never an observed alert (docs/science/alerts.md 5.7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from models.config import RiskConfig

LEVEL_NODATA = -1


@dataclass(frozen=True)
class Hazard:
    """One hazard of the registry.

    Attributes
    ----------
    name : str
        Key used in alert identifiers, the ``hazard`` CAP parameter, layers ``risk_<name>`` / ``level_<name>``.
    metric : str
        Layer whose value decides the level (and is the alert's evidence).
    unit : str
        Its unit as written in CAP parameters (``person/m2``, ``m``, ``km/h``, ``mm``).
    worst : str
        ``max`` if the worst value is the largest (density, depth, rain), ``min`` if the smallest (speed).
    evidence : str
        CAP parameter name of the worst value over the alert's area.
    event, category, instruction : str
        CAP ``event``, ``category`` and ``instruction``.
    certainty : str
        CAP ``certainty``: ``Observed`` for a measured hazard, ``Likely`` for a forecast.
    urgency : str or None
        CAP ``urgency`` while active; None: by level (``twin.alerting.cap.LEVEL_URGENCY``).
    event_zh, instruction_zh : str
        The Chinese (zh-CN) ``event`` and ``instruction``.
    headline_en, headline_zh : str
        Headline templates with ``{colour}`` (``Red`` / ``红色``) and ``{place}`` (docs/contract/cap.md), e.g.
        ``{colour} waterlogging warning, {place}`` / ``{place}积水{colour}预警``.
    response : tuple of str
        CAP ``responseType`` at blue, yellow, orange and red (``twin.alerting.cap.RESPONSE_TYPE``; a Cancel is
        ``AllClear``).
    sensor_kind : str
        Registry kind of the devices whose readings are its evidence (``crowd``, ``water``, ``rain``, ``traffic``,
        ``level``).
    raise_thresholds : callable
        RiskConfig -> (blue, yellow, orange, red) raise thresholds in ``unit`` (inf: level not used).
    """

    name: str
    metric: str
    unit: str
    worst: str
    evidence: str
    event: str
    category: str
    instruction: str
    sensor_kind: str
    raise_thresholds: Callable[[RiskConfig], tuple[float, float, float, float]]
    certainty: str = "Observed"
    urgency: str | None = None
    event_zh: str = ""
    instruction_zh: str = ""
    headline_en: str = "{colour} warning, {place}"
    headline_zh: str = "{place}{colour}预警"
    response: tuple[str, str, str, str] = ("Monitor", "Monitor", "Monitor", "Monitor")

    def response_type(self, level: int) -> str:
        """CAP ``responseType`` of an active alert at ``level`` (1 blue .. 4 red)."""
        return self.response[min(max(int(level), 1), 4) - 1]

    def worst_of(self, values: np.ndarray) -> float:
        """The worst of finite ``values`` (their max or min)."""
        return float(np.max(values) if self.worst == "max" else np.min(values))


def _traffic_red_ratio(cfg: RiskConfig) -> tuple[float, float, float, float]:
    """Traffic levels are by road class (GB/T 33171); the registry lists the red speed ratio only. [1]"""
    inf = float("inf")
    return (inf, inf, inf, cfg.traffic.red_ratio)


_CROWD_RESPONSE = ("Monitor", "Prepare", "Execute", "Execute")
"""Crowd, blue to red [design: blue is a density to watch; yellow asks the site to get its crowd plan ready; from
orange the plan's measures (stop the inflow, open exits: the instruction) are carried out, which is CAP's
``Execute`` ("execute a pre-planned activity identified in instruction")]."""
_FLOOD_RESPONSE = ("Monitor", "Prepare", "Avoid", "Avoid")
"""Flood, blue to red [design: from orange (0.15 m or more, above a kerb) people and traffic keep away from the
water, CAP's ``Avoid``; yellow readies closures and pumps]."""
_TRAFFIC_RESPONSE = ("Monitor", "Monitor", "Avoid", "Avoid")
"""Traffic, blue to red [design: the public is told to avoid a severely congested segment (GB/T 33171 severe, orange
and red); lighter congestion is only to be watched]."""
_RAIN_RESPONSE = ("Monitor", "Prepare", "Avoid", "Avoid")
"""Rainstorm signal, blue to red [design: following the Shanghai rainstorm signal's advice, yellow prepares for
waterlogging, orange and red keep people away from underpasses and low ground (the instruction)]."""
_RIVER_RESPONSE = ("Monitor", "Prepare", "Avoid", "Avoid")
"""River level, blue to red [design: at the warning level the flood-control duty watches the tide; yellow readies the
gates in the wall and the pumps; from orange people keep away from the riverside (the instruction), and at red
water comes over the lowest wall]."""
_FORECAST_RESPONSE = ("Monitor", "Prepare", "Prepare", "Prepare")
"""Crowd forecast, blue to red [design: a forecast asks for preparation (metering, exits), never for the measures
of an observed crowd]."""

REGISTRY: dict[str, Hazard] = {h.name: h for h in (
    Hazard("crowd", "crowd_density", "person/m2", "max", "peakDensity", "Crowd density warning", "Safety",
           "Stop the inflow into the area, open alternative exits and keep people moving.", "crowd",
           lambda cfg: cfg.crowd.density_raise,
           event_zh="人群密度预警", instruction_zh="请立即限制人员进入该区域，开放备用出口，引导人群持续流动。",
           headline_en="{colour} crowd density warning, {place}", headline_zh="{place}人群密度{colour}预警",
           response=_CROWD_RESPONSE),
    Hazard("flood", "water_depth", "m", "max", "peakDepth", "Urban waterlogging warning", "Met",
           "Close flooded underpasses to traffic and pedestrians and keep clear of deep water.", "water",
           lambda cfg: cfg.flood.depth_raise,
           event_zh="城市积水内涝预警", instruction_zh="请封闭积水的下穿通道，禁止车辆和行人通行，远离深水区域。",
           headline_en="{colour} waterlogging warning, {place}", headline_zh="{place}积水{colour}预警",
           response=_FLOOD_RESPONSE),
    Hazard("traffic", "traffic_speed", "km/h", "min", "minSpeed", "Traffic congestion warning", "Transport",
           "Divert traffic and check for an incident at the head of the queue.", "traffic", _traffic_red_ratio,
           event_zh="交通拥堵预警", instruction_zh="请分流车辆，并到拥堵车队前端查看是否发生事故。",
           headline_en="{colour} traffic congestion warning, {place}", headline_zh="{place}交通拥堵{colour}预警",
           response=_TRAFFIC_RESPONSE),
    Hazard("rain", "rain_1h", "mm", "max", "peakRain1h", "Rainstorm warning signal", "Met",
           "Expect waterlogging: keep away from underpasses and low ground.", "rain",
           lambda cfg: tuple(cfg.rain.shanghai_1h),
           event_zh="暴雨预警信号", instruction_zh="可能出现积水：请远离下穿通道和低洼地带。",
           headline_en="{colour} rainstorm warning signal, {place}", headline_zh="{place}暴雨{colour}预警信号",
           response=_RAIN_RESPONSE),
    Hazard("river", "river_level", "m", "max", "peakRiverLevel", "High river level warning", "Met",
           "Keep away from the riverside and the flood wall; close the flood gates in the wall and stand by to pump "
           "water that comes over it.", "level", lambda cfg: tuple(cfg.river.level_raise),
           event_zh="江河高水位预警",
           instruction_zh="请远离江边和防汛墙；关闭防汛墙上的闸门，做好排除漫过墙顶积水的准备。",
           headline_en="{colour} high river level warning, {place}", headline_zh="{place}高水位{colour}预警",
           response=_RIVER_RESPONSE),
    Hazard("crowd_forecast", "crowd_projected", "person/m2", "max", "expectedDensity", "Crowd density forecast",
           "Safety", "Prepare to meter the inflow and open alternative exits before the crowd becomes dense.",
           "crowd", lambda cfg: cfg.crowd.density_raise, certainty="Likely", urgency="Expected",
           event_zh="人群密度预测", instruction_zh="请在人群变得密集之前做好限流准备，并开放备用出口。",
           headline_en="{colour} crowd density forecast, {place}", headline_zh="{place}人群密度{colour}预测",
           response=_FORECAST_RESPONSE),
)}
"""Every hazard by name."""

LEVEL_HAZARDS = ("crowd", "flood", "traffic")
"""Hazards with a level machine per cell, in the risk kernel's order (bits 1, 2, 4 of ``level_changed`` and
``level_nodata``)."""
ALERT_HAZARDS = (*LEVEL_HAZARDS, "rain", "river", "crowd_forecast")
"""Hazards that raise alerts, in the order their alerts are listed."""


def hazard(name: str) -> Hazard:
    """The registry entry of ``name``; KeyError names the known hazards."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown hazard {name!r}; known: {', '.join(REGISTRY)}") from None


def alert_grids(layers: Mapping[str, np.ndarray], rain_stale: bool = False) -> dict[str, np.ndarray]:
    """The level grid of every alerting hazard from a tick's layers (int8, -1 no data, its level held).

    ``rain``: the Shanghai rainstorm signal, no data while no rain source is fresh (``rain_stale``).
    ``river``: the river level warning on the river cells (layer ``river_signal``, `models.risk.RiverSignal`), no
    data where the tick has no such layer.
    ``crowd_forecast``: the trend-projected crowd level where it is above the observed crowd level, else 0 (a
    forecast says what is coming, not what is there); no data where the crowd has none.
    """
    out = {h: np.asarray(layers[f"level_{h}"]) for h in LEVEL_HAZARDS}
    signal = np.asarray(layers["rain_signal"])
    out["rain"] = np.full_like(signal, LEVEL_NODATA) if rain_stale else signal
    river = layers.get("river_signal")
    out["river"] = np.full_like(signal, LEVEL_NODATA) if river is None else np.asarray(river)
    crowd, forecast = out["crowd"], np.asarray(layers["level_crowd_forecast"])
    nodata = (np.asarray(layers["level_nodata"]) & 1).astype(bool) | (forecast < 0)
    out["crowd_forecast"] = np.where(nodata, LEVEL_NODATA, np.where(forecast > crowd, forecast, 0)).astype(np.int8)
    return out


def density_bands_text(config: RiskConfig, band_indices: np.ndarray) -> str:
    """The crowd density bands that applied on an alert's cells, as the CAP parameter ``densityBands``.

    ``band_indices`` are the cells' values of the ``crowd_band`` layer: 0 the district's bands
    (``config.crowd.density_raise``), j >= 1 those of ``config.place_bands[j - 1]`` (a stair, ramp or bridge). Each
    set of bands once, the places first in band order and the district's last, raise thresholds only (an unused
    colour left out), e.g. ``Lujiazui Exit 1 stair (stair): blue 1.11, yellow 1.43, orange 2.5, red 3.5 person/m2;
    district: blue 1.08, yellow 2, orange 4, red 5 person/m2``. No cells: the district's. Raises ValueError for an
    index outside 0 .. len(config.place_bands).
    """
    found = np.unique(np.asarray(band_indices).astype(np.int64).ravel())
    indices = [int(j) for j in found] or [0]
    bad = [j for j in indices if not 0 <= j <= len(config.place_bands)]
    if bad:
        raise ValueError(f"density_bands_text: crowd band {bad[0]} is not 0 (the district's) to "
                         f"{len(config.place_bands)} (the places of RiskConfig.place_bands)")
    unit = REGISTRY["crowd"].unit
    parts = []
    for j in sorted(indices, key=lambda j: (j == 0, j)):
        place = config.place_bands[j - 1] if j else None
        label = f"{place.name} ({place.kind})" if place else "district"
        raise_at = place.density_raise if place else config.crowd.density_raise
        colours = ", ".join(f"{colour} {value:g}" for colour, value in
                            zip(("blue", "yellow", "orange", "red"), raise_at, strict=True) if value < np.inf)
        parts.append(f"{label}: {colours} {unit}")
    return "; ".join(parts)


__all__ = ["ALERT_HAZARDS", "LEVEL_HAZARDS", "REGISTRY", "Hazard", "alert_grids", "density_bands_text", "hazard"]
