"""Reference for :mod:`models.kernels.traffic`."""

import numpy as np


def probe_speed(bin_idx, speed, interval, min_samples, min_seconds, out_speed, out_samples):
    """numpy reference of :func:`models.kernels.traffic.probe_speed`."""
    ok = (bin_idx >= 0) & ~np.isnan(speed) & (interval > 0)
    b = bin_idx[ok]
    n = out_speed.size
    num = np.bincount(b, weights=speed[ok] * interval[ok], minlength=n)
    den = np.bincount(b, weights=interval[ok], minlength=n)
    out_samples[:] = np.bincount(b, minlength=n)
    good = (out_samples >= min_samples) & (den >= min_seconds) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out_speed[:] = np.where(good, num / den, np.nan)


def segment_to_cells(seg, cell, length, seg_speed, out):
    """numpy reference of :func:`models.kernels.traffic.segment_to_cells`."""
    v = seg_speed[seg]
    ok = ~np.isnan(v) & (length > 0)
    num = np.bincount(cell[ok], weights=length[ok] * v[ok], minlength=out.size)
    den = np.bincount(cell[ok], weights=length[ok], minlength=out.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:] = np.where(den > 0, num / den, np.nan)


def ewma_update(new, state, alpha, out):
    """numpy reference of :func:`models.kernels.traffic.ewma_update`."""
    ok = ~np.isnan(new)
    s = np.where(np.isnan(state), new, alpha * new + (1.0 - alpha) * state)
    state[ok] = s[ok]
    out[:] = np.where(ok, s, np.nan)


def congestion_level(speed, road_class, edges, out):
    """numpy reference of :func:`models.kernels.traffic.congestion_level`."""
    cls = road_class.astype(np.int64)
    e = edges[np.clip(cls, 0, edges.shape[0] - 1)]  # (n, 4)
    lvl = np.where(speed[:, None] <= e, np.arange(1, 5)[None, :], 0).max(axis=1)
    out[:] = np.where((cls <= 0) | np.isnan(speed), -1, lvl)


def tpi_like(speed, free_speed, weight, breaks, out):
    """numpy reference of :func:`models.kernels.traffic.tpi_like`."""
    ok = ~np.isnan(speed) & (free_speed > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(speed > 0, free_speed / speed - 1.0, np.inf)
    x = np.full(speed.shape, 10.0)
    for k in range(4, -1, -1):  # lowest matching segment wins, as in the kernel's first break
        seg = 2.0 * k + 2.0 * np.maximum(r - breaks[k], 0.0) / (breaks[k + 1] - breaks[k])
        x = np.where(r < breaks[k + 1], seg, x)
    out[:] = np.where(ok, x, np.nan)
    den = weight[ok].sum()
    return float((weight[ok] * x[ok]).sum() / den) if den > 0 else float("nan")


def california_incident(occ_up, occ_dn, occ_dn_lag2, t1, t2, t3, persist, count, out):
    """numpy reference of :func:`models.kernels.traffic.california_incident`."""
    occdf = occ_up - occ_dn
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (occdf > t1) & (occ_up > 0) & (occ_dn_lag2 > 0)
        ok &= (occdf / occ_up > t2) & ((occ_dn_lag2 - occ_dn) / occ_dn_lag2 > t3)
    count[:] = np.where(ok, count + 1, 0)
    out[:] = (count >= persist).astype(np.int8)


def speed_drop_incident(speed, ref_speed, ratio, persist, count, out):
    """numpy reference of :func:`models.kernels.traffic.speed_drop_incident`."""
    valid = ~np.isnan(speed) & (ref_speed > 0)
    count[valid] = np.where(speed[valid] < ratio * ref_speed[valid], count[valid] + 1, 0)
    out[:] = np.where(valid & (count >= persist), 1, 0)
