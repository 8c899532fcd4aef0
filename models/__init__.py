"""Numba kernels and thin xarray components for crowd, flood, traffic, risk and alert levels.

Imports nothing from ``twin``, ``ingest`` or ``scenarios``.

Public surface:

* components (each declares inputs/outputs with units; all are in :data:`COMPONENTS`):
  :class:`CrowdDensityFromCounts`, :class:`CrowdFusion`, :class:`CrowdOccupancy`, :class:`CrowdState`,
  :class:`FloodModel`,
  :class:`RainAccumulation`, :class:`ProbeSpeeds`, :class:`Congestion`, :class:`LoopDetectors`,
  :class:`AlertLevels` (the fused risk tick with its state machine);
* state machine: :class:`AlertMachine`, :class:`AlertState`, :func:`threshold_levels`,
  :func:`stale_mask`, :data:`LEVEL_NODATA`;
* configuration: :class:`CrowdConfig`, :class:`FloodConfig`, :class:`RainConfig`,
  :class:`TrafficConfig`, :class:`RiskConfig`, :class:`AlertTiming`;
* kernels live in :mod:`models.kernels` (numpy references in :mod:`models.reference`).
"""

from models._component import COMPONENTS, Component, InputError, MissingInputError, Reference, Var
from models.config import AlertTiming, CrowdConfig, FloodConfig, RainConfig, RiskConfig, TrafficConfig
from models.crowd import CrowdDensityFromCounts, CrowdFusion, CrowdOccupancy, CrowdState
from models.flood import FloodModel
from models.rain import RainAccumulation
from models.risk import (
    LEVEL_NODATA,
    AlertLevels,
    AlertMachine,
    AlertState,
    stale_mask,
    threshold_levels,
    tick_params,
)
from models.traffic import Congestion, LoopDetectors, ProbeSpeeds, cell_speeds_from_segments, segment_speeds

__all__ = [
    "COMPONENTS",
    "LEVEL_NODATA",
    "AlertLevels",
    "AlertMachine",
    "AlertState",
    "AlertTiming",
    "Component",
    "Congestion",
    "CrowdConfig",
    "CrowdDensityFromCounts",
    "CrowdFusion",
    "CrowdOccupancy",
    "CrowdState",
    "FloodConfig",
    "FloodModel",
    "InputError",
    "LoopDetectors",
    "MissingInputError",
    "ProbeSpeeds",
    "RainAccumulation",
    "RainConfig",
    "Reference",
    "RiskConfig",
    "TrafficConfig",
    "Var",
    "cell_speeds_from_segments",
    "segment_speeds",
    "stale_mask",
    "threshold_levels",
    "tick_params",
]

# macroscopic crowd flow for what-if scenarios (issue 8)
from models.config import CrowdFlowConfig
from models.crowdflow import CrowdFlow

__all__ += ["CrowdFlow", "CrowdFlowConfig"]
