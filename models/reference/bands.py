"""Reference for :mod:`models.kernels.bands`."""

import numpy as np


def classify_bands(x, edges, inclusive, out):
    """numpy reference of :func:`models.kernels.bands.classify_bands`."""
    x = np.asarray(x)
    cmp = (x[:, None] >= edges[None, :]) if inclusive == 1 else (x[:, None] > edges[None, :])
    out[:] = np.where(np.isnan(x), -1, cmp.sum(axis=1))
