"""The import direction of DESIGN.md section 1, checked on the source (no cycles, no shortcuts)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("twin", "ingest", "models", "scenarios")

ALLOWED = {
    "ingest": set(),
    "models": set(),
    "twin": {"ingest", "models"},
    "scenarios": {"twin", "models"},
}
KERNEL_MODULES = {"numpy", "numba", "math", "__future__", "models"}
DECODER_FORBIDDEN = {"paho", "pyproj", "twin", "models", "scenarios", "shapely", "geopandas"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _modules(package: str):
    yield from sorted((ROOT / package).rglob("*.py"))


def test_packages_import_only_what_they_may():
    problems = []
    for pkg, allowed in ALLOWED.items():
        for path in _modules(pkg):
            if path.name == "cli.py" and pkg == "twin":
                continue  # the composition root may import everything
            for name in _imports(path):
                top = name.split(".")[0]
                if top in PROJECT and top != pkg and top not in allowed:
                    problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)


def test_nothing_imports_the_cli():
    offenders = [str(p.relative_to(ROOT)) for pkg in PROJECT for p in _modules(pkg)
                 if "twin.cli" in _imports(p) and p.name != "cli.py"]
    assert not offenders


def test_kernels_import_only_numpy_numba_math():
    problems = []
    for path in (ROOT / "models" / "kernels").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in KERNEL_MODULES or (top == "models" and not name.startswith("models.kernels")):
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)


def test_decoders_are_pure():
    problems = []
    for path in (ROOT / "ingest" / "decoders").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in DECODER_FORBIDDEN:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not problems, "\n".join(problems)


def test_the_rule_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom twin.grid import GridSpec\nfrom . import sibling\n")
    assert _imports(bad) == ["numpy", "twin.grid"]
