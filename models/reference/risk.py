"""Reference for :mod:`models.kernels.risk`: the same tick and level machine as whole-array numpy expressions.

The rules are those of the kernel's module docstring; each function below is the numpy form of the
kernel function of the same name, over all cells at once (1-D state views such as ``lev[:, k]``).
Timers are float32 as in the kernel, and every sum is formed in float64 and rounded to float32 in the
same order, so the two agree exactly.
"""

import numpy as np

from models.kernels.risk import (
    CLEAR,
    EPS_S,
    HIST_CLOCK,
    HIST_MASK,
    P_COMPOUND,
    P_H_LO,
    P_HORIZON,
    P_HV_LO,
    P_INV_H,
    P_INV_HV,
    P_INV_R1,
    P_INV_RATIO,
    P_INV_REF,
    P_INV_RHO,
    P_P_CRIT,
    P_R1_LO,
    P_RATIO_LO,
    P_RHO_LO,
    P_RHO_P,
    T_FLAP_HI,
    T_FLAP_LO,
    T_FLAP_SAMPLE,
    T_FLAP_WINDOW,
    T_FOR,
    T_KEEP,
)

_WEIGHTS = 95 - 2 * np.arange(20)


def _ramp(x, lo, inv):
    return np.minimum(np.maximum((x - lo) * inv, 0.0), 1.0)


def _valid(x):
    """Finite and not negative (NaN compares false)."""
    return (x >= 0.0) & (x < np.inf)


def _up(m, row):
    """(raise, hold) levels; ``row`` one threshold row (8,) or one per cell (n, 8)."""
    r = np.zeros(m.shape, np.int64)
    h = np.zeros(m.shape, np.int64)
    for k in range(4):
        r = np.where(m >= row[..., k], k + 1, r)
        h = np.where(m >= row[..., 4 + k], k + 1, h)
    return r, h


def flap_percent(hist, out):
    """numpy reference of :func:`models.kernels.risk.flap_percent`."""
    bits = (hist.astype(np.int64)[:, None] >> np.arange(20)[None, :]) & 1
    out[:] = (bits * _WEIGHTS).sum(axis=1) * 100.0 / 1520.0


def _crowd(rho, pres, p, thr, crow):
    ok = _valid(rho)
    r, h = _up(rho, thr[crow.astype(np.int64)])
    hz = _ramp(rho, p[P_RHO_LO], p[P_INV_RHO])
    pr = ok & _valid(pres) & (pres >= p[P_P_CRIT]) & (rho >= p[P_RHO_P])
    hz = np.where(pr, 1.0, hz)
    r = np.where(pr, np.minimum(r + 1, 4), r)
    h = np.where(pr, np.minimum(h + 1, 4), h)
    return np.where(ok, hz, np.nan), np.where(ok, r, -1), np.where(ok, h, -1)


def _crowd_forecast(rho, rate, p, thr, crow):
    ok = _valid(rho) & (np.abs(rate) < np.inf)
    with np.errstate(invalid="ignore"):
        proj = rho + np.maximum(np.where(ok, rate, 0.0), 0.0) * p[P_HORIZON]
    r, _h = _up(proj, thr[crow.astype(np.int64)])
    return np.where(ok, r, -1)


def _flood(depth, hv, r1, r6, p, thr):
    ok = _valid(depth)
    hz = _ramp(depth, p[P_H_LO], p[P_INV_H])
    r, h = _up(depth, thr[1])
    for x, row, lo, inv in ((hv, 2, P_HV_LO, P_INV_HV), (r1, 3, P_R1_LO, P_INV_R1), (r6, 4, None, None)):
        use = _valid(x)
        if lo is not None:
            hz = np.where(use, np.maximum(hz, _ramp(x, p[lo], p[inv])), hz)
        a, b = _up(x, thr[row])
        r, h = np.where(use, np.maximum(r, a), r), np.where(use, np.maximum(h, b), h)
    return np.where(ok, hz, np.nan), np.where(ok, r, -1), np.where(ok, h, -1)


def _is_road(cls):
    return (cls > 0) & (cls < 5)


def _traffic(speed, vff, cls, p, tthr):
    road = _is_road(cls)
    ok = _valid(speed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((vff > 0.0) & (vff < np.inf), speed / vff, 1.0)
    t = tthr[np.where(road, cls, 0)]
    r = np.zeros(speed.shape, np.int64)
    h = np.zeros(speed.shape, np.int64)
    for k in range(3):
        r += speed <= t[:, k]
        h += speed <= t[:, 4 + k]
    r = np.where((r == 3) & (ratio <= t[:, 3]), 4, r)
    h = np.where((h == 3) & (ratio <= t[:, 7]), 4, h)
    hz = _ramp(ratio, p[P_RATIO_LO], p[P_INV_RATIO])
    return (np.where(road, np.where(ok, hz, np.nan), 0.0), np.where(road, np.where(ok, r, -1), 0),
            np.where(road, np.where(ok, h, -1), 0))


def _exposure(rho, cls, road_exp, p):
    road = _is_road(cls)
    e = np.where(road, road_exp[np.where(road, cls, 0)], 0.0)
    crowd = np.maximum(e, np.minimum(rho * p[P_INV_REF], 1.0))
    return np.where(_valid(rho), crowd, np.where(road, e, np.nan))


def hazards(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, p, thr, tthr):
    """Hazard (3, n), raise and hold levels (3, n) (-1 no data) and the crowd forecast level (n,)."""
    cls = rclass.astype(np.int64)
    parts = (_crowd(rho, pres, p, thr, crow), _flood(depth, hv, r1, r6, p, thr), _traffic(speed, vff, cls, p, tthr))
    hz = np.stack([x[0] for x in parts])
    rr = np.stack([x[1] for x in parts]).astype(np.int64)
    hh = np.stack([x[2] for x in parts]).astype(np.int64)
    return hz, rr, hh, _crowd_forecast(rho, rate, p, thr, crow)


def _f32(x):
    return np.asarray(x, np.float64).astype(np.float32)


def _advance(pending, old, dt):
    return np.where(pending, _f32(old.astype(np.float64) + dt), np.float32(0.0))


def _record_transition(fresh, r, dt, tm, raw, hist, flap, clock):
    chg = fresh & (r != raw)
    blank = hist == 0
    ticked = _f32(clock.astype(np.float64) + dt)
    due = ticked.astype(np.float64) >= tm[T_FLAP_SAMPLE] - EPS_S
    running = fresh & ~blank
    clock[running & ~due] = ticked[running & ~due]
    upd = fresh & ((blank & chg) | (~blank & due))
    clock[upd] = 0.0
    new_hist = ((hist.astype(np.int64) << 1) | chg) & HIST_MASK
    hist[upd] = new_hist[upd]
    raw[upd] = r[upd]
    pct = np.zeros(r.shape)
    flap_percent(hist, pct)
    was = flap != 0
    flap[upd & was & (pct < tm[T_FLAP_LO])] = 0
    flap[upd & ~was & (pct > tm[T_FLAP_HI])] = 1


def _raise(fresh, r, lv, dt, tm, pend, timers):
    bits = pend.astype(np.int64)
    new = lv.copy()
    for lvl in range(1, 5):
        b, j = 1 << (lvl - 1), lvl - 1
        run = fresh & (lvl > lv) & (lvl <= r)
        t = _advance((bits & b) != 0, timers[:, j], dt)
        timers[run, j] = t[run]
        bits[run] |= b
        new = np.where(run & (t.astype(np.float64) >= tm[T_FOR + j] - EPS_S), lvl, new)
        stop = fresh & ~run & ((bits & b) != 0)
        bits[stop] &= ~b
        timers[stop, j] = 0.0
    for lvl in range(1, 5):
        b = 1 << (lvl - 1)
        over = (new > lv) & (lvl <= new) & ((bits & b) != 0)
        bits[over] &= ~b
        timers[over, lvl - 1] = 0.0
    pend[fresh] = bits[fresh]
    return new


def _clear_delay(h, lv, flapping, tm):
    return np.where(flapping & (lv == h + 1), max(tm[T_KEEP], tm[T_FLAP_WINDOW]), tm[T_KEEP])


def _clear(fresh, h, lv, dt, flapping, tm, pend, timers):
    bits = pend.astype(np.int64)
    b = 1 << CLEAR
    below = fresh & (h < lv)
    t = _advance((bits & b) != 0, timers[:, CLEAR], dt)
    stepping = below.copy()
    for _ in range(4):  # at most four steps down in one tick
        d = _clear_delay(h, lv, flapping, tm)
        step = stepping & (h < lv) & (t.astype(np.float64) >= d - EPS_S)
        lv = np.where(step, lv - 1, lv)
        t = np.where(step, _f32(np.maximum(t.astype(np.float64) - d, 0.0)), t)
        stepping &= step
    still = below & (h < lv)
    done = fresh & ~still
    pend[still] = (bits | b)[still]
    timers[still, CLEAR] = t[still]
    pend[done] = (bits & ~b)[done]
    timers[done, CLEAR] = 0.0
    return lv


def _freeze(silent, pend, timers):
    pend[silent] = 0
    timers[silent, :HIST_CLOCK] = 0.0


def _level(r, h, dt, tm, lev, raw, hist, flap, pend, timers):
    """Level machine of one hazard over all cells (1-D / 2-D state views updated in place); (level, nodata)."""
    fresh = r >= 0
    _freeze(~fresh, pend, timers)
    _record_transition(fresh, r, dt, tm, raw, hist, flap, timers[:, HIST_CLOCK])
    lv = np.where(fresh, np.maximum(lev.astype(np.int64), 0), lev.astype(np.int64))
    lv = _raise(fresh, r, lv, dt, tm, pend, timers)
    lv = _clear(fresh, h, lv, dt, flap != 0, tm, pend, timers)
    lev[:] = lv
    return lv, (~fresh).astype(np.int64)


def risk_tick(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, vuln, p, thr, tthr, road_exp, timing, dt,
              risk, lev, raw, hist, flap, pend, timers, level, changed, nodata, forecast):
    """numpy reference of :func:`models.kernels.risk.risk_tick`.

    The kernel's quiet-cell fast path is not reproduced: it only skips work that changes nothing.
    """
    cls = rclass.astype(np.int64)
    v = np.where(vuln > 0.0, np.minimum(vuln, 1.0), 0.0)
    ev = _exposure(rho, cls, road_exp, p) * v
    hz, rr, hh, fc = hazards(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, crow, p, thr, tthr)
    forecast[:] = fc
    ch = np.zeros(rho.size, np.int64)
    nd = np.zeros(rho.size, np.int64)
    top = np.full(rho.size, -1, np.int64)
    ncomp = np.zeros(rho.size, np.int64)
    for k in range(3):
        risk[k] = hz[k] * ev
        old = lev[:, k].astype(np.int64)
        lv, silent = _level(rr[k], hh[k], dt, timing[k], lev[:, k], raw[:, k], hist[:, k], flap[:, k], pend[:, k],
                            timers[:, k])
        ch |= np.where(lv != old, 1 << k, 0)
        nd |= silent << k
        top = np.maximum(top, lv)
        ncomp += lv >= p[P_COMPOUND]
    top = np.where(ncomp >= 2, np.minimum(top + 1, 4), top)
    ch |= np.where(top != level, 8, 0)
    level[:] = top
    changed[:] = ch
    nodata[:] = nd


def projected(rho, rate, horizon):
    """numpy reference of :func:`models.kernels.risk.projected`."""
    return rho + max(rate, 0.0) * horizon


def hazard_at(rho, pres, rho_low, inv_span, p_crit, rho_p):
    """numpy reference of :func:`models.kernels.risk.hazard_at`."""
    surge = bool(pres >= p_crit and rho >= rho_p)
    return (1.0 if surge else float(np.clip((rho - rho_low) * inv_span, 0.0, 1.0))), surge


def crowd_hazard(density, pressure, rho_low, rho_high, p_crit, rho_p, out):
    """numpy reference of :func:`models.kernels.risk.crowd_hazard`."""
    h = np.clip((density - rho_low) / (rho_high - rho_low), 0.0, 1.0)
    h = np.where((pressure >= p_crit) & (density >= rho_p), 1.0, h)
    out[:] = np.where(np.isnan(density), np.nan, h)


def projected_density(density, rate, horizon, out):
    """numpy reference of :func:`models.kernels.risk.projected_density`."""
    with np.errstate(invalid="ignore"):
        out[:] = density + np.maximum(rate, 0.0) * horizon
    out[np.isnan(density) | np.isnan(rate)] = np.nan
