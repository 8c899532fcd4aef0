"""Crowd-flow kernels: macroscopic pedestrian flow on the grid toward destinations.

Layout (as :mod:`models.kernels.flood`): cell arrays are ``(ny, nx)``; face widths ``wx``
``(ny, nx + 1)`` (face j is west of cell j) and ``wy`` ``(ny + 1, nx)`` (face i is between rows
i - 1 and i). A move bitmask per cell (int8) says where people in it may step:
1 to (i, j + 1), 2 to (i, j - 1), 4 to (i + 1, j), 8 to (i - 1, j). It holds walls, closures,
one-way rules and the closed grid edge, so no kernel needs to know about them separately.

Transfers per sub-step are person counts per cell and direction: ``sE[i, j]`` people that cell
(i, j) wants to send to (i, j + 1) (sending, "demand"); ``aE[i, j]`` people accepted INTO cell
(i, j) moving in +j, i.e. from (i, j - 1) (receiving, "supply"); likewise W (-j), S (+i), N (-i).

``fd`` is the fundamental diagram as a float64 array ``(v0, gamma, rho_max, rho_c, q_max)``:
Weidmann (1993) v(rho) = v0 [1 - exp(-gamma (1/rho - 1/rho_max))] [m s-1], its critical density
rho_c [person m-2] and maximum specific flow q_max = rho_c v(rho_c) [person m-1 s-1] from
:func:`weidmann_capacity`. Units SI: m, s, person.

One sub-step is three passes, each with a ``*_par`` variant over rows (``prange``, same arithmetic,
bit-identical; one body compiled twice, the parallel copy by :func:`_parallel`, which says why it
has its own name):
:func:`send_demand`, :func:`accept_inflow`, :func:`apply_transfers`; then
:func:`admit` for sources (the same receiving function at the entrance). Only occupied cells evaluate the
exponential of the speed law. The
potential is :func:`fast_sweep` (serial: a Gauss-Seidel sweep is sequential) and
:func:`descent_direction`.
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


@njit(cache=True, nogil=True, inline="always")
def weidmann_v(rho, v0, gamma, rho_max):
    """Weidmann (1993) walking speed at density ``rho``: v0 at rho <= 0, 0 at rho >= rho_max. [m s-1]

    v = v0 [1 - exp(-gamma (1/rho - 1/rho_max))]. The one definition of the speed law: `weidmann_speed` and the
    crowd-flow kernels (:mod:`models.kernels.crowdflow`) call it.
    """
    if rho <= 0.0:
        return v0
    if rho >= rho_max:
        return 0.0
    return v0 * (1.0 - math.exp(-gamma * (1.0 / rho - 1.0 / rho_max)))


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
        v = np.nan if math.isnan(rho) else weidmann_v(rho, v0, gamma, rho_max)
        out_speed[i] = v
        out_flow[i] = max(rho, 0.0) * v if rho == rho else np.nan


@njit(cache=True, nogil=True)
def weidmann_capacity(v0, gamma, rho_max):
    """Critical density and maximum specific flow of the Weidmann (1993) fundamental diagram.

    Parameters
    ----------
    v0 : float
        Free walking speed. [m s-1]
    gamma : float
        Shape parameter. [person m-2]
    rho_max : float
        Jam density. [person m-2]

    Returns
    -------
    rho_c : float
        Density of the largest flow. [person m-2]
    q_max : float
        Largest specific flow rho_c v(rho_c) ("J_max", the capacity per metre of width). [person m-1 s-1]

    Notes
    -----
    q(rho) = rho v(rho); dq/drho = v0 [1 - E (1 + gamma / rho)] with E = exp(-gamma (1/rho - 1/rho_max)).
    g(rho) = E (1 + gamma / rho) rises strictly from 0 (rho -> 0) to 1 + gamma / rho_max > 1 (rho_max)
    (d ln g / d rho = gamma / (rho (rho + gamma)) > 0), so q has one maximum, at g(rho_c) = 1, found
    here by bisection to machine precision.
    """
    lo = 1e-9 * rho_max
    hi = rho_max
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.exp(-gamma * (1.0 / mid - 1.0 / rho_max)) * (1.0 + gamma / mid) < 1.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4e-16 * hi:
            break
    rho_c = 0.5 * (lo + hi)
    return rho_c, rho_c * weidmann_v(rho_c, v0, gamma, rho_max)


@njit(cache=True, nogil=True)
def slowness(count, area, moves, fd, v_min, out):
    """Routing cost 1 / max(v(rho), v_min) per cell (Hughes 2002 potential with the local speed).

    Parameters
    ----------
    count : ndarray of float64, shape (ny, nx)
        People in each cell. [person]
    area : ndarray of float64, shape (ny, nx)
        Walkable area. [m2]
    moves : ndarray of int8, shape (ny, nx)
        Move bitmask; cells with no move get an infinite cost (never routed through).
    fd : ndarray of float64, shape (5,)
        (v0, gamma, rho_max, rho_c, q_max).
    v_min : float
        Floor of the speed so that jammed cells stay routable (slow, not walls). [m s-1]
    out : ndarray of float64, shape (ny, nx)
        Slowness. [s m-1]
    """
    ny, nx = count.shape
    for i in range(ny):
        for j in range(nx):
            if moves[i, j] == 0 or area[i, j] <= 0.0:
                out[i, j] = math.inf
            else:
                out[i, j] = 1.0 / max(weidmann_v(count[i, j] / area[i, j], fd[0], fd[1], fd[2]), v_min)


@njit(cache=True, nogil=True)
def _tri(ta, td, fh):
    """Semi-Lagrangian update from one triangle: axis neighbour A (T = ta, at h) and diagonal D (td, at h sqrt 2).

    T = min over P on segment AD of T(P) + f |P - c| with T linear along AD (Tsitsiklis 1995):
    with r = (ta - td) / (f h), T = ta + f h if r <= 0, td + f h sqrt 2 if r >= 1/sqrt 2,
    else ta + f h sqrt(1 - r^2).
    """
    if td == math.inf:
        return ta + fh
    if ta == math.inf:
        return td + fh * 1.4142135623730951
    r = (ta - td) / fh
    if r <= 0.0:
        return ta + fh
    if r >= 0.7071067811865476:
        return td + fh * 1.4142135623730951
    return ta + fh * math.sqrt(1.0 - r * r)


@njit(cache=True, nogil=True)
def _update(T, moves, i, j, m, fh):
    """Smallest triangle update of cell (i, j); a triangle needs the moves c -> A and A -> D."""
    t = math.inf
    if m & 1:
        ma = moves[i, j + 1]
        t = min(t, _tri(T[i, j + 1], T[i + 1, j + 1] if ma & 4 else math.inf, fh))
        t = min(t, _tri(T[i, j + 1], T[i - 1, j + 1] if ma & 8 else math.inf, fh))
    if m & 2:
        ma = moves[i, j - 1]
        t = min(t, _tri(T[i, j - 1], T[i + 1, j - 1] if ma & 4 else math.inf, fh))
        t = min(t, _tri(T[i, j - 1], T[i - 1, j - 1] if ma & 8 else math.inf, fh))
    if m & 4:
        ma = moves[i + 1, j]
        t = min(t, _tri(T[i + 1, j], T[i + 1, j + 1] if ma & 1 else math.inf, fh))
        t = min(t, _tri(T[i + 1, j], T[i + 1, j - 1] if ma & 2 else math.inf, fh))
    if m & 8:
        ma = moves[i - 1, j]
        t = min(t, _tri(T[i - 1, j], T[i - 1, j + 1] if ma & 1 else math.inf, fh))
        t = min(t, _tri(T[i - 1, j], T[i - 1, j - 1] if ma & 2 else math.inf, fh))
    return t


@njit(cache=True, nogil=True)
def _wake(active, i, j):
    """Mark the 8 neighbours of (i, j) for another update (their stencils use T[i, j])."""
    ny, nx = active.shape
    for a in range(max(i - 1, 0), min(i + 2, ny)):
        for b in range(max(j - 1, 0), min(j + 2, nx)):
            active[a, b] = 1


@njit(cache=True, nogil=True)
def _sweep(T, cost, moves, seed, active, h, di, dj):
    """One Gauss-Seidel sweep in the ordering (di, dj) over active cells; returns the largest decrease of T."""
    ny, nx = T.shape
    change = 0.0
    for ii in range(ny):
        i = ii if di > 0 else ny - 1 - ii
        for jj in range(nx):
            j = jj if dj > 0 else nx - 1 - jj
            if active[i, j] == 0:
                continue
            active[i, j] = 0
            m = moves[i, j]
            if m == 0 or seed[i, j]:
                continue
            t = _update(T, moves, i, j, m, cost[i, j] * h)
            if t < T[i, j]:
                change = max(change, T[i, j] - t)
                T[i, j] = t
                _wake(active, i, j)
    return change


@njit(cache=True, nogil=True)
def fast_sweep(cost, moves, seed, h, tol, max_rounds, T):
    """Travel time to the seed cells: the Eikonal equation |grad T| = cost by fast sweeping.

    Parameters
    ----------
    cost : ndarray of float64, shape (ny, nx)
        Slowness 1 / speed. [s m-1]
    moves : ndarray of int8, shape (ny, nx)
        Move bitmask: a cell's update uses only neighbours it may step to (walls, closures and
        one-way rules make the problem directed); cells without moves keep T = inf.
    seed : ndarray of bool, shape (ny, nx)
        Destination cells, T = 0.
    h : float
        Cell size. [m]
    tol : float
        Stop after a round of four sweeps that lowers no value by more than this. [s]
    max_rounds : int
        At most this many rounds of four sweeps.
    T : ndarray of float64, shape (ny, nx)
        Output travel time; inf where no seed is reachable. [s]

    Returns
    -------
    int
        Rounds done (``max_rounds + 1`` if not converged).

    Notes
    -----
    Fast sweeping (Zhao, H. 2005, Math. Comp. 74, 603-627): Gauss-Seidel sweeps in the four
    alternating orderings until no value changes, each following the characteristics of one
    quadrant. The local update is the 8-neighbour semi-Lagrangian one of Tsitsiklis (1995) (the
    optimal straight path from the cell centre to a point on the segment between an axis neighbour
    and a diagonal neighbour, see :func:`_tri`) rather than Zhao's 4-neighbour Godunov formula: both
    are first-order and monotone, but the Godunov error near a point destination grows like
    log(distance) (1.2 to 1.9 cells at 40 to 400 cells here) while this one stays below 0.55 cell.
    A diagonal is used only through an allowed pair of moves c -> A -> D, so paths never cut a wall corner.
    Only cells next to a value that changed are revisited ("locking", Bak, McLaughlin & Renzi 2010,
    J. Comput. Phys. 229, 6339): same result, later rounds cost little more than a scan.
    """
    ny, nx = T.shape
    active = np.ones((ny, nx), np.int8)
    for i in range(ny):
        for j in range(nx):
            T[i, j] = 0.0 if seed[i, j] else math.inf
    for r in range(max_rounds):
        change = _sweep(T, cost, moves, seed, active, h, 1, 1)
        change = max(change, _sweep(T, cost, moves, seed, active, h, -1, 1))
        change = max(change, _sweep(T, cost, moves, seed, active, h, -1, -1))
        change = max(change, _sweep(T, cost, moves, seed, active, h, 1, -1))
        if change <= tol:
            return r + 1
    return max_rounds + 1


@njit(cache=True, nogil=True)
def _gain(t, m, bit, tn):
    """Decrease of T when stepping to a neighbour with value tn (-1 if that move is not allowed)."""
    return t - tn if m & bit else -1.0


@njit(cache=True, nogil=True)
def descent_direction(T, moves, ex, ey):
    """Unit walking direction down the travel-time potential (upwind differences).

    Parameters
    ----------
    T : ndarray of float64, shape (ny, nx)
        Potential (travel time). [s]
    moves : ndarray of int8, shape (ny, nx)
        Move bitmask: only allowed moves are candidates.
    ex, ey : ndarray of float64, shape (ny, nx)
        Output direction components along +j and +i; (0, 0) where no neighbour is lower
        (destinations, unreachable cells).

    Notes
    -----
    Per axis the component is the larger decrease toward an allowed neighbour (zero if none is
    lower): an upwind gradient, so a cell never points up-hill.
    """
    ny, nx = T.shape
    for i in range(ny):
        for j in range(nx):
            t = T[i, j]
            m = moves[i, j]
            gx = 0.0
            gy = 0.0
            if m != 0 and t < math.inf:
                ge = _gain(t, m, 1, T[i, j + 1] if j + 1 < nx else 0.0)
                gw = _gain(t, m, 2, T[i, j - 1] if j > 0 else 0.0)
                gs = _gain(t, m, 4, T[i + 1, j] if i + 1 < ny else 0.0)
                gn = _gain(t, m, 8, T[i - 1, j] if i > 0 else 0.0)
                if ge > 0.0 or gw > 0.0:
                    gx = ge if ge >= gw else -gw
                if gs > 0.0 or gn > 0.0:
                    gy = gs if gs >= gn else -gn
            norm = math.sqrt(gx * gx + gy * gy)
            ex[i, j] = gx / norm if norm > 0.0 else 0.0
            ey[i, j] = gy / norm if norm > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _face_send(d, c, allowed, width):
    """People sent across one face: demand d [person m-1] x direction component c toward the face x its
    width [m] if the move is ``allowed`` and c > 0, else 0. [person]"""
    return d * c * width if c > 0.0 and allowed else 0.0


@njit(cache=True, nogil=True)
def _send_row(i, count, area, ex, ey, moves, wx, wy, dt, fd, sE, sW, sS, sN, sup):
    """Demand and supply of the cells of row ``i``; sends limited to what each cell holds."""
    v0, gamma, rho_max, rho_c, q_max = fd[0], fd[1], fd[2], fd[3], fd[4]
    for j in range(count.shape[1]):
        n = count[i, j]
        e = w = s = u = 0.0
        sup[i, j] = q_max
        if n > 0.0 and area[i, j] > 0.0:
            rho = n / area[i, j]
            q = rho * weidmann_v(rho, v0, gamma, rho_max)
            d = q * dt if rho < rho_c else q_max * dt  # demand q(min(rho, rho_c))
            if rho > rho_c:
                sup[i, j] = q  # supply q(max(rho, rho_c))
            m = moves[i, j]
            e = _face_send(d, ex[i, j], m & 1, wx[i, j + 1])
            w = _face_send(d, -ex[i, j], m & 2, wx[i, j])
            s = _face_send(d, ey[i, j], m & 4, wy[i + 1, j])
            u = _face_send(d, -ey[i, j], m & 8, wy[i, j])
            tot = e + w + s + u
            if tot > n:
                f = n / tot
                e, w, s, u = e * f, w * f, s * f, u * f
        sE[i, j] = e
        sW[i, j] = w
        sS[i, j] = s
        sN[i, j] = u


def send_demand(count, area, ex, ey, moves, wx, wy, dt, fd, sE, sW, sS, sN, sup):
    """People each cell wants to send across each face in ``dt`` (demand), and each cell's supply.

    Parameters
    ----------
    count, area : ndarray of float64, shape (ny, nx)
        People [person] and walkable area [m2].
    ex, ey : ndarray of float64, shape (ny, nx)
        Unit walking direction from :func:`descent_direction`.
    moves : ndarray of int8, shape (ny, nx)
        Move bitmask.
    wx, wy : ndarray of float64
        Walkable width of the x and y faces. [m]
    dt : float
        Sub-step. [s]
    fd : ndarray of float64, shape (5,)
        (v0, gamma, rho_max, rho_c, q_max).
    sE, sW, sS, sN : ndarray of float64, shape (ny, nx)
        Output: people sent toward +j, -j, +i, -i. [person]
    sup : ndarray of float64, shape (ny, nx)
        Output: supply R(rho) = q(max(rho, rho_c)) of each cell, for :func:`accept_inflow`. [person m-1 s-1]

    Notes
    -----
    Flux through a face = D(rho) w e_n dt with the demand D(rho) = q(min(rho, rho_c)), q = rho v(rho):
    the sending function of the cell transmission model (Daganzo 1994, S = min(v n, Q)) written for
    Weidmann's curve (the Godunov demand of Lebacque 1996). A congested cell (rho > rho_c) sends at
    the capacity q_max per metre of width, which is what makes a door discharge a queue at its
    capacity; the plain rho v(rho) would discharge a 3.5 p/m2 crowd at 0.82 instead of 1.22 p/m/s.
    Sends are scaled down so a cell never sends more than it holds. The supply is q_max in free
    flow and q(rho) when congested (0 at rho_max): one exponential per occupied cell and step.
    """
    for ip in prange(count.shape[0]):
        _send_row(np.int64(ip), count, area, ex, ey, moves, wx, wy, dt, fd, sE, sW, sS, sN, sup)


send_demand_par = _parallel(send_demand)
send_demand = njit(cache=True, nogil=True)(send_demand)


@njit(cache=True, nogil=True)
def _accept_row(i, count, cap, sE, sW, sS, sN, sup, wx, wy, dt, aE, aW, aS, aN):
    """Receiving of the cells of row ``i``."""
    ny, nx = count.shape
    for j in range(nx):
        ie = sE[i, j - 1] if j > 0 else 0.0
        iw = sW[i, j + 1] if j + 1 < nx else 0.0
        i_s = sS[i - 1, j] if i > 0 else 0.0
        i_n = sN[i + 1, j] if i + 1 < ny else 0.0
        tot = ie + iw + i_s + i_n
        if tot > 0.0:
            r = sup[i, j] * dt  # people per metre of face width
            ie = min(ie, r * wx[i, j])
            iw = min(iw, r * wx[i, j + 1])
            i_s = min(i_s, r * wy[i, j])
            i_n = min(i_n, r * wy[i + 1, j])
            tot = ie + iw + i_s + i_n
            room = cap[i, j] - count[i, j]
            if tot > room:
                f = max(room, 0.0) / tot
                ie, iw, i_s, i_n = ie * f, iw * f, i_s * f, i_n * f
        aE[i, j] = ie
        aW[i, j] = iw
        aS[i, j] = i_s
        aN[i, j] = i_n


def accept_inflow(count, cap, sE, sW, sS, sN, sup, wx, wy, dt, aE, aW, aS, aN):
    """People each cell takes in across each face in ``dt`` (the supply side).

    Parameters
    ----------
    count : ndarray of float64, shape (ny, nx)
        People. [person]
    cap : ndarray of float64, shape (ny, nx)
        Most people the cell may hold: rho_max x area; inf for sinks (people leave), 0 where closed. [person]
    sE, sW, sS, sN, sup : ndarray of float64, shape (ny, nx)
        Sends [person] and supply [person m-1 s-1] from :func:`send_demand`.
    wx, wy : ndarray of float64
        Face widths. [m]
    dt : float
        Sub-step. [s]
    aE, aW, aS, aN : ndarray of float64, shape (ny, nx)
        Output: people accepted into the cell moving +j (from the west neighbour), -j, +i, -i. [person]

    Notes
    -----
    Each face passes min(send, R(rho) w dt) with the supply R(rho) = q(max(rho, rho_c)) (the CTM
    receiving function, Daganzo 1994, for Weidmann's curve; Lebacque 1996): q_max per metre of width
    in free flow, falling to 0 at rho_max. Then all inflows are scaled so that count + inflow never
    exceeds ``cap`` (the outflows of the same step are not counted on: conservative).
    """
    for ip in prange(count.shape[0]):
        _accept_row(np.int64(ip), count, cap, sE, sW, sS, sN, sup, wx, wy, dt, aE, aW, aS, aN)


accept_inflow_par = _parallel(accept_inflow)
accept_inflow = njit(cache=True, nogil=True)(accept_inflow)


@njit(cache=True, nogil=True)
def _apply_row(i, count, sink, dt, aE, aW, aS, aN, out_acc, fx, fy, n_acc):
    """Flux-form update of row ``i``."""
    ny, nx = count.shape
    for j in range(nx):
        o_e = aE[i, j + 1] if j + 1 < nx else 0.0
        o_w = aW[i, j - 1] if j > 0 else 0.0
        o_s = aS[i + 1, j] if i + 1 < ny else 0.0
        o_n = aN[i - 1, j] if i > 0 else 0.0
        n0 = count[i, j]
        n = n0 - (o_e + o_w + o_s + o_n) + (aE[i, j] + aW[i, j] + aS[i, j] + aN[i, j])
        if n < 0.0:  # only rounding of a cell that sent all it held (|n| ~ 1e-16 person)
            n = 0.0
        if sink[i, j]:
            out_acc[i, j] += n
            n = 0.0
        count[i, j] = n
        if n0 > 0.0:  # skip the read-modify-writes where nobody was
            fx[i, j] += o_e - o_w
            fy[i, j] += o_s - o_n
            n_acc[i, j] += n0 * dt


def apply_transfers(count, sink, dt, aE, aW, aS, aN, out_acc, fx, fy, n_acc):
    """Continuity: count += accepted inflow - accepted outflow; sinks empty into ``out_acc``.

    Parameters
    ----------
    count : ndarray of float64, shape (ny, nx)
        People, updated in place. [person]
    sink : ndarray of bool, shape (ny, nx)
        Open sink cells: whatever they hold after the step has left the grid.
    dt : float
        Sub-step. [s]
    aE, aW, aS, aN : ndarray of float64, shape (ny, nx)
        Accepted transfers from :func:`accept_inflow`. [person]
    out_acc : ndarray of float64, shape (ny, nx)
        Accumulator (added to): people that left through each sink cell. [person]
    fx, fy : ndarray of float64, shape (ny, nx)
        Accumulators (added to): people the cell sent along +j / +i, net of -j / -i (its outflow vector). [person]
    n_acc : ndarray of float64, shape (ny, nx)
        Accumulator (added to): count before the step x dt (the people who did the walking). [person s]

    Notes
    -----
    Every accepted transfer is subtracted from one cell and added to another in the same pass, so
    the total is conserved up to rounding (flux form). Mean velocity of the people in a cell over
    several steps: (fx, fy) dx / n_acc = D(rho) / rho x direction (donor cell), never above v0.
    """
    for ip in prange(count.shape[0]):
        _apply_row(np.int64(ip), count, sink, dt, aE, aW, aS, aN, out_acc, fx, fy, n_acc)


apply_transfers_par = _parallel(apply_transfers)
apply_transfers = njit(cache=True, nogil=True)(apply_transfers)


@njit(cache=True, nogil=True)
def admit(cells, rate, backlog, count, cap, area, width, fd, dt, admitted):
    """Sources: people arriving at entrance cells join a queue outside the grid and enter as the cell can receive.

    Parameters
    ----------
    cells : ndarray of int64, shape (k,)
        Flat cell index of each source (unique).
    rate : ndarray of float64, shape (k,)
        Arrival rate. [person s-1]
    backlog : ndarray of float64, shape (k,)
        People waiting to enter (updated in place). [person]
    count : ndarray of float64, shape (n_cells,)
        People per cell, flat (updated in place). [person]
    cap : ndarray of float64, shape (n_cells,)
        Most people a cell may hold (0 where closed: arrivals wait). [person]
    area : ndarray of float64, shape (n_cells,)
        Walkable area. [m2]
    width : ndarray of float64, shape (n_cells,)
        Entry width of each cell: its walking width, the width people come in across. [m]
    fd : ndarray of float64, shape (5,)
        (v0, gamma, rho_max, rho_c, q_max).
    dt : float
        Sub-step; 0 for an instantaneous injection (limited by ``cap`` only: a fork's starting crowd). [s]
    admitted : ndarray of float64, shape (k,)
        Accumulator (added to): people that entered the grid. [person]

    Notes
    -----
    Over a sub-step a source admits min(waiting, R(rho) w dt, cap - count) with the receiving function
    R(rho) = q(max(rho, rho_c)) of the cell transmission model (Daganzo 1994; the supply of
    :func:`accept_inflow`): an entrance takes at most q_max w per second in free flow and less as it
    congests, as any face does. So arrivals below the entrance's capacity enter at their rate and the
    cell settles on the free branch (q(rho) w_out = rate); above it the surplus waits outside.
    """
    v0, gamma, rho_max, rho_c, q_max = fd[0], fd[1], fd[2], fd[3], fd[4]
    for k in range(cells.size):
        c = cells[k]
        b = backlog[k] + rate[k] * dt
        room = cap[c] - count[c]
        a = min(b, room) if room > 0.0 else 0.0
        if dt > 0.0 and area[c] > 0.0:
            rho = count[c] / area[c]
            sup = q_max if rho <= rho_c else rho * weidmann_v(rho, v0, gamma, rho_max)
            a = min(a, sup * width[c] * dt)
        count[c] += a
        backlog[k] = b - a
        admitted[k] += a
