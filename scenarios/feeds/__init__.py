"""Synthetic feeds for ``twin simulate``: the Bund's sensors, Beidou vehicles and field units over MQTT.

``Simulator(FeedConfig(...)).step(dt)`` returns the ``(topic, payload)`` pairs of one simulated step
(deterministic for a seed); ``Publisher(url).run(sim, duration_s, speed=...)`` sends them at QoS 1.
Messages are made with the ``ingest`` encoders, so they follow docs/contract/mqtt.md 3.1 by construction.
"""

from scenarios.feeds.roads import RoadGraph, load_road_graph, road_graph_from_geojson
from scenarios.feeds.sensors import Storm, storm_depth_mm
from scenarios.feeds.simulator import FeedConfig, Publisher, Simulator

__all__ = ["FeedConfig", "Publisher", "RoadGraph", "Simulator", "Storm", "load_road_graph",
           "road_graph_from_geojson", "storm_depth_mm"]
