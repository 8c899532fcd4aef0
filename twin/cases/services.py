"""The report categories (Open311 services, 市民上报类别) and the sources allowed to report (``services.yaml``).

A `Service` is both an Open311 GeoReport v2 service (``service_code``, name, group, description) and a case
category: its names in Chinese and English, the unit types on duty for it (dispatch suggestions), the priority of
a report's case, the alert hazard a report links to when such an alert is live nearby, and how its case is
verified. docs/contract/cases.md, "Services".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from twin.cases.model import CODE_RE, PRIORITIES, VERIFY_MODES
from twin.cases.yamlfile import mapping, problem, read_yaml

DEFAULT_SERVICES = "services.yaml"
"""The bundled catalogue (package data of ``twin.cases``)."""
SERVICE_KEYS = ("code", "name_zh", "name_en", "group", "description", "duty", "priority", "hazard", "verify")
SOURCE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
"""A report source: the ``{source}`` of ``city/reports/{source}`` (one MQTT topic level)."""
MAX_TEXT = 200


@dataclass(frozen=True)
class Service:
    """One report category (see the module docstring); ``duty`` unit types, the first preferred."""

    code: str
    name_zh: str
    name_en: str
    group: str
    description: str
    duty: tuple[str, ...]
    priority: int
    hazard: str = ""
    verify: str = "manual"

    def as_dict(self) -> dict:
        """Plain values (``duty`` a list)."""
        return {"code": self.code, "name_zh": self.name_zh, "name_en": self.name_en, "group": self.group,
                "description": self.description, "duty": list(self.duty), "priority": self.priority,
                "hazard": self.hazard, "verify": self.verify}


class Catalogue:
    """The services of one twin, in file order, and the report ``sources``."""

    def __init__(self, services: list[Service], sources: tuple[str, ...]) -> None:
        self._services = {s.code: s for s in services}
        self.sources = tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalogue:
        """The catalogue of a YAML file (the bundled ``services.yaml`` when None); ValueError names the file and
        key."""
        data, where = read_yaml(path, DEFAULT_SERVICES)
        top = mapping(data, where, "", ("sources", "services"))
        items = top.get("services")
        if not isinstance(items, list) or not items:
            raise problem(where, "services", "must be a non-empty list of services")
        services = [_service(item, where, f"services.{k}") for k, item in enumerate(items)]
        codes = [s.code for s in services]
        twice = next((k for k, c in enumerate(codes) if c in codes[:k]), None)
        if twice is not None:
            raise problem(where, f"services.{twice}.code", f"the code {codes[twice]!r} is used twice")
        return cls(services, _sources(top.get("sources"), where))

    def get(self, code: str) -> Service | None:
        """A service by its code, or None."""
        return self._services.get(code)

    def all(self) -> list[Service]:
        """Every service, in file order."""
        return list(self._services.values())


def _sources(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise problem(where, "sources", 'must be a non-empty list of source names, e.g. ["12345", "app"]')
    out = []
    for k, s in enumerate(value):
        name = str(s) if isinstance(s, int) and not isinstance(s, bool) else s
        if not isinstance(name, str) or not SOURCE_RE.match(name):
            raise problem(where, f"sources.{k}", f"a source is 1-32 of A-Z a-z 0-9 _ . -, got {s!r}")
        out.append(name)
    return tuple(out)


def _text(item: dict, field: str, where: str, key: str, empty: bool = False) -> str:
    value = item.get(field, "" if empty else None)
    if not isinstance(value, str) or (not empty and not value.strip()) or len(value) > MAX_TEXT:
        need = "a string" if empty else "a non-empty string"
        raise problem(where, f"{key}.{field}", f"must be {need} of at most {MAX_TEXT} characters, got {value!r}")
    return value.strip()


def _service(item: object, where: str, key: str) -> Service:
    item = mapping(item, where, key, SERVICE_KEYS)
    code = item.get("code")
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise problem(where, f"{key}.code", f"must be a code of a-z, 0-9 and _ (at most 40), got {code!r}")
    duty = item.get("duty")
    if not isinstance(duty, list) or not duty or not all(isinstance(d, str) and d.strip() for d in duty):
        raise problem(where, f"{key}.duty", f"must be a non-empty list of unit types (police, fire, medical), "
                                            f"got {duty!r}")
    priority = item.get("priority", 3)
    if isinstance(priority, bool) or priority not in PRIORITIES:
        raise problem(where, f"{key}.priority", f"must be 1 (urgent), 2 (high) or 3 (normal), got {priority!r}")
    verify = item.get("verify", "manual")
    if verify not in VERIFY_MODES:
        raise problem(where, f"{key}.verify", f"must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    return Service(code, _text(item, "name_zh", where, key), _text(item, "name_en", where, key),
                   _text(item, "group", where, key), _text(item, "description", where, key, empty=True),
                   tuple(d.strip() for d in duty), int(priority), _text(item, "hazard", where, key, empty=True),
                   verify)
