"""The demo's story without a broker: simulator -> ingest admission step -> twin core, as fast as it computes.

The same decoding, validation, twin core and alert lifecycle as the live service, on the simulated
clock, with the field units answering the alerts the core routes to them, and the crowd counters counting
over the walkable areas of the core's twin (`Story.simulator`). Deterministic for a seed,
so tests and tuning can check what the story does (alerts of every hazard raised and cleared) in
seconds; ``twin demo`` runs the same story through a real broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import xarray as xr

from ingest.admission import Admission, batch_of
from ingest.registry import Registry
from ingest.rejection import Rejection
from scenarios.demo.story import Script, Story
from scenarios.feeds.simulator import Simulator
from twin.alerting.lifecycle import AlertEvent
from twin.alerting.store import Store
from twin.live.core import CoreConfig, LiveConfig, TwinCore


@dataclass
class OfflineRun:
    """What an offline story run produced."""

    events: list[tuple[float, AlertEvent]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    unit_messages: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    received: int = 0
    core: TwinCore | None = None
    """The core at the end (its store is closed)."""
    simulator: Simulator | None = None
    """The simulator at the end (`Simulator.sensors` says what densities the counters meant)."""

    def kinds(self, hazard: str) -> set[str]:
        """The event kinds (raised / updated / cancelled) seen for ``hazard``."""
        return {e.kind for _, e in self.events if e.alert.hazard == hazard}


def run_offline(story: Story, static: xr.Dataset, registry: Registry, *, tick_s: float = 10.0, seed: int = 0,
                until_s: float | None = None, road_network=None,
                on_tick: Callable[[float, TwinCore], None] | None = None) -> OfflineRun:
    """Play ``story`` for ``until_s`` simulated seconds (default its length) on a fresh core; ``on_tick(t, core)``
    is called after each tick (to look at the core's layers as they were). With ``road_network``
    (`twin.district.roads.RoadNetwork`, as ``twin demo`` has) traffic is on road links."""
    sim = story.simulator(static, registry, seed)
    script = Script(story)
    store = Store.open(":memory:")
    core = TwinCore(story.twin(static), registry, store,
                    CoreConfig(tick_s=tick_s, live=LiveConfig(road_network=road_network)))
    admission = Admission(registry, prefix=core.config.prefix)
    out = OfflineRun(core=core, simulator=sim)
    steps = round((story.length_s if until_s is None else until_s) / tick_s)
    try:
        for _ in range(steps):
            script.advance(sim)
            admitted = [admission.admit_fast(topic, payload, sim.t) for topic, payload in sim.step(tick_s)]
            batch = batch_of([r for r in admitted if type(r) is not Rejection])
            if len(batch):
                core.on_batch(batch)
            out.events += [(sim.t, e) for e in core.on_tick(sim.t).events]
            if on_tick is not None:
                on_tick(sim.t, core)
            out.unit_messages += _deliver_to_units(store, sim, core.config.prefix)
    finally:
        store.close()
    m = admission.metrics.snapshot()
    out.rejected, out.received, out.acks = dict(m.get("rejected", {})), int(m.get("received", 0)), dict(sim.units.acks)
    return out


def _deliver_to_units(store: Store, sim: Simulator, prefix: str) -> int:
    """Hand the outbox's unit messages to the simulated units and mark everything published."""
    n = 0
    for item in store.pending(10_000):
        parts = item.topic[len(prefix):].split("/")
        if len(parts) == 3 and parts[0] == "units" and parts[2] == "alerts" and item.payload:
            sim.respond(parts[1], item.payload)
            n += 1
        store.mark_published(item.seq)
    return n
