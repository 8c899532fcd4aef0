"""What-if scenario files: the data model, the loader and its validation.

A scenario is a YAML file (``data/scenarios/README.md`` is the reference, with examples beside it).
It is read by `ScenarioLoader`, PyYAML's safe loader (no Python tags, nothing evaluated) that also
keeps clock times such as ``23:35`` as text instead of YAML 1.1's base-60 numbers, and then checked
field by field: every problem is listed at once, each under the path of its field, in one
`ScenarioError`::

    forcing.rain.design_storm.return_period: must be >= 1 (got 0)
    interventions.close_road[0].road: unknown road 'Zhongshan Rd' in the road data; did you mean ...?

Units are explicit (`scenarios.quantities`); places are polygons, points with a radius or named places
of the district's data (`scenarios.places`). The result is a frozen `Scenario` of plain numbers in SI
units: times in seconds from the start (``start_time`` is unix seconds), places in lon/lat.
`scenarios.forcing.prepare` turns it into arrays on a grid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from scenarios import quantities as q
from scenarios.checks import Context
from scenarios.model import (
    DEFAULT_CELL_M,
    DEFAULT_OUTPUT_EVERY_S,
    DEFAULT_OUTPUTS,
    DEFAULT_STEP_S,
    OUTPUT_ALIASES,
    Arrival,
    Closure,
    DemandChange,
    DesignStorm,
    DrainageChange,
    Forcings,
    Gathering,
    GridChoice,
    Interventions,
    OneWay,
    Outputs,
    Rain,
    Scenario,
    Steps,
    Window,
)
from scenarios.sections import parse_sections
from twin.district.layers import LAYERS
from twin.district.sources import data_dir
from twin.district.thresholds import PlaceBandsError, load_place_bands
from twin.district.walkable import WalkableOverrideError, load_walkable_overrides

__all__ = ["OUTPUT_ALIASES", "Arrival", "Closure", "DemandChange", "DesignStorm", "DrainageChange", "Forcings",
           "Gathering", "GridChoice", "Interventions", "OneWay", "Outputs", "Rain", "Scenario", "ScenarioError",
           "ScenarioLoader", "Steps", "Window", "load_scenario", "merged", "parse_scenario", "read_yaml",
           "resolve_extends", "with_override"]

TOP_FIELDS = ("extends", "name", "question", "description", "seed", "start", "grid", "start_time", "duration", "step",
              "status", "forcing", "interventions", "outputs")
STATUSES = ("Exercise", "Test", "Draft")
"""CAP statuses a scenario may give its alerts; never ``Actual`` (docs/contract/mqtt.md 3.1)."""
SNAPSHOT_FILES = ("snapshot.pkl", "live.nc")
MAX_FILE_BYTES = 1 << 20
"""Scenario files are small; a larger one is refused before parsing (YAML alias bombs and the like)."""


class ScenarioError(ValueError):
    """A scenario file that cannot be used; ``problems`` lists every problem, each naming its field."""

    def __init__(self, problems: list[str], source: str = "scenario") -> None:
        self.problems = list(problems)
        head = f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in problems))


# ---------------------------------------------------------------- YAML
class ScenarioLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (what `yaml.safe_load` uses) that reads ``23:35`` as text, not 1415."""


ScenarioLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _digit in "0123456789":
    ScenarioLoader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^[0-9]+(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")))


def read_yaml(text: str, source: str = "scenario") -> Any:
    """The YAML document in ``text``, loaded safely; a `ScenarioError` on bad syntax or any tag."""
    try:
        return yaml.load(text, Loader=ScenarioLoader)  # a SafeLoader subclass: yaml.safe_load's constructor
    except yaml.constructor.ConstructorError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        tag = re.search(r"tag '([^']*)'", str(exc.problem))
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "?"
        raise ScenarioError([f"{where}tag {shown} is not allowed: scenario files are plain YAML, loaded safely "
                             "(no Python objects)"], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"], source) from None


# ---------------------------------------------------------------- loading
def read_text(path: Path, source: str, field: str = "") -> str:
    """A scenario file's text (at most `MAX_FILE_BYTES`); a `ScenarioError` if it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError([f"{field}{path} is {size:,} bytes; a scenario file is at most "
                                 f"{MAX_FILE_BYTES:,}"], source)
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{field}cannot read {path}: {getattr(exc, 'strerror', None) or exc}"], source) from None


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, check and return the scenario in a YAML file.

    ``overrides`` sets fields before checking, by dotted path (``forcing.rain.design_storm.return_period``,
    list items by index: ``forcing.crowd.gathering.0.peak``), e.g. for the variants of an ensemble.
    """
    path = Path(path)
    doc = resolve_extends(read_yaml(read_text(path, str(path)), str(path)), path.parent, (path.resolve(),),
                          str(path))
    for dotted, value in (overrides or {}).items():
        doc = with_override(doc, dotted, value)
    return parse_scenario(doc, base_dir=path.parent, source=path)


def resolve_extends(doc: Any, base_dir: Path, chain: tuple[Path, ...] = (), source: str = "scenario") -> Any:
    """The document merged onto the file it ``extends`` (recursively): mappings merge field by field,
    anything else (lists, numbers, text) replaces the base's value, ``null`` removes it."""
    if not isinstance(doc, dict) or "extends" not in doc:
        return doc
    base_path = (base_dir / str(doc["extends"])).resolve()
    if base_path in chain:
        raise ScenarioError([f"extends: {doc['extends']} extends itself (through {' -> '.join(map(str, chain))})"],
                            source)
    text = read_text(base_path, source, "extends: ")
    base = resolve_extends(read_yaml(text, str(base_path)), base_path.parent, (*chain, base_path), str(base_path))
    if not isinstance(base, dict):
        raise ScenarioError([f"extends: {base_path} is not a scenario (not a mapping)"], source)
    return merged(base, {k: v for k, v in doc.items() if k != "extends"})


def merged(base: dict, over: dict) -> dict:
    """``over`` merged onto ``base`` (see `resolve_extends`)."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def with_override(doc: Any, dotted: str, value: Any) -> Any:
    """A copy of ``doc`` with the field at ``dotted`` set to ``value`` (mappings made as needed)."""
    if not dotted:
        return value
    head, _, rest = dotted.partition(".")
    if isinstance(doc, list) and head.isdigit() and int(head) < len(doc):
        out = list(doc)
        out[int(head)] = with_override(doc[int(head)], rest, value)
        return out
    out = dict(doc) if isinstance(doc, dict) else {}
    out[head] = with_override(out.get(head), rest, value)
    return out


def parse_scenario(doc: Any, base_dir: str | Path = ".", source: str | Path | None = None) -> Scenario:
    """Check a scenario document (the YAML as Python data) and return the `Scenario`; relative paths are
    taken from ``base_dir``. Raises `ScenarioError` listing every problem."""
    label = str(source) if source is not None else "scenario"
    if not isinstance(doc, dict):
        raise ScenarioError([f"the file must be a mapping of fields ({', '.join(TOP_FIELDS)}), "
                             f"got {type(doc).__name__}"], label)
    doc = resolve_extends(doc, Path(base_dir), source=label)
    ctx = Context(base_dir=Path(base_dir))
    ctx.known(doc, "", TOP_FIELDS)
    seed = _seed(ctx, doc.get("seed", 0))
    snapshot = _snapshot(ctx, doc.get("start", "baseline"))
    grid = _grid(ctx, doc.get("grid", "bund"))
    ctx.district = data_dir() / grid.district
    start_time = ctx.value(doc, "start_time", q.parse_datetime, None)
    duration = ctx.value(doc, "duration", q.parse_duration, None, required=True)
    step = ctx.value(doc, "step", q.parse_duration, DEFAULT_STEP_S)
    ctx.start, ctx.duration_s = start_time, duration or None
    _check_times(ctx, duration, step)
    status = _status(ctx, doc.get("status", "Exercise"))
    forcings, interventions = parse_sections(ctx, doc.get("forcing"), doc.get("interventions"))
    scenario = Scenario(
        name=str(doc.get("name") or (Path(source).stem if source else "scenario")),
        description=str(doc.get("description") or "").strip(), seed=seed, snapshot=snapshot, grid=grid,
        start_time=start_time.timestamp() if start_time else None,
        utc_offset_s=start_time.utcoffset().total_seconds() if start_time else None, duration_s=duration or 0.0,
        step_s=step or 0.0, status=status, forcing=forcings, interventions=interventions,
        outputs=_outputs(ctx, doc.get("outputs"), step), source=Path(source) if source is not None else None,
        question=str(doc.get("question") or "").strip(), warnings=tuple(ctx.warnings))
    if ctx.problems:
        raise ScenarioError(ctx.problems, label)
    return scenario


def _check_times(ctx: Context, duration: float | None, step: float | None) -> None:
    if duration is not None and duration <= 0:
        ctx.fail("duration", f"must be > 0 (got {duration:g} s)")
    if step is not None and step <= 0:
        ctx.fail("step", f"must be > 0 (got {step:g} s)")
    elif step is not None and duration and step > duration:
        ctx.fail("step", f"must not be longer than the duration ({step:g} s > {duration:g} s)")


def _seed(ctx: Context, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        ctx.fail("seed", f"must be a whole number >= 0 (got {value!r})")
        return 0
    return value


def _status(ctx: Context, value: Any) -> str:
    if value not in STATUSES:
        why = " (a scenario never raises real alerts)" if value == "Actual" else ""
        ctx.fail("status", f"must be one of {', '.join(STATUSES)}{why} (got {value!r})")
    return str(value)


def _snapshot(ctx: Context, value: Any) -> Path | None:
    if value == "baseline":
        return None
    if not isinstance(value, dict) or set(value) != {"snapshot"}:
        ctx.fail("start", f"must be 'baseline' or {{snapshot: FOLDER}} (got {value!r})")
        return None
    folder = ctx.base_dir / str(value["snapshot"])
    if not folder.is_dir():
        ctx.fail("start.snapshot", f"no folder {folder} (the live twin's --state folder)")
        return folder
    missing = [name for name in SNAPSHOT_FILES if not (folder / name).is_file()]
    if missing:
        ctx.fail("start.snapshot", f"{folder} is not a live twin's state folder: no {', '.join(missing)}")
    return folder


def _grid(ctx: Context, value: Any) -> GridChoice:
    short = isinstance(value, str)
    if short:
        value = {"path": value} if value.endswith(".nc") else {"district": value}
    if not ctx.known(value, "grid", ("district", "cell", "path", "walkable", "crowd_bands")):
        return GridChoice()
    district = str(value.get("district", "bund"))
    if not (data_dir() / district / "buildings.geojson").is_file():
        known = sorted(p.name for p in data_dir().iterdir() if (p / "buildings.geojson").is_file())
        ctx.fail("grid" if short else "grid.district", f"no bundled district {district!r} (bundled: "
                 f"{', '.join(known) or 'none'}; or give the path of a twin NetCDF file)")
    cell = ctx.value(value, "cell", q.parse_length, DEFAULT_CELL_M, path="grid")
    if cell is not None and cell <= 0:
        ctx.fail("grid.cell", f"must be > 0 (got {cell:g} m)")
    path = None
    if "path" in value:
        path = ctx.base_dir / str(value["path"])
        if not path.is_file():
            ctx.fail("grid" if short else "grid.path", f"no twin file {path}")
    return GridChoice(district, cell or DEFAULT_CELL_M, path, _walkable(ctx, value.get("walkable")),
                      _crowd_bands(ctx, value.get("crowd_bands")))


def _walkable(ctx: Context, value: Any) -> Path | None:
    """``grid.walkable``: a walkable-area override file (`twin.district.walkable`), checked here."""
    return _checked_file(ctx, value, "grid.walkable", load_walkable_overrides, WalkableOverrideError)


def _crowd_bands(ctx: Context, value: Any) -> Path | None:
    """``grid.crowd_bands``: a file of places with crowd density bands of their own (`twin.district.thresholds`),
    checked here."""
    return _checked_file(ctx, value, "grid.crowd_bands", load_place_bands, PlaceBandsError)


def _checked_file(ctx: Context, value: Any, field: str, load: Callable[[Path], object],
                  error: type[ValueError]) -> Path | None:
    """The path of a file the scenario names (relative to the scenario), after ``load`` read it without ``error``."""
    if value is None:
        return None
    path = ctx.base_dir / str(value)
    try:
        load(path)
    except OSError as exc:
        ctx.fail(field, f"cannot read {path}: {exc.strerror or exc}")
    except error as exc:
        ctx.fail(field, str(exc))
    return path


def _outputs(ctx: Context, value: Any, step: float | None) -> Outputs:
    if value is None:
        return Outputs()
    if not ctx.known(value, "outputs", ("every", "layers")):
        return Outputs()
    every = ctx.value(value, "every", q.parse_duration, DEFAULT_OUTPUT_EVERY_S, path="outputs")
    if every is not None and step and (every < step or abs(every / step - round(every / step)) > 1e-9):
        ctx.fail("outputs.every", f"must be a whole number of steps ({step:g} s; got {every:g} s)")
    layers = value.get("layers", list(DEFAULT_OUTPUTS))
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, list) or not layers:
        ctx.fail("outputs.layers", f"must be a list of layer names (got {layers!r})")
        return Outputs(every or DEFAULT_OUTPUT_EVERY_S)
    for i, name in enumerate(layers):
        if name not in OUTPUT_ALIASES and name not in LAYERS:
            ctx.fail(f"outputs.layers[{i}]", f"unknown layer {name!r}; use {', '.join(OUTPUT_ALIASES)} or a "
                     "twin layer name (twin.district.layers)")
    return Outputs(every or DEFAULT_OUTPUT_EVERY_S, tuple(str(n) for n in layers))


