"""Classification of a value into ordered bands (LOS tables, depth bands)."""

import math

from numba import njit


@njit(cache=True, nogil=True)
def classify_bands(x, edges, inclusive, out):
    """Band index of each value: the number of ``edges`` below it.

    Parameters
    ----------
    x : ndarray of float64, shape (n,)
        Values, any units (the edges' units). NaN gives -1.
    edges : ndarray of float64, shape (k,)
        Increasing band edges.
    inclusive : int
        1: a value equal to an edge belongs to the upper band (``x >= edge``);
        0: it belongs to the lower band (``x > edge``; Fruin "<= 0.31 p/m2 is LOS A").
    out : ndarray of int8, shape (n,)
        Band index 0..k, or -1 for NaN.
    """
    for i in range(x.size):
        v = x[i]
        if math.isnan(v):
            out[i] = -1
            continue
        b = 0
        for e in range(edges.size):
            if v > edges[e] or (inclusive == 1 and v == edges[e]):
                b += 1
        out[i] = b
