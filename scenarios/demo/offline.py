"""The demo's story without a broker: simulator -> ingest admission step -> twin core, as fast as it computes.

The same decoding, validation, twin core, alert lifecycle and case desk as the live service, on the simulated
clock, with the field units answering the alerts the core routes to them and following the tasks its case desk
gives them (the core's outbox, `_deliver_to_units`, as ``twin demo``'s feed takes them from the broker), and the
crowd counters counting over the walkable areas of the core's twin (`Story.simulator`). Deterministic for a seed,
so tests and tuning can check what the story does (alerts of every hazard raised and cleared, cases opened,
dispatched, verified and closed) in seconds; ``twin demo`` runs the same story through a real broker.
Everything the core publishes also goes to a `Tally`, the demo watcher's view (``OfflineRun.tally``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import xarray as xr

from ingest.admission import Admission, batch_of
from ingest.registry import Registry
from ingest.rejection import Rejection
from scenarios.demo.story import Script, Story
from scenarios.demo.watch import Tally
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
    """Alerts handed to the units."""
    task_messages: int = 0
    """Task messages (tasks and withdrawals) handed to the units."""
    acks: dict[str, int] = field(default_factory=dict)
    task_answers: dict[str, int] = field(default_factory=dict)
    """Task answers the units sent, by status."""
    case_events: list[dict] = field(default_factory=list)
    """The ticks' case events (``TickReport.case_events``: case, kind, t, status, actor), in order."""
    tally: Tally = field(default_factory=Tally)
    """What the demo's watcher would have seen of the core's messages (alerts, cases, escalations)."""
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
    out = OfflineRun(core=core, simulator=sim, tally=Tally(core.config.prefix))
    steps = round((story.length_s if until_s is None else until_s) / tick_s)
    try:
        for _ in range(steps):
            script.advance(sim)
            admitted = [admission.admit_fast(topic, payload, sim.t) for topic, payload in sim.step(tick_s)]
            batch = batch_of([r for r in admitted if type(r) is not Rejection])
            if len(batch):
                core.on_batch(batch)
            report = core.on_tick(sim.t)
            out.events += [(sim.t, e) for e in report.events]
            out.case_events += list(getattr(report, "case_events", []))
            if on_tick is not None:
                on_tick(sim.t, core)
            alerts, tasks = _deliver_to_units(store, sim, core.config.prefix, out.tally)
            out.unit_messages += alerts
            out.task_messages += tasks
    finally:
        store.close()
    m = admission.metrics.snapshot()
    out.rejected, out.received, out.acks = dict(m.get("rejected", {})), int(m.get("received", 0)), dict(sim.units.acks)
    out.task_answers = dict(sim.units.task_answers)
    return out


def _deliver_to_units(store: Store, sim: Simulator, prefix: str, tally: Tally | None = None) -> tuple[int, int]:
    """Hand the outbox's messages for the units to the simulated units (a unit's alert: ``respond``; a unit's task:
    ``follow_task``; a public alert: ``observe_alert``), show every message to ``tally``, and mark everything
    published; returns (alerts, task messages) handed to units."""
    alerts = tasks = 0
    for item in store.pending(10_000):
        parts = item.topic[len(prefix):].split("/")
        if item.payload:
            if tally is not None:
                tally.on_message(item.topic, item.payload)
            if len(parts) == 3 and parts[0] == "units" and parts[2] == "alerts":
                sim.respond(parts[1], item.payload)
                alerts += 1
            elif len(parts) == 3 and parts[0] == "units" and parts[2] == "tasks":
                sim.follow_task(parts[1], item.payload)
                tasks += 1
            elif len(parts) == 2 and parts[0] == "alerts":
                sim.observe_alert(item.payload)
        store.mark_published(item.seq)
    return alerts, tasks
