"""Reference for :mod:`models.kernels.risk`: the same tick as whole-array numpy expressions."""

import numpy as np

from models.kernels.risk import (
    HIST_MASK,
    P_COMPOUND,
    P_E_MIN,
    P_EV_HIGH,
    P_FLAP_HI,
    P_FLAP_LO,
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
)

_WEIGHTS = 95 - 2 * np.arange(20)


def _ramp(x, lo, inv):
    return np.minimum(np.maximum((x - lo) * inv, 0.0), 1.0)


def _up(m, row):
    r = np.zeros(m.shape, np.int64)
    h = np.zeros(m.shape, np.int64)
    for k in range(4):
        r = np.where(m >= row[k], k + 1, r)
        h = np.where(m >= row[4 + k], k + 1, h)
    return r, h


def flap_percent(hist, out):
    """numpy reference of :func:`models.kernels.risk.flap_percent`."""
    bits = (hist.astype(np.int64)[:, None] >> np.arange(20)[None, :]) & 1
    out[:] = (bits * _WEIGHTS).sum(axis=1) * 100.0 / 1520.0


def _alert(r, h, fr, kp, flap_hi, flap_lo, lev, rep, raw, nup, ndn, hist, flap):
    """Vectorised state machine for one hazard (1-D state views, e.g. ``lev[:, k]``, updated in place)."""
    valid = r >= 0
    chg = (r != raw) & valid
    upd = valid & (chg | (hist != 0))
    new_hist = ((hist.astype(np.int64) << 1) | chg) & HIST_MASK
    hist[upd] = new_hist[upd]
    raw[upd] = r[upd]
    pct = np.zeros(r.shape)
    flap_percent(hist, pct)
    fl = flap.astype(bool)
    flap[upd & fl & (pct < flap_lo)] = 0
    flap[upd & ~fl & (pct > flap_hi)] = 1
    lv = lev.astype(np.int64)
    up = valid & (r > lv)
    down = valid & ~up & (h < lv)
    calm = valid & ~up & ~down
    n_up = nup.astype(np.int64) + 1
    fire = up & (n_up > fr)
    lev[fire] = r[fire]
    nup[up] = np.where(fire, 0, n_up)[up]
    ndn[up] = 0
    nup[down] = 0
    going = down & (flap == 0)
    n_dn = ndn.astype(np.int64) + 1
    step = going & (n_dn > kp)
    lev[step] = (lv - 1)[step]
    ndn[going] = np.where(step, 0, n_dn)[going]
    nup[calm] = 0
    ndn[calm] = 0
    rep[:] = np.where(valid, lev, -1)
    return rep.astype(np.int64)


def _adjust(r, h, e, ev, p):
    cap = (r >= 0) & (e < p[P_E_MIN])
    boost = (r >= 0) & ~cap & (ev >= p[P_EV_HIGH])
    r2 = np.where(cap, np.minimum(r, 1), np.where(boost & (r > 0), np.minimum(r + 1, 4), r))
    h2 = np.where(cap, np.minimum(h, 1), np.where(boost & (h > 0), np.minimum(h + 1, 4), h))
    return r2, h2


def hazards(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, p, thr, tthr):
    """Hazard (3, n) and raw raise/hold levels (3, n) before the consequence adjustment."""
    n = rho.size
    hz = np.empty((3, n))
    rr = np.empty((3, n), np.int64)
    hh = np.empty((3, n), np.int64)
    # crowd
    proj = rho + np.where(rate > 0.0, rate * p[P_HORIZON], 0.0)
    r, h = _up(proj, thr[0])
    hzc = _ramp(proj, p[P_RHO_LO], p[P_INV_RHO])
    pr = (pres >= p[P_P_CRIT]) & (rho >= p[P_RHO_P])
    hz[0] = np.where(pr, 1.0, hzc)
    rr[0] = np.where(pr, np.minimum(r + 1, 4), r)
    hh[0] = np.where(pr, np.minimum(h + 1, 4), h)
    nan = np.isnan(rho)
    hz[0][nan], rr[0][nan], hh[0][nan] = np.nan, -1, -1
    # flood
    x = np.where(np.isnan(hv), 0.0, hv)
    hzf = np.maximum(_ramp(depth, p[P_H_LO], p[P_INV_H]), _ramp(x, p[P_HV_LO], p[P_INV_HV]))
    r, h = _up(depth, thr[1])
    a, b = _up(x, thr[2])
    r, h = np.maximum(r, a), np.maximum(h, b)
    ok1 = ~np.isnan(r1)
    hzf = np.where(ok1, np.maximum(hzf, _ramp(r1, p[P_R1_LO], p[P_INV_R1])), hzf)
    a, b = _up(r1, thr[3])
    r, h = np.where(ok1, np.maximum(r, a), r), np.where(ok1, np.maximum(h, b), h)
    ok6 = ~np.isnan(r6)
    a, b = _up(r6, thr[4])
    r, h = np.where(ok6, np.maximum(r, a), r), np.where(ok6, np.maximum(h, b), h)
    nan = np.isnan(depth)
    hz[1], rr[1], hh[1] = np.where(nan, np.nan, hzf), np.where(nan, -1, r), np.where(nan, -1, h)
    # traffic
    cls = rclass.astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(vff > 0.0, speed / vff, 1.0)
    t = tthr[cls]
    r = np.zeros(n, np.int64)
    h = np.zeros(n, np.int64)
    for k in range(3):
        r = np.where(speed <= t[:, k], k + 1, r)
        h = np.where(speed <= t[:, 4 + k], k + 1, h)
    r = np.where((r == 3) & (ratio <= t[:, 3]), 4, r)
    h = np.where((h == 3) & (ratio <= t[:, 7]), 4, h)
    hzt = _ramp(ratio, p[P_RATIO_LO], p[P_INV_RATIO])
    nan = np.isnan(speed)
    road = cls > 0
    hz[2] = np.where(road, np.where(nan, np.nan, hzt), 0.0)
    rr[2] = np.where(road, np.where(nan, -1, r), 0)
    hh[2] = np.where(road, np.where(nan, -1, h), 0)
    return hz, rr, hh


def risk_tick(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, vuln, p, thr, tthr, road_exp, ticks,
              risk, lev, rep, raw, nup, ndn, hist, flap, level, changed):
    """numpy reference of :func:`models.kernels.risk.risk_tick`."""
    cls = rclass.astype(np.int64)
    e = np.where(cls > 0, road_exp[cls], 0.0)
    e = np.where(rho > 0.0, np.maximum(e, np.minimum(rho * p[P_INV_REF], 1.0)), e)
    ev = np.where(vuln > 0.0, e * vuln, 0.0)
    hz, rr, hh = hazards(rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, p, thr, tthr)
    ch = np.zeros(rho.size, np.int64)
    top = np.full(rho.size, -1, np.int64)
    ncomp = np.zeros(rho.size, np.int64)
    for k in range(3):
        risk[k] = hz[k] * ev
        r, h = _adjust(rr[k], hh[k], e, ev, p)
        old = rep[:, k].astype(np.int64)
        lv = _alert(r, h, ticks[k, 0], ticks[k, 1], p[P_FLAP_HI], p[P_FLAP_LO], lev[:, k], rep[:, k], raw[:, k],
                    nup[:, k], ndn[:, k], hist[:, k], flap[:, k])
        ch |= np.where(lv != old, 1 << k, 0)
        top = np.maximum(top, lv)
        ncomp += lv >= p[P_COMPOUND]
    top = np.where(ncomp >= 2, np.minimum(top + 1, 4), top)
    ch |= np.where(top != level, 8, 0)
    level[:] = top
    changed[:] = ch
