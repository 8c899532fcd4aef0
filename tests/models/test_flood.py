"""Science tests of the flood model (docs/science/flood.md 2, "Validation tests we can run here (flooding)")."""

import numpy as np
import pytest

from models import FloodConfig, FloodModel, MissingInputError
from tests.models.helpers import grid_dataset

G = 9.80665


def test_analytic_wave_front_hunter_2005():
    """Hunter et al. (2005) front: RMSE < 1 cm and front within one cell at t = 3600 s (docs/science/flood.md 2,
    test 1)."""
    n, u, dx, t_end = 0.01, 0.4, 25.0, 3600.0
    ny, nx = 3, 100
    ds = grid_dataset(np.zeros((ny, nx)), dx)
    # theta = 1 (Bates et al. 2010) as in landlab's own analytic test; theta = 0.8 lags the front
    model = FloodModel(ds, FloodConfig(manning=n, theta=1.0, boundary="closed", dt_max=5.0))
    left = np.zeros((ny, nx), bool)
    left[:, 0] = True
    model.set_boundary_depth(left, lambda t: ((7.0 / 3.0) * n**2 * u**3 * t) ** (3.0 / 7.0))
    while model.time < t_end:
        model.run_one_step(min(10.0, t_end - model.time))
    assert model.time == t_end
    x = np.arange(nx) * dx
    exact = np.where(x < u * t_end, np.maximum(-(7.0 / 3.0) * n**2 * u**2 * (x - u * t_end), 0.0) ** (3.0 / 7.0), 0.0)
    h = model.h[1]
    wet = exact > 0
    rmse = np.sqrt(np.mean((h[wet] - exact[wet]) ** 2))
    assert rmse < 0.01
    front = x[np.nonzero(h > 0.01)[0].max()]
    exact_front = u * t_end - 0.01 ** (7.0 / 3.0) / ((7.0 / 3.0) * n**2 * u**2)
    assert abs(front - exact_front) <= dx


@pytest.mark.parametrize("slope", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("parallel", [False, True])
def test_mass_balance_closed_box(slope, parallel):
    """Closed box, 1e-3 m/s rain for 900 s: stored = rain volume to 1e-9 relative (docs/science/flood.md 2, test 2)."""
    ny, nx, dx = 20, 25, 10.0
    yy, xx = np.mgrid[0:ny, 0:nx] * dx
    z = slope * xx + 0.3 * slope * yy
    model = FloodModel(grid_dataset(z, dx), parallel=parallel)
    model.set_rain(1e-3 * 3.6e6)
    model.run_one_step(900.0)
    rain = 1e-3 * 900.0 * ny * nx * dx * dx
    assert model.stored_volume == pytest.approx(rain, rel=1e-9)
    assert abs(model.mass_balance_error()) < 1e-9
    assert model.n_substeps > 1


def test_mass_balance_with_drainage():
    """With drainage C_d: stored = sum max(0, phi r - C_d) A dt (docs/science/flood.md 2, test 2)."""
    ny, nx, dx = 15, 15, 10.0
    yy, xx = np.mgrid[0:ny, 0:nx] * dx
    phi, rain_mm_h, cd_mm_h = 0.9, 3600.0, 1000.0
    ds = grid_dataset(0.02 * xx + 0.01 * yy, dx, runoff_coefficient=phi, drainage_capacity=cd_mm_h)
    model = FloodModel(ds)
    model.set_rain(rain_mm_h)
    model.run_one_step(900.0)
    expect = max(0.0, (phi * rain_mm_h - cd_mm_h) / 3.6e6) * 900.0 * ny * nx * dx * dx
    assert model.stored_volume == pytest.approx(expect, rel=1e-9)
    assert abs(model.mass_balance_error()) < 1e-9


def test_lake_at_rest():
    """Flat water over a bumpy bed with islands stays at rest for 10 000 steps (docs/science/flood.md 2, test 3)."""
    rng = np.random.default_rng(3)
    ny, nx, dx = 30, 30, 5.0
    z = rng.uniform(0.0, 0.8, (ny, nx))
    z[rng.random((ny, nx)) < 0.05] = 1.2  # islands above the water
    h0 = np.maximum(1.0 - z, 0.0)
    model = FloodModel(grid_dataset(z, dx), depth=h0)
    eta0 = np.where(h0 > 0, z + h0, np.nan)
    for _ in range(10_000):
        model._substep(0.5, model.time)
    assert np.abs(model.qx).max() < 1e-10 and np.abs(model.qy).max() < 1e-10
    eta = np.where(h0 > 0, z + model.h, np.nan)
    assert np.nanmax(np.abs(eta - eta0)) < 1e-9


def _depression(cd_mm_h):
    dx, n = 2.5, 40  # 100 m x 100 m basin, 25 m x 25 m flat pit in the middle
    c = (np.arange(n) + 0.5) * dx - 50.0
    d = np.maximum(np.maximum(np.abs(c)[:, None], np.abs(c)[None, :]) - 12.5, 0.0)
    pit = d == 0
    # the pit floor is 1 m below the foot of the 1 % slopes (an underpass), so the pond stays in it
    ds = grid_dataset(np.where(pit, 0.0, 1.0 + 0.01 * d), dx, runoff_coefficient=0.9, drainage_capacity=cd_mm_h)
    model = FloodModel(ds)
    model.set_rain(80.0)  # 80 mm in 1 h: Shanghai orange signal
    depths, crossed = [], {}
    while model.time < 3600.0:
        model.run_one_step(60.0)
        depth = float(model.h[pit].mean())
        depths.append(depth)
        for band in (0.15, 0.27, 0.50):
            if depth >= band and band not in crossed:
                crossed[band] = model.time
    assert pit.sum() == 100
    return depths[-1], crossed, model


def test_rain_on_depression_without_enough_drainage():
    """C_d = 36 mm/h: net excess 36 mm over 1 ha = 360 m3 -> pit depth about 0.58 m (docs/science/flood.md 2,
    test 6)."""
    depth, crossed, model = _depression(36.0)
    assert 0.50 < depth <= 0.576 + 1e-9
    assert list(crossed) == [0.15, 0.27, 0.50]
    assert crossed[0.15] < crossed[0.27] < crossed[0.50]
    assert model.stored_volume == pytest.approx(360.0, rel=1e-6)


def test_rain_on_depression_with_five_year_drainage():
    """C_d = 58 mm/h (P = 5 yr): net excess 14 mm -> about 0.22 m in the pit (docs/science/flood.md 2, test 6)."""
    depth, crossed, model = _depression(58.0)
    assert 0.17 < depth <= 0.224 + 1e-9
    assert 0.50 not in crossed and 0.27 not in crossed
    assert model.stored_volume == pytest.approx(140.0, rel=1e-6)


def test_dam_break_flags_froude_out_of_validity():
    """Stoker dam break 1.0 / 0.1 m: the inertial scheme is out of validity; cells are flagged, not hidden."""
    nx, dx = 200, 0.5
    h0 = np.where(np.arange(nx) * dx < 50.0, 1.0, 0.1)[None, :].repeat(3, axis=0)
    model = FloodModel(grid_dataset(np.zeros((3, nx)), dx), FloodConfig(manning=0.0), depth=h0)
    model.run_one_step(5.0)
    out = model.fields()
    assert out["out_of_validity"].values.sum() > 0
    assert np.isfinite(out["water_depth"].values).all()
    flagged = out["out_of_validity"].values[1] == 1
    x = np.arange(nx) * dx
    assert flagged[(x > 55.0) & (x < 70.0)].any()  # the bore (exact shock at 50 + 3.105 * 5 = 65.5 m)
    assert not flagged[x > 80.0].any() and not flagged[x < 30.0].any()  # still water is valid


def test_run_one_step_honours_dt_and_substeps():
    model = FloodModel(grid_dataset(np.zeros((5, 5)), 2.0), depth=np.full((5, 5), 0.5))
    model.run_one_step(7.3)
    assert model.time == 7.3
    cfl = 0.7 * 2.0 / np.sqrt(G * 0.5)
    assert model.n_substeps >= int(7.3 / cfl)
    model.run_one_step(0.01)
    assert model.time == pytest.approx(7.31, abs=1e-12)
    with pytest.raises(ValueError, match="dt"):
        model.run_one_step(0.0)


def test_walls_block_outlets_drain_open_edges_leak():
    ny, nx, dx = 10, 10, 5.0
    walls = np.zeros((ny, nx))
    walls[:, 5] = 1.0  # a building row splits the grid
    h0 = np.zeros((ny, nx))
    h0[:, :5] = 0.3
    model = FloodModel(grid_dataset(np.zeros((ny, nx)), dx, building_fraction=walls), depth=h0)
    model.run_one_step(300.0)
    assert model.h[:, 6:].max() == 0.0
    outlet = np.zeros((ny, nx), np.int8)
    outlet[:, -1] = 1
    model = FloodModel(grid_dataset(np.zeros((ny, nx)), dx, water_mask=outlet), depth=np.full((ny, nx), 0.2))
    model.run_one_step(600.0)
    assert model.outlet_volume > 0 and abs(model.mass_balance_error()) < 1e-9
    model = FloodModel(grid_dataset(np.zeros((ny, nx)), dx), FloodConfig(boundary="open"), depth=np.full((ny, nx), 0.2))
    model.run_one_step(600.0)
    assert model.boundary_volume > 0 and abs(model.mass_balance_error()) < 1e-9


def test_parallel_equals_serial():
    rng = np.random.default_rng(1)
    z = rng.uniform(0, 0.5, (40, 33))
    ds = grid_dataset(z, 5.0, rain_rate=50.0)
    a, b = FloodModel(ds), FloodModel(ds, parallel=True)
    for m in (a, b):
        m.update(ds, 600.0)
    np.testing.assert_array_equal(a.h, b.h)


def test_update_converts_rain_units_and_outputs_attrs():
    ds = grid_dataset(np.zeros((4, 4)), 10.0, rain_rate=36.0)
    model = FloodModel(ds)
    out = model.update(ds, 3600.0)
    assert out["water_depth"].values.mean() == pytest.approx(0.036, rel=1e-9)  # 36 mm/h for 1 h
    assert out["water_depth"].attrs == {"units": "m", "long_name": "water depth over ground"}
    ds_cm = ds.assign(rain_rate=ds["rain_rate"] / 3.6e6 * 1e3)  # same rate in mm s-1 is not a unit we know
    ds_cm["rain_rate"].attrs["units"] = "m s-1"
    ds_cm["rain_rate"].values[:] = 36.0 / 3.6e6
    model2 = FloodModel(ds_cm)
    out2 = model2.update(ds_cm, 3600.0)
    np.testing.assert_allclose(out2["water_depth"].values, out["water_depth"].values, rtol=1e-12)


def test_missing_input_is_a_named_error():
    ds = grid_dataset(np.zeros((3, 3)), 1.0).drop_vars("drainage_capacity")
    with pytest.raises(MissingInputError, match="drainage_capacity"):
        FloodModel(ds)


def test_agrees_with_landlab_overland_flow_on_a_plane():
    """Cross-model: landlab OverlandFlow (same scheme, Cython) on a tilted plane, 50 mm/h for 30 min, closed edges:
    depths agree to < 5 mm; ours conserves the rain volume exactly (landlab's h_init seeding adds a little)."""
    landlab = pytest.importorskip("landlab")
    from landlab.components import OverlandFlow

    n, dx, t_end, rain = 42, 5.0, 1800.0, 50.0
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n] * dx
    z = 0.005 * xx + 0.002 * yy + rng.uniform(0, 0.02, (n, n))
    grid = landlab.RasterModelGrid((n, n), xy_spacing=dx)
    grid.add_field("topographic__elevation", z.ravel().copy(), at="node")
    grid.add_field("surface_water__depth", np.full(n * n, 1e-5), at="node")
    grid.set_closed_boundaries_at_grid_edges(True, True, True, True)
    of = OverlandFlow(grid, rainfall_intensity=rain / 3.6e6)
    t = 0.0
    while t < t_end:
        dt = min(of.calc_time_step(), t_end - t)
        of.overland_flow(dt=dt)
        t += dt
    h_ll = grid.at_node["surface_water__depth"].reshape(n, n)[1:-1, 1:-1]  # core nodes = our cells
    ours = FloodModel(grid_dataset(z[1:-1, 1:-1], dx))
    ours.set_rain(rain)
    ours.run_one_step(t_end)
    assert np.abs(h_ll - ours.h).max() < 0.005
    assert ours.h.mean() == pytest.approx(rain / 3.6e6 * t_end, rel=1e-9)
