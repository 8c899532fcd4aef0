"""Flood kernels: local inertial shallow-water step (Bates et al. 2010; de Almeida et al. 2012).

Grid arrays are 2-D ``(ny, nx)`` cell arrays; ``qx`` ``(ny, nx + 1)`` holds the unit-width
discharge on x faces (positive toward +x, face j is west of cell j) and ``qy`` ``(ny + 1, nx)``
on y faces (positive toward +row). Depth in m, discharge in m2 s-1, rates in m s-1, time in s.
One time step is three passes: :func:`inertial_flux`, :func:`outflow_limit`, :func:`continuity`;
each has a ``*_par`` variant that runs rows in parallel (``prange``) with the same arithmetic.

Serial and parallel variants are one Python body written with ``prange``, compiled twice by
:func:`_parallel` (the parallel one) and ``njit`` (the serial one); `_parallel` says why the
parallel compilation is of a renamed copy (numba's cache does not key on ``parallel=``).
"""

import math

import numpy as np
from numba import njit, prange


def _parallel(body):
    """``body`` compiled with rows in parallel, as a renamed copy ``<name>_par``: numba's disk cache keys an
    overload on the function's name and first line but not on ``parallel=``, so the copy gets its own entry."""
    twin = type(body)(body.__code__, body.__globals__, body.__name__ + "_par", body.__defaults__, body.__closure__)
    twin.__qualname__ = twin.__name__
    return njit(cache=True, nogil=True, parallel=True)(twin)


@njit(cache=True, nogil=True)
def _face(q0, qa, qb, zl, hl, zr, hr, dt, dx, n2, theta, g, h_min):
    """de Almeida et al. (2012) eq. 13 (theta = 1: Bates et al. 2010 eq. 11) on one face."""
    eta_l = zl + hl
    eta_r = zr + hr
    hf = max(eta_l, eta_r) - max(zl, zr)
    if hf <= h_min:
        return 0.0
    qbar = theta * q0 + (0.5 - 0.5 * theta) * (qa + qb)
    return (qbar - g * hf * dt * (eta_r - eta_l) / dx) / (1.0 + g * dt * n2 * abs(q0) / hf ** (7.0 / 3.0))


@njit(cache=True, nogil=True)
def _closed(wa, wb):
    """A face between cells of ``wall`` codes ``wa`` and ``wb`` carries no flow: either cell is a wall (bit 1, a
    building) or both are held river cells (bit 2). Codes 0 and 1 only (a grid without a held river): the test is
    ``wa or wb`` as before."""
    w = wa | wb
    return w != 0 and ((w & 1) != 0 or (wa & wb & 2) != 0)


@njit(cache=True, nogil=True)
def _x_faces(i, h, z, wall, qx, dt, dx, n2, theta, g, h_min, open_bc, qx_out):
    """New discharge on the x faces of row ``i``; edge faces see a dry ghost cell if open."""
    nx = h.shape[1]
    for j in range(1, nx):  # interior faces, no edge logic in the hot loop
        wa, wb = wall[i, j - 1], wall[i, j]
        if wa == 0 and wb == 0:
            qx_out[i, j] = _face(qx[i, j], qx[i, j - 1], qx[i, j + 1], z[i, j - 1], h[i, j - 1], z[i, j], h[i, j],
                                 dt, dx, n2, theta, g, h_min)
        elif _closed(wa, wb):
            qx_out[i, j] = 0.0
        else:  # next to a held river cell the smoothing sees a zero gradient beyond it, as at the grid's edge
            qx_out[i, j] = _face(qx[i, j], qx[i, j] if wa & 2 else qx[i, j - 1], qx[i, j] if wb & 2 else qx[i, j + 1],
                                 z[i, j - 1], h[i, j - 1], z[i, j], h[i, j], dt, dx, n2, theta, g, h_min)
    if open_bc == 0 or wall[i, 0]:
        qx_out[i, 0] = 0.0
    else:
        qx_out[i, 0] = _face(qx[i, 0], qx[i, 0], qx[i, 1], z[i, 0], 0.0, z[i, 0], h[i, 0], dt, dx, n2, theta, g,
                             h_min)
    if open_bc == 0 or wall[i, nx - 1]:
        qx_out[i, nx] = 0.0
    else:
        qx_out[i, nx] = _face(qx[i, nx], qx[i, nx - 1], qx[i, nx], z[i, nx - 1], h[i, nx - 1], z[i, nx - 1], 0.0,
                              dt, dx, n2, theta, g, h_min)


@njit(cache=True, nogil=True)
def _y_faces(i, h, z, wall, qy, dt, dx, n2, theta, g, h_min, open_bc, qy_out):
    """New discharge on y-face row ``i`` (between cell rows i - 1 and i); edges see a dry ghost if open."""
    ny, nx = h.shape
    if 0 < i < ny:
        for j in range(nx):
            wa, wb = wall[i - 1, j], wall[i, j]
            if wa == 0 and wb == 0:
                qy_out[i, j] = _face(qy[i, j], qy[i - 1, j], qy[i + 1, j], z[i - 1, j], h[i - 1, j], z[i, j],
                                     h[i, j], dt, dx, n2, theta, g, h_min)
            elif _closed(wa, wb):
                qy_out[i, j] = 0.0
            else:
                qy_out[i, j] = _face(qy[i, j], qy[i, j] if wa & 2 else qy[i - 1, j],
                                     qy[i, j] if wb & 2 else qy[i + 1, j], z[i - 1, j], h[i - 1, j], z[i, j],
                                     h[i, j], dt, dx, n2, theta, g, h_min)
        return
    for j in range(nx):
        if open_bc == 0 or (wall[0, j] if i == 0 else wall[ny - 1, j]):
            qy_out[i, j] = 0.0
        elif i == 0:
            qy_out[i, j] = _face(qy[0, j], qy[0, j], qy[1, j], z[0, j], 0.0, z[0, j], h[0, j], dt, dx, n2, theta, g,
                                 h_min)
        else:
            qy_out[i, j] = _face(qy[ny, j], qy[ny - 1, j], qy[ny, j], z[ny - 1, j], h[ny - 1, j], z[ny - 1, j], 0.0,
                                 dt, dx, n2, theta, g, h_min)


def inertial_flux(h, z, wall, qx, qy, dt, dx, n, theta, g, h_min, open_bc, qx_out, qy_out):
    """Momentum step of the local inertial scheme on every face.

    Parameters
    ----------
    h, z : ndarray of float64, shape (ny, nx)
        Water depth [m] and bed elevation [m].
    wall : ndarray of int8, shape (ny, nx)
        Face-closing codes: bit 1 (value 1) a wall (building), no flow through its faces; bit 2 (value 2) a river
        cell held at a level (`FloodModel.set_river`), no flow between two of them (:func:`_closed`). An edge face
        sees a ghost cell with the edge cell's code, so it is closed where the edge cell has any code. On a face
        of a held river cell with a cell off the river, the de Almeida smoothing takes the face's own discharge for
        the neighbouring face beyond the river cell (a zero gradient, as at the grid's edge): the faces between
        river cells carry nothing, though the river does feed the bank face.
    qx, qy : ndarray of float64
        Discharge at the previous step. [m2 s-1]
    dt, dx : float
        Time step [s] and cell size [m].
    n : float
        Manning coefficient. [s m-1/3]
    theta : float
        q-centering weight (1 = Bates 2010; 0.7-0.9 de Almeida 2012). [1]
    g : float
        Gravity. [m s-2]
    h_min : float
        Faces with flow depth below this carry no flow. [m]
    open_bc : int
        1: grid edges are open (dry ghost cell outside); 0: closed walls.
    qx_out, qy_out : ndarray of float64
        New discharge. [m2 s-1]
    """
    ny = h.shape[0]
    for ip in prange(ny + 1):
        i = np.int64(ip)  # prange indices may be unsigned; keep i - 1 signed
        if i < ny:
            _x_faces(i, h, z, wall, qx, dt, dx, n * n, theta, g, h_min, open_bc, qx_out)
        _y_faces(i, h, z, wall, qy, dt, dx, n * n, theta, g, h_min, open_bc, qy_out)


inertial_flux_par = _parallel(inertial_flux)
inertial_flux = njit(cache=True, nogil=True)(inertial_flux)


@njit(cache=True, nogil=True)
def _limit_row(i, h, qx, qy, dt, dx, f):
    for j in range(h.shape[1]):
        out = max(qx[i, j + 1], 0.0) + max(-qx[i, j], 0.0) + max(qy[i + 1, j], 0.0) + max(-qy[i, j], 0.0)
        v = out * dt / dx
        f[i, j] = h[i, j] / v if v > h[i, j] else 1.0


def outflow_limit(h, qx, qy, dt, dx, f):
    """Factor (0..1) that scales a cell's outflows so it cannot lose more water than it holds.

    Parameters
    ----------
    h : ndarray of float64, shape (ny, nx)
        Depth. [m]
    qx, qy : ndarray of float64
        Discharge from :func:`inertial_flux`. [m2 s-1]
    dt, dx : float
        Time step [s], cell size [m].
    f : ndarray of float64, shape (ny, nx)
        Output factor applied to every face where the cell is the donor. [1]
    """
    for ip in prange(h.shape[0]):
        _limit_row(np.int64(ip), h, qx, qy, dt, dx, f)


outflow_limit_par = _parallel(outflow_limit)
outflow_limit = njit(cache=True, nogil=True)(outflow_limit)


@njit(cache=True, nogil=True)
def _cont_row(i, h, qx, qy, f, src, drain, outlet, dt, dx, h_out, qx_e, qy_e, drained, outflow):
    ny, nx = h.shape
    c = dt / dx
    hmax = 0.0
    for j in range(nx):
        q = qx[i, j]
        qw = q * (f[i, j - 1] if j > 0 else 1.0) if q > 0.0 else q * f[i, j]
        q = qx[i, j + 1]
        qe = q * f[i, j] if q > 0.0 else q * (f[i, j + 1] if j + 1 < nx else 1.0)
        q = qy[i, j]
        qn = q * (f[i - 1, j] if i > 0 else 1.0) if q > 0.0 else q * f[i, j]
        q = qy[i + 1, j]
        qs = q * f[i, j] if q > 0.0 else q * (f[i + 1, j] if i + 1 < ny else 1.0)
        if j == 0:
            qx_e[i, 0] = qw
        qx_e[i, j + 1] = qe
        if i == 0:
            qy_e[0, j] = qn
        qy_e[i + 1, j] = qs
        hn = h[i, j] + c * ((qw - qe) + (qn - qs)) + dt * src[i, j]
        d = min(max(hn, 0.0), dt * drain[i, j])
        if d > 0.0:  # skip the read-modify-write where nothing drains
            hn -= d
            drained[i, j] += d
        o = outlet[i, j]
        if o & 1:
            outflow[i, j] += hn
            hn = 0.0
        h_out[i, j] = hn if hn > 0.0 else 0.0
        if not o & 2:
            hmax = max(hmax, hn)
    return hmax


def continuity(h, qx, qy, f, src, drain, outlet, dt, dx, h_out, qx_e, qy_e, drained, outflow, rowmax):
    """Mass step: depth update from limited face fluxes, runoff source and drainage sink.

    Parameters
    ----------
    h : ndarray of float64, shape (ny, nx)
        Depth before the step. [m]
    qx, qy : ndarray of float64
        Discharge from :func:`inertial_flux`. [m2 s-1]
    f : ndarray of float64, shape (ny, nx)
        Outflow factors from :func:`outflow_limit`. [1]
    src : ndarray of float64, shape (ny, nx)
        Runoff source, rain x runoff coefficient. [m s-1]
    drain : ndarray of float64, shape (ny, nx)
        Drainage capacity: sink d = min(h / dt + src, drain) (docs/science/flood.md 2.1). [m s-1]
    outlet : ndarray of int8, shape (ny, nx)
        Bit 1 (value 1) where the cell is an open outlet (river): its water leaves the grid. Bit 2 (value 2) where
        the cell is left out of ``rowmax`` (a river cell held at a level: its depth does not limit the step).
    dt, dx : float
        Time step [s], cell size [m].
    h_out : ndarray of float64
        New depth. [m]
    qx_e, qy_e : ndarray of float64
        Limited (effective) discharge actually used; the next step's ``qx``, ``qy``. [m2 s-1]
    drained, outflow : ndarray of float64
        Accumulators (added to): depth removed by drainage and by outlets. [m]
    rowmax : ndarray of float64, shape (ny,)
        Largest new depth per row over the cells without bit 2 in ``outlet``, for the next CFL step. [m]
    """
    for ip in prange(h.shape[0]):
        i = np.int64(ip)
        rowmax[i] = _cont_row(i, h, qx, qy, f, src, drain, outlet, dt, dx, h_out, qx_e, qy_e, drained,
                              outflow)


continuity_par = _parallel(continuity)
continuity = njit(cache=True, nogil=True)(continuity)


@njit(cache=True, nogil=True)
def cell_velocity(h, qx, qy, h_min, g, out_speed, out_hv, out_froude):
    """Cell-centre speed, depth x velocity and Froude number from face discharges.

    Parameters
    ----------
    h : ndarray of float64, shape (ny, nx)
        Depth. [m]
    qx, qy : ndarray of float64
        Face discharge. [m2 s-1]
    h_min : float
        Cells shallower than this are reported still. [m]
    g : float
        Gravity. [m s-2]
    out_speed : ndarray of float64
        Speed |q| / h. [m s-1]
    out_hv : ndarray of float64
        Depth x velocity = |q| at the cell centre. [m2 s-1]
    out_froude : ndarray of float64
        Froude number v / sqrt(g h); > 1 means the inertial scheme is out of validity. [1]
    """
    ny, nx = h.shape
    for i in range(ny):
        for j in range(nx):
            ux = 0.5 * (qx[i, j] + qx[i, j + 1])
            uy = 0.5 * (qy[i, j] + qy[i + 1, j])
            qm = math.sqrt(ux * ux + uy * uy)
            if h[i, j] > h_min:
                v = qm / h[i, j]
                out_speed[i, j] = v
                out_hv[i, j] = qm
                out_froude[i, j] = v / math.sqrt(g * h[i, j])
            else:
                out_speed[i, j] = 0.0
                out_hv[i, j] = 0.0
                out_froude[i, j] = 0.0


@njit(cache=True, nogil=True)
def _bore(ha, hb, q, ratio, h_wet, q_min):
    """A face carries a bore (rapidly varied flow): wet both sides, depth jump, flow across."""
    lo, hi = min(ha, hb), max(ha, hb)
    return lo > h_wet and lo < ratio * hi and abs(q) > q_min


@njit(cache=True, nogil=True)
def validity_flags(h, qx, qy, froude, ratio, h_wet, q_min, out):
    """Flag cells where the local inertial scheme is out of validity.

    Parameters
    ----------
    h : ndarray of float64, shape (ny, nx)
        Depth. [m]
    qx, qy : ndarray of float64
        Face discharge. [m2 s-1]
    froude : ndarray of float64, shape (ny, nx)
        Cell Froude number from :func:`cell_velocity`. [1]
    ratio : float
        A face whose shallower side is below ``ratio`` x the deeper side is a bore. [1]
    h_wet : float
        Both sides must be deeper than this (wet/dry fronts are not bores). [m]
    q_min : float
        And the face must carry more than this discharge (still water is valid). [m2 s-1]
    out : ndarray of int8, shape (ny, nx)
        1 where Froude > 1 (supercritical; the scheme has no advection term, Bates et al. 2010
        section 2) or a face of the cell is a bore (rapidly varied flow, shocks); else 0.
    """
    ny, nx = h.shape
    for i in range(ny):
        for j in range(nx):
            bad = froude[i, j] > 1.0
            if j > 0 and _bore(h[i, j - 1], h[i, j], qx[i, j], ratio, h_wet, q_min):
                bad = True
            if j + 1 < nx and _bore(h[i, j], h[i, j + 1], qx[i, j + 1], ratio, h_wet, q_min):
                bad = True
            if i > 0 and _bore(h[i - 1, j], h[i, j], qy[i, j], ratio, h_wet, q_min):
                bad = True
            if i + 1 < ny and _bore(h[i, j], h[i + 1, j], qy[i + 1, j], ratio, h_wet, q_min):
                bad = True
            out[i, j] = 1 if bad else 0


@njit(cache=True, nogil=True)
def weir_flux(h, z, wall, fi, fj, crest, along_x, dt, dx, cd, g, q_out):
    """Broad-crested weir discharge on barrier faces, replacing the inertial discharge there.

    A separate pass after :func:`inertial_flux` over a list of barrier faces (a grid without barriers does
    not run it). Per face, with the water surfaces eta = z + h on both sides, H1 = eta_up - crest and
    H2 = eta_down - crest: no flow while H1 <= 0; else the free broad-crested weir discharge
    q = cd (2/3)^(3/2) sqrt(g) H1^(3/2) from the higher side (critical depth on the crest: Chow 1959, Open-Channel
    Hydraulics; Henderson 1966, Open Channel Flow, ch. 6; Bos 1989, Discharge Measurement Structures [mem]), times
    the Villemonte (1947) submergence factor (1 - (H2 / H1)^(3/2))^0.385 when H2 > 0 [mem].
    |q| is capped at the discharge that would level the two surfaces in one step, 0.5 (eta_up - eta_down) dx / dt
    [design]: the weir law is explicit and its submergence factor is infinitely steep at H2 = H1.
    A crest at or below the higher bed of the two cells is no barrier: the inertial discharge stays.

    Parameters
    ----------
    h, z : ndarray of float64, shape (ny, nx)
        Water depth [m] and bed elevation [m].
    wall : ndarray of int8, shape (ny, nx)
        Face-closing codes as in :func:`inertial_flux`: no flow where either cell is a wall (bit 1) or both are
        held river cells (bit 2).
    fi, fj : ndarray of int64, shape (k,)
        Face indices into ``q_out``: x faces (i, j) between cells (i, j - 1) and (i, j); y faces (i, j) between
        cells (i - 1, j) and (i, j). Interior faces only.
    crest : ndarray of float64, shape (k,)
        Crest elevation of each face's barrier. [m]
    along_x : int
        1: the faces are x faces (``q_out`` is qx), 0: y faces (qy).
    dt, dx : float
        Time step [s], cell size = face width [m].
    cd : float
        Weir discharge coefficient (1 = ideal critical flow over the crest). [1]
    g : float
        Gravity. [m s-2]
    q_out : ndarray of float64
        Face discharge, overwritten on the barrier faces. [m2 s-1]
    """
    k0 = cd * (2.0 / 3.0) ** 1.5 * math.sqrt(g)
    for k in range(fi.shape[0]):
        i, j = fi[k], fj[k]
        if along_x == 1:
            ia, ja = i, j - 1
        else:
            ia, ja = i - 1, j
        if _closed(wall[ia, ja], wall[i, j]):
            q_out[i, j] = 0.0
            continue
        c = crest[k]
        if c <= max(z[ia, ja], z[i, j]):
            continue
        ea = z[ia, ja] + h[ia, ja]
        eb = z[i, j] + h[i, j]
        up, dn = max(ea, eb), min(ea, eb)
        h1 = up - c
        if h1 <= 0.0:
            q_out[i, j] = 0.0
            continue
        q = k0 * h1 ** 1.5
        h2 = dn - c
        if h2 > 0.0:
            q *= (1.0 - (h2 / h1) ** 1.5) ** 0.385
        q = min(q, 0.5 * (up - dn) * dx / dt)
        q_out[i, j] = q if ea > eb else -q
