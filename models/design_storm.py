"""Shanghai design storms: the intensity formula and the Chicago hyetograph built on it.

Used by the district model (the default drainage capacity), the synthetic feeds, the demo's
storyline and the scenario forcing. Units: return period in years, durations in minutes,
intensities in mm h-1, depths in mm.
"""

from __future__ import annotations

import math


def shanghai_storm_intensity(return_period_yr: float, duration_min: float) -> float:
    """Mean rain intensity of the Shanghai design storm. [mm h-1]

    q = 1600 (1 + 0.846 lg P) / (t + 7.0)^0.656 L s-1 ha-1, 1 L s-1 ha-1 = 0.36 mm h-1
    (DB31/T 1043-2017 as quoted in docs/science/flood.md 2.2 [mem]; P = 1 yr, t = 60 min gives 36.5).
    """
    q = 1600.0 * (1.0 + 0.846 * math.log10(return_period_yr)) / (duration_min + 7.0) ** 0.656
    return q * 0.36


def chicago_depth_mm(minutes: float, return_period_yr: float, duration_min: float, peak_ratio: float = 0.4) -> float:
    """Cumulative depth of a Chicago design storm (Keifer & Chu 1957) ``minutes`` after its start [mm].

    The hyetograph's every window of length T around the peak (a share ``peak_ratio`` before it) holds
    the Shanghai formula's depth i(T) T, so the whole storm holds i(D) D.
    """
    if minutes <= 0:
        return 0.0
    m, r = min(minutes, duration_min), peak_ratio

    def window(T: float) -> float:
        return 0.0 if T <= 0 else shanghai_storm_intensity(return_period_yr, T) * T / 60.0

    tp = r * duration_min
    if m <= tp:
        return r * window(duration_min) - r * window((tp - m) / r)
    return r * window(duration_min) + (1 - r) * window((m - tp) / (1 - r))
