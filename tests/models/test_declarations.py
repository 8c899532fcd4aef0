"""One test over the whole component registry (no opt-out list), plus the kernel rules."""

import ast
import importlib
import inspect
import pathlib
import pkgutil
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import models
from models import COMPONENTS, InputError, MissingInputError
from models.units import UnitsError, conversion_factor, parse_units
from twin.district.layers import LAYERS

ROOT = pathlib.Path(models.__file__).parent
RUNNERS = ("models/tick.py", "twin/live", "scenarios")
"""What runs the components: the shared tick pipeline, the live tick and the scenario runner."""
KERNEL_MODULES = sorted(p.stem for p in (ROOT / "kernels").glob("*.py") if not p.stem.startswith("_"))
"""The kernel modules of models/kernels/."""
KERNEL_IMPORTS = ("numpy", "numba", "math")
MARK = {"units": "m", "long_name": "input", "source": "synthetic-input-marker"}


def test_registry_is_populated_and_names_unique():
    names = [c.name for c in COMPONENTS]
    assert len(names) >= 9
    assert len(set(names)) == len(names)
    for name in models.__all__:
        assert hasattr(models, name)


@pytest.mark.parametrize("cls", COMPONENTS, ids=lambda c: c.name)
def test_declarations(cls):
    assert cls.__doc__ and cls.__doc__.strip()
    assert cls.references and all(r.citation for r in cls.references)
    assert all(r.doi == "" or r.doi.startswith("10.") for r in cls.references)
    for group in (cls.inputs, cls.outputs):
        assert len({v.name for v in group}) == len(group)
        for v in group:
            parse_units(v.units)  # raises on invalid units
            assert v.dims and all(isinstance(d, str) and d for d in v.dims)
            np.dtype(v.dtype)
            assert v.doc.strip()
            if v.name in LAYERS:
                layer = LAYERS[v.name]
                assert v.units == layer.units, f"{cls.name}.{v.name}: {v.units!r} vs registry {layer.units!r}"
                assert np.dtype(v.dtype) == np.dtype(layer.dtype), f"{cls.name}.{v.name} dtype"
                assert v.doc == layer.long_name, f"{cls.name}.{v.name} doc differs from the registry long_name"
                if v in cls.outputs:
                    assert v.attrs() == layer.attrs(), f"{cls.name}.{v.name} attrs differ from the registry"
                if v.dims[:2] != ("y", "x"):
                    pytest.fail(f"{cls.name}.{v.name}: registry layers live on (y, x)")
    assert cls.outputs


@pytest.mark.parametrize("cls", COMPONENTS, ids=lambda c: c.name)
def test_outputs_carry_declared_attrs(cls):
    ds = cls.synthetic_inputs()
    for name in ds.data_vars:
        ds[name].attrs.update({k: v for k, v in MARK.items() if k != "units"})
    comp = cls(ds)
    out = comp.update(ds, 60.0)
    assert set(out.data_vars) == {v.name for v in cls.outputs}
    for v in cls.outputs:
        da = out[v.name]
        assert tuple(da.dims) == v.dims
        assert da.dtype == np.dtype(v.dtype)
        assert da.attrs == v.attrs(), f"{cls.name}.{v.name} attrs {da.attrs}"
    assert "source" not in out.attrs


@pytest.mark.parametrize("cls", COMPONENTS, ids=lambda c: c.name)
def test_missing_input_is_a_named_error(cls):
    for v in cls.inputs:
        if v.optional:
            continue
        ds = cls.synthetic_inputs().drop_vars(v.name)
        with pytest.raises(MissingInputError, match=v.name):
            comp = cls(ds)
            comp.update(ds, 60.0)


@pytest.mark.parametrize("cls", COMPONENTS, ids=lambda c: c.name)
def test_incompatible_units_are_refused(cls):
    v = next(v for v in cls.inputs if not v.optional)
    ds = cls.synthetic_inputs()
    ds[v.name].attrs["units"] = "person s-1" if parse_units(v.units)[1] != (0, -1, 1) else "m"
    with pytest.raises(InputError, match=v.name):
        comp = cls(ds)
        comp.update(ds, 60.0)


def _all_components() -> set[type]:
    """Every concrete component class in models/, found by importing every module (not only those
    ``models/__init__`` imports) and walking the subclasses of `Component`."""
    for info in pkgutil.walk_packages([str(ROOT)], "models."):
        importlib.import_module(info.name)
    found, todo = set(), [models.Component]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.name and not inspect.isabstract(sub):
                found.add(sub)
    return found


def _names_used_from_models(package: str) -> set[str]:
    """Names a package takes from ``models`` in code: ``models.X`` and ``from models... import X``."""
    used = set()
    where = ROOT.parent / package
    for path in [where] if where.is_file() else where.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "models":
                used.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "models":
                used.update(a.asname or a.name for a in node.names)
    return used


def test_every_component_runs_in_the_live_tick_or_a_scenario():
    """A component that neither the live tick (twin/live) nor the scenario runner (scenarios) uses is
    dead code: run it or remove it (issue 12; docs/models-in-the-tick.md says which runs where)."""
    components = _all_components()
    assert set(COMPONENTS) == components, "every component is in the registry"
    used = set().union(*(_names_used_from_models(p) for p in RUNNERS))
    idle = sorted(c.__name__ for c in components if c.__name__ not in used)
    assert not idle, f"components neither twin/live nor scenarios uses: {idle}"


def test_the_tick_table_lists_every_component():
    doc = (ROOT.parent / "docs" / "models-in-the-tick.md").read_text(encoding="utf-8")
    missing = sorted(c.__name__ for c in _all_components() if f"`{c.__name__}`" not in doc)
    assert not missing, f"docs/models-in-the-tick.md does not list {missing}"


def test_units_parser():
    assert conversion_factor("mm h-1", "m s-1") == pytest.approx(1 / 3.6e6)
    assert conversion_factor("km h-1", "m s-1") == pytest.approx(1 / 3.6)
    assert parse_units("person m-2")[1] == (-2, 0, 1)
    assert parse_units("1") == (1.0, (0, 0, 0))
    for bad in ("", "furlong", "m^2", "1-1", "m s--1"):
        with pytest.raises(UnitsError):
            parse_units(bad)
    with pytest.raises(UnitsError):
        conversion_factor("m", "s")


def test_models_imports_no_other_project_package():
    code = "import sys, models; bad = [m for m in ('twin', 'ingest', 'scenarios') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT.parent)
    assert out.stdout.strip() == "[]"
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("twin", "ingest", "scenarios") for n in names), path


def _kernel_imports(path: pathlib.Path) -> list[str]:
    """Absolute names of the modules a file of models/kernels/ imports (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
        elif isinstance(node, ast.ImportFrom):  # relative: models.kernels is a flat package
            base = ".".join(["models.kernels"] + ([node.module] if node.module else []))
            names += [base] if node.module else [f"{base}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("mod", KERNEL_MODULES)
def test_kernel_rules(mod):
    """Kernels import only numpy/numba/math; public kernels are cached nogil dispatchers with a reference."""
    path = ROOT / "kernels" / f"{mod}.py"
    for name in _kernel_imports(path):
        assert name.split(".")[0] in KERNEL_IMPORTS, f"{mod} imports {name}"
    kmod = importlib.import_module(f"models.kernels.{mod}")
    ref = importlib.import_module(f"models.reference.{mod}")
    funcs = {n: f for n, f in vars(kmod).items()
             if isinstance(f, numba.core.registry.CPUDispatcher) and f.py_func.__module__ == kmod.__name__}
    assert funcs
    for name, f in funcs.items():
        assert f.targetoptions.get("nogil") is True, name
        assert type(f._cache).__name__ != "NullCache", f"{name} is not cache=True"
        body = textwrap.dedent(inspect.getsource(f.py_func))
        fn = ast.parse(body).body[0]
        doc = ast.get_docstring(fn) or ""
        assert len(body.splitlines()) - len(doc.splitlines()) <= 45, f"{name} is too long"
        if not name.startswith("_"):
            assert fn.body and isinstance(fn.body[0], ast.Expr), f"{name} has no docstring"
            if not name.endswith("_par"):
                assert hasattr(ref, name), f"no numpy reference for {mod}.{name}"
