"""Reference for :mod:`models.kernels.flood` (whole-array numpy, padded with ghost cells)."""

import numpy as np


def _faces(q, zl, hl, zr, hr, qa, qb, dt, dx, n2, theta, g, h_min):
    eta_l, eta_r = zl + hl, zr + hr
    hf = np.maximum(eta_l, eta_r) - np.maximum(zl, zr)
    qbar = theta * q + (0.5 - 0.5 * theta) * (qa + qb)
    with np.errstate(divide="ignore", invalid="ignore"):
        new = (qbar - g * hf * dt * (eta_r - eta_l) / dx) / (1.0 + g * dt * n2 * np.abs(q) / hf ** (7.0 / 3.0))
    return np.where(hf <= h_min, 0.0, new)


def _closed(wa, wb):
    """Faces closed by the ``wall`` codes of their two cells: a wall (bit 1) on either side, or river (bit 2) on
    both."""
    wa, wb = wa.astype(np.int64), wb.astype(np.int64)
    return (((wa | wb) & 1) != 0) | ((wa & wb & 2) != 0)


def inertial_flux(h, z, wall, qx, qy, dt, dx, n, theta, g, h_min, open_bc, qx_out, qy_out):
    """numpy reference of :func:`models.kernels.flood.inertial_flux`."""
    n2 = n * n
    for q, out, ax in ((qx, qx_out, 1), (qy, qy_out, 0)):
        hh = np.moveaxis(h, ax, -1)
        zz = np.moveaxis(z, ax, -1)
        ww = np.moveaxis(wall, ax, -1)
        qq = np.moveaxis(q, ax, -1)
        # ghost cells: dry, same bed and wall code as the edge cell
        zl = np.concatenate([zz[..., :1], zz], axis=-1)
        zr = np.concatenate([zz, zz[..., -1:]], axis=-1)
        zero = np.zeros_like(hh[..., :1])
        hl = np.concatenate([zero, hh], axis=-1)
        hr = np.concatenate([hh, zero], axis=-1)
        wl = np.concatenate([ww[..., :1], ww], axis=-1)
        wr = np.concatenate([ww, ww[..., -1:]], axis=-1)
        qa = np.concatenate([qq[..., :1], qq[..., :-1]], axis=-1)
        qb = np.concatenate([qq[..., 1:], qq[..., -1:]], axis=-1)
        qa = np.where((wl & 2) != 0, qq, qa)  # beyond a held river cell: zero gradient, as at the edge
        qb = np.where((wr & 2) != 0, qq, qb)
        new = _faces(qq, zl, hl, zr, hr, qa, qb, dt, dx, n2, theta, g, h_min)
        new = np.where(_closed(wl, wr), 0.0, new)
        if open_bc == 0:
            new[..., 0] = 0.0
            new[..., -1] = 0.0
        np.moveaxis(out, ax, -1)[...] = new


def outflow_limit(h, qx, qy, dt, dx, f):
    """numpy reference of :func:`models.kernels.flood.outflow_limit`."""
    out = (np.maximum(qx[:, 1:], 0.0) + np.maximum(-qx[:, :-1], 0.0)
           + np.maximum(qy[1:, :], 0.0) + np.maximum(-qy[:-1, :], 0.0))
    v = out * dt / dx
    with np.errstate(divide="ignore", invalid="ignore"):
        f[:] = np.where(v > h, h / v, 1.0)


def continuity(h, qx, qy, f, src, drain, outlet, dt, dx, h_out, qx_e, qy_e, drained, outflow, rowmax):
    """numpy reference of :func:`models.kernels.flood.continuity`."""
    one_col = np.ones((h.shape[0], 1))
    one_row = np.ones((1, h.shape[1]))
    fl = np.concatenate([one_col, f], axis=1)  # donor for q > 0 on x faces
    fr = np.concatenate([f, one_col], axis=1)  # donor for q < 0
    qx_e[:] = np.where(qx > 0.0, qx * fl, qx * fr)
    fu = np.concatenate([one_row, f], axis=0)
    fd = np.concatenate([f, one_row], axis=0)
    qy_e[:] = np.where(qy > 0.0, qy * fu, qy * fd)
    c = dt / dx
    hn = h + c * ((qx_e[:, :-1] - qx_e[:, 1:]) + (qy_e[:-1, :] - qy_e[1:, :])) + dt * src
    d = np.minimum(np.maximum(hn, 0.0), dt * drain)
    hn = hn - d
    drained += d
    code = outlet.astype(np.int64)
    is_out = (code & 1) != 0
    outflow += np.where(is_out, hn, 0.0)
    hn = np.where(is_out, 0.0, hn)
    h_out[:] = np.maximum(hn, 0.0)
    rowmax[:] = np.maximum(np.where((code & 2) != 0, 0.0, hn).max(axis=1), 0.0)


def cell_velocity(h, qx, qy, h_min, g, out_speed, out_hv, out_froude):
    """numpy reference of :func:`models.kernels.flood.cell_velocity`."""
    ux = 0.5 * (qx[:, :-1] + qx[:, 1:])
    uy = 0.5 * (qy[:-1, :] + qy[1:, :])
    qm = np.sqrt(ux * ux + uy * uy)
    wet = h > h_min
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(wet, qm / h, 0.0)
        out_speed[:] = v
        out_hv[:] = np.where(wet, qm, 0.0)
        out_froude[:] = np.where(wet, v / np.sqrt(g * h), 0.0)


def _bore(ha, hb, q, ratio, h_wet, q_min):
    lo, hi = np.minimum(ha, hb), np.maximum(ha, hb)
    return (lo > h_wet) & (lo < ratio * hi) & (np.abs(q) > q_min)


def validity_flags(h, qx, qy, froude, ratio, h_wet, q_min, out):
    """numpy reference of :func:`models.kernels.flood.validity_flags`."""
    bx = _bore(h[:, :-1], h[:, 1:], qx[:, 1:-1], ratio, h_wet, q_min)  # interior x faces
    by = _bore(h[:-1, :], h[1:, :], qy[1:-1, :], ratio, h_wet, q_min)
    bad = froude > 1.0
    bad[:, 1:] |= bx
    bad[:, :-1] |= bx
    bad[1:, :] |= by
    bad[:-1, :] |= by
    out[:] = bad.astype(np.int8)


def weir_flux(h, z, wall, fi, fj, crest, along_x, dt, dx, cd, g, q_out):
    """numpy reference of :func:`models.kernels.flood.weir_flux`."""
    ia, ja = (fi, fj - 1) if along_x == 1 else (fi - 1, fj)
    za, zb = z[ia, ja], z[fi, fj]
    ea, eb = za + h[ia, ja], zb + h[fi, fj]
    up, dn = np.maximum(ea, eb), np.minimum(ea, eb)
    h1, h2 = up - crest, dn - crest
    with np.errstate(divide="ignore", invalid="ignore"):
        q = cd * (2.0 / 3.0) ** 1.5 * np.sqrt(g) * np.maximum(h1, 0.0) ** 1.5
        q = np.where(h2 > 0.0, q * (1.0 - (np.maximum(h2, 0.0) / h1) ** 1.5) ** 0.385, q)
    q = np.minimum(q, 0.5 * (up - dn) * dx / dt)
    q = np.where(h1 <= 0.0, 0.0, np.where(ea > eb, q, -q))
    barrier = crest > np.maximum(za, zb)
    walled = _closed(wall[ia, ja], wall[fi, fj])
    new = np.where(walled, 0.0, np.where(barrier, q, q_out[fi, fj]))
    q_out[fi, fj] = new
