"""Reading the cases room's YAML files (limits, rules, services): the bundled default or an operator's file.

Every problem is a ValueError that names the file and the key, e.g.
``limits.yaml: priorities.2.dispatch: must be seconds > 0 (120, "5 min", "2 h") or null, got 'soon'``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml


def read_yaml(path: str | Path | None, bundled: str) -> tuple[object, str]:
    """The parsed YAML of ``path`` (or the bundled file ``bundled`` of ``twin.cases`` when None) and the name to
    report problems under (the path, or the bundled file's name)."""
    if path is None:
        where, text = bundled, resources.files("twin.cases").joinpath(bundled).read_text(encoding="utf-8")
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text), where
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        raise ValueError(f"{where}:{at} not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def problem(where: str, key: str, what: str) -> ValueError:
    """The error for ``key`` (dotted, e.g. ``services.3.duty``) of the file ``where``."""
    return ValueError(f"{where}: {key}: {what}")


def mapping(value: object, where: str, key: str, allowed: tuple[str, ...] | None = None) -> dict:
    """``value`` as a mapping (with only ``allowed`` keys when given), else the error naming ``key``."""
    if not isinstance(value, dict):
        raise problem(where, key, f"must be a mapping, got {type(value).__name__}")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if str(k) not in allowed)
        if unknown:
            raise problem(where, f"{key}.{unknown[0]}" if key else unknown[0],
                          f"unknown key; keys: {', '.join(allowed)}")
    return value
