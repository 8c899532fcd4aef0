"""Reference for :mod:`models.kernels.mapmatch` (plain numpy; candidates by brute force over every link)."""

import numpy as np


def _segments(vert_xy, link_vert_start):
    """Per segment: its link, start point, vector, length and the polyline offset of its start."""
    n_links = link_vert_start.size - 1
    idx = [np.arange(link_vert_start[k], link_vert_start[k + 1] - 1) for k in range(n_links)]
    seg_link = np.repeat(np.arange(n_links), [a.size for a in idx]).astype(np.int64)
    i = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)
    p0 = vert_xy[i]
    d = vert_xy[i + 1] - p0
    seg = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
    run = np.zeros(seg.size)
    for k in range(n_links):  # cumulative length within each link, added in the kernel's order
        s = slice(np.searchsorted(seg_link, k), np.searchsorted(seg_link, k, "right"))
        acc = 0.0
        for j in range(s.start, s.stop):
            run[j] = acc
            acc += seg[j]
    return seg_link, p0, d, seg, run


def _project(px, py, p0, d, seg, run):
    """(d2, offset, heading) of points (k,) against segments (s,): arrays (k, s)."""
    seg2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = ((px[:, None] - p0[:, 0]) * d[:, 0] + (py[:, None] - p0[:, 1]) * d[:, 1]) / seg2
    s = np.where(seg2 > 0, np.minimum(np.maximum(s, 0.0), 1.0), 0.0)
    qx = p0[:, 0] + s * d[:, 0] - px[:, None]
    qy = p0[:, 1] + s * d[:, 1] - py[:, None]
    return qx * qx + qy * qy, run + s * seg, np.broadcast_to(np.arctan2(d[:, 1], d[:, 0]), s.shape)


def _per_link(px, py, vert_xy, link_vert_start):
    """(distance, offset, heading) of every point against every link: arrays (k, n_links); inf where none."""
    n_links = link_vert_start.size - 1
    seg_link, p0, d, seg, run = _segments(vert_xy, link_vert_start)
    d2, off, head = _project(np.asarray(px, float), np.asarray(py, float), p0, d, seg, run)
    k = px.size
    dist, offset, heading = np.full((k, n_links), np.inf), np.zeros((k, n_links)), np.zeros((k, n_links))
    for link in range(n_links):
        cols = np.flatnonzero(seg_link == link)
        if cols.size == 0:
            continue
        j = cols[np.argmin(d2[:, cols], axis=1)]  # first minimum, as the kernel
        rows = np.arange(k)
        dist[:, link], offset[:, link], heading[:, link] = np.sqrt(d2[rows, j]), off[rows, j], head[rows, j]
    return dist, offset, heading


def project_points(px, py, link, vert_xy, link_vert_start, out_dist, out_offset, out_heading):
    """numpy reference of :func:`models.kernels.mapmatch.project_points`."""
    dist, offset, heading = _per_link(px, py, vert_xy, link_vert_start)
    ok = link >= 0
    rows = np.arange(px.size)
    li = np.where(ok, link, 0)
    if dist.shape[1] == 0:
        ok[:] = False
        dist, offset, heading = np.full((px.size, 1), np.inf), np.zeros((px.size, 1)), np.zeros((px.size, 1))
    out_dist[:] = np.where(ok, dist[rows, li], np.inf)
    out_offset[:] = np.where(ok, offset[rows, li], np.nan)
    out_heading[:] = np.where(ok, heading[rows, li], np.nan)


def grid_index(vert_xy, link_vert_start, x0, y0, cell_size, nx, ny):
    """numpy reference of :func:`models.kernels.mapmatch.grid_index`."""
    n_links = link_vert_start.size - 1
    seg_link, p0, d, _seg, _run = _segments(vert_xy, link_vert_start)
    p1 = p0 + d

    def cells(lo, hi, origin, n):
        return (np.clip(np.floor((lo - origin) / cell_size).astype(np.int64), 0, n - 1),
                np.clip(np.floor((hi - origin) / cell_size).astype(np.int64), 0, n - 1))

    ax, bx = cells(np.minimum(p0[:, 0], p1[:, 0]), np.maximum(p0[:, 0], p1[:, 0]), x0, nx)
    ay, by = cells(np.minimum(p0[:, 1], p1[:, 1]), np.maximum(p0[:, 1], p1[:, 1]), y0, ny)
    keys = [((iy * nx + np.arange(ax[s], bx[s] + 1)) * n_links + seg_link[s])
            for s in range(seg_link.size) for iy in range(ay[s], by[s] + 1)]
    keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    m = max(n_links, 1)
    return np.searchsorted(keys // m, np.arange(nx * ny + 1)).astype(np.int64), keys % m


def link_candidates(px, py, radius, vert_xy, link_vert_start, x0, y0, cell_size, nx, ny, cell_start, cell_link,
                    out_link, out_dist, out_offset, out_heading):
    """numpy reference of :func:`models.kernels.mapmatch.link_candidates` (brute force; the index is unused)."""
    dist, offset, heading = _per_link(px, py, vert_xy, link_vert_start)
    m = out_link.shape[1]
    out_link[:] = -1
    out_dist[:], out_offset[:], out_heading[:] = np.inf, np.nan, np.nan
    ids = np.arange(dist.shape[1])
    for i in range(px.size):
        ok = np.flatnonzero(dist[i] <= radius)
        order = ok[np.lexsort((ids[ok], dist[i, ok]))][:m]
        out_link[i, :order.size] = order
        out_dist[i, :order.size], out_offset[i, :order.size] = dist[i, order], offset[i, order]
        out_heading[i, :order.size] = heading[i, order]


def viterbi_step(prev_score, log_trans, log_emit, out_score, out_back):
    """numpy reference of :func:`models.kernels.mapmatch.viterbi_step`."""
    if prev_score.size == 0:
        out_score[:], out_back[:] = -np.inf, -1
        return
    s = prev_score[:, None] + log_trans
    arg = np.argmax(s, axis=0)
    best = s[arg, np.arange(log_emit.size)]
    ok = best > -np.inf  # NaN-free scores: a reachable state has a finite best
    out_score[:] = np.where(ok, best + log_emit, -np.inf)
    out_back[:] = np.where(ok, arg, -1)
