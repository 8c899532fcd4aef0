"""Crowd kernels: count variance, density fusion over sensors, trend, Helbing pressure.

The crowd hazard and its projection live with the risk tick that uses them (:mod:`models.kernels.risk`), the
Weidmann speed law with the crowd-flow kernels (:mod:`models.kernels.crowdflow`): one definition each, and no
kernel module imports another.

All arrays are flat (one value per cell or per sensor); densities in person m-2, speeds in m s-1,
times in s.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def count_variance(count, rel_error):
    """Variance of a counter's count: Poisson plus the device's relative error, at least 1 person2.

    var(N) = max(1, N + (e N)**2) [person2] for a count N [person] and a relative standard error e [1]
    (docs/science/crowd.md 1.4; camera counts: e = 0.10-0.20). The floor keeps an empty view from being
    taken as exact.
    """
    return max(1.0, count + (rel_error * count) ** 2)


@njit(cache=True, nogil=True)
def _sensor_densities(piece_cell, piece_fraction, cover_piece, cover_sensor, count, rel_error, sensor_area, area,
                      rho, precision, scale):
    """Per sensor: density rho_s [person m-2], its precision 1 / var(rho_s) [m4 person-2] and the scale k_s [1]
    of the walkable layer under its coverage (0 precision: the sensor gives nothing this time)."""
    layer_area = np.zeros(count.size)
    for j in range(cover_piece.size):
        p = cover_piece[j]
        layer_area[cover_sensor[j]] += piece_fraction[p] * area[piece_cell[p]]
    for s in range(count.size):
        walkable = sensor_area[s] if sensor_area[s] > 0.0 else layer_area[s]
        n = count[s]
        rho[s] = np.nan
        precision[s] = 0.0
        scale[s] = 0.0
        if layer_area[s] > 0.0 and walkable > 0.0 and n >= 0.0 and n < np.inf and rel_error[s] >= 0.0:
            rho[s] = n / walkable
            precision[s] = walkable * walkable / count_variance(n, rel_error[s])
            scale[s] = walkable / layer_area[s]


@njit(cache=True, nogil=True)
def fuse_density(piece_cell, piece_fraction, cover_piece, cover_sensor, count, rel_error, sensor_area, area,
                 out_density, out_sigma):
    """Crowd density per cell from counters whose coverage areas may overlap (docs/science/crowd.md 1.4).

    Parameters
    ----------
    piece_cell : ndarray of int64, shape (n_pieces,)
        Flat cell of each coverage piece: the part of one cell covered by one fixed set of sensors
        (`twin.district.coverage.shared_coverage`).
    piece_fraction : ndarray of float64, shape (n_pieces,)
        Fraction of its cell's walkable area in the piece, 0..1. [1]
    cover_piece, cover_sensor : ndarray of int64, shape (k,)
        Sensor ``cover_sensor[j]`` covers piece ``cover_piece[j]`` (only fresh sensors need be listed).
    count : ndarray of float64, shape (n_sensors,)
        People counted by each sensor in its coverage (NaN or negative: no reading). [person]
    rel_error : ndarray of float64, shape (n_sensors,)
        Relative standard error of each sensor's count, >= 0. [1]
    sensor_area : ndarray of float64, shape (n_sensors,)
        Walkable area each sensor counts over, from the device registry; NaN or <= 0: the walkable
        layer under its coverage. [m2]
    area : ndarray of float64, shape (n_cells,)
        Walkable area of each cell. [m2]
    out_density : ndarray of float64, shape (n_cells,)
        Fused density; NaN where no usable sensor covers walkable ground of the cell. [person m-2]
    out_sigma : ndarray of float64, shape (n_cells,)
        Standard deviation of the fused density. [person m-2]

    Notes
    -----
    Sensor s covers the layer walkable area A_s = sum_{p in s} f_p a_{c(p)} [m2]; its walkable area is
    W_s = ``sensor_area[s]`` when given, else A_s, and k_s = W_s / A_s scales the layer under it so that
    its pieces sum to W_s. Its density is rho_s = N_s / W_s with var(rho_s) = var(N_s) / W_s**2
    (`count_variance`). In piece p the sensors covering it are combined by inverse variance,
    u_ps = (1 / var rho_s) / sum_{s' in p} (1 / var rho_s'), rho_p = sum_s u_ps rho_s, and the piece holds
    the walkable area m_p = f_p a_{c(p)} sum_s u_ps k_s [m2]. A cell is the area-weighted mean of its pieces,

        rho_c = sum_{p in c} m_p rho_p / M_c,   M_c = sum_{p in c} m_p,

    so a piece weighs what its walkable area weighs: a sliver of 1e-5 of a cell moves the cell by at most
    1e-5 of the difference of the densities. The cell is linear in the sensor densities,
    rho_c = sum_s b_cs rho_s with b_cs = sum_{p in c, s in p} (m_p / M_c) u_ps, hence
    var(rho_c) = sum_s b_cs**2 var(rho_s) (sensors independent). A lone sensor gives every cell it covers
    rho_s = N_s / W_s exactly, and sum_c rho_c M_c = N_s.
    """
    n_sensors, n_pieces, n_cells = count.size, piece_cell.size, area.size
    rho = np.empty(n_sensors)
    precision = np.empty(n_sensors)
    scale = np.empty(n_sensors)
    _sensor_densities(piece_cell, piece_fraction, cover_piece, cover_sensor, count, rel_error, sensor_area, area,
                      rho, precision, scale)
    piece_precision = np.zeros(n_pieces)
    piece_sum = np.zeros(n_pieces)
    piece_scale = np.zeros(n_pieces)
    for j in range(cover_piece.size):
        s, p = cover_sensor[j], cover_piece[j]
        if precision[s] > 0.0:
            piece_precision[p] += precision[s]
            piece_sum[p] += precision[s] * rho[s]
            piece_scale[p] += precision[s] * scale[s]
    piece_area = np.zeros(n_pieces)
    cell_area = np.zeros(n_cells)
    cell_sum = np.zeros(n_cells)
    for p in range(n_pieces):
        if piece_precision[p] > 0.0:
            piece_area[p] = piece_fraction[p] * area[piece_cell[p]] * piece_scale[p] / piece_precision[p]
            cell_area[piece_cell[p]] += piece_area[p]
            cell_sum[piece_cell[p]] += piece_area[p] * piece_sum[p] / piece_precision[p]
    _fused_variance(piece_cell, cover_piece, cover_sensor, precision, piece_precision, piece_area, cell_area,
                    out_sigma)
    for c in range(n_cells):
        if cell_area[c] > 0.0:
            out_density[c] = cell_sum[c] / cell_area[c]
            out_sigma[c] = math.sqrt(out_sigma[c])
        else:
            out_density[c] = np.nan
            out_sigma[c] = np.nan


@njit(cache=True, nogil=True)
def _fused_variance(piece_cell, cover_piece, cover_sensor, precision, piece_precision, piece_area, cell_area,
                    out_var):
    """var(rho_c) = sum_s b_cs**2 var(rho_s) per cell (`fuse_density` notes) into ``out_var``. [person2 m-4]"""
    n_sensors = precision.size
    key = np.full(cover_piece.size, -1, np.int64)
    weight = np.zeros(cover_piece.size)
    for j in range(cover_piece.size):
        s, p = cover_sensor[j], cover_piece[j]
        c = piece_cell[p]
        if precision[s] > 0.0 and piece_area[p] > 0.0:
            key[j] = c * n_sensors + s
            weight[j] = piece_area[p] / cell_area[c] * precision[s] / piece_precision[p]
    out_var[:] = 0.0
    order = np.argsort(key)
    j = 0
    while j < order.size:
        k = key[order[j]]
        b = 0.0
        while j < order.size and key[order[j]] == k:
            b += weight[order[j]]
            j += 1
        if k >= 0:
            out_var[k // n_sensors] += b * b / precision[k % n_sensors]


@njit(cache=True, nogil=True)
def density_trend(density, time, prev, prev_t, alpha, trend, out):
    """Smoothed rate of change of density, one sample per reading, not per tick (EWMA of finite differences).

    A cell takes a trend sample when the time of its reading is later than at its previous sample; the sample's
    rate is the change of density over the time between the two readings. A counter that reports every 60 s so
    gives the same trend at a 1 s tick as at a 60 s tick (a per-tick difference would make each new report a
    step 60 times too steep), and a steady crowd's readings are samples of no change.

    Parameters
    ----------
    density : ndarray of float64
        Density now. [person m-2]
    time : ndarray of float64
        Time of the reading behind each cell's density (NaN: none). [s]
    prev, prev_t : ndarray of float64
        State: density and reading time at the previous sample (NaN: none yet); updated in place. [person m-2], [s]
    alpha : float
        EWMA weight of the newest sample, 0 < alpha <= 1. [1]
    trend : ndarray of float64
        State: smoothed rate (NaN: none yet); updated in place. [person m-2 s-1]
    out : ndarray of float64
        The smoothed rate now; NaN where the density or its time is NaN (no data). [person m-2 s-1]
    """
    for i in range(density.size):
        rho, t = density[i], time[i]
        if math.isnan(rho) or math.isnan(t):
            out[i] = np.nan
            continue
        if math.isnan(prev[i]) or math.isnan(prev_t[i]):
            prev[i] = rho
            prev_t[i] = t
        elif t > prev_t[i]:
            r = (rho - prev[i]) / (t - prev_t[i])
            trend[i] = r if math.isnan(trend[i]) else alpha * r + (1.0 - alpha) * trend[i]
            prev[i] = rho
            prev_t[i] = t
        out[i] = trend[i]


@njit(cache=True, nogil=True)
def crowd_pressure(density, u, v, alpha, u_mean, v_mean, var, out):
    """Helbing et al. (2007) crowd pressure P = rho Var(V) with EWMA mean and variance.

    Parameters
    ----------
    density : ndarray of float64
        Local density. [person m-2]
    u, v : ndarray of float64
        Local mean velocity components now; NaN where unknown. [m s-1]
    alpha : float
        EWMA weight of the newest sample (sets the averaging window for U). [1]
    u_mean, v_mean, var : ndarray of float64
        State, updated in place: time-averaged velocity U [m s-1] and the EWMA variance
        of V - U [m2 s-2]; NaN before the first sample.
    out : ndarray of float64
        Pressure; NaN where velocity or density is unknown. [s-2]
    """
    for i in range(density.size):
        if math.isnan(u[i]) or math.isnan(v[i]):
            out[i] = np.nan
            continue
        if math.isnan(u_mean[i]):
            u_mean[i] = u[i]
            v_mean[i] = v[i]
            var[i] = 0.0
        du = u[i] - u_mean[i]
        dv = v[i] - v_mean[i]
        u_mean[i] += alpha * du
        v_mean[i] += alpha * dv
        var[i] = (1.0 - alpha) * (var[i] + alpha * (du * du + dv * dv))
        out[i] = density[i] * var[i]
