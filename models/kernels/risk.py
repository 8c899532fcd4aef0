"""Composite risk and the alert-level state machine, per cell, fused into one tick kernel.

Level codes: -1 no data, 0 none, 1 blue, 2 yellow, 3 orange, 4 red. Hazards k: 0 crowd,
1 flood, 2 traffic. State arrays have shape (n, 3) (cell-major: the three hazards of a cell are
adjacent, so the tick streams 7 state arrays rather than 21) and a snapshot is a handful of plain
arrays.

Threshold tables (SI units; ``inf`` = not used):

* ``thr`` (5, 8), higher is worse. Rows: 0 crowd density [person m-2], 1 water depth [m],
  2 depth x velocity [m2 s-1], 3 rain 1 h [m], 4 rain 6 h [m]. Columns 0-3: raise thresholds of
  blue, yellow, orange, red; 4-7: clear thresholds (the level is held while metric >= clear).
  Each half-row must be non-decreasing (``models.risk.tick_params`` makes it so).
* ``tthr`` (5, 8), lower is worse, one row per road class (row 0 unused). Columns 0-2: speed at
  or below which blue, yellow, orange are raised [m s-1]; 3: speed ratio v / v_free at or below
  which orange becomes red [1]; 4-7: the same for holding. Speed bounds must be non-increasing.
* ``p`` (25,): scalar parameters, indices ``P_*`` below (``models.risk.tick_params`` fills them).
* ``ticks`` (3, 2) int64: raise delay ("for") and clear delay ("keep_firing_for") per hazard.
"""

import math

import numpy as np
from numba import njit, prange

P_HORIZON, P_RHO_LO, P_RHO_HI, P_P_CRIT, P_RHO_P = 0, 1, 2, 3, 4
P_H_LO, P_H_HI, P_HV_LO, P_HV_HI, P_R1_LO, P_R1_HI = 5, 6, 7, 8, 9, 10
P_RATIO_LO, P_RATIO_HI, P_RHO_REF, P_E_MIN, P_EV_HIGH = 11, 12, 13, 14, 15
P_COMPOUND, P_FLAP_HI, P_FLAP_LO = 16, 17, 18
# reciprocals 1 / (hi - lo) of the hazard ramps and 1 / rho_ref (multiplications are cheaper than divisions)
P_INV_RHO, P_INV_H, P_INV_HV, P_INV_R1, P_INV_RATIO, P_INV_REF = 19, 20, 21, 22, 23, 24
N_PARAMS = 25
HIST_MASK = (1 << 20) - 1  # 20 transitions = 21 states (Nagios flapping.c, docs/science/alerts.md 5) [src]


@njit(cache=True, nogil=True, inline="always")
def _ramp(x, lo, inv):
    """Piecewise-linear 0 at ``lo`` to 1 at ``lo + 1 / inv`` (``inv`` < 0 for a falling ramp)."""
    return min(max((x - lo) * inv, 0.0), 1.0)


@njit(cache=True, nogil=True, inline="always")
def _up(m, thr, row):
    """(raise, hold) levels of a higher-is-worse metric from one (non-decreasing) row of ``thr``.

    Branch-free count of thresholds met; equals "highest colour met" because :func:`tick_params`
    makes every row non-decreasing (an unused lower colour takes the next used threshold).
    NaN meets nothing.
    """
    r = (m >= thr[row, 0]) + (m >= thr[row, 1]) + (m >= thr[row, 2]) + (m >= thr[row, 3])
    h = (m >= thr[row, 4]) + (m >= thr[row, 5]) + (m >= thr[row, 6]) + (m >= thr[row, 7])
    return np.int64(r), np.int64(h)


@njit(cache=True, nogil=True, inline="always")
def _crowd(rho, rate, pres, p, thr):
    """Crowd hazard, raise and hold levels; trend-projected density, pressure only with rho."""
    if math.isnan(rho):
        return np.nan, -1, -1
    proj = rho + (rate * p[P_HORIZON] if rate > 0.0 else 0.0)
    hz = _ramp(proj, p[P_RHO_LO], p[P_INV_RHO])
    r, h = _up(proj, thr, 0)
    if pres >= p[P_P_CRIT] and rho >= p[P_RHO_P]:
        hz = 1.0
        r = min(r + 1, 4)
        h = min(h + 1, 4)
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _flood(depth, hv, r1, r6, p, thr):
    """Flood hazard and levels from depth, depth x velocity and the 1 h / 6 h rain signal."""
    if math.isnan(depth):
        return np.nan, -1, -1
    x = 0.0 if math.isnan(hv) else hv
    hz = max(_ramp(depth, p[P_H_LO], p[P_INV_H]), _ramp(x, p[P_HV_LO], p[P_INV_HV]))
    r, h = _up(depth, thr, 1)
    a, b = _up(x, thr, 2)
    r, h = max(r, a), max(h, b)
    if not math.isnan(r1):
        hz = max(hz, _ramp(r1, p[P_R1_LO], p[P_INV_R1]))
        a, b = _up(r1, thr, 3)
        r, h = max(r, a), max(h, b)
    if not math.isnan(r6):
        a, b = _up(r6, thr, 4)
        r, h = max(r, a), max(h, b)
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _traffic(v, vff, cls, p, tthr):
    """Traffic hazard and levels: GB/T 33171 speed bounds by road class, red by speed ratio."""
    if cls <= 0:
        return 0.0, 0, 0
    if math.isnan(v):
        return np.nan, -1, -1
    ratio = v / vff if vff > 0.0 else 1.0
    hz = _ramp(ratio, p[P_RATIO_LO], p[P_INV_RATIO])
    r = np.int64((v <= tthr[cls, 0]) + (v <= tthr[cls, 1]) + (v <= tthr[cls, 2]))
    h = np.int64((v <= tthr[cls, 4]) + (v <= tthr[cls, 5]) + (v <= tthr[cls, 6]))
    if r == 3 and ratio <= tthr[cls, 3]:
        r = 4
    if h == 3 and ratio <= tthr[cls, 7]:
        h = 4
    return hz, r, h


@njit(cache=True, nogil=True, inline="always")
def _adjust(r, h, e, ev, p):
    """Consequence adjustment: nobody exposed caps at blue; high exposure x vulnerability +1."""
    if r < 0:
        return r, h
    if e < p[P_E_MIN]:
        return min(r, 1), min(h, 1)
    if ev >= p[P_EV_HIGH]:
        return (min(r + 1, 4) if r > 0 else 0), (min(h + 1, 4) if h > 0 else 0)
    return r, h


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


@njit(cache=True, nogil=True, inline="always")
def _alert(k, c, r, h, fr, kp, flap_hi, flap_lo, lev, rep, raw, nup, ndn, hist, flap):
    """One tick of the level state machine for hazard ``k`` in cell ``c``; returns the reported level.

    Raise to ``r`` after it has held for more than ``fr`` ticks (Prometheus ``for``), jumping
    straight to the level (escalate fast); step down one level after ``h`` has stayed below the
    level for more than ``kp`` ticks (``keep_firing_for``; de-escalate slowly). ``r < 0`` is no
    data: everything is frozen and -1 is reported. While flapping, the level is not lowered.
    """
    if r < 0:
        if rep[c, k] != -1:
            rep[c, k] = -1
        return -1
    changed = 1 if r != raw[c, k] else 0
    if changed or hist[c, k] != 0:
        hst = ((np.int64(hist[c, k]) << 1) | changed) & HIST_MASK
        hist[c, k] = hst
        raw[c, k] = r
        pct = _flap_pct(hst)
        if flap[c, k] != 0 and pct < flap_lo:
            flap[c, k] = 0
        elif flap[c, k] == 0 and pct > flap_hi:
            flap[c, k] = 1
    lv = lev[c, k]
    if r > lv:
        ndn[c, k] = 0
        n = nup[c, k] + 1
        if n > fr:
            lv = r
            n = 0
        nup[c, k] = n
    elif h < lv:
        nup[c, k] = 0
        if flap[c, k] == 0:
            n = ndn[c, k] + 1
            if n > kp:
                lv -= 1
                n = 0
            ndn[c, k] = n
    elif nup[c, k] != 0 or ndn[c, k] != 0:
        nup[c, k] = 0
        ndn[c, k] = 0
    if lev[c, k] != lv:
        lev[c, k] = lv
    if rep[c, k] != lv:
        rep[c, k] = lv
    return lv


@njit(cache=True, nogil=True)
def flap_percent(hist, out):
    """Nagios percent state change (0-100) of each 20-transition history bitmask. [1]"""
    for i in range(hist.size):
        out[i] = _flap_pct(hist[i])


@njit(cache=True, nogil=True, inline="always")
def _quiet(c, lev, rep, raw, nup, ndn, hist):
    """Cell ``c`` has a blank state for all three hazards (then ``flap`` is 0 too)."""
    q = 0
    for k in range(3):
        q |= lev[c, k] | rep[c, k] | raw[c, k] | nup[c, k] | ndn[c, k] | np.int64(hist[c, k])
    return q == 0


@njit(cache=True, nogil=True, inline="always")
def _hazard_level(k, c, hz, r, h, e, ev, p, ticks, risk, lev, rep, raw, nup, ndn, hist, flap):
    """Risk, consequence adjustment and state machine of hazard ``k``; returns (old, new) reported level."""
    risk[k, c] = hz * ev
    r, h = _adjust(r, h, e, ev, p)
    old = rep[c, k]
    lv = _alert(k, c, r, h, ticks[k, 0], ticks[k, 1], p[P_FLAP_HI], p[P_FLAP_LO], lev, rep, raw, nup, ndn, hist,
                flap)
    return old, lv


@njit(cache=True, nogil=True, inline="always")
def _tick_cell(c, rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, vuln, p, thr, tthr, road_exp,
               ticks, risk, lev, rep, raw, nup, ndn, hist, flap, level, changed):
    cls = rclass[c]
    e = road_exp[cls] if cls > 0 else 0.0
    if rho[c] > 0.0:
        e = max(e, min(rho[c] * p[P_INV_REF], 1.0))
    ev = e * vuln[c] if vuln[c] > 0.0 else 0.0
    hz0, r0, h0 = _crowd(rho[c], rate[c], pres[c], p, thr)
    hz1, r1_, h1 = _flood(depth[c], hv[c], r1[c], r6[c], p, thr)
    hz2, r2, h2 = _traffic(speed[c], vff[c], cls, p, tthr)
    if (r0 | h0 | r1_ | h1 | r2 | h2) == 0 and level[c] == 0 and _quiet(c, lev, rep, raw, nup, ndn, hist):
        risk[0, c] = hz0 * ev  # fast path: nothing raised, nothing held, blank state -> nothing changes
        risk[1, c] = hz1 * ev
        risk[2, c] = hz2 * ev
        changed[c] = 0
        return
    o0, l0 = _hazard_level(0, c, hz0, r0, h0, e, ev, p, ticks, risk, lev, rep, raw, nup, ndn, hist, flap)
    o1, l1 = _hazard_level(1, c, hz1, r1_, h1, e, ev, p, ticks, risk, lev, rep, raw, nup, ndn, hist, flap)
    o2, l2 = _hazard_level(2, c, hz2, r2, h2, e, ev, p, ticks, risk, lev, rep, raw, nup, ndn, hist, flap)
    ch = (l0 != o0) + 2 * (l1 != o1) + 4 * (l2 != o2)
    top = max(l0, l1, l2)
    if (l0 >= p[P_COMPOUND]) + (l1 >= p[P_COMPOUND]) + (l2 >= p[P_COMPOUND]) >= 2:
        top = min(top + 1, 4)
    if top != level[c]:
        ch += 8
        level[c] = top
    changed[c] = ch


@njit(cache=True, nogil=True, parallel=True)
def risk_tick(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, vuln, p, thr, tthr, road_exp, ticks,
              risk, lev, rep, raw, nup, ndn, hist, flap, level, changed):
    """One risk tick over all cells: hazards, risk = H x E x V, levels, state machine, composite.

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
    vuln : ndarray of float64
        Vulnerability 0-1 [1].
    p, thr, tthr, road_exp, ticks : ndarray
        Parameters (module docstring); ``road_exp`` (5,) exposure of a road cell by class [1].
    risk : ndarray of float64, shape (3, n)
        Output risk per hazard, 0-1; NaN where the hazard has no data [1].
    lev, rep, raw, nup, ndn, hist, flap : ndarray, shape (n, 3)
        State (int8, int8, int8, int16, int16, uint32, int8): held level, reported level, last raw
        level, raise and clear counters, flap history bits, flapping flag. Updated in place.
    level : ndarray of int8, shape (n,)
        Overall level (state and output).
    changed : ndarray of int8, shape (n,)
        Output bitmask: bit k set if hazard k's reported level changed, bit 3 the overall level.

    Notes
    -----
    Cells run in a ``prange`` loop: the numba thread count (``numba.set_num_threads``) decides,
    1 thread is the serial kernel. (A plain ``range`` loop of the same body was 12x slower here:
    the parfor lowering lets LLVM keep the parameter tables in registers.) Cells are
    independent, so the result does not depend on the thread count.
    """
    for c in prange(rho.size):  # c only indexes (a cast to int64 here made the loop 3.5x slower)
        _tick_cell(c, rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, vuln, p, thr, tthr, road_exp,
                   ticks, risk, lev, rep, raw, nup, ndn, hist, flap, level, changed)
