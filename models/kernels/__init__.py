"""Pure numba kernels on arrays in SI units. They import only numpy, numba, math and the private helper
modules here (`_compile`: one body compiled serially and in parallel)."""
