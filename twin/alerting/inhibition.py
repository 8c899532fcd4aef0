"""Inhibition (抑制): an active source alert suppresses the delivery of target alerts, by rules in a YAML file.

The rules follow Prometheus Alertmanager's ``inhibit_rules`` [src: Alertmanager docs, "Configuration:
inhibit_rule"]: a target alert (all ``target_matchers`` hold) is inhibited while a source alert (all
``source_matchers`` hold) is active whose labels named in ``equal`` have the same values as the target's (a label
both lack is equal); an alert never inhibits itself. The project adds:

- ``target_within_source: true``: the target's area lies inside the source's area grown by ``buffer_m`` metres
  (areas in the grid CRS; an alert without an area is never inside another);
- ``source_level_at_least: N``: the source is at level N (1 blue .. 4 red) or above;
- ``target_level_below_source: true``: the target's level is below the source's;
- ``target_level_at_most_source: true``: the target's level is at most the source's.

The default rules are `DEFAULT_RULES` (``twin/alerting/inhibit.yaml``): a red alert suppresses the lower alerts of
its hazard inside its area, and the district rainstorm signal suppresses the rain alerts of single gauges' areas
(see docs/guides/silences-and-inhibition.md for what they do with the twin's data).

An inhibited alert is still recorded, published on ``city/alerts/{id}`` and shown greyed; it is not delivered to
units. Inhibited sources still inhibit (as in Alertmanager).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import shapely
import yaml

from twin.alerting.labels import LABEL_ALIASES, LABEL_NAMES, AlertLabels, Matcher, matches_all, parse_matcher

DEFAULT_RULES = "inhibit.yaml"
"""The packaged default rules (package data of ``twin.alerting``)."""
MAX_BUFFER_M = 5000.0
RULE_KEYS = ("name", "source_matchers", "target_matchers", "equal", "target_within_source", "buffer_m",
             "source_level_at_least", "target_level_below_source", "target_level_at_most_source")


class InhibitionConfigError(ValueError):
    """A rules file that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class InhibitRule:
    """One rule (see the module docstring)."""

    name: str
    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    target_within_source: bool = False
    buffer_m: float = 0.0
    source_level_at_least: int = 0
    target_level_below_source: bool = False
    target_level_at_most_source: bool = False

    def levels_allow(self, source: AlertLabels, target: AlertLabels) -> bool:
        """The level conditions between a source and a target."""
        if source.level < self.source_level_at_least:
            return False
        if self.target_level_below_source and not target.level < source.level:
            return False
        return not (self.target_level_at_most_source and target.level > source.level)

    def equal_labels(self, source: AlertLabels, target: AlertLabels) -> bool:
        """The ``equal`` labels have the same values."""
        return all(source.get(label) == target.get(label) for label in self.equal)


def _inside(target: AlertLabels, grown) -> bool:
    area = target.area
    return grown is not None and area is not None and not shapely.is_empty(area) and bool(grown.covers(area))


class Inhibitor:
    """The inhibition rules of one twin; `inhibited` answers for a tick's active alerts."""

    def __init__(self, rules: list[InhibitRule] | tuple[InhibitRule, ...]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def from_file(cls, path: str | Path) -> Inhibitor:
        """The rules of a YAML file; `InhibitionConfigError` names the line and field of a problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InhibitionConfigError(f"{path}: cannot read the inhibition rules: {exc}") from None
        return cls(rules_of_yaml(text, str(path)))

    @classmethod
    def default(cls) -> Inhibitor:
        """The packaged default rules (``twin/alerting/inhibit.yaml``)."""
        text = resources.files("twin.alerting").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return cls(rules_of_yaml(text, DEFAULT_RULES))

    def inhibited(self, labels: list[AlertLabels]) -> dict[str, tuple[str, str]]:
        """Target identifier -> (source identifier, rule name) for every inhibited alert among the active ones.

        A target matched by several rules or sources is given the first rule of the file and, of its sources, the
        one at the highest level, then the lowest identifier (deterministic).
        """
        out: dict[str, tuple[str, str]] = {}
        for rule in self.rules:
            sources = sorted((s for s in labels if matches_all(rule.source_matchers, s)),
                             key=lambda s: (-s.level, s.identifier))
            if not sources:
                continue
            grown = {s.identifier: self._grown(rule, s) for s in sources} if rule.target_within_source else {}
            for target in labels:
                if target.identifier in out or not matches_all(rule.target_matchers, target):
                    continue
                source = self._first_source(rule, sources, target, grown)
                if source is not None:
                    out[target.identifier] = (source.identifier, rule.name)
        return out

    @staticmethod
    def _grown(rule: InhibitRule, source: AlertLabels):
        if source.area is None or shapely.is_empty(source.area):
            return None
        grown = source.area.buffer(rule.buffer_m) if rule.buffer_m > 0 else source.area
        shapely.prepare(grown)
        return grown

    @staticmethod
    def _first_source(rule: InhibitRule, sources: list[AlertLabels], target: AlertLabels,
                      grown: dict) -> AlertLabels | None:
        for source in sources:
            if source.identifier == target.identifier:
                continue
            if not (rule.levels_allow(source, target) and rule.equal_labels(source, target)):
                continue
            if rule.target_within_source and not _inside(target, grown[source.identifier]):
                continue
            return source
        return None


# ---------------------------------------------------------------- reading the file
def _lines(text: str) -> list[dict[str, int]]:
    """Per rule of ``inhibit_rules``: its line (key ``""``) and each field's line (1-based); [] if unreadable."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "inhibit_rules" and isinstance(value, yaml.SequenceNode):
            out = []
            for item in value.value:
                lines = {"": item.start_mark.line + 1}
                if isinstance(item, yaml.MappingNode):
                    lines.update({str(k.value): v.start_mark.line + 1 for k, v in item.value})
                out.append(lines)
            return out
    return []


def rules_of_yaml(text: str, where: str = "inhibition rules") -> list[InhibitRule]:
    """The rules of a YAML text (see the module docstring); `InhibitionConfigError` names ``where``, the line and
    the field of the first problem."""
    try:
        data = yaml.safe_load(text)
        lines = _lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InhibitionConfigError(f"{where}:{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("inhibit_rules"), list):
        raise InhibitionConfigError(f"{where}: expected a mapping with a list 'inhibit_rules:'")
    unknown = sorted(set(data) - {"inhibit_rules"})
    if unknown:
        raise InhibitionConfigError(f"{where}: unknown top-level key(s) {', '.join(map(str, unknown))}; "
                                    "only 'inhibit_rules' is read")
    rules, names = [], set()
    for k, item in enumerate(data["inhibit_rules"]):
        at = lines[k] if k < len(lines) else {}
        rule = _rule(item, k, at, where)
        if rule.name in names:
            raise InhibitionConfigError(f"{where}: line {at.get('name', at.get('', '?'))}: rule {k + 1}: the name "
                                        f"{rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _rule(item: object, k: int, at: dict[str, int], where: str) -> InhibitRule:
    def fail(field: str, problem: str) -> InhibitionConfigError:
        line = at.get(field, at.get("", "?"))
        named = f" ({item.get('name')!r})" if isinstance(item, dict) and item.get("name") else ""
        return InhibitionConfigError(f"{where}: line {line}: rule {k + 1}{named}, field {field!r}: {problem}")

    if not isinstance(item, dict):
        raise fail("", "a rule must be a mapping of fields")
    unknown = sorted(set(map(str, item)) - set(RULE_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown field; fields: {', '.join(RULE_KEYS)}")
    name = item.get("name", f"rule-{k + 1}")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "must be a non-empty string")
    matchers = {}
    for side in ("source_matchers", "target_matchers"):
        value = item.get(side)
        if not isinstance(value, list) or not value:
            raise fail(side, 'must be a non-empty list of matchers like \'hazard="flood"\'')
        try:
            matchers[side] = tuple(parse_matcher(m) for m in value)
        except ValueError as exc:
            raise fail(side, str(exc)) from None
    equal = item.get("equal", [])
    if not isinstance(equal, list) or not all(isinstance(e, str) for e in equal):
        raise fail("equal", "must be a list of label names")
    equal = [LABEL_ALIASES.get(e, e) for e in equal]
    bad = [e for e in equal if e not in LABEL_NAMES]
    if bad:
        raise fail("equal", f"unknown label {bad[0]!r}; labels: {', '.join(LABEL_NAMES)}")
    flags = {}
    for flag in ("target_within_source", "target_level_below_source", "target_level_at_most_source"):
        flags[flag] = item.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise fail(flag, "must be true or false")
    buffer_m = item.get("buffer_m", 0.0)
    if isinstance(buffer_m, bool) or not isinstance(buffer_m, int | float) or not (
            math.isfinite(buffer_m) and 0 <= buffer_m <= MAX_BUFFER_M):
        raise fail("buffer_m", f"must be a number of metres from 0 to {MAX_BUFFER_M:.0f}")
    if "buffer_m" in item and not flags["target_within_source"]:
        raise fail("buffer_m", "only means something with target_within_source: true")
    least = item.get("source_level_at_least", 0)
    if isinstance(least, bool) or not isinstance(least, int) or not 0 <= least <= 4:
        raise fail("source_level_at_least", "must be a level from 0 to 4 (1 blue .. 4 red)")
    return InhibitRule(name.strip(), matchers["source_matchers"], matchers["target_matchers"], tuple(equal),
                       flags["target_within_source"], float(buffer_m), least, flags["target_level_below_source"],
                       flags["target_level_at_most_source"])
