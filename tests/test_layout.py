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
    "scenarios": {"twin", "models", "ingest"},  # ingest only for its message encoders (synthetic feeds)
}
KERNEL_MODULES = {"numpy", "numba", "math", "__future__"}
DECODER_FORBIDDEN = {"paho", "pyproj", "twin", "models", "scenarios", "shapely", "geopandas"}


def _imports(path: Path, root: Path = ROOT) -> list[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names if a.name != "*"]
    return names


def violations(root: Path) -> list[str]:
    """Every import in the tree that breaks the layering rules."""
    problems = []
    for pkg, allowed in ALLOWED.items():
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            names = _imports(path, root)
            if rel.parts[:2] == ("models", "kernels"):
                problems += [f"{rel} imports {n}" for n in names
                             if n.split(".")[0] not in KERNEL_MODULES and not n.startswith("models.kernels")]
            if rel.parts[:2] == ("ingest", "decoders"):
                problems += [f"{rel} imports {n}" for n in names if n.split(".")[0] in DECODER_FORBIDDEN]
            if "twin.cli" in names and rel != Path("twin/cli.py"):
                problems.append(f"{rel} imports the composition root twin.cli")
            if rel == Path("twin/cli.py"):
                continue  # the composition root may import everything
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT and top != pkg and top not in allowed:
                    problems.append(f"{rel} imports {name}")
    return problems


def test_the_project_keeps_the_layering():
    assert violations(ROOT) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    files = {
        "ingest/decoders/nmea.py": "import pyproj\n",
        "ingest/x.py": "from twin.grid import GridSpec\n",
        "models/kernels/k.py": "import scipy\nfrom ..config import X\nfrom . import ok\n",
        "models/m.py": "from ingest import batch\n",
        "twin/a.py": "from twin import cli\nimport scenarios\n",
        "scenarios/s.py": "from .. import twin\nimport models\nfrom twin import cli\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(violations(tmp_path))
    for expected in ("ingest/decoders/nmea.py imports pyproj", "ingest/x.py imports twin.grid",
                     "models/kernels/k.py imports scipy", "models/kernels/k.py imports models.config",
                     "models/m.py imports ingest", "twin/a.py imports scenarios",
                     "twin/a.py imports the composition root"):
        assert expected in found, found
    assert "models.kernels.ok" not in found and "scenarios/s.py imports twin.cli" not in found
    assert "scenarios/s.py imports the composition root" in found
