"""Plain numpy reference implementations of the kernels in :mod:`models.kernels`.

Each function here has the same signature and output contract as the kernel of the same name
and is written as whole-array numpy expressions (no numba), so the tests can hold
``kernel == reference`` on random inputs. They are slow on purpose: clarity over speed.
"""
