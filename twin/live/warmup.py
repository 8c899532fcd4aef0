"""Compile the tick's numba kernels before the twin goes live.

numba compiles a kernel on its first call and keeps the machine code in its on-disk cache (``cache=True`` in
``models/kernels``). The first tick after installing therefore takes about 40 s on a 2-core machine (37 s
measured on the Bund at 10 m with an empty ``NUMBA_CACHE_DIR``); with the cache in place the same two ticks
take 0.7 s. A live twin whose first tick takes 40 s lets its inbound queue fill and shows nothing meanwhile, so
`warm_up` runs two ticks without data on a scratch core (the same grid, registry and settings, an in-memory
store, nothing published) before the service connects, and ``twin demo`` calls it before its story clock
starts. The kernels that only run with data (map matching of the first probes, the ingest key set) compile at
their first use, in about 2 s together.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

import xarray as xr

from ingest.registry import Registry
from twin.alerting.store import Store
from twin.live.core import CoreConfig, TwinCore

log = logging.getLogger(__name__)

_lock = threading.Lock()
_warmed: set[tuple] = set()
"""Grid shapes warmed in this process: kernels compile once per type signature, and the grid's size can choose
between a kernel's serial and parallel variants."""


def warm_up(static: xr.Dataset, registry: Registry, config: CoreConfig | None = None,
            say: Callable[[str], None] | None = None) -> float:
    """Run two empty ticks on a scratch core so that the live core's first tick finds its kernels compiled.

    Once per grid shape and process; returns the seconds it took (0.0 when already done). ``say`` is told
    before and after (``twin demo`` prints it; the service logs it).
    """
    config = config or CoreConfig()
    key = tuple(sorted(static.sizes.items()))
    with _lock:
        if key in _warmed:
            return 0.0
        (say or log.info)("preparing the models' kernels (the first run after installing compiles them: about "
                          "40 s on 2 cores; later runs take a second)")
        t0 = time.perf_counter()
        store = Store.open(":memory:")
        try:
            core = TwinCore(static, registry, store, config)
            t = time.time()
            core.on_tick(t)
            core.on_tick(t + config.tick_s)
        finally:
            store.close()
        _warmed.add(key)
        took = time.perf_counter() - t0
        (say or log.info)(f"models ready in {took:.1f} s")
        return took


def settle_heap() -> float:
    """Collect, then freeze, the process's heap; returns the seconds it took.

    CPython's cyclic garbage collector walks every tracked object at a full (oldest-generation) collection, and the
    collector runs one whenever the long-lived objects have grown by a quarter. A live twin's heap is mostly objects
    that live as long as the process (the grid and its layers' wrappers, the registry, the road network's frames,
    numba's dispatchers), so a full collection in the middle of a flood walked them all: on a heap of 1.2 million
    objects (a test process) each took 0.8–1.1 s, stalling the tick and the ingest (docs/liveness.md). After
    `gc.freeze` those objects sit in the permanent generation and collections walk only what came after them. A
    frozen object that later becomes part of a garbage cycle is not reclaimed: call this once the long-lived
    objects are built (after `warm_up`), not in a loop. Reference: the `gc.freeze` documentation
    (https://docs.python.org/3/library/gc.html#gc.freeze)."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    took = time.perf_counter() - t0
    log.info("heap settled: %d objects frozen in %.2f s", gc.get_freeze_count(), took)
    return took
