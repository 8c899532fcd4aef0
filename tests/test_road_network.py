"""The directed road-link network (twin.district.roads; docs/science/roads.md)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from models.mapmatch import RoadGraph
from twin.district.dataset import grid_of, save_twin
from twin.district.grid import GridSpec
from twin.district.roads import (
    BRIDGE_HEIGHT_M,
    ELEVATED_HEIGHT_M,
    RAMP_HEIGHT_M,
    TUNNEL_DEPTH_M,
    Segment,
    build_road_network,
    links_from_osm,
    load_road_network,
    network_paths,
    road_network_for,
    road_network_from_sources,
    save_road_network,
    simplify_segments,
    ways_from_features,
)

CRS = "EPSG:4549"
PEOPLES_SQUARE = Path(__file__).resolve().parents[1] / "data" / "peoples_square" / "drive.osm"
X0, Y0 = 642000.0, 3458000.0


def _features(rows) -> gpd.GeoDataFrame:
    """Tile-like road features from (coords relative to X0, Y0, properties) in the grid CRS."""
    geoms = [shapely.LineString(np.asarray(c, dtype=float) + np.array([X0, Y0])) for c, _ in rows]
    props = [{"kind": "major_road", "id": 1, "name": "", "name:en": "", **p} for _, p in rows]
    return gpd.GeoDataFrame(props, geometry=geoms, crs=CRS)


def _net(rows, grid=None):
    return build_road_network(ways_from_features(_features(rows), CRS), grid)


@pytest.fixture(scope="module")
def bund_net(bund10, bund_sources):
    return road_network_from_sources(bund_sources, grid_of(bund10[0]))


# ---------------------------------------------------------------- direction
def test_a_two_way_road_gives_two_opposite_links_and_a_one_way_road_one():
    two = _net([([(0, 0), (50, 0), (100, 0)], {"kind_detail": "secondary", "id": 1})])
    assert len(two.links) == 2 and len(two.nodes) == 2
    a, b = two.links.iloc[0], two.links.iloc[1]
    assert (a.u, a.v) == (b.v, b.u)
    assert shapely.get_coordinates(a.geometry)[0].tolist() == shapely.get_coordinates(b.geometry)[-1].tolist()
    assert a.length_m == pytest.approx(100.0) and a.lanes == b.lanes == 2 and a.free_flow_kmh == 40.0

    one = _net([([(0, 0), (100, 0)], {"kind_detail": "primary", "oneway": "yes"})])
    assert len(one.links) == 1
    assert shapely.get_coordinates(one.links.geometry.iloc[0])[0].tolist() == [X0, Y0]

    rev = _net([([(0, 0), (100, 0)], {"kind_detail": "primary", "oneway": "-1"})])
    assert len(rev.links) == 1
    assert shapely.get_coordinates(rev.links.geometry.iloc[0])[0].tolist() == [X0 + 100, Y0]


def test_tags_give_lanes_speed_and_flags():
    net = _net([([(0, 0), (100, 0)], {"kind_detail": "trunk", "oneway": "yes", "is_bridge": 1, "lanes": "4",
                                      "maxspeed": "60 km/h", "name": "高架", "name:en": "Elevated"}),
                ([(100, 0), (200, 0)], {"kind_detail": "trunk_link", "oneway": "yes", "id": 2})])
    e, ramp = net.links.sort_values("osm_id").itertuples()
    assert (e.lanes, e.free_flow_kmh, e.bridge, e.elevated, e.road_class) == (4, 60.0, True, True, "expressway")
    assert (e.name, e.name_en) == ("高架", "Elevated")
    assert (ramp.lanes, ramp.free_flow_kmh, ramp.elevated) == (1, 80.0, False)
    assert e.v == ramp.u  # the ramp joins the elevated road's end


# ---------------------------------------------------------------- nodes
def test_tiles_cut_and_repeated_are_one_road_and_crossings_are_nodes():
    road = {"kind_detail": "secondary", "id": 7}
    rows = [([(0, 0), (50, 0), (60, 0)], road), ([(0, 0), (50, 0), (60, 0)], road),  # repeated in two tiles
            ([(60.2, 0.1), (100, 0)], road),  # cut at a tile edge, 0.22 m apart
            ([(50, -50), (50.3, 0.2), (50, 50)], {"kind_detail": "residential", "id": 8})]  # the crossing vertex
    net = _net(rows)
    # the secondary road splits only at the crossing (x=50), not at the tile edge (x=60)
    assert len(net.nodes) == 5 and len(net.links) == 8
    sec = net.links[net.links["osm_id"] == 7]
    assert np.allclose(sec["length_m"], 50.0, atol=0.3)  # snapped within SNAP_M


def test_a_tunnel_never_connects_to_the_surface_road_it_crosses():
    """A tunnel under a street (sharing a vertex at the crossing), with portals on surface roads at its ends."""
    rows = [([(-100, 0), (0, 0), (100, 0)], {"kind_detail": "primary", "id": 1}),  # street over the tunnel
            ([(0, -150), (0, -100)], {"kind_detail": "primary", "id": 2}),  # south approach
            ([(0, -100), (0, 0), (0, 100)], {"kind_detail": "primary", "id": 3, "is_tunnel": 1}),
            ([(0, 100), (0, 150)], {"kind_detail": "primary", "id": 4}),  # north approach
            ([(-50, 100), (0, 100), (50, 100)], {"kind_detail": "secondary", "id": 5})]  # street at the portal
    net = _net(rows)
    links = net.links
    tunnel = links[links["tunnel"]]
    street = links[links["osm_id"] == 1]
    assert len(tunnel) == 2 and len(street) == 2  # no node at the crossing: one link per direction
    assert set(tunnel[["u", "v"]].to_numpy().ravel()).isdisjoint(street[["u", "v"]].to_numpy().ravel())
    assert tunnel["length_m"].iloc[0] == pytest.approx(200.0)
    # at its ends the tunnel does connect: to the approaches and, at the north portal, the cross street
    g = net.graph()
    south = links[links["osm_id"] == 2]
    north_street = links[links["osm_id"] == 5]
    assert nx.has_path(g, int(south["u"].iloc[0]), int(north_street["v"].iloc[0]))
    assert not nx.has_path(g.subgraph(set(g) - set(tunnel["u"]) - set(tunnel["v"])).copy(),
                           int(south["u"].iloc[0]), int(street["u"].iloc[0]))


def test_an_elevated_road_passes_over_a_street_without_a_node():
    rows = [([(-100, 0), (0, 0), (100, 0)], {"kind_detail": "primary", "id": 1}),
            ([(0, -100), (0, 0), (0, 100)], {"kind_detail": "trunk", "id": 2, "is_bridge": 1, "oneway": "yes"})]
    net = _net(rows)
    assert len(net.nodes) == 4 and len(net.links) == 3
    assert net.links.loc[net.links["osm_id"] == 2, "elevated"].all()



def test_link_heights_from_the_flags():
    """The height of each link above the ground that the map matcher compares with a fix's altitude."""
    rows = [([(-100, 0), (0, 0), (100, 0)], {"kind_detail": "primary", "id": 1}),
            ([(0, -100), (0, 0), (0, 100)], {"kind_detail": "trunk", "id": 2, "is_bridge": 1, "oneway": "yes"}),
            ([(0, 100), (60, 160)], {"kind_detail": "trunk_link", "id": 3, "is_bridge": 1, "oneway": "yes"}),
            ([(200, -100), (200, 100)], {"kind_detail": "secondary", "id": 4, "is_bridge": 1}),
            ([(300, -100), (300, 100)], {"kind_detail": "secondary", "id": 5, "is_tunnel": 1})]
    net = _net(rows)
    arrays = net.graph_arrays()
    height = dict(zip(net.links["osm_id"], arrays["link_height"], strict=True))
    assert height == {1: 0.0, 2: ELEVATED_HEIGHT_M, 3: RAMP_HEIGHT_M, 4: BRIDGE_HEIGHT_M, 5: -TUNNEL_DEPTH_M}
    assert np.array_equal(RoadGraph(**arrays).link_height, arrays["link_height"])


# ---------------------------------------------------------------- simplification
def test_chains_merge_only_where_name_class_and_flags_agree():
    a = {"kind_detail": "secondary", "id": 1, "name": "甲路"}
    rows = [([(0, 0), (50, 0)], a), ([(50, 0), (100, 0)], {**a, "id": 2}),  # merges: same road
            ([(100, 0), (150, 0)], {**a, "id": 3, "name": "乙路"}),  # another name: a node stays at x=100
            ([(150, 0), (200, 0)], {**a, "id": 4, "name": "乙路", "is_bridge": 1})]  # a bridge: node at 150
    net = _net(rows)
    assert len(net.nodes) == 4 and len(net.links) == 6
    assert sorted(net.links["length_m"].round(6).unique().tolist()) == [50.0, 100.0]


@st.composite
def _segment_graphs(draw):
    n = draw(st.integers(2, 8))
    xy = np.array(draw(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=n, max_size=n,
                                unique=True)), dtype=float) * 10
    segs = []
    for _ in range(draw(st.integers(1, 14))):
        u, v = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        mid = xy[u] + (xy[v] - xy[u]) / 2 + [draw(st.integers(-5, 5)), 3.0]
        segs.append(Segment(u, v, np.array([xy[u], mid, xy[v]]), (draw(st.sampled_from("ab")),),
                            draw(st.booleans())))
    return segs


def _node_ends(segs):
    out = {}
    for i, s in enumerate(segs):
        out.setdefault(s.u, []).append(i)
        out.setdefault(s.v, []).append(i)
    return out


@settings(max_examples=300, deadline=None)
@given(_segment_graphs())
def test_simplifying_keeps_length_and_the_nodes_that_matter(segs):
    merged = simplify_segments(segs)
    assert sum(s.length for s in merged) == pytest.approx(sum(s.length for s in segs), rel=1e-9)
    before, after = _node_ends(segs), _node_ends(merged)
    kept = {n for n, e in before.items() if len(e) != 2 or len(set(e)) == 1}
    assert kept <= set(after)  # dead ends, junctions and loops stay nodes
    assert set(after) <= set(before)
    pos = {x.u: x.coords[0] for x in segs} | {x.v: x.coords[-1] for x in segs}
    for s in merged:  # a continuous line from its u to its v, made of segments of one kind
        assert len(s.coords) >= 2
        np.testing.assert_array_equal(s.coords[0], pos[s.u])
        np.testing.assert_array_equal(s.coords[-1], pos[s.v])
        assert (s.key, s.oneway) in {(x.key, x.oneway) for x in segs}
    assert len(merged) <= len(segs)


# ---------------------------------------------------------------- the Bund
def test_the_bund_network_is_mostly_strongly_connected(bund_net):
    g = bund_net.graph()
    scc = max(nx.strongly_connected_components(g), key=len)
    links = bund_net.links
    inside = links["u"].isin(scc) & links["v"].isin(scc)
    assert links.loc[inside, "length_m"].sum() / links["length_m"].sum() > 0.75
    assert len(links) > 1500 and len(bund_net.nodes) > 800
    assert (links["link_id"].to_numpy() == np.arange(len(links))).all()
    assert set(links["road_class"]) <= {"expressway", "arterial", "secondary", "branch"}


def test_east_zhongshan_no_1_road_runs_both_ways_as_named_links(bund_net):
    links = bund_net.links
    bund = links[links["name"] == "中山东一路"]
    assert len(bund) >= 6 and (bund["name_en"] == "East Zhongshan No. 1 Road").all()
    # the road runs roughly north-south along the river: both directions are there
    xy = np.array([shapely.get_coordinates(g)[[0, -1]] for g in bund.geometry])
    dy = xy[:, 1, 1] - xy[:, 0, 1]
    north, south = bund.loc[dy > 0, "length_m"].sum(), bund.loc[dy < 0, "length_m"].sum()
    assert north > 500 and south > 500


def test_bund_tunnels_do_not_touch_the_streets_they_pass_under(bund_net):
    links = bund_net.links
    tunnels, surface = links[links["tunnel"]], links[~links["tunnel"] & ~links["bridge"]]
    assert len(tunnels) >= 20
    crossings = 0
    for t in tunnels.itertuples():
        ends = shapely.get_coordinates(t.geometry)[[0, -1]]
        hits = surface[surface.geometry.crosses(t.geometry)]
        for s in hits.itertuples():
            p = shapely.get_coordinates(shapely.intersection(s.geometry, t.geometry))
            if np.min(np.hypot(*(p[:, None, :] - ends[None, :, :]).transpose(2, 0, 1))) > 5.0:
                crossings += 1
                assert not {t.u, t.v} & {s.u, s.v}
    assert crossings > 10


def test_link_cell_lengths_add_up_to_each_link(bund_net):
    total = np.bincount(bund_net.cell_link, weights=bund_net.cell_length_m, minlength=len(bund_net.links))
    np.testing.assert_allclose(total, bund_net.links["length_m"].to_numpy(), rtol=1e-6)
    assert (bund_net.cell_length_m > 0).all() and bund_net.cell_index.min() >= 0


def test_cell_lengths_on_a_diagonal_cut_exactly():
    """A line through cell corners: half a diagonal in the end cells, a whole one in each cell between."""
    grid = GridSpec(CRS, X0, Y0 + 100, 10.0, 10, 10)
    net = _net([([(5, 5), (95, 95)], {"kind_detail": "primary", "oneway": "yes"})], grid)
    k = np.arange(10)
    assert net.cell_index.tolist() == sorted(grid.flat_index(9 - k, k).tolist())
    by_cell = dict(zip(net.cell_index.tolist(), net.cell_length_m, strict=True))
    expected = np.where((k == 0) | (k == 9), 5.0, 10.0) * np.sqrt(2)
    np.testing.assert_allclose([by_cell[int(c)] for c in grid.flat_index(9 - k, k)], expected, rtol=1e-12)


# ---------------------------------------------------------------- files
def test_save_and_load_give_the_same_network(bund_net, bund10, tmp_path):
    grid = grid_of(bund10[0])
    path = tmp_path / "bund.nc"
    save_road_network(path, bund_net, grid)
    back = load_road_network(path, grid)
    assert all(p.is_file() for p in network_paths(path))
    assert back.links.crs == bund_net.links.crs
    assert_geodataframe_equal(back.links, bund_net.links)
    assert_geodataframe_equal(back.nodes, bund_net.nodes)
    for name in ("cell_link", "cell_index", "cell_length_m"):
        np.testing.assert_array_equal(getattr(back, name), getattr(bund_net, name))
    other = GridSpec(grid.crs, grid.x0, grid.y0, 20.0, 10, 10)
    with pytest.raises(ValueError, match="another grid"):
        load_road_network(path, other)


def test_a_twin_file_finds_its_network_and_a_new_twin_drops_the_old(bund10, bund_sources, tmp_path):
    ds = bund10[0]
    path = save_twin(tmp_path / "t.nc", ds, None)
    net = road_network_for(path, bund_sources)  # built and written
    assert network_paths(path)[0].is_file()
    again = road_network_for(path)  # read
    assert len(again.links) == len(net.links)
    save_twin(path, ds, None)
    assert not any(p.exists() for p in network_paths(path))


# ---------------------------------------------------------------- OSM XML
OSM = """<?xml version='1.0' encoding='utf-8'?>
<osm version="0.6">
  <node id="1" lon="121.4700" lat="31.2300"/><node id="2" lon="121.4710" lat="31.2300"/>
  <node id="3" lon="121.4720" lat="31.2300"/><node id="4" lon="121.4710" lat="31.2290"/>
  <node id="5" lon="121.4710" lat="31.2310"/><node id="6" lon="121.4730" lat="31.2300"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="primary"/><tag k="name" v="甲路"/><tag k="name:en" v="Jia Road"/><tag k="lanes" v="4"/></way>
  <way id="11"><nd ref="4"/><nd ref="2"/><nd ref="5"/>
    <tag k="highway" v="secondary"/><tag k="oneway" v="yes"/><tag k="maxspeed" v="30"/></way>
  <way id="12"><nd ref="3"/><nd ref="6"/>
    <tag k="highway" v="trunk"/><tag k="bridge" v="yes"/><tag k="layer" v="1"/><tag k="oneway" v="-1"/></way>
  <way id="13"><nd ref="1"/><nd ref="4"/><tag k="highway" v="footway"/></way>
  <way id="14"><nd ref="5"/><nd ref="6"/><tag k="highway" v="service"/><tag k="service" v="parking_aisle"/></way>
</osm>"""


def test_the_osm_builder_on_a_small_file(tmp_path):
    path = tmp_path / "small.osm"
    path.write_text(OSM, encoding="utf-8")
    net = links_from_osm(path, CRS)
    links = net.links
    # way 10 split at node 2 (two links each way), way 11 split at node 2 (one way), way 12 one link reversed
    assert len(net.nodes) == 6 and len(links) == 4 + 2 + 1
    jia = links[links["osm_id"] == 10]
    assert (jia["lanes"] == 2).all() and (jia["name_en"] == "Jia Road").all() and (jia["free_flow_kmh"] == 50).all()
    assert (links.loc[links["osm_id"] == 11, "free_flow_kmh"] == 30).all()
    trunk = links[links["osm_id"] == 12].iloc[0]
    assert trunk.elevated and trunk.bridge and trunk.lanes == 3
    x = shapely.get_coordinates(trunk.geometry)[:, 0]
    assert x[0] > x[-1]  # oneway=-1: against the drawing, east to west
    assert trunk.v in set(jia["u"]) | set(jia["v"])  # the elevated road's end joins way 10 at node 3
    clipped = links_from_osm(path, CRS, bbox=(121.4695, 31.2285, 121.4715, 31.2315))
    assert clipped.links["length_m"].sum() < links["length_m"].sum()


def test_the_osm_builder_on_the_peoples_square_drive_network():
    net = links_from_osm(PEOPLES_SQUARE, CRS)
    s = net.summary()
    assert (s["links"], s["nodes"]) == (1352, 627)
    assert sum(s["km_by_class"].values()) == pytest.approx(123.2, abs=0.1)
    assert s["tunnel_links"] == 11 and s["elevated_links"] == 72
