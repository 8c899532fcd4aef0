"""Shared fixtures: numba threads are set explicitly (the machine is shared)."""

import numba
import pytest


@pytest.fixture(autouse=True, scope="session")
def _numba_threads():
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield

