"""``twin city build``: a table of the districts, the cache on a second run, one error and exit 2 on bad input."""

from __future__ import annotations

import argparse

import pytest

from twin.cli.city import add_parser

SMALL = """\
city: {name: 小城, name_en: Small town}
cell_m: 20
districts:
  - {code: "310104", source: synthetic, seed: 3, centre: [121.4365, 31.1885], size_m: 600}
  - {code: "310105", source: synthetic, seed: 4, centre: [121.4180, 31.2200], size_m: [600, 400], profile: suburban}
"""


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="twin")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_build_prints_the_table_then_uses_the_cache(tmp_path, capsys):
    manifest = tmp_path / "small.yaml"
    manifest.write_text(SMALL, encoding="utf-8")
    cache = tmp_path / "cache"
    assert _run(["city", "build", str(manifest), "--cache", str(cache), "--no-network"]) == 0
    out, err = capsys.readouterr()
    assert "310104: grid" in err and "310105: sources" in err
    rows = {line.split()[0]: line for line in out.splitlines() if line[:6] in ("310104", "310105")}
    assert set(rows) == {"310104", "310105"} and "synthetic central seed 3" in rows["310104"]
    assert (cache / "310104" / "grid-20m.nc").is_file() and (cache / "raster-100m.npz").is_file()
    assert _run(["city", "build", str(manifest), "--cache", str(cache), "--no-network", "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and all(line.rstrip().endswith("cached") for line in out.splitlines()
                             if line[:6] in ("310104", "310105"))


def test_a_bad_manifest_is_one_error_with_every_problem_and_exit_2(tmp_path, capsys):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("districts:\n  - {code: '310199', source: synthetic}\n  - {code: '310104', source: x}\n",
                        encoding="utf-8")
    assert _run(["city", "build", str(manifest), "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"twin: error: {manifest}: 2 problems")
    assert "310199 is not in the boundaries" in err and "must be 'osm:<bundled folder>' or 'synthetic'" in err


def test_an_unknown_district_and_a_bad_option_are_refused(tmp_path, capsys):
    manifest = tmp_path / "small.yaml"
    manifest.write_text(SMALL, encoding="utf-8")
    assert _run(["city", "build", str(manifest), "--cache", str(tmp_path), "--district", "310999"]) == 2
    assert "no district 310999" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _run(["city", "build", str(manifest), "--raster-cell", "0"])
    assert info.value.code == 2
