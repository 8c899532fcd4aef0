"""Reference for :mod:`models.kernels.crowdflow` (whole-array numpy, no sweeps, no row loops)."""

import numpy as np

_AXES = ((1, 0, 1), (2, 0, -1), (4, 1, 0), (8, -1, 0))  # move bit, di, dj
_PERP = {1: (4, 8), 2: (4, 8), 4: (1, 2), 8: (1, 2)}  # the two moves at right angles to a move
_STEP = {bit: (di, dj) for bit, di, dj in _AXES}


def _at(a, di, dj, fill):
    """``out[i, j] = a[i + di, j + dj]``, ``fill`` outside the grid."""
    ny, nx = a.shape
    out = np.full(a.shape, fill, dtype=a.dtype)
    out[max(-di, 0):ny - max(di, 0), max(-dj, 0):nx - max(dj, 0)] = \
        a[max(di, 0):ny + min(di, 0), max(dj, 0):nx + min(dj, 0)]
    return out


def _speed(rho, v0, gamma, rho_max):
    """Weidmann's walking speed [m s-1] at density ``rho`` [person m-2], array-wise: ``v0`` at or below 0, 0 at or
    above ``rho_max``, NaN where ``rho`` is NaN. The one numpy form of the law that the references below use."""
    rho = np.asarray(rho, float)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        v = v0 * (1.0 - np.exp(-gamma * (1.0 / rho - 1.0 / rho_max)))
    return np.where(rho <= 0.0, v0, np.where(rho >= rho_max, 0.0, v))


def weidmann_capacity(v0, gamma, rho_max):
    """numpy reference of :func:`models.kernels.crowdflow.weidmann_capacity`.

    With u = gamma / rho the condition dq/drho = 0 reads F(u) = ln(1 + u) - u + gamma / rho_max = 0;
    F is concave and falling for u > 0, so Newton's method started right of the root (F < 0)
    converges monotonically (a different route from the kernel's bisection on rho).
    """
    c = gamma / rho_max
    u = 2.0 * c + 10.0
    for _ in range(100):
        u_new = u - (np.log1p(u) - u + c) / (1.0 / (1.0 + u) - 1.0)
        if u_new == u:
            break
        u = u_new
    rho_c = gamma / u
    return rho_c, rho_c * float(_speed(np.array(rho_c), v0, gamma, rho_max))


def slowness(count, area, moves, fd, v_min, out):
    """numpy reference of :func:`models.kernels.crowdflow.slowness`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(area > 0, count / area, 0.0)
    v = np.maximum(_speed(rho, fd[0], fd[1], fd[2]), v_min)
    out[:] = np.where((moves == 0) | (area <= 0), np.inf, 1.0 / v)


def _tri(ta, td, fh):
    with np.errstate(invalid="ignore"):
        r = (ta - td) / fh
        mid = ta + fh * np.sqrt(np.maximum(1.0 - r * r, 0.0))
    t = np.where(r <= 0.0, ta + fh, np.where(r >= 0.7071067811865476, td + fh * 1.4142135623730951, mid))
    t = np.where(np.isinf(ta), td + fh * 1.4142135623730951, t)
    return np.where(np.isinf(td), ta + fh, t)


def fast_sweep(cost, moves, seed, h, tol, max_rounds, T):
    """numpy reference of :func:`models.kernels.crowdflow.fast_sweep`.

    Jacobi iteration of the same 8-neighbour update until nothing changes: the same discrete
    solution reached by a different route. Returns the number of Jacobi iterations (not rounds).
    """
    fh = cost * h
    T[:] = np.where(seed, 0.0, np.inf)
    fixed = seed | (moves == 0)
    for it in range(4 * T.size + 4):
        cand = np.full(T.shape, np.inf)
        for bit, di, dj in _AXES:
            ta = np.where(moves & bit, _at(T, di, dj, np.inf), np.inf)
            ma = _at(moves, di, dj, 0)
            for pb in _PERP[bit]:
                pi, pj = _STEP[pb]
                td = np.where(ma & pb, _at(T, di + pi, dj + pj, np.inf), np.inf)
                cand = np.minimum(cand, np.where(moves & bit, _tri(ta, td, fh), np.inf))
        new = np.where(fixed, T, np.minimum(T, cand))
        if np.array_equal(new, T):
            return it + 1
        T[:] = new
    return 4 * T.size + 5


def descent_direction(T, moves, ex, ey):
    """numpy reference of :func:`models.kernels.crowdflow.descent_direction`."""
    with np.errstate(invalid="ignore"):
        gain = {bit: np.where(moves & bit, T - _at(T, di, dj, 0.0), -1.0) for bit, di, dj in _AXES}
    ok = (moves != 0) & np.isfinite(T)

    def axis(plus, minus):
        g = np.where(gain[plus] >= gain[minus], gain[plus], -gain[minus])
        return np.where(ok & ((gain[plus] > 0) | (gain[minus] > 0)), g, 0.0)

    gx, gy = axis(1, 2), axis(4, 8)
    norm = np.sqrt(gx * gx + gy * gy)
    with np.errstate(invalid="ignore", divide="ignore"):
        ex[:] = np.where(norm > 0, gx / norm, 0.0)
        ey[:] = np.where(norm > 0, gy / norm, 0.0)


def send_demand(count, area, ex, ey, moves, wx, wy, dt, fd, sE, sW, sS, sN, sup):
    """numpy reference of :func:`models.kernels.crowdflow.send_demand`."""
    rho_c, q_max = fd[3], fd[4]
    occ = (count > 0) & (area > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(occ, count / area, 0.0)
    q = rho * _speed(rho, fd[0], fd[1], fd[2])
    d = np.where(occ, np.where(rho < rho_c, q * dt, q_max * dt), 0.0)
    sup[:] = np.where(occ & (rho > rho_c), q, q_max)
    e = np.where((ex > 0) & (moves & 1 != 0), d * ex * wx[:, 1:], 0.0)
    w = np.where((ex < 0) & (moves & 2 != 0), -d * ex * wx[:, :-1], 0.0)
    s = np.where((ey > 0) & (moves & 4 != 0), d * ey * wy[1:, :], 0.0)
    u = np.where((ey < 0) & (moves & 8 != 0), -d * ey * wy[:-1, :], 0.0)
    tot = e + w + s + u
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(tot > count, count / tot, 1.0)
    sE[:], sW[:], sS[:], sN[:] = e * f, w * f, s * f, u * f


def accept_inflow(count, cap, sE, sW, sS, sN, sup, wx, wy, dt, aE, aW, aS, aN):
    """numpy reference of :func:`models.kernels.crowdflow.accept_inflow`."""
    r = sup * dt
    ie = np.minimum(_at(sE, 0, -1, 0.0), r * wx[:, :-1])
    iw = np.minimum(_at(sW, 0, 1, 0.0), r * wx[:, 1:])
    i_s = np.minimum(_at(sS, -1, 0, 0.0), r * wy[:-1, :])
    i_n = np.minimum(_at(sN, 1, 0, 0.0), r * wy[1:, :])
    tot = ie + iw + i_s + i_n
    room = cap - count
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where((tot > 0) & (tot > room), np.maximum(room, 0.0) / tot, 1.0)
    aE[:], aW[:], aS[:], aN[:] = ie * f, iw * f, i_s * f, i_n * f


def apply_transfers(count, sink, dt, aE, aW, aS, aN, out_acc, fx, fy, n_acc):
    """numpy reference of :func:`models.kernels.crowdflow.apply_transfers`."""
    o_e, o_w = _at(aE, 0, 1, 0.0), _at(aW, 0, -1, 0.0)
    o_s, o_n = _at(aS, 1, 0, 0.0), _at(aN, -1, 0, 0.0)
    n0 = count.copy()
    n = np.maximum(n0 - (o_e + o_w + o_s + o_n) + (aE + aW + aS + aN), 0.0)
    out_acc += np.where(sink, n, 0.0)
    count[:] = np.where(sink, 0.0, n)
    was = n0 > 0
    fx += np.where(was, o_e - o_w, 0.0)
    fy += np.where(was, o_s - o_n, 0.0)
    n_acc += np.where(was, n0 * dt, 0.0)


def admit(cells, rate, backlog, count, cap, area, width, fd, dt, admitted):
    """numpy reference of :func:`models.kernels.crowdflow.admit` (cells are unique): min(waiting, room, R(rho) w dt)
    with the receiving function R(rho) = q(max(rho, rho_c)) where the sub-step is positive and the cell has area."""
    v0, gamma, rho_max, rho_c, q_max = (float(x) for x in fd)
    b = backlog + rate * dt
    room = cap[cells] - count[cells]
    a = np.where(room > 0, np.minimum(b, room), 0.0)
    if dt > 0.0:
        ar = area[cells]
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(ar > 0.0, count[cells] / ar, 0.0)
        supply = np.where(rho <= rho_c, q_max, rho * _speed(rho, v0, gamma, rho_max))
        a = np.where(ar > 0.0, np.minimum(a, supply * width[cells] * dt), a)
    count[cells] += a
    backlog[:] = b - a
    admitted += a


def weidmann_v(rho, v0, gamma, rho_max):
    """numpy reference of :func:`models.kernels.crowdflow.weidmann_v`."""
    return float(_speed(float(rho), v0, gamma, rho_max))


def weidmann_speed(density, v0, gamma, rho_max, out_speed, out_flow):
    """numpy reference of :func:`models.kernels.crowdflow.weidmann_speed`."""
    v = _speed(density, v0, gamma, rho_max)
    out_speed[:] = v
    out_flow[:] = np.maximum(density, 0.0) * v
