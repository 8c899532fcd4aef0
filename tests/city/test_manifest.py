"""The city manifest: every problem listed in one error; the bundled manifests load."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.city.boundaries import read_boundaries
from twin.city.manifest import ManifestError, load_manifest, manifest_from_dict
from twin.district.sources import data_dir

XUHUI = [121.4365, 31.1885]
"""Xujiahui, in Xuhui (310104)."""


def _doc(**changes) -> dict:
    doc = {"city": {"name": "上海市", "name_en": "Shanghai"}, "boundaries": "bundled",
           "districts": [{"code": "310104", "source": "synthetic", "seed": 1, "centre": XUHUI, "size_m": 500}]}
    doc.update(changes)
    return doc


def _problems(doc: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        manifest_from_dict(doc, tmp_path / "city.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'city.yaml'}: {len(info.value.problems)} problem")
    return info.value.problems


def test_a_good_manifest_gives_its_values_and_defaults(tmp_path):
    m = manifest_from_dict(_doc(tick_s=30, mqtt={"prefix": "sh/"}), tmp_path / "city.yaml")
    assert (m.name, m.name_en, m.tick_s, m.mqtt.prefix, m.mqtt.broker) == ("上海市", "Shanghai", 30.0, "sh/",
                                                                          "mqtt://127.0.0.1:1883")
    assert (m.stream.url, m.stream.name, m.stream.max_age_s) == ("nats://127.0.0.1:4222", "TWIN", 24 * 3600.0)
    (d,) = m.districts
    assert (d.code, d.partition, d.name, d.name_en, d.cell_m, d.tile) == ("310104", "310104", "徐汇区", "Xuhui",
                                                                          10.0, None)
    assert (d.source.kind, d.source.seed, d.source.profile, d.source.size_m) == ("synthetic", 1, "central",
                                                                                 (500.0, 500.0))


def test_every_problem_is_listed_once(tmp_path):
    doc = _doc(colour="red", tick_s=-1, stream={"url": "http://x", "name": "TW IN"}, mqtt={"prefix": "city"},
               registry=["missing.geojson"])
    doc["districts"] = [
        {"code": "310104", "source": "synthetic", "seed": 1, "centre": XUHUI, "sorce": "x"},   # unknown key
        {"code": "310104", "source": "synthetic", "seed": 2, "centre": XUHUI},                 # duplicate code
        {"code": "310199", "source": "synthetic", "seed": 1, "centre": XUHUI},                 # not a district
        {"code": "310105", "source": "synthetic", "centre": [121.418, 31.22]},                 # no seed
        {"code": "310106", "source": "synthetic", "seed": 1, "centre": XUHUI},                 # centre outside
        {"code": "310107", "source": "osm:nowhere"},                                           # no such folder
        {"code": "310112", "source": "synthetic", "seed": 1, "centre": [121.38, 31.11], "profile": "rural"},
        {"code": "310110", "source": "osm:bund", "seed": 3},                                   # seed on osm
        {"code": "310115", "source": "osm:bund", "tiles": [                                    # source and tiles
            {"source": "synthetic", "seed": 1, "centre": [121.56, 31.21]},
            {"source": "synthetic", "seed": 2, "centre": [121.561, 31.211]}]},                 # overlapping tiles
        {"code": "310114", "source": "synthetic", "seed": 1, "bbox": [121.3, 31.4, 121.2, 31.3]},  # bad bbox
        {"code": "310116", "source": "gis"},                                                   # unknown source
    ]
    problems = _problems(doc, tmp_path)
    expected = [
        "manifest: unknown key 'colour'",
        "tick_s: must be a number from 0.1 to 3600",
        "stream.url: must be a URL nats://host:port or tls://host:port, got 'http://x'",
        "stream.name: must be letters, digits",
        "mqtt.prefix: must be a topic prefix ending in '/'",
        "registry[0]: no registry file",
        "districts[0]: unknown key 'sorce'",
        "districts[1] (310104): duplicate code",
        "districts[2] (310199): code 310199 is not in the boundaries districts.geojson",
        "districts[3] (310105).seed: a synthetic source needs a seed",
        "districts[4] (310106).centre: [121.4365, 31.1885] is outside district 310106 (Jing'an)",
        "districts[5] (310107).source: no bundled district folder 'nowhere'",
        "districts[6] (310112).profile: must be one of central, suburban, got 'rural'",
        "districts[7] (310110).seed: applies to synthetic sources only",
        "districts[8] (310115): has tiles and source",
        "districts[8] (310115): tiles 1 and 2 overlap by",
        "districts[9] (310114).bbox: must be [west, south, east, north] in degrees",
        "districts[10] (310116).source: must be 'osm:<bundled folder>' or 'synthetic', got 'gis'",
    ]
    for text in expected:
        assert sum(text in p for p in problems) == 1, (text, problems)
    assert len(problems) == len(expected), problems


@pytest.mark.parametrize(("doc", "problem"), [
    ({"districts": []}, "districts: must be a non-empty list"),
    ({"districts": [{"source": "osm:bund"}]}, "districts[0]: has no code"),
    ({"boundaries": "nowhere.geojson"}, "boundaries: "),
    ({"city": "Shanghai"}, "city: must be a mapping"),
    ({"cell_m": 0}, "cell_m: must be a number from 1 to 500"),
])
def test_each_kind_of_problem_is_named(tmp_path, doc, problem):
    assert any(p.startswith(problem) for p in _problems(_doc(**doc), tmp_path))


def test_yaml_is_loaded_safely_and_bad_syntax_is_one_line(tmp_path):
    path = tmp_path / "city.yaml"
    path.write_text("districts: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(path)
    path.write_text("districts: [\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"line \d+, column \d+: not valid YAML"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "none.yaml")


def test_the_bundled_manifests_load():
    bund4 = load_manifest(data_dir() / "city" / "bund4.yaml")
    assert [d.partition for d in bund4.districts] == ["310101", "310109", "310110", "310115"]
    assert {d.source.describe() for d in bund4.districts} == {"osm:bund"}
    city = load_manifest(data_dir() / "city" / "shanghai16.yaml")
    assert {d.code for d in city.districts} == set(read_boundaries().codes)
    assert len(read_boundaries()) == 16
    tiles = [d for d in city.districts if d.code == "310115"]
    assert [(t.partition, t.tile, t.source.kind) for t in tiles] == [("310115-t1", 1, "osm"),
                                                                     ("310115-t2", 2, "synthetic")]
    real = {d.code for d in city.districts if d.source.kind == "osm"}
    assert real == {"310101", "310109", "310110", "310115"}
