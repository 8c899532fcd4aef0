"""Shared fixtures: the bundled Bund district built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def bund_sources():
    from twin.district.sources import bundled_district, read_district

    return read_district(bundled_district("bund"))


@pytest.fixture(scope="session")
def bund10(bund_sources):
    """The Bund at 10 m: (dataset, buildings)."""
    from twin.district.build import twin_from_sources

    return twin_from_sources(bund_sources, 10.0)


@pytest.fixture(scope="session")
def shared_dem():
    """The SRTM GL3 tile from shared/data (lon/lat, around Nederland, Colorado)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "dem" / "srtmgl3_nederland_co_144x144.asc"
    local = DATA / "dem" / "srtmgl3_nederland_co_144x144.asc"
    return local if local.is_file() else path
