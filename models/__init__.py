"""Numba kernels and thin xarray components for crowd, flood, traffic, risk and alert levels.

Imports nothing from ``twin``, ``ingest`` or ``scenarios``.

Public surface:

* components (each declares inputs/outputs with units; all are in :data:`COMPONENTS`, and where
  each runs is in docs/models-in-the-tick.md):
  :class:`CrowdFusion`, :class:`CrowdState`, :class:`CrowdFlow`, :class:`FloodModel`,
  :class:`RainAccumulation`, :class:`ProbeSpeeds`, :class:`LoopDetectors`, :class:`Congestion`,
  :class:`AlertLevels` (the fused risk tick with the level state machine), :class:`RiverSignal` (the river
  level warning);
* level state and staleness: :class:`AlertState`, :func:`stale_mask`, :data:`LEVEL_NODATA`;
* configuration: :class:`CrowdConfig`, :class:`FloodConfig`, :class:`RainConfig`,
  :class:`TrafficConfig`, :class:`RiverConfig`, :class:`RiskConfig`, :class:`AlertTiming`, :class:`CrowdFlowConfig`;
* kernels live in :mod:`models.kernels` (numpy references in :mod:`models.reference`).
"""

from models._component import COMPONENTS, Component, InputError, MissingInputError, Reference, Var
from models.config import AlertTiming, CrowdConfig, FloodConfig, RainConfig, RiskConfig, RiverConfig, TrafficConfig
from models.crowd import CrowdFusion, CrowdState
from models.flood import FloodModel, Hydrograph, Inflow
from models.rain import RainAccumulation
from models.risk import LEVEL_NODATA, AlertLevels, AlertState, RiverSignal, stale_mask, tick_params
from models.traffic import Congestion, LoopDetectors, ProbeSpeeds, cell_speeds_from_segments, segment_speeds

__all__ = [
    "COMPONENTS",
    "LEVEL_NODATA",
    "AlertLevels",
    "AlertState",
    "AlertTiming",
    "Component",
    "Congestion",
    "CrowdConfig",
    "CrowdFusion",
    "CrowdState",
    "FloodConfig",
    "FloodModel",
    "Hydrograph",
    "Inflow",
    "InputError",
    "LoopDetectors",
    "MissingInputError",
    "ProbeSpeeds",
    "RainAccumulation",
    "RainConfig",
    "Reference",
    "RiskConfig",
    "RiverConfig",
    "RiverSignal",
    "TrafficConfig",
    "Var",
    "cell_speeds_from_segments",
    "segment_speeds",
    "stale_mask",
    "tick_params",
]

# macroscopic crowd flow for what-if scenarios (issue 8)
from models.config import CrowdFlowConfig
from models.crowdflow import CrowdFlow

# map matching of probe fixes to road links and space-mean link speeds (issue 15)
from models.mapmatch import LinkSpeeds, MapMatchConfig, MapMatcher, RoadGraph, traversals

__all__ += ["CrowdFlow", "CrowdFlowConfig"]
__all__ += ["LinkSpeeds", "MapMatchConfig", "MapMatcher", "RoadGraph", "traversals"]
