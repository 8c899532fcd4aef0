"""Rain kernels: rolling accumulations per cell and rainstorm signal levels."""

import math

from numba import njit


@njit(cache=True, nogil=True)
def rolling_sums(ring, pos, windows, out):
    """Rolling rain accumulations over several windows from a ring of per-bin totals.

    Parameters
    ----------
    ring : ndarray of float64, shape (n_cells, n_bins)
        Rain in each time bin; ``ring[:, pos]`` is the current bin. [m]
    pos : int
        Index of the current bin.
    windows : ndarray of int64, shape (n_win,)
        Window lengths in bins (<= n_bins), e.g. 1 h and 6 h.
    out : ndarray of float64, shape (n_win, n_cells)
        Accumulation over the last ``windows[w]`` bins, current bin included. [m]
    """
    n_cells, n_bins = ring.shape
    for c in range(n_cells):
        for w in range(windows.size):
            s = 0.0
            for k in range(windows[w]):
                s += ring[c, (pos - k) % n_bins]
            out[w, c] = s


@njit(cache=True, nogil=True)
def signal_level(acc, table, out):
    """Warning level from accumulations: the highest level with any window at or over its threshold.

    Parameters
    ----------
    acc : ndarray of float64, shape (n_win, n_cells)
        Accumulations, same windows as the table's columns. [m]
    table : ndarray of float64, shape (4, n_win)
        Threshold of blue, yellow, orange, red for each window; ``inf`` where a level does not
        use that window. [m]
    out : ndarray of int8, shape (n_cells,)
        0 none, 1 blue .. 4 red; -1 where any accumulation is NaN.
    """
    for c in range(acc.shape[1]):
        lvl = 0
        for w in range(acc.shape[0]):
            a = acc[w, c]
            if math.isnan(a):
                lvl = -1
                break
            for k in range(4):
                if a >= table[k, w] and k + 1 > lvl:
                    lvl = k + 1
        out[c] = lvl
