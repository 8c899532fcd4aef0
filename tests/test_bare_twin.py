"""A bare twin around a road network (twin.district.bare): neutral layers, road classes from the links."""

from __future__ import annotations

import numpy as np

from tests.test_road_segments import GRID, _network
from twin.district.bare import LANE_WIDTH_M, bare_twin
from twin.district.cim import FREE_FLOW_KMH, GROUND_M
from twin.district.dataset import grid_of
from twin.district.layers import ROAD_CLASSES


def test_the_bare_twin_has_its_roads_from_the_links_and_nothing_else():
    net, _ = _network()
    ds = bare_twin(GRID, net, source="test", district="synthetic", credit="none", license="CC0-1.0")
    assert grid_of(ds).shape == GRID.shape and ds.attrs["district"] == "synthetic"
    assert (ds["elevation"].values == GROUND_M).all() and (ds["building_fraction"].values == 0).all()
    assert (ds["water_mask"].values == 0).all() and (ds["walkable_area"].values == GRID.cell_area).all()
    cls = ds["road_class"].values.ravel()
    links = net.links
    on_road = np.unique(net.cell_index)
    assert (cls[on_road] > 0).all() and (np.delete(cls, on_road) == 0).all(), "road cells are those links cross"
    # a cell crossed by Wu Road (primary, arterial) and Geng Road (secondary) takes the arterial class and speed
    wu = links.index[links["name_en"] == "Wu Road"].to_numpy()
    geng = links.index[links["name_en"] == "Geng Road"].to_numpy()
    both = np.intersect1d(net.cell_index[np.isin(net.cell_link, wu)], net.cell_index[np.isin(net.cell_link, geng)])
    assert both.size and (cls[both] == ROAD_CLASSES.index("arterial")).all()
    assert (ds["free_flow_speed"].values.ravel()[both] == FREE_FLOW_KMH["arterial"]).all()
    # the carriageway share: a cell of Jia Road (2 lanes each way, 10 m cell) crossed along its whole side
    jia = links.index[links["name_en"] == "Jia Road"].to_numpy()
    lanes = links.loc[jia, "lanes"].to_numpy(float)
    share = ds["road_fraction"].values.ravel()
    cell = net.cell_index[np.isin(net.cell_link, jia)][0]
    rows = np.isin(net.cell_link, jia) & (net.cell_index == cell)
    expected = (net.cell_length_m[rows] * lanes[np.searchsorted(jia, net.cell_link[rows])] * LANE_WIDTH_M).sum()
    assert share[cell] == min(expected / GRID.cell_area, 1.0) and 0.0 < share[cell] <= 1.0
