"""Reference for :mod:`models.kernels.crowd`."""

import numpy as np


def fuse_density(sensor, cell, cover, count, count_var, area, out_density, out_sigma):
    """numpy reference of :func:`models.kernels.crowd.fuse_density`."""
    a_s = np.bincount(sensor, weights=cover * area[cell], minlength=count.size)
    a_k = a_s[sensor]
    ok = (a_k > 0) & ~np.isnan(count[sensor]) & (count_var[sensor] > 0) & (cover > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = count_var[sensor] / (a_k * a_k)
        w = np.where(ok, cover / var, 0.0)
        rho = np.where(ok, count[sensor] / a_k, 0.0)
        w2 = np.where(ok, cover * cover / var, 0.0)
    num = np.zeros(area.size)
    den = np.zeros(area.size)
    s2 = np.zeros(area.size)
    np.add.at(num, cell, w * rho)
    np.add.at(den, cell, w)
    np.add.at(s2, cell, w2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out_density[:] = np.where(den > 0, num / den, np.nan)
        out_sigma[:] = np.where(den > 0, np.sqrt(s2) / den, np.nan)


def density_trend(density, prev, dt, alpha, trend, out):
    """numpy reference of :func:`models.kernels.crowd.density_trend`."""
    r = (density - prev) / dt
    out[:] = np.where(np.isnan(trend), r, alpha * r + (1.0 - alpha) * trend)
    out[np.isnan(r)] = np.nan


def crowd_hazard(density, rate, pressure, horizon, rho_low, rho_high, p_crit, rho_p, out):
    """numpy reference of :func:`models.kernels.crowd.crowd_hazard`."""
    proj = density + np.where(rate > 0, rate * horizon, 0.0)
    h = np.clip((proj - rho_low) / (rho_high - rho_low), 0.0, 1.0)
    h = np.where((pressure >= p_crit) & (density >= rho_p), 1.0, h)
    out[:] = np.where(np.isnan(density), np.nan, h)


def weidmann_speed(density, v0, gamma, rho_max, out_speed, out_flow):
    """numpy reference of :func:`models.kernels.crowd.weidmann_speed`."""
    inside = (density > 0) & (density < rho_max)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = v0 * (1.0 - np.exp(-gamma * (1.0 / density - 1.0 / rho_max)))
    v = np.where(inside, v, np.where(density <= 0, v0, 0.0))
    v = np.where(np.isnan(density), np.nan, v)
    out_speed[:] = v
    out_flow[:] = np.maximum(density, 0.0) * v


def crowd_pressure(density, u, v, alpha, u_mean, v_mean, var, out):
    """numpy reference of :func:`models.kernels.crowd.crowd_pressure`."""
    ok = ~(np.isnan(u) | np.isnan(v))
    first = ok & np.isnan(u_mean)
    u_mean[first] = u[first]
    v_mean[first] = v[first]
    var[first] = 0.0
    du = np.where(ok, u - u_mean, 0.0)
    dv = np.where(ok, v - v_mean, 0.0)
    u_mean[ok] += alpha * du[ok]
    v_mean[ok] += alpha * dv[ok]
    var[ok] = (1.0 - alpha) * (var[ok] + alpha * (du[ok] * du[ok] + dv[ok] * dv[ok]))
    out[:] = np.where(ok, density * var, np.nan)
