"""Issue 20, done when: a simulated fleet over JT/T 808 drives the traffic estimates as the NMEA probes do.

The demo's 40 probe vehicles drive the Bund's roads for ten minutes with East Zhongshan No. 1 Road slowed to 30 % of
its free speed (`scenarios.feeds.simulator.Simulator`). Every report is sent twice: once as the NMEA RMC+GGA the
simulator publishes, once as the JT/T 808 location frame (0x0200) a vehicle terminal sends for the same fix, as the
gateway publishes it on ``city/beidou/{device}``. Each stream goes through the admission step (registry, terminal
phone number, time skew, dedupe) into a twin of its own; the two twins' link speeds must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingest.admission import Admission
from ingest.batch import Batch
from ingest.decoders import encode_jt808, nmea_records
from ingest.registry import terminal_phone
from ingest.rejection import Reason, Rejection
from scenarios.feeds.simulator import FeedConfig, Simulator
from twin.alerting.store import Store
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig

MINUTES = 10
TICK_S = 5.0
SLOW_ROAD = "East Zhongshan No. 1 Road"
SLOW_ROAD_ZH = "中山东一路"


@pytest.fixture(scope="module")
def drive():
    """The simulator's vehicle reports, one list of (device, NMEA payload, time) per simulated second."""
    sim = Simulator(FeedConfig(seed=3, vehicles=40, gcj_share=0.0, bad_share=0.0, storm_return_period_yr=None,
                               congestion={SLOW_ROAD: 0.3}))
    steps = []
    for _ in range(MINUTES * 60):
        msgs = sim.step(1.0)
        steps.append((sim.t, [(topic.rsplit("/", 1)[1], payload) for topic, payload in msgs
                              if topic.startswith("city/beidou/veh-")]))
    return sim.registry, steps


def _as_jt808(registry, device: str, payload: bytes, t: float, serial: int) -> bytes:
    """The JT/T 808 frame a terminal sends for the fix of an NMEA payload (2013 and 2019 terminals alternate)."""
    fix = nmea_records(payload, device=device, received_at=t)
    assert len(fix) == 1
    version = 2019 if int(device[-3:]) % 2 else 2013
    return encode_jt808(fix, phone=terminal_phone(registry.get(device)), serial=serial, version=version)


def _twin(bund10, registry, network) -> TwinCore:
    return TwinCore(bund10[0], registry, Store.open(":memory:"),
                    CoreConfig(tick_s=TICK_S, live=LiveConfig(road_network=network)))


def _run(bund10, bund_network, registry, steps, encode) -> tuple[TwinCore, dict]:
    """Admit every report (encoded by ``encode``) into a fresh twin, ticking every ``TICK_S``; the twin and the
    refusals by reason."""
    core, admission = _twin(bund10, registry, bund_network), Admission(registry)
    refused: dict[str, int] = {}
    serial = 0
    for t, msgs in steps:
        for device, payload in msgs:
            serial += 1
            out = admission.admit(f"city/beidou/{device}", encode(device, payload, t, serial), t)
            if isinstance(out, Rejection):
                refused[out.reason] = refused.get(out.reason, 0) + 1
            elif len(out):
                core.on_batch(out)
        if t % TICK_S == 0:
            core.on_tick(t)
    return core, refused


def test_a_fleet_over_jt808_gives_the_link_speeds_of_the_same_fleet_over_nmea(bund10, bund_network, drive):
    registry, steps = drive
    sent = sum(len(msgs) for _, msgs in steps)
    nmea, refused_nmea = _run(bund10, bund_network, registry, steps, lambda d, p, t, s: p)
    jt808, refused_jt808 = _run(bund10, bund_network, registry, steps,
                                lambda d, p, t, s: _as_jt808(registry, d, p, t, s))
    assert sent > 4000 and refused_nmea == {} and refused_jt808 == {}
    a = nmea.models.link_layers["link_speed"].values
    b = jt808.models.link_layers["link_speed"].values
    driven = ~np.isnan(a)
    assert driven.sum() >= 50, "the fleet drives many links"
    both = driven & ~np.isnan(b)
    # the two formats round a fix differently (NMEA to 1e-4 arc minute, 0.19 m; JT/T 808 to 1e-6 degree, 0.11 m): a
    # fix right at the edge between two links may be matched to the other one
    assert (driven != ~np.isnan(b)).sum() <= 0.01 * driven.sum()
    diff = np.abs(a[both] - b[both])
    print(f"\nlinks {driven.sum()} / {(~np.isnan(b)).sum()} / both {both.sum()}; |diff| median {np.median(diff):.3f} "
          f"p95 {np.percentile(diff, 95):.3f} max {diff.max():.3f} km/h")
    assert np.median(diff) <= 0.1 and np.percentile(diff, 95) <= 0.5, "speeds agree within the formats' resolutions"
    links = bund_network.links
    slow = (links["name"] == SLOW_ROAD_ZH).to_numpy() & driven
    free = links["free_flow_kmh"].to_numpy()
    assert slow.sum() >= 3
    ratio_slow, ratio_other = (np.nanmedian(b[m] / free[m]) for m in (slow, driven & ~slow))
    print(f"speed / free-flow speed: slowed road {ratio_slow:.2f}, the others {ratio_other:.2f}")
    assert ratio_slow < 0.7 * ratio_other, "the slowed road is slow over JT/T 808 too"
    matched = [c.models.links.probes.matcher.counts["fixes"] for c in (nmea, jt808)]
    assert matched[0] == matched[1] > 4000


def test_a_frame_from_another_terminal_on_a_vehicles_topic_is_refused(drive):
    """The gateway publishes a terminal's frames on its device's topic; a frame carrying another terminal's phone
    number there is an identity mismatch, whatever the frame says."""
    registry, steps = drive
    device, payload = steps[10][1][0]
    other = next(d for d in registry.of_kind("vehicle") if d.id != device)
    fix = nmea_records(payload, device=device, received_at=steps[10][0])
    frame = encode_jt808(fix, phone=terminal_phone(other), serial=1)
    out = Admission(registry).admit(f"city/beidou/{device}", frame, steps[10][0])
    assert isinstance(out, Rejection) and out.reason == Reason.IDENTITY_MISMATCH


def test_the_same_fix_sent_again_is_a_duplicate(drive):
    """A terminal that got no answer sends its report again: the twin counts it once."""
    registry, steps = drive
    t, msgs = steps[20]
    device, payload = msgs[0]
    frame = _as_jt808(registry, device, payload, t, 7)
    admission = Admission(registry)
    first = admission.admit(f"city/beidou/{device}", frame, t)
    again = admission.admit(f"city/beidou/{device}", frame, t + 10.0)
    assert isinstance(first, Batch) and len(first) == 1 and len(again) == 0
    assert admission.metrics.duplicates == 1
