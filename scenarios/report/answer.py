"""The answer to a scenario's question, generated from the numbers: the worst places by name with their local
times, and the three places with the largest effects.

Places come worst first (`scenarios.place_metrics.severity`). `named_places` keeps one row per name and puts the
500 m management grid units last (they exist so nothing is missed; a planner names a portal, a square, a road).
With a river, the answer starts with the flood wall (`wall_clause`): where and when water comes over it, its peak
discharge and volume, or how far the river stays below the lowest crest.
Thresholds are the alert levels' raise thresholds (`models.config`): water 0.15 / 0.27 / 0.50 m, crowd 2 / 4 / 5
person m-2 (yellow, orange, red).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from models.config import CrowdConfig, FloodConfig
from scenarios.metrics import COLOURS
from scenarios.place_metrics import EXPOSED_LEVEL, KIND_ORDER, Clock, exposed_level
from scenarios.report.fmt import fmt_density, fmt_depth, fmt_minutes, fmt_people, fmt_speed, place_name

DEPTH_LEVELS_M = FloodConfig().depth_raise[1:]
"""Water depth raise thresholds of yellow, orange and red [m]."""
DENSITY_LEVELS = CrowdConfig().density_raise[1:]
"""Crowd density raise thresholds of yellow, orange and red [person m-2]."""
WET_M = 0.01
"""Water shallower than this is not worth a word [design]. [m]"""
GRID = "grid unit"


def named_places(rows: list[dict]) -> list[dict]:
    """``rows`` (worst first) with one row per name (the worst), grid units after the other places."""
    seen: set[str] = set()
    out: list[dict] = []
    for row in rows:
        name = place_name(row).casefold()
        if name not in seen:
            seen.add(name)
            out.append(row)
    return [r for r in out if r.get("kind") != GRID] + [r for r in out if r.get("kind") == GRID]


def _rank(kind: object) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def top_level(row: dict, hazard: str) -> int:
    """A place's highest level of ``hazard``: 0 (none) to 4 (red)."""
    return COLOURS.index(row.get("top_level", {}).get(hazard, "none"))


def worst_flood(rows: list[dict]) -> dict | None:
    """The named place with the deepest water (to the centimetre; ties go to the more specific kind of place)."""
    wet = [r for r in named_places(rows) if float(r.get("peak_depth_m") or 0.0) >= WET_M]
    return min(wet, key=lambda r: (-round(float(r["peak_depth_m"]), 2), r.get("kind") == GRID, _rank(r.get("kind"))),
               default=None)


def worst_crowd(rows: list[dict]) -> dict | None:
    """The named place where the crowd is worst: highest level, longest at it, most people exposed, densest."""
    crowded = [r for r in named_places(rows) if float(r.get("peak_density") or 0.0) > 0.0]

    def key(r: dict) -> tuple:
        lvl = top_level(r, "crowd")
        minutes = r.get("minutes_at_or_above", {}).get("crowd", {}).get(COLOURS[lvl], 0.0) if lvl >= 2 else 0.0
        return (r.get("kind") == GRID, -lvl, -float(minutes), -int(r.get("people_exposed") or 0),
                -float(r.get("peak_density") or 0.0))
    return min(crowded, key=key, default=None)


def worst_traffic(rows: list[dict]) -> dict | None:
    """The named place where traffic is worst (orange or red only), slowest first."""
    slow = [r for r in named_places(rows) if top_level(r, "traffic") >= 3 and r.get("kind") != GRID]
    return min(slow, key=lambda r: (-top_level(r, "traffic"), float(r.get("min_traffic_speed_kmh") or 1e9)),
               default=None)


def first_at(series: xr.Dataset | None, key: str, layer: str, level: int, clock: Clock) -> str | None:
    """The local time at which place ``key``'s ``layer`` (``level_crowd``...) first reached ``level``."""
    first = _first_s(series, key, layer, level)
    return clock.at(first) if np.isfinite(first) else None


def exposed_series(frames: xr.Dataset) -> np.ndarray:
    """People in cells where water or the crowd is orange or red (`exposed_level` >= 3), summed over the grid, per
    recorded time [person]."""
    if not frames.sizes.get("time", 0):
        return np.zeros(0)
    count = np.nan_to_num(np.asarray(frames["crowd_count"].values, float))
    return (count * (exposed_level(frames) >= EXPOSED_LEVEL)).sum(axis=(1, 2))


def _flood_clause(rows: list[dict]) -> str:
    row = worst_flood(rows)
    if row is None:
        return "No water stands anywhere"
    text = f"Water reaches {fmt_depth(row['peak_depth_m'])} at {place_name(row)} at {row.get('peak_depth_at')}"
    red = row.get("minutes_at_or_above", {}).get("flood", {}).get("red", 0.0)
    if float(row["peak_depth_m"]) < DEPTH_LEVELS_M[0]:
        text = (f"Water stays below {DEPTH_LEVELS_M[0]:.2f} m (at most {fmt_depth(row['peak_depth_m'])} at "
                f"{place_name(row)} at {row.get('peak_depth_at')})")
    elif red:
        text += f", red for {fmt_minutes(red)}"
    return text + _intervention_clause(rows, row)


def _intervention_clause(rows: list[dict], worst: dict | None) -> str:
    """What happened at the first place the scenario's interventions name (if not already said)."""
    row = next((r for r in rows if str(r.get("key", "")).startswith("scenario:interventions.")), None)
    if row is None or (worst is not None and place_name(row) == place_name(worst)):
        return ""
    what = str(row["key"]).split(".", 1)[1].split("[")[0]
    if what == "drainage":
        return (f"; at {place_name(row)}, where the drainage changes, {fmt_depth(row['peak_depth_m'])}"
                + (f" at {row['peak_depth_at']}" if row.get("peak_depth_at") else ""))
    if what == "close_exit":
        return f"; at the closed {place_name(row)} the crowd peaks at {fmt_density(row['peak_density'])}"
    if row.get("min_traffic_speed_kmh") is not None:
        return f"; on {place_name(row)} traffic slows to {fmt_speed(row['min_traffic_speed_kmh'])}"
    return ""


def _crowd_clause(rows: list[dict], series: xr.Dataset | None, clock: Clock) -> str:
    row = worst_crowd(rows)
    if row is None:
        return ""
    lvl = top_level(row, "crowd")
    if lvl < 2:
        return (f"the crowd stays below yellow (at most {fmt_density(row['peak_density'])} at {place_name(row)} at "
                f"{row.get('peak_density_at')})")
    colour = COLOURS[lvl]
    since = first_at(series, str(row.get("key")), "level_crowd", lvl, clock)
    minutes = row.get("minutes_at_or_above", {}).get("crowd", {}).get(colour, 0.0)
    when = f" from {since}" if since else ""
    return (f"the crowd is {colour} at {place_name(row)}{when} for {fmt_minutes(minutes)} (at most "
            f"{fmt_density(row['peak_density'])} at {row.get('peak_density_at')})")


def _first_s(series: xr.Dataset | None, key: str, layer: str, level: int) -> float:
    """The recorded time [s from the start] at which place ``key``'s ``layer`` first reached ``level`` (inf: never)."""
    if series is None or layer not in series or key not in series["place"].values:
        return float("inf")
    hit = np.flatnonzero(np.asarray(series[layer].sel(place=key).values) >= level)
    return float(series["time"].values[hit[0]]) if hit.size else float("inf")


def _gathering_clause(rows: list[dict], series: xr.Dataset | None, clock: Clock, said: dict | None) -> str:
    """When the crowd at the scenario's gathering places (``forcing.crowd.gathering``) reaches orange and red: the
    places a crowd scenario asks about, by name, the first to turn orange first (up to two places)."""
    found = []
    for row in rows:
        key = str(row.get("key", ""))
        if not key.startswith("scenario:forcing.crowd.gathering") or top_level(row, "crowd") < 3:
            continue
        if said is not None and place_name(row) == place_name(said):
            continue
        times = [(COLOURS[k], _first_s(series, key, "level_crowd", k)) for k in (3, 4)]
        when = " and ".join(f"{colour} from {clock.at(s)}" for colour, s in times if np.isfinite(s))
        if when:
            found.append((times[0][1], f"at {place_name(row)}, where people gather, {when}"))
    return "; ".join(text for _, text in sorted(found)[:2])


TRAFFIC_KEYS = ("scenario:forcing.traffic", "scenario:interventions.close_road")
"""Keys of the scenario's own traffic places: roads whose demand it changes, roads it closes."""


def _scenario_traffic_clause(rows: list[dict], series: xr.Dataset | None, clock: Clock) -> str:
    """Traffic on the roads whose demand the scenario changes (a closure's detour streets), by name: the level
    reached, from when, and the slowest speed (up to two roads)."""
    parts = []
    for row in rows:
        if not str(row.get("key", "")).startswith(TRAFFIC_KEYS[0]) or len(parts) == 2:
            continue
        lvl = top_level(row, "traffic")
        speed = row.get("min_traffic_speed_kmh")
        if lvl < 2 or speed is None:
            parts.append(f"traffic on {place_name(row)}, whose demand changes, stays below yellow")
            continue
        since = _first_s(series, str(row["key"]), "level_traffic", lvl)
        when = f" from {clock.at(since)}" if np.isfinite(since) else ""
        parts.append(f"traffic on {place_name(row)}, whose demand changes, is {COLOURS[lvl]}{when}, slowest "
                     f"{fmt_speed(speed)} at {row.get('min_traffic_speed_at')}")
    return "; ".join(parts)


def _traffic_clause(rows: list[dict]) -> str:
    row = worst_traffic(rows)
    if row is None:
        return ""
    return (f"traffic is {row['top_level']['traffic']} on {place_name(row)}, slowest "
            f"{fmt_speed(row.get('min_traffic_speed_kmh'))} at {row.get('min_traffic_speed_at')}")


def _exposed_clause(exposed: np.ndarray, times_s: np.ndarray, clock: Clock) -> str:
    if exposed.size == 0 or not exposed.max() >= 0.5:
        return "nobody stands where water or the crowd is orange or red"
    k = int(np.argmax(exposed))
    return f"at most {fmt_people(exposed[k])} people stand in orange or red at once (at {clock.at(float(times_s[k]))})"


WALL = "flood wall"


def wall_rows(rows: list[dict]) -> list[dict]:
    """The flood-wall sections of a run with a river, the most water over them first."""
    walls = [r for r in rows if r.get("kind") == WALL]
    return sorted(walls, key=lambda r: (-float(r.get("overtopping_volume_m3") or 0.0), float(r.get("crest_m") or 0)))


def fmt_volume(value: float) -> str:
    """A volume [m3] as a whole number with separators (``12,000 m³``)."""
    return f"{float(value):,.0f} m³"


def wall_clause(rows: list[dict]) -> str:
    """Where and when water comes over the flood wall (the sections with most water first, up to two by name), or how
    far the river's peak stays below the lowest crest; empty without a river."""
    walls = wall_rows(rows)
    if not walls:
        return ""
    over = [r for r in walls if float(r.get("overtopping_volume_m3") or 0.0) > 0.5]
    river = max((float(r["river_peak_m"]) for r in walls if r.get("river_peak_m") is not None), default=None)
    river_at = next((r.get("river_peak_at") for r in walls if r.get("river_peak_m") == river), None)
    peak = f"the Huangpu peaks at {river:.2f} m (Wusong) at {river_at}" if river is not None else ""
    if not over:
        low = min(walls, key=lambda r: float(r["crest_m"]))
        gap = f", {float(low['crest_m']) - river:.2f} m below" if river is not None else " below"
        return (f"No water comes over the flood wall: {peak}{gap} its lowest crest ({float(low['crest_m']):.2f} m "
                f"at {place_name(low)})")
    parts = [f"{place_name(r)} (crest {float(r['crest_m']):.2f} m) from {r.get('overtopping_first_at')}; peak "
             f"{float(r['overtopping_peak_m3s']):.1f} m³/s at {r.get('overtopping_peak_at')}; "
             f"{fmt_volume(r['overtopping_volume_m3'])} in {fmt_minutes(r.get('overtopping_minutes'))}"
             for r in over[:2]]
    more = f"; and at {len(over) - 2} more sections" if len(over) > 2 else ""
    held = [r for r in walls if r not in over]
    rest = f"; the other sections (crests {min(float(r['crest_m']) for r in held):.2f} m and up) hold" if held else ""
    return ("Water comes over the flood wall at " + "; and at ".join(parts) + more + rest
            + (f"; {peak}" if peak else ""))


def answer(rows: list[dict], series: xr.Dataset | None, exposed: np.ndarray, times_s: np.ndarray,
           clock: Clock) -> list[str]:
    """The answer in two or three sentences: the flood wall (with a river), the water, then the crowd, the traffic
    and the people exposed (the traffic first when the scenario changes traffic: closes a road or changes a road's
    demand)."""
    has_water = any(float(r.get("peak_depth_m") or 0.0) >= WET_M for r in rows)
    has_crowd = any(float(r.get("peak_density") or 0.0) > 0.0 for r in rows)
    first = _flood_clause(rows) if has_water or not has_crowd else ""
    crowd = [_crowd_clause(rows, series, clock), _gathering_clause(rows, series, clock, worst_crowd(rows))]
    traffic = [_scenario_traffic_clause(rows, series, clock), _traffic_clause(rows)]
    asks_traffic = any(str(r.get("key", "")).startswith(TRAFFIC_KEYS) for r in rows)  # a closure, a demand change
    rest = [c for c in (*(traffic + crowd if asks_traffic else crowd + traffic),
                        _exposed_clause(exposed, times_s, clock)) if c]
    sentences = [first + "."] if first else []
    wall = wall_clause(rows)
    if wall:
        sentences.insert(0, wall + ".")
    if rest:
        text = "; ".join(rest)
        sentences.append(text[0].upper() + text[1:] + ".")
    return sentences


def effects(rows: list[dict], n: int = 3) -> list[dict]:
    """The ``n`` places with the largest effects, worst first (one per name, grid units last): the places the
    answer names (the worst water, the worst crowd, the worst traffic, when they reach yellow), then the worst
    others, so each hazard that matters has its place on the first screen."""
    named = named_places(rows)
    said = [r for r in (worst_flood(rows), worst_crowd(rows), worst_traffic(rows)) if r is not None and max(
        top_level(r, h) for h in ("flood", "crowd", "traffic")) >= 2]
    said = [r for r in wall_rows(rows) if float(r.get("overtopping_volume_m3") or 0.0) > 0.5][:1] + said
    said = [r for r in named if any(r is s for s in said)][:n]  # worst first
    rest = [r for r in named if all(r is not s for s in said)]
    chosen = said + rest[:n - len(said)]
    return [r for r in named if any(r is c for c in chosen)]


def key_numbers(row: dict) -> list[tuple[str, str]]:
    """(label, value) of a place's key numbers, only those that say something."""
    out = []
    if row.get("kind") == WALL:
        out.append(("crest", f"{float(row['crest_m']):.2f} m (Wusong)"))
        if float(row.get("overtopping_volume_m3") or 0.0) > 0.5:
            out.append(("over the wall", f"from {row.get('overtopping_first_at')}, peak "
                        f"{float(row['overtopping_peak_m3s']):.1f} m³/s, {fmt_volume(row['overtopping_volume_m3'])}"))
    if float(row.get("peak_depth_m") or 0.0) >= WET_M:
        out.append(("water", f"{fmt_depth(row['peak_depth_m'])} at {row.get('peak_depth_at')}"))
    if float(row.get("peak_density") or 0.0) > 0.0:
        out.append(("crowd", f"{fmt_density(row['peak_density'])} at {row.get('peak_density_at')}"))
    if row.get("min_traffic_speed_kmh") is not None and top_level(row, "traffic") >= 2:
        out.append(("traffic", f"{fmt_speed(row['min_traffic_speed_kmh'])} at {row.get('min_traffic_speed_at')}"))
    for hazard, mins in row.get("minutes_at_or_above", {}).items():
        if mins.get("red"):
            out.append((f"{hazard} red", fmt_minutes(mins["red"])))
    if row.get("people_exposed"):
        out.append(("people exposed", fmt_people(row["people_exposed"])))
    return out


def key_places(rows: list[dict], field_: str, n: int = 5, floor: float = 0.0) -> list[dict]:
    """The ``n`` named places (not grid units) with the largest ``field_`` above ``floor``, largest first (ties to
    the centimetre go to the more specific kind of place: an underpass before the road over it)."""
    named = [r for r in named_places(rows) if r.get("kind") != GRID and float(r.get(field_) or 0.0) > floor]
    return sorted(named, key=lambda r: (-round(float(r[field_]), 2), _rank(r.get("kind"))))[:n]
