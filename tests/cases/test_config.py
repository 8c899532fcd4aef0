"""The cases room's YAML files: the bundled time limits, case rules and services, and clear errors for bad files."""

from __future__ import annotations

import math
from importlib import resources

import pytest

from twin.cases.limits import STEPS, TimeLimits
from twin.cases.model import CODE_RE
from twin.cases.rules import CaseRule, CaseRules
from twin.cases.services import Catalogue

BUNDLED_LIMITS = {1: (120, 120, 600, 3600, 1800, 600), 2: (300, 300, 900, 7200, 3600, 1800),
                  3: (900, 600, 1800, 14400, 7200, 3600)}


def test_the_bundled_files_are_package_data():
    names = {p.name for p in resources.files("twin.cases").iterdir()}
    assert {"limits.yaml", "rules.yaml", "services.yaml"} <= names


@pytest.mark.parametrize("priority", [1, 2, 3])
def test_bundled_limits(priority):
    limits = TimeLimits.load()
    assert tuple(limits.limit_s("waterlogging", priority, s) for s in STEPS) == BUNDLED_LIMITS[priority]


def test_limits_take_units_category_overrides_and_no_limit(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text("priorities:\n"
                    "  1: {dispatch: 2 min, accept: 90 s, on_scene: 600, dispose: 1.5 h, verify: null, close: 10m}\n"
                    "  2: {dispatch: 1, accept: 1, on_scene: 1, dispose: 1, verify: 1, close: 1}\n"
                    "  3: {dispatch: 1, accept: 1, on_scene: 1, dispose: 1, verify: 1, close: 1}\n"
                    "categories:\n  fallen_tree:\n    1: {dispose: 8 h}\n", encoding="utf-8")
    limits = TimeLimits.load(path)
    assert [limits.limit_s("other", 1, s) for s in STEPS] == [120, 90, 600, 5400, math.inf, 600]
    assert limits.limit_s("fallen_tree", 1, "dispose") == 28800 and limits.limit_s("fallen_tree", 2, "dispose") == 1
    with pytest.raises(ValueError, match="unknown step"):
        limits.limit_s("other", 1, "lunch")
    with pytest.raises(ValueError, match="unknown priority"):
        limits.limit_s("other", 7, "close")


FULL = "{dispatch: 1, accept: 1, on_scene: 1, dispose: 1, verify: 1, close: 1}"


@pytest.mark.parametrize(("text", "key", "what"), [
    ("priorities: [1, 2]\n", "priorities", "must be a mapping"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n", "priorities.3", "missing"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n  3: {{dispatch: 1}}\n", "priorities.3.accept", "missing"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n  3: {FULL}\n  4: {FULL}\n", "priorities.4", "priority must be"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n  3: {{dispatch: soon, accept: 1, on_scene: 1, dispose: 1, "
     "verify: 1, close: 1}\n", "priorities.3.dispatch", "'soon'"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n  3: {FULL}\ncategories:\n  x:\n    1: {{lunch: 5}}\n",
     "categories.x.1.lunch", "unknown key"),
    (f"priorities:\n  1: {FULL}\n  2: {FULL}\n  3: {FULL}\nextra: 1\n", "extra", "unknown key"),
    ("priorities: {1: [\n", "", "not valid YAML"),
])
def test_bad_limits_files_name_the_file_and_key(tmp_path, text, key, what):
    path = tmp_path / "bad-limits.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        TimeLimits.load(path)
    assert str(err.value).startswith(str(path)) and f"{key}:" in str(err.value) and what in str(err.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        TimeLimits.load(tmp_path / "none.yaml")


@pytest.mark.parametrize(("hazard", "level", "expected"), [
    ("crowd", 4, CaseRule("crowd_safety", 1, "auto", "sensors", "crowd-yellow-and-above")),
    ("crowd", 3, CaseRule("crowd_safety", 1, "auto", "sensors", "crowd-yellow-and-above")),
    ("crowd", 2, CaseRule("crowd_safety", 2, "auto", "sensors", "crowd-yellow-and-above")),
    ("crowd", 1, None),
    ("flood", 4, CaseRule("waterlogging", 1, "auto", "sensors", "flood-yellow-and-above")),
    ("flood", 2, CaseRule("waterlogging", 2, "auto", "sensors", "flood-yellow-and-above")),
    ("flood", 1, None),
    ("traffic", 4, CaseRule("congestion", 2, "auto", "sensors", "traffic-orange-and-above")),
    ("traffic", 3, CaseRule("congestion", 2, "auto", "sensors", "traffic-orange-and-above")),
    ("traffic", 2, None),
    ("crowd_forecast", 4, None),
    ("rain", 4, None),
])
def test_bundled_rules(hazard, level, expected):
    assert CaseRules.load().match(hazard, level, f"{hazard}:grid:C4") == expected


def test_rules_by_place_pattern_and_level_names(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("case_rules:\n"
                    "  - {name: tunnels, hazard: flood, min_level: blue, place: 'flood:point:.*',"
                    " category: waterlogging, priority: {blue: 3, red: 1}, dispatch: suggest}\n"
                    "  - {hazard: flood, min_level: 3, category: waterlogging, priority: 2, verify: manual}\n",
                    encoding="utf-8")
    rules = CaseRules.load(path)
    assert rules.match("flood", 1, "flood:point:water-03") == CaseRule("waterlogging", 3, "suggest", "sensors",
                                                                        "tunnels")
    assert rules.match("flood", 3, "flood:point:water-03").priority == 3
    assert rules.match("flood", 4, "flood:point:water-03").priority == 1
    assert rules.match("flood", 1, "flood:grid:C4") is None
    assert rules.match("flood", 3, "flood:grid:C4") == CaseRule("waterlogging", 2, "auto", "manual", "rule-1")


@pytest.mark.parametrize(("rule", "key", "what"), [
    ("{hazard: flood, min_level: pink, category: waterlogging, priority: 1}", "case_rules.0.min_level", "pink"),
    ("{hazard: flood, min_level: 2, category: waterlogging, priority: 1, dispatch: now}", "case_rules.0.dispatch",
     "auto, suggest"),
    ("{hazard: flood, min_level: 2, category: Water, priority: 1}", "case_rules.0.category", "service code"),
    ("{hazard: flood, min_level: 2, category: waterlogging}", "case_rules.0.priority", "missing"),
    ("{hazard: flood, min_level: 2, category: waterlogging, priority: {red: 1}}", "case_rules.0.priority",
     "min_level"),
    ("{hazard: flood, min_level: 2, category: waterlogging, priority: 1, place: '(('}", "case_rules.0.place",
     "regular expression"),
    ("{hazard: flood, min_level: 2, category: waterlogging, priority: 1, colour: red}", "case_rules.0.colour",
     "unknown key"),
])
def test_bad_rules_files_name_the_file_and_key(tmp_path, rule, key, what):
    path = tmp_path / "bad-rules.yaml"
    path.write_text(f"case_rules:\n  - {rule}\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        CaseRules.load(path)
    assert str(err.value).startswith(str(path)) and f"{key}:" in str(err.value) and what in str(err.value)


BUNDLED_SERVICES = {"crowd_safety": ("人群拥挤", ("police",), "crowd"),
                    "waterlogging": ("道路积水", ("fire",), "flood"),
                    "congestion": ("交通拥堵", ("police",), "traffic"),
                    "road_obstruction": ("道路障碍", ("police",), ""),
                    "manhole_cover": ("井盖缺失", ("police",), ""), "fallen_tree": ("树木倒伏", ("fire",), ""),
                    "medical": ("医疗求助", ("medical",), ""), "other": ("其他", ("police",), "")}


def test_bundled_services_are_bilingual_with_duties_and_hazards():
    catalogue = Catalogue.load()
    assert [s.code for s in catalogue.all()] == list(BUNDLED_SERVICES)
    for s in catalogue.all():
        assert (s.name_zh, s.duty, s.hazard) == BUNDLED_SERVICES[s.code]
        assert s.name_en.isascii() and s.name_en and " / " in s.group and " / " in s.description
        assert s.priority in (1, 2, 3) and s.verify == "manual"
    assert catalogue.sources == ("12345", "app", "open311", "operator")
    assert catalogue.get("medical").name_en == "Medical help" and catalogue.get("nope") is None
    assert catalogue.get("other").as_dict()["duty"] == ["police"]


def test_every_bundled_rule_opens_a_known_category():
    catalogue = Catalogue.load()
    assert all(catalogue.get(r.category) is not None and CODE_RE.match(r.category) for r in CaseRules.load().rules)


SERVICE = "{code: x, name_zh: 某, name_en: X, group: g, duty: [police], priority: 2}"


@pytest.mark.parametrize(("text", "key", "what"), [
    (f"services:\n  - {SERVICE}\n", "sources", "non-empty list"),
    (f"sources: [app, 'a b']\nservices:\n  - {SERVICE}\n", "sources.1", "'a b'"),
    ("sources: [app]\nservices:\n  - {code: x, name_en: X, group: g, duty: [police]}\n", "services.0.name_zh",
     "non-empty string"),
    ("sources: [app]\nservices:\n  - {code: x, name_zh: 某, name_en: X, group: g, duty: []}\n", "services.0.duty",
     "unit types"),
    (f"sources: [app]\nservices:\n  - {SERVICE}\n  - {SERVICE}\n", "services.1.code", "used twice"),
    ("sources: [app]\nservices:\n  - {code: x, name_zh: 某, name_en: X, group: g, duty: [fire], verify: eyes}\n",
     "services.0.verify", "sensors, manual"),
    ("sources: [app]\nservices: []\n", "services", "non-empty list"),
])
def test_bad_services_files_name_the_file_and_key(tmp_path, text, key, what):
    path = tmp_path / "bad-services.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Catalogue.load(path)
    assert str(err.value).startswith(str(path)) and f"{key}:" in str(err.value) and what in str(err.value)


def test_numeric_sources_are_read_as_names(tmp_path):
    path = tmp_path / "services.yaml"
    path.write_text(f"sources: [12345, app]\nservices:\n  - {SERVICE}\n", encoding="utf-8")
    assert Catalogue.load(path).sources == ("12345", "app")


def test_a_rule_name_used_twice_is_named(tmp_path):
    path = tmp_path / "rules.yaml"
    rule = "{name: same, hazard: flood, min_level: 2, category: waterlogging, priority: 1}"
    path.write_text(f"case_rules:\n  - {rule}\n  - {rule}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"rules.yaml: case_rules.1.name: the name 'same' is used twice"):
        CaseRules.load(path)
