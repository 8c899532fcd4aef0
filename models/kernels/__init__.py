"""Pure numba kernels on arrays in SI units. They import only numpy, numba and math."""
