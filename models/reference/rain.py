"""Reference for :mod:`models.kernels.rain`."""

import numpy as np


def rolling_sums(ring, pos, windows, out):
    """numpy reference of :func:`models.kernels.rain.rolling_sums`."""
    n_bins = ring.shape[1]
    for w, length in enumerate(windows):
        idx = (pos - np.arange(length)) % n_bins
        acc = np.zeros(ring.shape[0])
        for i in idx:  # same summation order as the kernel
            acc = acc + ring[:, i]
        out[w] = acc


def signal_level(acc, table, out):
    """numpy reference of :func:`models.kernels.rain.signal_level`."""
    hit = acc[None, :, :] >= table[:, :, None]  # (4, n_win, n_cells)
    lvl = np.where(hit.any(axis=1), np.arange(1, 5)[:, None], 0).max(axis=0)
    out[:] = np.where(np.isnan(acc).any(axis=0), -1, lvl)
