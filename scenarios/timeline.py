"""What happens when in a scenario, as lines of text for reports and progress output."""

from __future__ import annotations

import datetime as dt

from models.design_storm import shanghai_storm_intensity
from scenarios.model import Closure, DesignStorm, Rain, Scenario, Steps, Window
from scenarios.quantities import format_offset


def timeline(spec: Scenario) -> list[tuple[float, str]]:
    """(seconds from the start, text) of every event of the scenario within its duration, in order."""
    events = [(0.0, _opening(spec))]
    for rain in spec.forcing.rain:
        events += _rain(rain)
    for a in spec.forcing.arrivals:
        events += _span(a.window, f"people arrive at {a.at.label} ({_rate(a.rate)}), heading for {a.to.label}",
                        f"arrivals at {a.at.label} stop")
    for g in spec.forcing.gatherings:
        events += [(g.peak_time_s - g.rise_s, f"people start gathering at {g.at.label}"),
                   (g.peak_time_s, f"the gathering at {g.at.label} peaks: {g.peak:,.0f} people want to be there"),
                   (g.peak_time_s + g.hold_s + g.fall_s, f"the gathering at {g.at.label} has dispersed")]
    for d in spec.forcing.traffic:
        events += _span(d.window, f"traffic demand on {d.road} x{d.factor:g}", f"traffic demand on {d.road} back "
                        "to normal")
    for c in spec.interventions.drainage:
        what = f"x{c.factor:g}" if c.factor is not None else f"{c.capacity_mm_h:g} mm/h"
        events.append((0.0, f"drainage capacity {what} in {c.area.label}"))
    for w in spec.interventions.tide_locked:
        events += _span(w, "river outfalls tide-locked: open water takes no surface water",
                        "river outfalls drain again")
    for c in spec.interventions.close_road + spec.interventions.close_exit:
        events += _closure(c)
    for o in spec.interventions.one_way:
        events += _span(o.window, f"one-way crowd flow in {o.area.label} toward {o.bearing_deg:g} deg",
                        f"two-way crowd flow again in {o.area.label}")
    for f in spec.forcing.inflow:
        events += _inflow(f)
    if spec.forcing.river is not None:
        events += _river(spec.forcing.river, spec.duration_s)
    for w in spec.interventions.flood_wall:
        events.append((0.0, f"flood-wall section {w.section}: crest set to {w.crest_m:.2f} m (Wusong)"))
    events.append((spec.duration_s, "the scenario ends"))
    inside = [(max(t, 0.0), text) for t, text in events if t <= spec.duration_s]
    return sorted(inside, key=lambda e: e[0])


def _opening(spec: Scenario) -> str:
    start = "the district twin as built" if spec.snapshot is None else f"a fork of the live twin at {spec.snapshot}"
    when = ""
    if spec.start_time is not None:
        zone = dt.timezone(dt.timedelta(seconds=spec.utc_offset_s or 0.0))
        when = f" at {dt.datetime.fromtimestamp(spec.start_time, zone).isoformat()}"
    return f"scenario {spec.name!r} starts from {start}{when} ({spec.status})"


def _span(window: Window, begin: str, end: str) -> list[tuple[float, str]]:
    return [(window.start_s, begin), (window.end_s, end)]


def _closure(c: Closure) -> list[tuple[float, str]]:
    what = c.road or c.place.label
    return _span(c.window, f"{what} closed", f"{what} reopens")


def _rate(rate: Steps) -> str:
    if len(rate.values) == 1:
        return f"{rate.values[0] * 60:,.0f} people/min"
    return f"{min(rate.values) * 60:,.0f}-{max(rate.values) * 60:,.0f} people/min"


def _rain(rain: Rain) -> list[tuple[float, str]]:
    where = "" if rain.area is None else f" over {rain.area.label}"
    if rain.storm is not None:
        return _storm(rain.storm, where)
    return [(t, f"rain {v:g} mm/h{where}") for t, v in zip(rain.series.times, rain.series.values, strict=True)]


def _storm(s: DesignStorm, where: str) -> list[tuple[float, str]]:
    mean = shanghai_storm_intensity(s.return_period_yr, s.duration_min)
    length = s.duration_min * 60.0
    return [(s.start_s, f"a {s.return_period_yr:g}-year, {s.duration_min:g}-min design storm starts{where}: "
                        f"{mean:.1f} mm/h on average, {mean * s.duration_min / 60:.0f} mm in all"),
            (s.start_s + s.peak_ratio * length, f"the storm peaks ({format_offset(s.peak_ratio * length)} "
                                                "after it began)"),
            (s.start_s + length, "the rain stops")]


def _inflow(f) -> list[tuple[float, str]]:
    """When an inflow (``forcing.inflow``) starts, peaks and stops."""
    h = f.hydrograph
    on = [t for t, q in zip(h.times, h.values, strict=True) if q > 0]
    if not on:
        return []
    peak = max(h.values)
    t_peak = h.times[h.values.index(peak)]
    first = max(0.0, h.times[max(0, h.times.index(on[0]) - 1)]) if h.values[0] == 0 else 0.0
    out = [(first, f"water starts pouring onto the ground at {f.name} (up to {peak:g} m³/s, "
                   f"{h.integral(h.times[0], h.times[-1]):,.0f} m³ in all)")]
    if t_peak > first:
        out.append((t_peak, f"the inflow at {f.name} peaks at {peak:g} m³/s"))
    if h.values[-1] == 0:
        out.append((h.times[-1], f"the inflow at {f.name} stops"))
    return out


def river_peak(river, duration_s: float, step_s: float = 60.0) -> tuple[float, float]:
    """(time [s from the start], level [m, Wusong]) of the river's highest level in the run, sampled every
    ``step_s`` [s]."""
    times = [k * step_s for k in range(int(duration_s // step_s) + 1)] + [duration_s]
    levels = [river.level(t) for t in times]
    k = max(range(len(levels)), key=levels.__getitem__)
    return times[k], levels[k]


def _river(river, duration_s: float) -> list[tuple[float, str]]:
    what = f"the Huangpu's level from {river.source}" if river.series is not None else "a tide"
    if river.surge is not None:
        what += f" with a {river.surge.peak_m:g} m surge"
    t, level = river_peak(river, duration_s)
    return [(0.0, f"the river: {what}; {river.level(0.0):.2f} m (Wusong) at the start"),
            (t, f"the Huangpu peaks at {level:.2f} m (Wusong)")]
