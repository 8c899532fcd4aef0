"""Case rules (立案规则): which alerts open a case by themselves, of which category and priority (``rules.yaml``).

`CaseRules.match` gives the first rule, in file order, whose ``hazard`` is the alert's, whose ``min_level`` the
alert's level reaches and whose ``place`` pattern (optional; a regular expression over the whole place key) matches,
as a `CaseRule` with the priority for that level; None when no rule matches (the alert opens no case).
docs/contract/cases.md, "Case rules".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from twin.cases.model import CODE_RE, PRIORITIES
from twin.cases.yamlfile import mapping, problem, read_yaml

DEFAULT_RULES = "rules.yaml"
"""The bundled rules (package data of ``twin.cases``)."""
LEVELS = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}
"""Alert levels by name (1 blue .. 4 red)."""
DISPATCH_MODES = ("auto", "suggest")
RULE_VERIFY = ("sensors", "manual")
RULE_KEYS = ("name", "hazard", "min_level", "place", "category", "priority", "dispatch", "verify")


@dataclass(frozen=True)
class CaseRule:
    """What a matching alert opens: a case of ``category`` at ``priority`` (1 urgent .. 3 normal), dispatched
    automatically (``auto``) or by the operator from suggestions (``suggest``), verified by ``sensors`` or
    ``manual``ly; ``name`` is the rule's name in the file."""

    category: str
    priority: int
    dispatch: str = "auto"
    verify: str = "sensors"
    name: str = ""


@dataclass(frozen=True)
class _Rule:
    name: str
    hazard: str
    min_level: int
    place: re.Pattern | None
    category: str
    priority: dict[int, int]
    dispatch: str
    verify: str


class CaseRules:
    """The rules of one twin (see the module docstring)."""

    def __init__(self, rules: list[_Rule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def load(cls, path: str | Path | None = None) -> CaseRules:
        """The rules of a YAML file (the bundled ``rules.yaml`` when None); ValueError names the file and key."""
        data, where = read_yaml(path, DEFAULT_RULES)
        top = mapping(data, where, "", ("case_rules",))
        items = top.get("case_rules")
        if not isinstance(items, list):
            raise problem(where, "case_rules", "must be a list of rules")
        rules = [_rule(item, where, f"case_rules.{k}") for k, item in enumerate(items)]
        names = [r.name for r in rules]
        twice = next((k for k, c in enumerate(names) if c in names[:k]), None)
        if twice is not None:
            raise problem(where, f"case_rules.{twice}.name", f"the name {names[twice]!r} is used twice")
        return cls(rules)

    def match(self, hazard: str, level: int, place_key: str) -> CaseRule | None:
        """The case an alert of ``hazard`` at ``level`` (1 blue .. 4 red) at place ``place_key`` opens, or None."""
        for r in self.rules:
            if r.hazard == hazard and level >= r.min_level and (r.place is None or r.place.fullmatch(place_key or "")):
                return CaseRule(r.category, _priority_at(r.priority, level), r.dispatch, r.verify, r.name)
        return None


def _priority_at(by_level: dict[int, int], level: int) -> int:
    """The priority of the highest level listed at or below ``level`` (the rule's ``min_level`` is listed)."""
    return by_level[max(lv for lv in by_level if lv <= level)]


def _level(value: object, where: str, key: str) -> int:
    level = LEVELS.get(value) if isinstance(value, str) else value
    if isinstance(level, bool) or level not in LEVELS.values():
        raise problem(where, key, f"a level is 1-4 or one of {', '.join(LEVELS)}, got {value!r}")
    return int(level)


def _prio(value: object, where: str, key: str) -> int:
    if isinstance(value, bool) or value not in PRIORITIES:
        raise problem(where, key, f"priority must be 1 (urgent), 2 (high) or 3 (normal), got {value!r}")
    return int(value)


def _one_of(item: dict, field: str, allowed: tuple[str, ...], default: str, where: str, key: str) -> str:
    value = item.get(field, default)
    if value not in allowed:
        raise problem(where, f"{key}.{field}", f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _rule(item: object, where: str, key: str) -> _Rule:
    item = mapping(item, where, key, RULE_KEYS)
    for field in ("hazard", "min_level", "category", "priority"):
        if field not in item:
            raise problem(where, f"{key}.{field}", "missing")
    hazard, category = item["hazard"], item["category"]
    if not isinstance(hazard, str) or not hazard.strip():
        raise problem(where, f"{key}.hazard", f"must be a hazard name such as flood, got {hazard!r}")
    if not isinstance(category, str) or not CODE_RE.match(category):
        raise problem(where, f"{key}.category", f"must be a service code such as waterlogging, got {category!r}")
    min_level = _level(item["min_level"], where, f"{key}.min_level")
    priority = _priorities(item["priority"], min_level, where, f"{key}.priority")
    return _Rule(str(item.get("name", f"rule-{key.rsplit('.', 1)[-1]}")), hazard, min_level,
                 _pattern(item.get("place"), where, f"{key}.place"), category, priority,
                 _one_of(item, "dispatch", DISPATCH_MODES, "auto", where, key),
                 _one_of(item, "verify", RULE_VERIFY, "sensors", where, key))


def _priorities(value: object, min_level: int, where: str, key: str) -> dict[int, int]:
    if not isinstance(value, dict):
        return {min_level: _prio(value, where, key)}
    out = {_level(lv, where, f"{key}.{lv}"): _prio(p, where, f"{key}.{lv}") for lv, p in value.items()}
    if min_level not in out:
        raise problem(where, key, f"must give the priority at min_level ({min_level}) and any level above")
    return out


def _pattern(value: object, where: str, key: str) -> re.Pattern | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise problem(where, key, f"must be a regular expression over the place key, got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise problem(where, key, f"not a valid regular expression: {exc}") from None
