"""Numba kernels and thin xarray components for crowd, flood, traffic, risk and alert levels.

Imports nothing from ``twin``, ``ingest`` or ``scenarios``.
"""
