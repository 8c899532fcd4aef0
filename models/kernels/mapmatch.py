"""Map-matching kernels: points onto link polylines, a uniform grid index of link segments, candidate search and
the Viterbi step of the hidden Markov model (docs/science/traffic.md 3.7).

Coordinates and lengths in m (a projected CRS); headings in rad, counter-clockwise from +x (``atan2(dy, dx)``);
scores are natural-log probabilities [1]. Link k's vertices are ``vert_xy[link_vert_start[k]:link_vert_start[k +
1]]`` in its direction of travel. Offsets are measured along the polyline from its first vertex.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _project_one(px, py, vert_xy, a, b):
    """(distance [m], offset [m], heading [rad]) of point (px, py) onto the polyline of vertices a..b-1.

    The first segment with the smallest distance wins (a point level with a vertex takes the earlier segment).
    A polyline of fewer than two vertices gives (inf, 0, 0).
    """
    best_d2, best_off, best_h, run = np.inf, 0.0, 0.0, 0.0
    for i in range(a, b - 1):
        x0, y0 = vert_xy[i, 0], vert_xy[i, 1]
        dx, dy = vert_xy[i + 1, 0] - x0, vert_xy[i + 1, 1] - y0
        seg2 = dx * dx + dy * dy
        seg = math.sqrt(seg2)
        s = 0.0
        if seg2 > 0.0:
            s = min(max(((px - x0) * dx + (py - y0) * dy) / seg2, 0.0), 1.0)
        qx, qy = x0 + s * dx - px, y0 + s * dy - py
        d2 = qx * qx + qy * qy
        if d2 < best_d2:
            best_d2, best_off, best_h = d2, run + s * seg, math.atan2(dy, dx)
        run += seg
    return math.sqrt(best_d2), best_off, best_h


@njit(cache=True, nogil=True)
def project_points(px, py, link, vert_xy, link_vert_start, out_dist, out_offset, out_heading):
    """Project each point onto one link's polyline.

    Parameters
    ----------
    px, py : ndarray of float64, shape (k,)
        Points. [m]
    link : ndarray of int64, shape (k,)
        The link to project point i onto; negative: none (outputs inf, NaN, NaN).
    vert_xy : ndarray of float64, shape (m, 2)
        Polyline vertices of all links. [m]
    link_vert_start : ndarray of int64, shape (n_links + 1,)
        Offsets of each link's vertices in ``vert_xy``.
    out_dist : ndarray of float64, shape (k,)
        Distance from the point to the polyline. [m]
    out_offset : ndarray of float64, shape (k,)
        Distance along the polyline to the projected point, in [0, polyline length]. [m]
    out_heading : ndarray of float64, shape (k,)
        Direction of travel of the link at the projected point, ``atan2(dy, dx)``. [rad]
    """
    for i in range(px.size):
        k = link[i]
        if k < 0:
            out_dist[i], out_offset[i], out_heading[i] = np.inf, np.nan, np.nan
            continue
        d, off, h = _project_one(px[i], py[i], vert_xy, link_vert_start[k], link_vert_start[k + 1])
        out_dist[i], out_offset[i], out_heading[i] = d, off, h


@njit(cache=True, nogil=True)
def _cell_range(lo, hi, origin, cell_size, n):
    """First and last cell index (clipped to 0..n-1) that the interval [lo, hi] [m] overlaps."""
    a = math.floor((lo - origin) / cell_size)
    b = math.floor((hi - origin) / cell_size)
    return min(max(a, 0), n - 1), min(max(b, 0), n - 1)


@njit(cache=True, nogil=True)
def _segment_cells(vert_xy, i, x0, y0, cell_size, nx, ny):
    """Cell ranges (ax, bx, ay, by) that the bounding box of segment i..i+1 overlaps."""
    ax, bx = _cell_range(min(vert_xy[i, 0], vert_xy[i + 1, 0]), max(vert_xy[i, 0], vert_xy[i + 1, 0]),
                         x0, cell_size, nx)
    ay, by = _cell_range(min(vert_xy[i, 1], vert_xy[i + 1, 1]), max(vert_xy[i, 1], vert_xy[i + 1, 1]),
                         y0, cell_size, ny)
    return ax, bx, ay, by


@njit(cache=True, nogil=True)
def grid_index(vert_xy, link_vert_start, x0, y0, cell_size, nx, ny):
    """A uniform grid index of link segments: which links have a segment whose bounding box overlaps each cell.

    Parameters
    ----------
    vert_xy, link_vert_start : as :func:`project_points`. [m]
    x0, y0 : float
        Lower-left corner of the grid. [m]
    cell_size : float
        Side of a grid cell. [m]
    nx, ny : int
        Cells along x and y; cell (ix, iy) is number ``iy * nx + ix``. Segments outside the grid are clipped into
        its edge cells (queries are clipped the same way, so nothing is lost).

    Returns
    -------
    cell_start : ndarray of int64, shape (nx * ny + 1,)
        The links of cell c are ``cell_link[cell_start[c]:cell_start[c + 1]]``.
    cell_link : ndarray of int64
        Link ids, ascending within a cell, each once per cell.
    """
    n_links = link_vert_start.size - 1
    n = 0
    for k in range(n_links):  # count
        for i in range(link_vert_start[k], link_vert_start[k + 1] - 1):
            ax, bx, ay, by = _segment_cells(vert_xy, i, x0, y0, cell_size, nx, ny)
            n += (bx - ax + 1) * (by - ay + 1)
    keys = np.empty(n, np.int64)
    n = 0
    for k in range(n_links):  # fill
        for i in range(link_vert_start[k], link_vert_start[k + 1] - 1):
            ax, bx, ay, by = _segment_cells(vert_xy, i, x0, y0, cell_size, nx, ny)
            for iy in range(ay, by + 1):
                for ix in range(ax, bx + 1):
                    keys[n] = (iy * nx + ix) * n_links + k
                    n += 1
    keys = np.unique(keys)
    cell_start = np.searchsorted(keys // max(n_links, 1), np.arange(nx * ny + 1)).astype(np.int64)
    return cell_start, keys % max(n_links, 1)


@njit(cache=True, nogil=True)
def _insert(k, d, off, h, row, out_link, out_dist, out_offset, out_heading):
    """Insert candidate (link k, distance d, ...) into the row's list, kept sorted by (distance, link) (no-op when
    it ranks after the last slot)."""
    m = out_link.shape[1]
    j = m
    while j > 0 and (out_link[row, j - 1] < 0 or d < out_dist[row, j - 1]
                     or (d == out_dist[row, j - 1] and k < out_link[row, j - 1])):
        j -= 1
    if j == m:
        return
    for q in range(m - 1, j, -1):
        out_link[row, q], out_dist[row, q] = out_link[row, q - 1], out_dist[row, q - 1]
        out_offset[row, q], out_heading[row, q] = out_offset[row, q - 1], out_heading[row, q - 1]
    out_link[row, j], out_dist[row, j], out_offset[row, j], out_heading[row, j] = k, d, off, h


@njit(cache=True, nogil=True)
def link_candidates(px, py, radius, vert_xy, link_vert_start, x0, y0, cell_size, nx, ny, cell_start, cell_link,
                    out_link, out_dist, out_offset, out_heading):
    """The nearest links within ``radius`` of each point, at most ``out_link.shape[1]``, nearest first.

    Parameters
    ----------
    px, py : ndarray of float64, shape (k,)
        Points (e.g. Beidou fixes). [m]
    radius : float
        Search radius: links farther than this are no candidates. [m]
    vert_xy, link_vert_start, x0, y0, cell_size, nx, ny : as :func:`grid_index`.
    cell_start, cell_link : ndarray of int64
        The index :func:`grid_index` built on the same polylines and grid.
    out_link : ndarray of int64, shape (k, m)
        Candidate links sorted by (distance, link id); -1 pads the row.
    out_dist, out_offset, out_heading : ndarray of float64, shape (k, m)
        As :func:`project_points` per candidate [m, m, rad]; inf, NaN, NaN in padding.
    """
    mark = np.full(link_vert_start.size - 1, -1, np.int64)
    for i in range(px.size):
        out_link[i, :] = -1
        out_dist[i, :], out_offset[i, :], out_heading[i, :] = np.inf, np.nan, np.nan
        ax, bx = _cell_range(px[i] - radius, px[i] + radius, x0, cell_size, nx)
        ay, by = _cell_range(py[i] - radius, py[i] + radius, y0, cell_size, ny)
        for iy in range(ay, by + 1):
            for ix in range(ax, bx + 1):
                c = iy * nx + ix
                for q in range(cell_start[c], cell_start[c + 1]):
                    k = cell_link[q]
                    if mark[k] == i:
                        continue
                    mark[k] = i
                    d, off, h = _project_one(px[i], py[i], vert_xy, link_vert_start[k], link_vert_start[k + 1])
                    if d <= radius:
                        _insert(k, d, off, h, i, out_link, out_dist, out_offset, out_heading)


@njit(cache=True, nogil=True)
def viterbi_step(prev_score, log_trans, log_emit, out_score, out_back):
    """One forward step of the Viterbi algorithm in log space.

    Parameters
    ----------
    prev_score : ndarray of float64, shape (m,)
        Best log-probability of a path ending in each previous state (-inf: impossible). [1]
    log_trans : ndarray of float64, shape (m, n)
        Log transition probability from previous state i to state j (-inf: no route). [1]
    log_emit : ndarray of float64, shape (n,)
        Log emission probability of the new observation in state j. [1]
    out_score : ndarray of float64, shape (n,)
        ``max_i prev_score[i] + log_trans[i, j] + log_emit[j]``; -inf when no previous state reaches j. [1]
    out_back : ndarray of int64, shape (n,)
        The maximising i (the first on ties); -1 when no previous state reaches j.
    """
    for j in range(log_emit.size):
        best, arg = -np.inf, -1
        for i in range(prev_score.size):
            s = prev_score[i] + log_trans[i, j]
            if s > best:
                best, arg = s, i
        out_score[j] = best + log_emit[j] if arg >= 0 else -np.inf
        out_back[j] = arg
