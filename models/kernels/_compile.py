"""Compile one kernel body twice: serially and with rows in parallel (``prange``).

Not a kernel module (no kernels, no numpy reference): the helper that :mod:`models.kernels.flood`
and :mod:`models.kernels.crowdflow` share for their ``*_par`` variants.

``prange`` runs as ``range`` without ``parallel=True`` and in ``.py_func``, so one body written with
``prange`` serves both. The parallel compilation is of a copy of the function object named
``<name>_par``: numba's on-disk cache files an overload under the function's source file, qualified
name and first line and keys it on signature, CPU and bytecode, but not on ``parallel=``, so two
dispatchers of the same function object would share one cache entry and the second would run the
first one's machine code. The copy shares the code object and the globals of the kernel's module
(same source, bytecode, tracebacks and ``__module__``) and gets its own cache entry next to the
serial one.
"""

from numba import njit


def serial_and_parallel(body):
    """``(serial, parallel)`` cached nogil dispatchers of one kernel body written with ``prange``."""
    name = body.__name__ + "_par"
    twin = type(body)(body.__code__, body.__globals__, name, body.__defaults__, body.__closure__)
    twin.__qualname__ = name  # its own numba cache entry (see the module docstring)
    twin.__doc__ = f":func:`{body.__name__}` with rows in parallel (``prange``): same arithmetic, same result."
    return njit(cache=True, nogil=True)(body), njit(cache=True, nogil=True, parallel=True)(twin)
