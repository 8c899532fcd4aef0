"""Numba kernels and thin xarray components for crowd, flood, traffic, risk and alert levels.

Imports nothing from ``twin``, ``ingest`` or ``scenarios``.

Public surface:

* components (each declares inputs/outputs with units; all are in :data:`COMPONENTS`):
  :class:`CrowdDensityFromCounts`, :class:`CrowdFusion`, :class:`CrowdState`, :class:`FloodModel`,
  :class:`RainAccumulation`, :class:`ProbeSpeeds`, :class:`Congestion`, :class:`LoopDetectors`,
  :class:`AlertLevels` (the fused risk tick with its state machine);
* state machine: :class:`AlertMachine`, :class:`AlertState`, :func:`threshold_levels`;
* configuration: :class:`CrowdConfig`, :class:`FloodConfig`, :class:`RainConfig`,
  :class:`TrafficConfig`, :class:`RiskConfig`, :class:`AlertTiming`;
* kernels live in :mod:`models.kernels` (numpy references in :mod:`models.reference`).
"""

from models._component import COMPONENTS, Component, InputError, MissingInputError, Reference, Var
from models.config import AlertTiming, CrowdConfig, FloodConfig, RainConfig, RiskConfig, TrafficConfig
from models.crowd import CrowdDensityFromCounts, CrowdFusion, CrowdState
from models.flood import FloodModel
from models.rain import RainAccumulation
from models.risk import AlertLevels, AlertMachine, AlertState, threshold_levels, tick_params
from models.traffic import Congestion, LoopDetectors, ProbeSpeeds, segment_speeds

__all__ = [
    "COMPONENTS",
    "AlertLevels",
    "AlertMachine",
    "AlertState",
    "AlertTiming",
    "Component",
    "Congestion",
    "CrowdConfig",
    "CrowdDensityFromCounts",
    "CrowdFusion",
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
    "segment_speeds",
    "threshold_levels",
    "tick_params",
]
