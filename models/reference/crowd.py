"""Reference for :mod:`models.kernels.crowd`."""

import numpy as np


def count_variance(count, rel_error):
    """numpy reference of :func:`models.kernels.crowd.count_variance`."""
    return np.maximum(1.0, count + (rel_error * count) ** 2)


def fuse_density(piece_cell, piece_fraction, cover_piece, cover_sensor, count, rel_error, sensor_area, area,
                 out_density, out_sigma):
    """numpy reference of :func:`models.kernels.crowd.fuse_density` (dense sensor x piece matrices)."""
    n_sensors, n_pieces, n_cells = count.size, piece_cell.size, area.size
    covers = np.zeros((n_sensors, n_pieces), bool)
    covers[cover_sensor, cover_piece] = True
    piece_layer = piece_fraction * area[piece_cell]
    layer = covers @ piece_layer
    walkable = np.where(sensor_area > 0, sensor_area, layer)
    ok = (layer > 0) & (walkable > 0) & (count >= 0) & np.isfinite(count) & (rel_error >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(ok, count / walkable, 0.0)
        precision = np.where(ok, walkable**2 / count_variance(count, rel_error), 0.0)
        scale = np.where(ok, walkable / layer, 0.0)
        u = covers * precision[:, None]
        total = u.sum(axis=0)
        u = np.where(total > 0, u / total, 0.0)  # u[s, p]: share of sensor s in piece p
        m = piece_layer * (scale @ u)
        in_cell = np.zeros((n_pieces, n_cells))
        in_cell[np.arange(n_pieces), piece_cell] = 1.0
        cell_area = m @ in_cell
        share = np.where(cell_area[piece_cell] > 0, m / cell_area[piece_cell], 0.0)
        b = (u * share) @ in_cell  # b[s, c]
        out_density[:] = np.where(cell_area > 0, ((rho @ u) * m) @ in_cell / cell_area, np.nan)
        var = np.where(precision > 0, 1.0 / precision, 0.0)
        out_sigma[:] = np.where(cell_area > 0, np.sqrt(var @ b**2), np.nan)


def density_trend(density, time, prev, prev_t, alpha, trend, out):
    """numpy reference of :func:`models.kernels.crowd.density_trend`."""
    ok = ~(np.isnan(density) | np.isnan(time))
    first = ok & (np.isnan(prev) | np.isnan(prev_t))
    due = ok & ~first & (time > prev_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (density - prev) / (time - prev_t)
    trend[due] = np.where(np.isnan(trend[due]), r[due], alpha * r[due] + (1.0 - alpha) * trend[due])
    prev[first | due] = density[first | due]
    prev_t[first | due] = time[first | due]
    out[:] = np.where(ok, trend, np.nan)


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
