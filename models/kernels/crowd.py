"""Crowd kernels: density fusion over sensors, trend, hazard, Weidmann speed law, Helbing pressure.

All arrays are flat (one value per cell or per sensor); densities in person m-2, speeds in m s-1,
times in s.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fuse_density(sensor, cell, cover, count, count_var, area, out_density, out_sigma):
    """Crowd density per cell fused over sensors with overlapping coverage (inverse-variance).

    Parameters
    ----------
    sensor, cell : ndarray of int64, shape (k,)
        Sparse coverage table: entry k says sensor ``sensor[k]`` covers cell ``cell[k]`` (flat index).
    cover : ndarray of float64, shape (k,)
        Fraction of the cell's walkable area inside the sensor's coverage, 0..1. [1]
    count : ndarray of float64, shape (n_sensors,)
        People counted by each sensor in its coverage area (NaN: sensor silent). [person]
    count_var : ndarray of float64, shape (n_sensors,)
        Variance of each count, > 0. [person2]
    area : ndarray of float64, shape (n_cells,)
        Walkable area of each cell. [m2]
    out_density : ndarray of float64, shape (n_cells,)
        Fused density; NaN where no sensor covers the cell. [person m-2]
    out_sigma : ndarray of float64, shape (n_cells,)
        Standard deviation of the fused density. [person m-2]

    Notes
    -----
    Sensor s sees walkable area A_s = sum_k cover_k area_{cell_k} and density rho_s = N_s / A_s
    with variance var_s / A_s**2, assumed uniform over its footprint. Cell estimate
    rho_c = sum_k w_k rho_s / sum_k w_k with w_k = cover_k / var(rho_s) (docs/science/crowd.md 1.4), and
    var(rho_c) = sum_k cover_k**2 / var(rho_s) / (sum_k w_k)**2.
    """
    a_s = np.zeros(count.size)
    for k in range(sensor.size):
        a_s[sensor[k]] += cover[k] * area[cell[k]]
    w2 = np.zeros(area.size)
    out_density[:] = 0.0
    out_sigma[:] = 0.0
    for k in range(sensor.size):
        s = sensor[k]
        if a_s[s] <= 0.0 or math.isnan(count[s]) or not count_var[s] > 0.0 or cover[k] <= 0.0:
            continue
        var = count_var[s] / (a_s[s] * a_s[s])
        w = cover[k] / var
        out_density[cell[k]] += w * (count[s] / a_s[s])
        out_sigma[cell[k]] += w
        w2[cell[k]] += cover[k] * cover[k] / var
    for c in range(area.size):
        den = out_sigma[c]
        if den > 0.0:
            out_density[c] = out_density[c] / den
            out_sigma[c] = math.sqrt(w2[c]) / den
        else:
            out_density[c] = np.nan
            out_sigma[c] = np.nan


@njit(cache=True, nogil=True)
def density_trend(density, prev, dt, alpha, trend, out):
    """Smoothed rate of change of density (EWMA of finite differences).

    Parameters
    ----------
    density, prev : ndarray of float64
        Density now and one tick ago. [person m-2]
    dt : float
        Time between them. [s]
    alpha : float
        EWMA weight of the newest difference, 0 < alpha <= 1. [1]
    trend : ndarray of float64
        Previous smoothed rate (NaN: none yet). [person m-2 s-1]
    out : ndarray of float64
        New smoothed rate; NaN where either density is NaN. [person m-2 s-1]
    """
    for i in range(density.size):
        r = (density[i] - prev[i]) / dt
        if math.isnan(r):
            out[i] = np.nan
        elif math.isnan(trend[i]):
            out[i] = r
        else:
            out[i] = alpha * r + (1.0 - alpha) * trend[i]


@njit(cache=True, nogil=True)
def crowd_hazard(density, rate, pressure, horizon, rho_low, rho_high, p_crit, rho_p, out):
    """Normalised crowd hazard in [0, 1] from density, its trend and crowd pressure.

    Parameters
    ----------
    density : ndarray of float64
        Crowd density. [person m-2]
    rate : ndarray of float64
        Smoothed density rate; NaN counts as 0. [person m-2 s-1]
    pressure : ndarray of float64
        Helbing crowd pressure; NaN where no velocities. [s-2]
    horizon : float
        Look-ahead for the trend: a rising density is judged at rho + rate * horizon. [s]
    rho_low, rho_high : float
        Density of hazard 0 and hazard 1 (default 2 and 5). [person m-2]
    p_crit : float
        Pressure above which the hazard is 1, but only where density >= ``rho_p``. [s-2]
    rho_p : float
        Density co-condition for the pressure rule (pressure never alerts alone). [person m-2]
    out : ndarray of float64
        Hazard; NaN where density is NaN. [1]
    """
    for i in range(density.size):
        rho = density[i]
        if math.isnan(rho):
            out[i] = np.nan
            continue
        r = rate[i]
        proj = rho + (r * horizon if r > 0.0 else 0.0)
        h = (proj - rho_low) / (rho_high - rho_low)
        h = min(max(h, 0.0), 1.0)
        if pressure[i] >= p_crit and rho >= rho_p:
            h = 1.0
        out[i] = h


@njit(cache=True, nogil=True)
def weidmann_speed(density, v0, gamma, rho_max, out_speed, out_flow):
    """Weidmann (1993) speed-density law and specific flow.

    v = v0 [1 - exp(-gamma (1/rho - 1/rho_max))]; v = v0 at rho <= 0, 0 at rho >= rho_max.

    Parameters
    ----------
    density : ndarray of float64
        [person m-2]
    v0 : float
        Free walking speed (1.34). [m s-1]
    gamma : float
        Shape parameter (1.913). [person m-2]
    rho_max : float
        Jam density (5.4). [person m-2]
    out_speed : ndarray of float64
        [m s-1]
    out_flow : ndarray of float64
        Specific flow rho * v. [person m-1 s-1]

    NaN density gives NaN speed and flow.
    """
    for i in range(density.size):
        rho = density[i]
        if math.isnan(rho):
            v = np.nan
        elif rho <= 0.0:
            v = v0
        elif rho >= rho_max:
            v = 0.0
        else:
            v = v0 * (1.0 - math.exp(-gamma * (1.0 / rho - 1.0 / rho_max)))
        out_speed[i] = v
        out_flow[i] = max(rho, 0.0) * v if rho == rho else np.nan


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
