"""Composite risk and the alert-level state machine, per cell, fused into one tick kernel.

Level codes: -1 never had data, 0 none, 1 blue, 2 yellow, 3 orange, 4 red. Hazards k: 0 crowd,
1 flood, 2 traffic. State arrays are cell-major, shape (n, 3) (the three hazards of a cell are
adjacent) or (n, 3, 6) for the timers, and a snapshot is a handful of plain arrays.

The rules of the level machine (docs/science/alerts.md 5; each has a test in
tests/models/test_risk_levels.py, named after the rule):

1. **Time, not ticks.** Every delay is in seconds of twin time: the tick passes its step ``dt`` [s]
   and the timers add it up. The raise delay (Prometheus ``for``) is per level; the clear delay
   (``keep_firing_for``) and the flap window are per hazard. A run of the metric at or above a
   level counts from the first sample at or above it (0 s on that sample, Prometheus), and a delay
   is reached on the first tick at or after it, so a level change comes at most one tick later at a
   longer tick: a metric that changes on a 10 s grid, each value long enough for the delays pending
   at its start to run out, shows at a 10 s tick the levels a 1 s tick shows at the same times.
2. **Each level its own run.** Per hazard and cell there is one timer per level above the held one:
   the time the metric has continuously been at or above *that* level's raise threshold. A level is
   entered when its own timer reaches its own raise delay; time at a lower level never counts
   toward a higher one. Escalation jumps to the highest level whose delay has passed.
3. **No data freezes.** A no-data sample (NaN, +-inf, a negative density, depth or speed, or a
   stale mask upstream) leaves the level as it is and resets every pending raise and clear timer;
   after a gap every delay starts again from the first fresh sample.
4. **Silent hazards are held.** The reported level of a hazard is its held level, also while its
   metric is no data (the ``nodata`` bitmask says which hazards are silent this tick); -1 only for
   a cell that never had data. The overall level is the maximum over the hazards, held levels
   included, -1 only if all three never had data.
5. **Hazards are independent.** A hazard's level depends on its own metrics only. Exposure E and
   vulnerability V weight the risk score R = H x E x V and nothing else; where E is unknown (no
   crowd reading off the roads) R is NaN, not 0. The compound escalation (+1 where two hazards
   are at ``P_COMPOUND`` or above) changes only the overall level.
6. **Flap damping is bounded.** While a hazard flaps (Nagios percent state change of its raw
   level over 21 history samples, one taken every ``T_FLAP_SAMPLE`` seconds of twin time, so the tick
   length does not change what counts as flapping), a level exactly one step above what the metric
   now says (the hold level) is not stepped down before the flap window has passed since the metric
   fell below it (or since the previous step); a level two or more steps above steps down as usual.
7. **One step down per clear delay.** While the hold level is below the held level, the level goes
   down one colour each time the clear timer reaches the clear delay; the timer keeps the time
   left over, so at a tick longer than the delay all steps that fell due are taken.
8. **Crowd levels are observed.** ``level_crowd`` is raised on the observed density only
   (pressure >= ``P_P_CRIT`` with density >= ``P_RHO_P`` adds one level: also observed). The
   trend projection rho + max(trend, 0) x horizon gives a separate, stateless forecast level
   (``forecast``; -1 where density or trend is no data).
9. **+-inf and negative values are no data**, as NaN: for the required metrics (density, depth,
   speed) the hazard is silent; an optional metric (trend, pressure, h v, rain) is not used.

Threshold tables (SI units; ``inf`` = not used):

* ``thr`` (5 + n_places, 8), higher is worse. Rows: 0 crowd density [person m-2], 1 water depth [m],
  2 depth x velocity [m2 s-1], 3 rain 1 h [m], 4 rain 6 h [m], 5 + j the crowd density bands of the j-th place
  with bands of its own (a cell's ``crow`` names its crowd row). Columns 0-3: raise thresholds of
  blue, yellow, orange, red; 4-7: clear thresholds (the level is held while metric >= clear).
  Each half-row must be non-decreasing (``models.risk.tick_params`` makes it so).
* ``tthr`` (5, 8), lower is worse, one row per road class (row 0 unused). Columns 0-2: speed at
  or below which blue, yellow, orange are raised [m s-1]; 3: speed ratio v / v_free at or below
  which orange becomes red [1]; 4-7: the same for holding. Speed bounds must be non-increasing.
* ``p`` (21,): scalar parameters, indices ``P_*`` below (``models.risk.tick_params`` fills them).
* ``timing`` (3, 9) per hazard, columns ``T_*``: raise delays of blue, yellow, orange, red [s],
  clear delay [s], flap window [s], Nagios flap high and low thresholds [%], flap-history sample period [s].

Timers are float32 seconds: whole and half seconds add up exactly to 2**23 s; a delay is reached
when the timer is within ``EPS_S`` (1 ms) of it, which absorbs the rounding of fractional ticks.
"""

import math

import numpy as np
from numba import njit, prange

P_HORIZON, P_RHO_LO, P_RHO_HI, P_P_CRIT, P_RHO_P = 0, 1, 2, 3, 4
P_H_LO, P_H_HI, P_HV_LO, P_HV_HI, P_R1_LO, P_R1_HI = 5, 6, 7, 8, 9, 10
P_RATIO_LO, P_RATIO_HI, P_RHO_REF, P_COMPOUND = 11, 12, 13, 14
# reciprocals 1 / (hi - lo) of the hazard ramps and 1 / rho_ref (multiplications are cheaper than divisions)
P_INV_RHO, P_INV_H, P_INV_HV, P_INV_R1, P_INV_RATIO, P_INV_REF = 15, 16, 17, 18, 19, 20
N_PARAMS = 21
T_FOR, T_KEEP, T_FLAP_WINDOW, T_FLAP_HI, T_FLAP_LO, T_FLAP_SAMPLE = 0, 4, 5, 6, 7, 8  # T_FOR + level - 1: a level's
N_TIMING = 9  # raise delay; T_FLAP_SAMPLE: seconds between two samples of the flap history (0: every tick)
N_TIMERS = 6  # timers per cell and hazard: raise runs of blue, yellow, orange, red; the clear timer; the history clock
CLEAR = 4  # index of the clear timer, and bit 1 << CLEAR of ``pend``
HIST_CLOCK = 5  # index of the time since the last flap-history sample (runs while the history is not blank)
EPS_S = 1e-3  # [s] a timer within this of its delay has reached it (float32 rounding of fractional ticks)
HIST_MASK = (1 << 20) - 1  # 20 transitions = 21 states (Nagios flapping.c, docs/science/alerts.md 5) [src]


# ---------------------------------------------------------------- crowd hazard and forecast (one definition each)
@njit(cache=True, nogil=True, inline="always")
def projected(rho, rate, horizon):
    """The density a rising crowd reaches in ``horizon`` [s]: rho + max(rate, 0) x horizon [person m-2].

    The one definition of the crowd forecast (docs/science/alerts.md 5.7): the risk tick's forecast level and
    the ``crowd_projected`` layer both call it. A falling density is not projected (the forecast never lowers).
    """
    return rho + max(rate, 0.0) * horizon


@njit(cache=True, nogil=True, inline="always")
def hazard_at(rho, pres, rho_low, inv_span, p_crit, rho_p):
    """Normalised crowd hazard of an observed density and whether the pressure rule holds: (hazard, surge).

    Hazard = clip((rho - rho_low) x inv_span, 0, 1) (0 at ``rho_low``, 1 at rho_low + 1 / inv_span, default 2 and
    5 person m-2, docs/science/risk.md 4); 1 where the crowd pressure ``pres`` [s-2] is at least ``p_crit`` with a
    density of at least ``rho_p`` [person m-2] (Helbing et al. 2007; pressure never alerts alone). NaN pressure:
    the rule does not hold. The one definition of the crowd hazard: the risk tick and `crowd_hazard` call it.
    """
    surge = pres >= p_crit and rho >= rho_p
    if surge:
        return 1.0, True
    return min(max((rho - rho_low) * inv_span, 0.0), 1.0), False


@njit(cache=True, nogil=True)
def crowd_hazard(density, pressure, rho_low, rho_high, p_crit, rho_p, out):
    """Normalised crowd hazard in [0, 1] of the observed density and crowd pressure (`hazard_at`).

    Parameters
    ----------
    density : ndarray of float64
        Crowd density. [person m-2]
    pressure : ndarray of float64
        Helbing crowd pressure; NaN where no velocities. [s-2]
    rho_low, rho_high : float
        Density of hazard 0 and hazard 1 (default 2 and 5). [person m-2]
    p_crit : float
        Pressure above which the hazard is 1, but only where density >= ``rho_p``. [s-2]
    rho_p : float
        Density co-condition for the pressure rule (pressure never alerts alone). [person m-2]
    out : ndarray of float64
        Hazard; NaN where density is NaN. [1]

    The trend does not enter the hazard: a rising crowd is a forecast (`projected_density`), not a hazard.
    """
    inv = 1.0 / (rho_high - rho_low)
    for i in range(density.size):
        rho = density[i]
        if math.isnan(rho):
            out[i] = np.nan
        else:
            out[i] = hazard_at(rho, pressure[i], rho_low, inv, p_crit, rho_p)[0]


@njit(cache=True, nogil=True)
def projected_density(density, rate, horizon, out):
    """The trend-projected density `projected` per cell [person m-2]; NaN where the density or its rate is NaN.

    Parameters
    ----------
    density : ndarray of float64
        Observed crowd density. [person m-2]
    rate : ndarray of float64
        Smoothed density rate. [person m-2 s-1]
    horizon : float
        Look-ahead. [s]
    out : ndarray of float64
        [person m-2]
    """
    for i in range(density.size):
        rho, r = density[i], rate[i]
        out[i] = np.nan if math.isnan(rho) or math.isnan(r) else projected(rho, r, horizon)


@njit(cache=True, nogil=True, inline="always")
def _ramp(x, lo, inv):
    """Piecewise-linear 0 at ``lo`` to 1 at ``lo + 1 / inv`` (``inv`` < 0 for a falling ramp)."""
    return min(max((x - lo) * inv, 0.0), 1.0)


@njit(cache=True, nogil=True, inline="always")
def _valid(x):
    """A sample is data when finite and not negative: NaN, +-inf and negative values are no data (rule 9)."""
    return x >= 0.0 and x < math.inf


@njit(cache=True, nogil=True, inline="always")
def _up(m, thr, row):
    """(raise, hold) levels of a higher-is-worse metric from one (non-decreasing) row of ``thr``.

    Branch-free count of thresholds met; equals "highest colour met" because :func:`tick_params`
    makes every row non-decreasing (an unused lower colour takes the next used threshold).
    """
    r = (m >= thr[row, 0]) + (m >= thr[row, 1]) + (m >= thr[row, 2]) + (m >= thr[row, 3])
    h = (m >= thr[row, 4]) + (m >= thr[row, 5]) + (m >= thr[row, 6]) + (m >= thr[row, 7])
    return np.int64(r), np.int64(h)


@njit(cache=True, nogil=True, inline="always")
def _crowd(rho, pres, p, thr, row):
    """Crowd hazard, raise and hold levels from the observed density [person m-2] (rule 8), with the density
    bands of row ``row`` of ``thr`` (0 the district's, a place's own further down: stairs, ramps, bridges).

    Hazard and the pressure rule are :func:`hazard_at`: pressure [s-2] adds one level (hazard
    1) only with a density of at least ``P_RHO_P``.
    """
    if not _valid(rho):
        return np.nan, -1, -1
    hz, surge = hazard_at(rho, pres if _valid(pres) else np.nan, p[P_RHO_LO], p[P_INV_RHO], p[P_P_CRIT], p[P_RHO_P])
    r, h = _up(rho, thr, row)
    if surge:
        r = min(r + 1, 4)
        h = min(h + 1, 4)
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _crowd_forecast(rho, rate, p, thr, row):
    """Raise level of the projected density (:func:`projected`); -1 where either is no data."""
    if not _valid(rho) or not abs(rate) < math.inf:
        return -1
    r, _h = _up(projected(rho, rate, p[P_HORIZON]), thr, row)
    return r


@njit(cache=True, nogil=True, inline="always")
def _flood(depth, hv, r1, r6, p, thr):
    """Flood hazard and levels from depth [m], depth x velocity [m2 s-1] and the 1 h / 6 h rain [m]."""
    if not _valid(depth):
        return np.nan, -1, -1
    hz = _ramp(depth, p[P_H_LO], p[P_INV_H])
    r, h = _up(depth, thr, 1)
    if _valid(hv):
        hz = max(hz, _ramp(hv, p[P_HV_LO], p[P_INV_HV]))
        a, b = _up(hv, thr, 2)
        r, h = max(r, a), max(h, b)
    if _valid(r1):
        hz = max(hz, _ramp(r1, p[P_R1_LO], p[P_INV_R1]))
        a, b = _up(r1, thr, 3)
        r, h = max(r, a), max(h, b)
    if _valid(r6):
        a, b = _up(r6, thr, 4)
        r, h = max(r, a), max(h, b)
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _is_road(cls):
    return cls > 0 and cls < 5


@njit(cache=True, nogil=True, inline="always")
def _traffic(v, vff, cls, p, tthr):
    """Traffic hazard and levels: GB/T 33171 speed bounds by road class, red by speed ratio.

    Not a road: level 0. A free-flow speed that is not finite and positive leaves the ratio at 1.
    """
    if not _is_road(cls):
        return 0.0, 0, 0
    if not _valid(v):
        return np.nan, -1, -1
    ratio = v / vff if vff > 0.0 and vff < math.inf else 1.0
    hz = _ramp(ratio, p[P_RATIO_LO], p[P_INV_RATIO])
    r = np.int64((v <= tthr[cls, 0]) + (v <= tthr[cls, 1]) + (v <= tthr[cls, 2]))
    h = np.int64((v <= tthr[cls, 4]) + (v <= tthr[cls, 5]) + (v <= tthr[cls, 6]))
    if r == 3 and ratio <= tthr[cls, 3]:
        r = 4
    if h == 3 and ratio <= tthr[cls, 7]:
        h = 4
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _exposure(rho, cls, road_exp, p):
    """Exposure E [1]: max(road exposure, min(rho / rho_ref, 1)); NaN (unknown) off the roads without a density."""
    e = road_exp[cls] if _is_road(cls) else 0.0
    if _valid(rho):
        return max(e, min(rho * p[P_INV_REF], 1.0))
    return e if _is_road(cls) else np.nan


@njit(cache=True, nogil=True, inline="always")
def _flap_pct(hist):
    """Nagios percent state change of a 20-transition history (bit 0 = newest, weight 1.25).

    Weights w_i = 0.75 + (i - 1) 0.5 / 19 (oldest 0.75, newest 1.25; docs/science/alerts.md 5 [src]) are
    (95 - 2 b) / 76 for bit b, so the sum is exact in integers; 1520 = 76 x 20.
    """
    s = 0
    for b in range(20):
        if (hist >> b) & 1:
            s += 95 - 2 * b
    return s * 100.0 / 1520.0


@njit(cache=True, nogil=True)
def flap_percent(hist, out):
    """Nagios percent state change (0-100) of each 20-transition history bitmask. [1]"""
    for i in range(hist.size):
        out[i] = _flap_pct(hist[i])


@njit(cache=True, nogil=True, inline="always")
def _record_transition(k, c, r, dt, tm, raw, hist, flap, timers):
    """Nagios history of the raw raise level ``r`` (fresh samples only) and the flapping flag of hazard ``k``.

    A blank history starts at the first change of ``r``. From then on one history sample is taken each time the
    history clock reaches ``T_FLAP_SAMPLE`` seconds (rule 6): it records whether ``r`` differs from the level at the
    previous sample, so a 1 s tick and a 10 s tick see the same history of a metric that changes every 10 s.
    """
    changed = 1 if r != raw[c, k] else 0
    if hist[c, k] == 0:
        if not changed:
            return
        timers[c, k, HIST_CLOCK] = 0.0
    else:
        clock = np.float32(timers[c, k, HIST_CLOCK] + dt)
        if np.float64(clock) < tm[k, T_FLAP_SAMPLE] - EPS_S:
            timers[c, k, HIST_CLOCK] = clock
            return
        timers[c, k, HIST_CLOCK] = 0.0
    hst = ((np.int64(hist[c, k]) << 1) | changed) & HIST_MASK
    hist[c, k] = hst
    raw[c, k] = r
    pct = _flap_pct(hst)
    if flap[c, k] != 0 and pct < tm[k, T_FLAP_LO]:
        flap[c, k] = 0
    elif flap[c, k] == 0 and pct > tm[k, T_FLAP_HI]:
        flap[c, k] = 1


@njit(cache=True, nogil=True, inline="always")
def _advance(pending, old, dt):
    """A timer's new value [s] (float32): ``old + dt`` if it was running, else 0 (it starts on this sample)."""
    return np.float32(old + dt) if pending else np.float32(0.0)


@njit(cache=True, nogil=True, inline="always")
def _raise(k, c, r, lv, dt, tm, pend, timers):
    """Rule 2: advance the raise runs of the levels above ``lv``; returns the level entered (``lv`` if none).

    Level ``L`` runs while ``lv < L <= r``; it is entered when its run reaches its raise delay.
    """
    bits = np.int64(pend[c, k])
    if r <= lv and (bits & 15) == 0:
        return lv  # nothing above the level: no run to start, advance or stop
    new = lv
    for lvl in range(1, 5):
        b = 1 << (lvl - 1)
        if lvl > lv and lvl <= r:
            t = _advance(bits & b, timers[c, k, lvl - 1], dt)
            timers[c, k, lvl - 1] = t
            bits |= b
            if np.float64(t) >= tm[k, T_FOR + lvl - 1] - EPS_S:
                new = lvl
        elif bits & b:
            bits &= ~b
            timers[c, k, lvl - 1] = 0.0
    if new > lv:
        for lvl in range(1, new + 1):  # runs at or below the level entered are over
            b = 1 << (lvl - 1)
            if bits & b:
                bits &= ~b
                timers[c, k, lvl - 1] = 0.0
    if pend[c, k] != bits:
        pend[c, k] = bits
    return new


@njit(cache=True, nogil=True, inline="always")
def _clear_delay(k, h, lv, flapping, tm):
    """Rules 6 and 7: the clear delay [s], or the flap window where a flapping level is one step above ``h``."""
    if flapping and lv == h + 1:
        return max(tm[k, T_KEEP], tm[k, T_FLAP_WINDOW])
    return tm[k, T_KEEP]


@njit(cache=True, nogil=True, inline="always")
def _clear(k, c, h, lv, dt, flapping, tm, pend, timers):
    """Rule 7: one step down each time the clear timer reaches the delay while ``h < lv``; returns the level."""
    bits = np.int64(pend[c, k])
    b = 1 << CLEAR
    if h >= lv:
        if bits & b:
            pend[c, k] = bits & ~b
            timers[c, k, CLEAR] = 0.0
        return lv
    t = _advance(bits & b, timers[c, k, CLEAR], dt)
    while h < lv:
        d = _clear_delay(k, h, lv, flapping, tm)
        if np.float64(t) < d - EPS_S:
            break
        lv -= 1
        t = np.float32(max(np.float64(t) - d, 0.0))  # the next step's delay runs from this one
    if h < lv:
        pend[c, k] = bits | b
        timers[c, k, CLEAR] = t
    else:
        pend[c, k] = bits & ~b
        timers[c, k, CLEAR] = 0.0
    return lv


@njit(cache=True, nogil=True, inline="always")
def _freeze(k, c, pend, timers):
    """Rule 3: no data resets every pending raise and clear timer (the level stays)."""
    if pend[c, k] != 0:
        pend[c, k] = 0
        for j in range(HIST_CLOCK):  # the raise runs and the clear timer; the history clock goes on
            timers[c, k, j] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _level(k, c, r, h, dt, tm, lev, raw, hist, flap, pend, timers):
    """One sample of the level machine of hazard ``k`` in cell ``c``; returns (held level, 1 if no data)."""
    lv = np.int64(lev[c, k])
    if r < 0:
        _freeze(k, c, pend, timers)
        return lv, 1
    _record_transition(k, c, r, dt, tm, raw, hist, flap, timers)
    lv = max(lv, 0)  # a first sample makes a never-seen cell "none"
    lv = _raise(k, c, r, lv, dt, tm, pend, timers)
    lv = _clear(k, c, h, lv, dt, flap[c, k] != 0, tm, pend, timers)
    if lev[c, k] != lv:
        lev[c, k] = lv
    return lv, 0


@njit(cache=True, nogil=True, inline="always")
def _quiet(c, lev, raw, hist, flap, pend):
    """Cell ``c`` has a blank state for all three hazards (level none, no history, nothing pending)."""
    q = 0
    for k in range(3):
        q |= lev[c, k] | raw[c, k] | flap[c, k] | pend[c, k] | np.int64(hist[c, k])
    return q == 0


@njit(cache=True, nogil=True, inline="always")
def _tick_cell(c, rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, vuln, p, thr, tthr, road_exp, timing,
               dt, risk, lev, raw, hist, flap, pend, timers, level, changed, nodata, forecast):
    cls = rclass[c]
    v = min(vuln[c], 1.0) if vuln[c] > 0.0 else 0.0
    ev = _exposure(rho[c], cls, road_exp, p) * v
    hz0, r0, h0 = _crowd(rho[c], pres[c], p, thr, crow[c])
    hz1, r1_, h1 = _flood(depth[c], hv[c], r1[c], r6[c], p, thr)
    hz2, r2, h2 = _traffic(speed[c], vff[c], cls, p, tthr)
    risk[0, c] = hz0 * ev
    risk[1, c] = hz1 * ev
    risk[2, c] = hz2 * ev
    forecast[c] = _crowd_forecast(rho[c], rate[c], p, thr, crow[c])
    if (r0 | h0 | r1_ | h1 | r2 | h2) == 0 and level[c] == 0 and _quiet(c, lev, raw, hist, flap, pend):
        changed[c] = 0  # fast path: nothing raised, nothing held, blank state -> nothing changes
        nodata[c] = 0
        return
    o0, o1, o2 = lev[c, 0], lev[c, 1], lev[c, 2]
    l0, n0 = _level(0, c, r0, h0, dt, timing, lev, raw, hist, flap, pend, timers)
    l1, n1 = _level(1, c, r1_, h1, dt, timing, lev, raw, hist, flap, pend, timers)
    l2, n2 = _level(2, c, r2, h2, dt, timing, lev, raw, hist, flap, pend, timers)
    ch = (l0 != o0) + 2 * (l1 != o1) + 4 * (l2 != o2)
    top = max(l0, l1, l2)
    if (l0 >= p[P_COMPOUND]) + (l1 >= p[P_COMPOUND]) + (l2 >= p[P_COMPOUND]) >= 2:
        top = min(top + 1, 4)
    if top != level[c]:
        ch += 8
        level[c] = top
    changed[c] = ch
    nodata[c] = n0 + 2 * n1 + 4 * n2


@njit(cache=True, nogil=True, parallel=True)
def risk_tick(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, vuln, p, thr, tthr, road_exp, timing, dt,
              risk, lev, raw, hist, flap, pend, timers, level, changed, nodata, forecast):
    """One risk tick over all cells: hazards, risk = H x E x V, levels by the rules of the module docstring.

    Parameters
    ----------
    rho, rate, pres : ndarray of float64, shape (n,)
        Crowd density [person m-2], its smoothed rate [person m-2 s-1], crowd pressure [s-2].
    depth, hv : ndarray of float64
        Water depth [m] and depth x velocity [m2 s-1].
    r1, r6 : ndarray of float64
        Rain over the last 1 h and 6 h [m] (NaN: not used).
    speed, vff : ndarray of float64
        Traffic space-mean speed and free-flow speed [m s-1].
    rclass : ndarray of int8
        Road class 0-4.
    crow : ndarray of int8
        Row of ``thr`` with the cell's crowd density bands: 0 the district's, 5 + j the j-th place's own bands
        (stairs, ramps, bridges; `models.risk.tick_params`).
    vuln : ndarray of float64
        Vulnerability 0-1 [1].
    p, thr, tthr, road_exp, timing : ndarray
        Parameters (module docstring); ``road_exp`` (5,) exposure of a road cell by class [1].
    dt : float
        Twin time since the previous tick [s], >= 0.
    risk : ndarray of float64, shape (3, n)
        Output risk per hazard, 0-1; NaN where the hazard has no data or the exposure is unknown [1].
    lev, raw, hist, flap, pend : ndarray, shape (n, 3)
        State (int8, int8, uint32, int8, int8): held level (-1 never had data), last fresh raw level,
        flap history bits, flapping flag, bits of the running timers (bit L - 1 the raise run of
        level L, bit 4 the clear timer). Updated in place.
    timers : ndarray of float32, shape (n, 3, 5)
        State: the raise runs of blue, yellow, orange, red and the clear timer [s] (0 when not running).
    level : ndarray of int8, shape (n,)
        Overall level (state and output).
    changed : ndarray of int8, shape (n,)
        Output bitmask: bit k set if hazard k's level changed, bit 3 the overall level.
    nodata : ndarray of int8, shape (n,)
        Output bitmask: bit k set if hazard k had no data this tick (its level is held).
    forecast : ndarray of int8, shape (n,)
        Output: the crowd level of the trend-projected density (-1 no data); no state.

    Notes
    -----
    Cells run in a ``prange`` loop: the numba thread count (``numba.set_num_threads``) decides,
    1 thread is the serial kernel. (A plain ``range`` loop of the same body was 12x slower here:
    the parfor lowering lets LLVM keep the parameter tables in registers.) Cells are
    independent, so the result does not depend on the thread count.
    """
    for c in prange(rho.size):  # c only indexes (a cast to int64 here made the loop 3.5x slower)
        _tick_cell(c, rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, vuln, p, thr, tthr, road_exp,
                   timing, dt, risk, lev, raw, hist, flap, pend, timers, level, changed, nodata, forecast)
