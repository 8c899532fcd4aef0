"""Fixtures of the city tests, built once per session into temporary folders:

* ``bund4``: the bundled four-district city (data/city/bund4.yaml), not built;
* ``bund4_built``: the same city with every district's grid at 10 m and its registries (about 10 s; no road
  networks), and the build's report.
"""

from __future__ import annotations

import pytest

from twin.district.sources import data_dir


@pytest.fixture(scope="session")
def bund4(tmp_path_factory):
    from twin.city.city import load_city

    return load_city(data_dir() / "city" / "bund4.yaml", cache=tmp_path_factory.mktemp("bund4"))


@pytest.fixture(scope="session")
def bund4_built(bund4):
    return bund4, bund4.build(network=False)
