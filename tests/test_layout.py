"""The architecture, checked on the source: packages, the rooms inside twin/, and who may import whom.

See docs/architecture.md. Between top-level packages: ingest and models import nothing of the project's;
twin imports ingest and models; scenarios imports twin, models and ingest. Inside twin/ every module
lives in a room, and a room imports only the rooms below it (ROOM_ALLOWED); code outside twin/live reads
the live twin through `twin.live.query` (and builds or runs it through LIVE_PUBLIC). twin/cli is the
composition root: it may import everything and nothing imports it.
"""

from __future__ import annotations

import ast
import subprocess
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
ROOM_ALLOWED = {
    "district": {"district"},
    "alerting": {"district", "alerting"},
    "cases": {"district", "alerting", "cases"},
    "live": {"district", "alerting", "cases", "live"},
    "api": {"district", "alerting", "cases", "api"},
    "city": {"district", "alerting", "cases", "live", "api", "city"},
    "cli": {"district", "alerting", "cases", "live", "api", "cli"},
}
"""The rooms of twin/ and the rooms each may import (twin/cli may import everything)."""
LIVE_PUBLIC = {"twin.live.query", "twin.live.service", "twin.live.core", "twin.live.broker", "twin.live.snapshot",
               "twin.live.warmup", "twin.live.district_twin"}
"""The live modules that code outside twin/live may import: queries, and building and running a service."""
API_LIVE = {"twin.live.query"}
"""The API reads the live twin through the query interface only."""


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
            if rel.parts[:2] == ("twin", "cli"):
                continue  # the composition root may import everything
            if any(n == "twin.cli" or n.startswith("twin.cli.") for n in names):
                problems.append(f"{rel} imports the composition root twin.cli")
            problems += _room_violations(rel, names)
            for name in names:
                top = name.split(".")[0]
                if top in PROJECT and top != pkg and top not in allowed:
                    problems.append(f"{rel} imports {name}")
    return problems


def _room_of(name: str) -> str | None:
    """The room of twin/ a module name is in (``twin.live.core`` -> ``live``), None outside twin's rooms."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "twin" else None


def _room_violations(rel: Path, names: list[str]) -> list[str]:
    """Imports of a file that break the rooms of twin/ (its own room's rules, or the live interface)."""
    here = rel.parts[1] if rel.parts[0] == "twin" and len(rel.parts) > 2 else None
    if rel.parts[0] == "twin" and here is None and rel.name != "__init__.py":
        return [f"{rel} is in no room of twin/"]
    problems = []
    for name in names:
        room = _room_of(name)
        if room is None or room == here:
            continue
        if here is not None and room not in ROOM_ALLOWED.get(here, set()) and not (
                here == "api" and _is_live_public(name, here)):
            problems.append(f"{rel} imports {name}")
        elif room == "live" and here != "live" and not _is_live_public(name, here):
            problems.append(f"{rel} reaches into {name}")
    return problems


def _is_live_public(name: str, here: str | None) -> bool:
    public = API_LIVE if here == "api" else LIVE_PUBLIC
    return name == "twin.live" or any(name == m or name.startswith(m + ".") for m in public)


CORE_PUBLIC = {"on_batch", "on_tick", "acknowledge", "status", "config", "live_layers", "active_alerts",
               "located_entities", "last_tick", "save_state", "restore_state"}
"""What code outside twin/live may use of a `TwinCore` it holds (reads go through `twin.live.query`)."""


def reach_ins(root: Path) -> list[str]:
    """Uses of a core's internals (``x.core.state``, ``core.book`` ...) outside twin/live."""
    problems = []
    files = [p for d in ("twin", "scenarios", "benchmarks") for p in sorted((root / d).rglob("*.py"))]
    for path in files:
        rel = path.relative_to(root)
        if rel.parts[:2] == ("twin", "live"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr not in CORE_PUBLIC and (
                    (isinstance(node.value, ast.Name) and node.value.id == "core")
                    or (isinstance(node.value, ast.Attribute) and node.value.attr == "core")):
                problems.append(f"{rel}:{node.lineno} reaches into the core: .core.{node.attr}")
    return problems


def test_nothing_outside_the_live_service_reaches_into_the_core():
    assert reach_ins(ROOT) == []


def test_the_reach_in_check_catches_one(tmp_path):
    (tmp_path / "twin" / "api").mkdir(parents=True)
    (tmp_path / "twin" / "api" / "x.py").write_text("a = svc.core.book.active\nb = core.on_tick(1)\n")
    assert reach_ins(tmp_path) == ["twin/api/x.py:1 reaches into the core: .core.book"]


def test_twin_is_built_of_its_rooms():
    rooms = {p.name for p in (ROOT / "twin").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(ROOM_ALLOWED)
    loose = [p.name for p in (ROOT / "twin").glob("*.py") if p.name != "__init__.py"]
    assert loose == []


def test_the_project_keeps_the_layering():
    assert violations(ROOT) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    files = {
        "ingest/decoders/nmea.py": "import pyproj\n",
        "ingest/x.py": "from twin.district.grid import GridSpec\n",
        "models/kernels/k.py": "import scipy\nfrom ..config import X\nfrom . import ok\n",
        "models/m.py": "from ingest import batch\n",
        "twin/district/a.py": "from twin import cli\nimport scenarios\nfrom twin.live.core import TwinCore\n",
        "twin/alerting/b.py": "from twin.live import state\n",
        "twin/api/c.py": "from twin.live.query import LiveQuery\nfrom twin.live.core import TwinCore\n",
        "twin/loose.py": "",
        "scenarios/s.py": "from .. import twin\nimport models\nfrom twin import cli\nfrom twin.live.models import X\n"
                          "from twin.live.service import LiveService\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = "\n".join(violations(tmp_path))
    for expected in ("ingest/decoders/nmea.py imports pyproj", "ingest/x.py imports twin.district.grid",
                     "models/kernels/k.py imports scipy", "models/kernels/k.py imports models.config",
                     "models/m.py imports ingest", "twin/district/a.py imports scenarios",
                     "twin/district/a.py imports the composition root", "twin/district/a.py imports twin.live.core",
                     "twin/alerting/b.py imports twin.live.state", "twin/api/c.py imports twin.live.core",
                     "twin/loose.py is in no room", "scenarios/s.py reaches into twin.live.models"):
        assert expected in found, found
    assert "models.kernels.ok" not in found and "twin.live.query" not in found and "twin.live.service" not in found
    assert "scenarios/s.py imports the composition root" in found


OUTSIDE = (*(s + ".md" for s in ("SCIENCE", "DESIGN", "RECIPES")), "shared" + "/", "/" + "work/")
"""How a citation of a file outside the repository looks (built here so this file does not match itself)."""
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yaml", ".yml", ".conf", ".cfg", ".json", ".html", ".js", ".css"}


def outside_citations(root: Path) -> list[str]:
    """Lines of the repository's text files that cite a file outside the repository."""
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    out = []
    for name in files:
        path = root / name
        if (path.suffix not in TEXT_SUFFIXES and name != ".ci/run") or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if any(mark in line for mark in OUTSIDE):
                out.append(f"{name}:{i}: {line.strip()[:100]}")
    return out


def test_nothing_cites_a_file_outside_the_repository():
    assert outside_citations(ROOT) == []
