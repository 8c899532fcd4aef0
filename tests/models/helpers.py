"""Small builders of synthetic twin datasets for the model tests."""

import numpy as np
import xarray as xr


def grid_dataset(z: np.ndarray, dx: float, **layers) -> xr.Dataset:
    """A (y, x) dataset with elevation ``z`` [m], cell size ``dx`` [m] and default static layers."""
    ny, nx = z.shape
    defaults = {
        "elevation": (z, "m"),
        "building_fraction": (np.zeros((ny, nx)), "1"),
        "water_mask": (np.zeros((ny, nx), np.int8), "1"),
        "runoff_coefficient": (np.ones((ny, nx)), "1"),
        "drainage_capacity": (np.zeros((ny, nx)), "mm h-1"),
        "rain_rate": (np.zeros((ny, nx)), "mm h-1"),
    }
    for name, value in layers.items():
        units = defaults[name][1] if name in defaults else value[1]
        arr = value if name in defaults else value[0]
        defaults[name] = (np.broadcast_to(np.asarray(arr), (ny, nx)).copy(), units)
    coords = {"y": np.arange(ny) * dx, "x": np.arange(nx) * dx}
    return xr.Dataset({k: (("y", "x"), v, {"units": u}) for k, (v, u) in defaults.items()}, coords=coords)
