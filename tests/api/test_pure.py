"""The API's pure parts: the acknowledgement CAP Update, bbox windows, colours, GeoJSON rings."""

from __future__ import annotations

import numpy as np
import pytest

from twin.api.errors import ApiError
from twin.api.geojson import area_geometry, finite, iso_time
from twin.api.rasters import bbox_window, full_window, json_values, parse_bbox
from twin.api.render import LEVEL_RGBA, RAMP, Style, check_range, colourise, png_bytes
from twin.district.grid import GridSpec

GRID = GridSpec.from_bbox(121.48, 31.23, 121.50, 31.25, 20.0)
ALERT = {
    "identifier": "citytwin.bund.crowd.20250101T000100Z.00001", "sender": "twin.bund@citytwin",
    "sent": "2025-01-01T08:01:00+08:00", "status": "Actual", "msgType": "Alert", "scope": "Public",
    "info": [{"category": "Safety", "event": "Crowd density warning", "urgency": "Expected", "severity": "Moderate",
              "certainty": "Observed", "headline": "Yellow crowd density warning, bund",
              "parameter": [{"valueName": "warningLevel", "value": "yellow"}],
              "area": [{"areaDesc": "bund: 9 cells",
                        "polygon": ["31.24000,121.48500 31.24100,121.48500 31.24100,121.48600 31.24000,121.48500"]}]}],
}


def test_bbox_parsing_and_windows():
    assert parse_bbox("121.48,31.23,121.5,31.25") == (121.48, 31.23, 121.5, 31.25)
    for bad in ("121.48,31.23,121.5", "121.5,31.23,121.48,31.25", "x,1,2,3", "1,2,3,inf", "1,-95,2,3"):
        with pytest.raises(ApiError) as exc:
            parse_bbox(bad)
        assert exc.value.status == 422 and exc.value.error == "bad_bbox"
    assert bbox_window(GRID, GRID.bounds_lonlat) == full_window(GRID)
    west, south, east, north = GRID.bounds_lonlat
    inner = bbox_window(GRID, (west, south, (west + east) / 2, (south + north) / 2))
    assert inner.row1 == GRID.ny and inner.col0 == 0 and inner.row0 > 0 and inner.col1 < GRID.nx, "south-west"
    assert bbox_window(GRID, (100.0, 20.0, 100.1, 20.1)).size == 0


def test_json_values_turn_nan_into_null_and_keep_integers():
    assert json_values(np.array([[1.5, np.nan], [np.inf, 0.0]])) == [[1.5, None], [None, 0.0]]
    assert json_values(np.array([[-1, 4]], dtype=np.int8)) == [[-1, 4]]


def test_colours_of_levels_and_ramp_and_png_round_trip():
    levels = np.array([[-1, 0, 1, 2, 3, 4]], dtype=np.int8)
    rgba = colourise(levels, Style("levels"))
    assert [tuple(p) for p in rgba[0]] == [(0, 0, 0, 0), (0, 0, 0, 0)] + [LEVEL_RGBA[k] for k in (1, 2, 3, 4)]
    assert tuple(colourise(levels, Style("levels", show_nodata=True))[0, 0]) == LEVEL_RGBA[-1]
    ramp = colourise(np.array([[0.0, 0.5, 1.0, 2.0, np.nan]]), Style("ramp", 0.0, 1.0, clear_below=True))
    assert tuple(ramp[0, 1, :3]) == RAMP[2][1] and tuple(ramp[0, 2, :3]) == tuple(ramp[0, 3, :3]) == RAMP[-1][1]
    assert list(ramp[0, :, 3]) == [0, 210, 210, 210, 0], "at or below vmin and NaN: transparent"
    png = png_bytes(ramp)
    assert png.startswith(b"\x89PNG") and png_bytes(ramp[:0]).startswith(b"\x89PNG")
    assert check_range(1.0, 0.5) and check_range(float("nan"), None) and check_range(0.0, 1.0) is None


def test_geojson_rings_are_lon_lat_and_numbers_are_json_safe():
    geometry = area_geometry(ALERT)
    assert geometry["coordinates"][0][0][0] == [121.485, 31.24]
    assert finite(float("nan")) is None and finite(np.float32(2.5)) == 2.5 and finite(3) == 3
    assert iso_time(1_735_689_600.0) == "2025-01-01T00:00:00Z" and iso_time(float("nan")) is None
