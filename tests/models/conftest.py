"""Shared fixtures: numba threads are set explicitly (the machine is shared)."""

import numba
import pytest


@pytest.fixture(autouse=True, scope="session")
def _numba_threads():
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield



@pytest.fixture(scope="module")
def one_numba_thread():
    """Run the module's kernels on one thread: for the few cells of a unit test, the parallel kernels' thread
    start-up would cost more than the cells."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
