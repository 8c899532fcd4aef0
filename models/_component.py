"""Component base: declared inputs/outputs with units, checks, labelled outputs, a registry."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from models.units import UnitsError, conversion_factor, parse_units

GRID_DIMS = ("y", "x")
LEVEL_FLAGS = ("-1 0 1 2 3 4", "nodata none blue yellow orange red")
"""CF flags of a warning-level variable (as ``twin.district.layers``)."""
LOS_FLAGS = ("-1 0 1 2 3 4 5", "nodata A B C D E F")


@dataclass(frozen=True)
class Var:
    """Declaration of one input or output variable of a component.

    Parameters
    ----------
    name : str
        Variable name in the dataset (the twin layer name where there is one).
    units : str
        UDUNITS string the component works in; inputs in other compatible units are converted.
    dims : tuple of str
        Dimension names, e.g. ``("y", "x")``.
    dtype : str
        numpy dtype of the array.
    doc : str
        One-line description, used as ``long_name`` on outputs.
    optional : bool
        Inputs only: the component runs without it (documented default).
    valid_range : tuple of float
        Plausible range, used to generate synthetic inputs for the declaration test.
    flags : tuple of (str, str)
        CF ``flag_values`` and ``flag_meanings`` of a coded integer variable (empty: none).
    """

    name: str
    units: str
    dims: tuple[str, ...]
    dtype: str
    doc: str
    optional: bool = False
    valid_range: tuple[float, float] = (0.0, 1.0)
    flags: tuple[str, str] | tuple[()] = ()

    def attrs(self) -> dict[str, str]:
        """Attributes every output DataArray carries (and only these)."""
        out = {"units": self.units, "long_name": self.doc}
        if self.flags:
            out["flag_values"], out["flag_meanings"] = self.flags
        return out


@dataclass(frozen=True)
class Reference:
    """A literature reference of a component."""

    citation: str
    doi: str = ""


class MissingInputError(KeyError):
    """A required input variable is missing from the dataset (named in the message)."""


class InputError(ValueError):
    """An input variable has the wrong dims, dtype or units (all problems listed once)."""


COMPONENTS: list[type[Component]] = []
"""Registry of all concrete components (filled by subclassing)."""


class Component(ABC):
    """Base class: declarations, input checks and labelled outputs.

    Subclasses declare ``inputs``, ``outputs`` and ``references`` and implement
    ``update(ds, dt) -> xr.Dataset`` returning exactly the declared outputs.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[Var, ...]] = ()
    outputs: ClassVar[tuple[Var, ...]] = ()
    references: ClassVar[tuple[Reference, ...]] = ()
    state_vars: ClassVar[tuple[str, ...]] = ()
    """Attributes that evolve from one update to the next: all a snapshot of the component holds (the rest is
    rebuilt from the inputs and the config when the component is constructed)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            COMPONENTS.append(cls)

    # ------------------------------------------------------------------ snapshots
    def save_state(self) -> dict[str, Any]:
        """Copies of the attributes named in `state_vars` (arrays, numbers, lists of them, dataclasses of arrays)."""
        return {name: _copied(getattr(self, name)) for name in self.state_vars}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back what `save_state` gave, into a component constructed on the same grid and config.

        Raises KeyError for a missing attribute and ValueError for an array of another shape.
        """
        missing = [n for n in self.state_vars if n not in state]
        if missing:
            raise KeyError(f"{type(self).__name__}: the snapshot lacks {', '.join(missing)}")
        for name in self.state_vars:
            setattr(self, name, _restored(f"{type(self).__name__}.{name}", getattr(self, name), state[name]))

    # ------------------------------------------------------------------ checks
    @classmethod
    def input_var(cls, name: str) -> Var:
        """The declaration of input ``name``."""
        for v in cls.inputs:
            if v.name == name:
                return v
        raise KeyError(f"{cls.__name__} declares no input {name!r}")

    @classmethod
    def output_var(cls, name: str) -> Var:
        """The declaration of output ``name``."""
        for v in cls.outputs:
            if v.name == name:
                return v
        raise KeyError(f"{cls.__name__} declares no output {name!r}")

    @classmethod
    def check_inputs(cls, ds: xr.Dataset, names: tuple[str, ...] | None = None) -> None:
        """Check that declared inputs are present with the declared dims and convertible units.

        Raises :class:`MissingInputError` naming every missing required input, or
        :class:`InputError` listing every other problem.
        """
        wanted = [v for v in cls.inputs if names is None or v.name in names]
        missing = [v.name for v in wanted if not v.optional and v.name not in ds]
        if missing:
            raise MissingInputError(f"{cls.__name__}: missing input(s) {', '.join(missing)}")
        problems = []
        for v in wanted:
            if v.name not in ds:
                continue
            da = ds[v.name]
            if tuple(da.dims) != v.dims:
                problems.append(f"{v.name}: dims {tuple(da.dims)}, expected {v.dims}")
            units = da.attrs.get("units")
            if units is not None:
                try:
                    conversion_factor(units, v.units)
                except UnitsError as exc:
                    problems.append(f"{v.name}: {exc}")
        if problems:
            raise InputError(f"{cls.__name__}: " + "; ".join(problems))

    @classmethod
    def read(cls, ds: xr.Dataset, name: str, si: bool = True, dtype: str | None = None) -> np.ndarray:
        """Input ``name`` as a contiguous array, converted to SI (or to the declared units).

        An input without a ``units`` attribute is taken to be in the declared units.
        """
        v = cls.input_var(name)
        if name not in ds:
            raise MissingInputError(f"{cls.__name__}: missing input {name}")
        da = ds[name]
        factor = conversion_factor(da.attrs.get("units", v.units), v.units)
        if si:
            factor *= parse_units(v.units)[0]
        arr = np.asarray(da.values)
        out_dtype = dtype or v.dtype
        if factor != 1.0:
            arr = arr * factor
        return np.ascontiguousarray(arr, dtype=out_dtype)

    # ----------------------------------------------------------------- outputs
    @classmethod
    def output(cls, name: str, data: np.ndarray, coords: dict | None = None) -> xr.DataArray:
        """A new DataArray for output ``name`` with the declared dims, dtype and attrs."""
        v = cls.output_var(name)
        return xr.DataArray(np.asarray(data, dtype=v.dtype), dims=v.dims, coords=coords,
                            name=name, attrs=v.attrs())

    @classmethod
    def outputs_from_si(cls, arrays: dict[str, np.ndarray], coords: dict | None = None) -> xr.Dataset:
        """Dataset of outputs given SI arrays (converted to each output's declared units)."""
        out = {}
        for name, arr in arrays.items():
            v = cls.output_var(name)
            factor = 1.0 / parse_units(v.units)[0]
            data = np.asarray(arr * factor if factor != 1.0 else arr, dtype=v.dtype)
            out[name] = xr.Variable(v.dims, data, attrs=v.attrs())
        # one Dataset over shared coordinates: no per-variable indexes to build and align (a tick hot path)
        return xr.Dataset(out, coords=coords)

    # ------------------------------------------------------------ test support
    @classmethod
    def synthetic_inputs(cls, shape: tuple[int, int] = (6, 7), seed: int = 0) -> xr.Dataset:
        """A small random dataset with every declared input (used by the declaration test)."""
        rng = np.random.default_rng(seed)
        sizes = {"y": shape[0], "x": shape[1]}
        data = {}
        for v in cls.inputs:
            shp = tuple(sizes.get(d, 5) for d in v.dims)
            lo, hi = v.valid_range
            if np.dtype(v.dtype).kind in "iu":
                arr = rng.integers(int(lo), int(hi) + 1, size=shp).astype(v.dtype)
            else:
                arr = rng.uniform(lo, hi, size=shp).astype(v.dtype)
            data[v.name] = xr.DataArray(arr, dims=v.dims, attrs={"units": v.units})
        coords = {"y": np.arange(shape[0]) * 10.0, "x": np.arange(shape[1]) * 10.0}
        return xr.Dataset(data, coords=coords, attrs={"cell_size": 10.0})

    @abstractmethod
    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """Advance by ``dt`` [s] using inputs from ``ds``; return the declared outputs."""


def _copied(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list | tuple):
        return [_copied(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _copied(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _restored(where: str, current: Any, saved: Any) -> Any:
    """``saved`` in the form of ``current`` (dtype, shape, container), checked."""
    if isinstance(current, np.ndarray):
        out = np.array(saved, dtype=current.dtype)
        if out.shape != current.shape:
            raise ValueError(f"{where}: the snapshot has shape {out.shape}, the component {current.shape}")
        return out
    if isinstance(current, list | tuple):
        if len(saved) != len(current):
            raise ValueError(f"{where}: the snapshot has {len(saved)} items, the component {len(current)}")
        return type(current)(_restored(f"{where}[{i}]", c, s) for i, (c, s) in enumerate(zip(current, saved,
                                                                                             strict=True)))
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        return type(current)(**{f.name: _restored(f"{where}.{f.name}", getattr(current, f.name), saved[f.name])
                                for f in dataclasses.fields(current)})
    if isinstance(current, bool | int | float):
        return type(current)(saved)
    return saved
