"""The server side of the dashboard, without a browser: ``/`` and its static files, and the base map
(picture, building footprints, lon/lat <-> grid polynomials)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from twin.api import ApiConfig, create_app
from twin.api.page import static_files
from twin.api.routes_basemap import supersample_factor
from twin.district import geo


@pytest.fixture(scope="module")
def client(idle_service):
    with TestClient(create_app(idle_service, ApiConfig())) as c:
        yield c


def test_the_dashboard_is_served_with_a_same_origin_only_policy(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "http" not in policy
    assert '<script type="module" src="/static/app.js">' in r.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_only_the_packaged_files_are_served(client):
    files = static_files()
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name in ("../page.py", "..%2Fpage.py", "%2E%2E%2Fapp.py", "missing.js", "page.py"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 404, name
        assert "import" not in r.text
    assert client.get("/static/").status_code == 404


def test_the_page_names_no_other_site():
    """(The browser test checks what the page requests; this checks the files name nothing else.)"""
    for name, (body, _) in static_files().items():
        text = body.decode().replace("http://www.w3.org/2000/svg", "")  # a namespace name, never fetched
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_the_base_map_picture_covers_the_grid(client, idle_service):
    r = client.get("/api/basemap.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    grid = client.get("/api/grid").json()
    assert [float(v) for v in r.headers["x-bounds"].split(",")] == pytest.approx(grid["bounds"])
    image = Image.open(io.BytesIO(r.content))
    ny, nx = grid["shape"]
    f = supersample_factor(type("G", (), {"ny": ny, "nx": nx})())
    assert image.size == (nx * f, ny * f) and image.mode == "RGBA"
    pixels = np.asarray(image)
    water = idle_service.static["water_mask"].values.astype(bool)
    centre = pixels[f // 2::f, f // 2::f]  # one pixel per cell
    # open water is drawn blue, everything else is not
    assert (centre[water][:, 2] > centre[water][:, 0] + 30).mean() > 0.95
    assert (centre[~water][:, 2] > centre[~water][:, 0] + 30).mean() < 0.05
    assert client.get("/api/basemap.png?buildings=true").content != r.content


def test_the_building_footprints_are_in_grid_metres(client, idle_service):
    fc = client.get("/api/basemap/buildings").json()
    assert fc["crs"] == "EPSG:4549" and fc["units"] == "m"
    assert len(fc["features"]) > 1000
    xmin, ymin, xmax, ymax = client.get("/api/grid").json()["bounds"]
    points = [p for f in fc["features"] if f["geometry"]["type"] == "Polygon" for p in f["geometry"]["coordinates"][0]]
    inside = [xmin - 500 < x < xmax + 500 and ymin - 500 < y < ymax + 500 for x, y in points]
    assert sum(inside) / len(inside) > 0.99
    tall = max(fc["features"], key=lambda f: f["properties"]["height"] or 0)
    assert tall["properties"]["height"] > 100  # Lujiazui


def test_the_projection_polynomials_match_pyproj_to_a_millimetre(client):
    fit = client.get("/api/basemap/projection").json()
    assert fit["crs"] == "EPSG:4549" and fit["max_error_m"] < 1e-3
    rng = np.random.default_rng(1)
    west, south, east, north = client.get("/api/grid").json()["bounds_lonlat"]
    lon, lat = rng.uniform(west, east, 200), rng.uniform(south, north, 200)
    x, y = geo.to_projected(lon, lat, fit["crs"])

    def poly(coefs, u, v):
        return sum(c * u**i * v**j for c, (i, j) in zip(coefs, fit["terms"], strict=True))

    du, dv = lon - fit["lon0"], lat - fit["lat0"]
    assert np.abs(fit["x0"] + poly(fit["cx"], du, dv) - x).max() < 1e-3
    assert np.abs(fit["y0"] + poly(fit["cy"], du, dv) - y).max() < 1e-3
    dx, dy = (x - fit["x0"]) / fit["inverse_scale_m"], (y - fit["y0"]) / fit["inverse_scale_m"]
    assert np.abs(fit["lon0"] + poly(fit["clon"], dx, dy) - lon).max() < 1e-8  # ~1 mm
    assert np.abs(fit["lat0"] + poly(fit["clat"], dx, dy) - lat).max() < 1e-8
