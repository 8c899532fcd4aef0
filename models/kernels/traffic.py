"""Traffic kernels: probe speeds, segment-to-cell speeds, smoothing, GB/T 33171 levels, TPI-like index, incidents.

Speeds in m s-1, lengths in m, times in s. Index arrays are int64 (bin = cell or road segment).
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def probe_speed(bin_idx, speed, interval, min_samples, min_seconds, out_speed, out_samples):
    """Space-mean speed per bin from time-sampled probe pings.

    Parameters
    ----------
    bin_idx : ndarray of int64, shape (k,)
        Bin (cell or segment) of each ping; negative: unmatched, ignored.
    speed : ndarray of float64, shape (k,)
        Speed reported by the ping. [m s-1]
    interval : ndarray of float64, shape (k,)
        Time the ping stands for (its sampling interval). [s]
    min_samples : int
        Bins with fewer pings report NaN.
    min_seconds : float
        Bins with fewer probe-seconds report NaN. [s]
    out_speed : ndarray of float64, shape (n_bins,)
        sum(v dt) / sum(dt) = distance / time (docs/science/traffic.md 3.4); NaN below the minimum. [m s-1]
    out_samples : ndarray of float64, shape (n_bins,)
        Pings per bin. [1]

    Notes
    -----
    A ping taken every dt seconds samples the vehicle in time; the time-weighted (arithmetic)
    mean of such samples is the space-mean speed. The harmonic mean is for spot speeds at a
    point (loops) and is strongly biased low here (stops at signals).
    """
    num = np.zeros(out_speed.size)
    den = np.zeros(out_speed.size)
    out_samples[:] = 0.0
    for k in range(bin_idx.size):
        b = bin_idx[k]
        if b < 0 or math.isnan(speed[k]) or not interval[k] > 0.0:
            continue
        num[b] += speed[k] * interval[k]
        den[b] += interval[k]
        out_samples[b] += 1.0
    for b in range(out_speed.size):
        ok = out_samples[b] >= min_samples and den[b] >= min_seconds and den[b] > 0.0
        out_speed[b] = num[b] / den[b] if ok else np.nan


@njit(cache=True, nogil=True)
def segment_to_cells(seg, cell, length, seg_speed, out):
    """Cell speed as the length-weighted mean of the segment speeds crossing it.

    ``seg``, ``cell``, ``length`` [m] form a sparse segment x cell table; NaN segment speeds are
    skipped; cells with no data get NaN. ``out`` [m s-1] has one value per cell.
    """
    w = np.zeros(out.size)
    out[:] = 0.0
    for k in range(seg.size):
        v = seg_speed[seg[k]]
        if not math.isnan(v) and length[k] > 0.0:
            out[cell[k]] += length[k] * v
            w[cell[k]] += length[k]
    for c in range(out.size):
        out[c] = out[c] / w[c] if w[c] > 0.0 else np.nan


@njit(cache=True, nogil=True)
def ewma_update(new, state, alpha, out):
    """Exponential smoothing in time: state <- alpha new + (1 - alpha) state where new is finite.

    ``out`` gets the smoothed value where ``new`` is finite and NaN elsewhere (a missing bin is
    no-data, not the old value); ``state`` keeps the last smoothed value across gaps.
    """
    for i in range(new.size):
        x = new[i]
        if math.isnan(x):
            out[i] = np.nan
            continue
        s = x if math.isnan(state[i]) else alpha * x + (1.0 - alpha) * state[i]
        state[i] = s
        out[i] = s


@njit(cache=True, nogil=True)
def congestion_level(speed, road_class, edges, out):
    """GB/T 33171-2016 congestion level by road class from the average travel speed.

    Parameters
    ----------
    speed : ndarray of float64
        Space-mean speed. [m s-1]
    road_class : ndarray of int8
        0 none, 1 expressway, 2 arterial, 3 secondary, 4 branch.
    edges : ndarray of float64, shape (5, 4)
        Upper speed bounds of basically smooth, light, moderate, severe per class (row 0 unused). [m s-1]
    out : ndarray of int8
        0 smooth, 1 basically smooth, 2 light, 3 moderate, 4 severe; -1 no road or no speed.
        A speed equal to a bound is in the worse level (``v <= bound``).
    """
    for i in range(speed.size):
        c = road_class[i]
        v = speed[i]
        if c <= 0 or math.isnan(v):
            out[i] = -1
            continue
        lvl = 0
        for k in range(4):
            if v <= edges[c, k]:
                lvl = k + 1
        out[i] = lvl


@njit(cache=True, nogil=True)
def tpi_like(speed, free_speed, weight, breaks, out):
    """A 0-10 "TPI-like" congestion index per cell and its weighted network mean.

    Parameters
    ----------
    speed, free_speed : ndarray of float64
        Space-mean and free-flow speed. [m s-1]
    weight : ndarray of float64
        Network weight of each cell (e.g. vehicle-km). [1]
    breaks : ndarray of float64, shape (6,)
        Extra travel time r = v_free / v - 1 at index 0, 2, 4, 6, 8, 10. [1]
    out : ndarray of float64
        Index, piecewise linear in r, 0..10; NaN where speed is unknown. [1]

    Returns
    -------
    float
        Weighted mean index over cells with data (NaN if none). [1]
    """
    num = 0.0
    den = 0.0
    for i in range(speed.size):
        v = speed[i]
        if math.isnan(v) or not free_speed[i] > 0.0:
            out[i] = np.nan
            continue
        r = free_speed[i] / v - 1.0 if v > 0.0 else math.inf
        x = 10.0
        for k in range(5):
            if r < breaks[k + 1]:
                x = 2.0 * k + 2.0 * max(r - breaks[k], 0.0) / (breaks[k + 1] - breaks[k])
                break
        out[i] = x
        num += weight[i] * x
        den += weight[i]
    return num / den if den > 0.0 else np.nan


@njit(cache=True, nogil=True)
def california_incident(occ_up, occ_dn, occ_dn_lag2, t1, t2, t3, persist, count, out):
    """California algorithm (Payne & Tignor 1978) on detector pairs, with persistence.

    Parameters
    ----------
    occ_up, occ_dn : ndarray of float64
        Occupancy upstream (i) and downstream (i+1) now. [1]
    occ_dn_lag2 : ndarray of float64
        Downstream occupancy two intervals ago. [1]
    t1, t2, t3 : float
        Thresholds on OCCDF [1], OCCRDF [1] and DOCCTD [1].
    persist : int
        Intervals the test must hold before an incident is declared (1 = TSC #2 style).
    count : ndarray of int64
        State, consecutive intervals the test held (updated in place).
    out : ndarray of int8
        1 where an incident is declared, else 0.
    """
    for i in range(occ_up.size):
        occdf = occ_up[i] - occ_dn[i]
        ok = occdf > t1 and occ_up[i] > 0.0 and occ_dn_lag2[i] > 0.0
        ok = ok and occdf / occ_up[i] > t2 and (occ_dn_lag2[i] - occ_dn[i]) / occ_dn_lag2[i] > t3
        count[i] = count[i] + 1 if ok else 0
        out[i] = 1 if count[i] >= persist else 0


@njit(cache=True, nogil=True)
def speed_drop_incident(speed, ref_speed, ratio, persist, count, out):
    """Probe incident test: speed below ``ratio`` x the historical speed of the slot for ``persist`` bins.

    ``speed``, ``ref_speed`` [m s-1]; NaN speed resets nothing and declares nothing (no data);
    ``count`` int64 state updated in place; ``out`` int8 1 = incident.
    """
    for i in range(speed.size):
        v = speed[i]
        if math.isnan(v) or not ref_speed[i] > 0.0:
            out[i] = 0
            continue
        count[i] = count[i] + 1 if v < ratio * ref_speed[i] else 0
        out[i] = 1 if count[i] >= persist else 0
