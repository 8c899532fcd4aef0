"""The demo's storyline: one New Year's Eve hour on the Bund, in simulated time.

Everything is relative to the story's start (22:00 +08:00 on 2025-12-31, the simulator's default):

- crowd: the New Year's Eve profile (``scenarios.feeds.sensors``) squeezed so that its evening rise,
  midnight peak and dispersal fit in the hour; the busiest counter (Chen Yi Square) peaks at
  ``crowd_peak`` = 6 person m-2 at ``crowd_peak_s`` (22:25). The counters count people per m2 of the walkable
  area the twin divides their counts by (`Story.simulator`), so the twin reads these densities, noise (3 %)
  aside. Chen Yi Square is above Still's critical 4 person m-2 (orange) from 22:17:46 to 22:30:23 and above
  5, where he calls a crowd dangerous (red), from 22:20:35 to 22:27:40 (thresholds:
  ``models.config.CrowdConfig.density_raise``), so its crowd alert turns red because the crowd is that
  dense, not because it is rising;
- rain: a Chicago design storm on the Shanghai formula (docs/science/flood.md 2.2) of ``storm_return_period_yr``
  and ``storm_duration_min``. The district's pipes take ``drainage_mm_h`` (the 3-year storm over a
  20-minute time of concentration, 93 mm/h: GB 50014 asks 3-5 years of central districts of very large
  cities) and the underpasses' older pump stations ``pump_mm_h`` over their catchments (the 2-year
  hourly rate, 46 mm/h), so the streets stay nearly dry while the tunnel portals' gauges see the
  storm's core flood them (13-31 cm) and the pumps drain them after it (see `Story.twin`). The storm's
  31 mm stay below the Shanghai blue rainstorm signal (35 mm in 1 h), which would hold for an hour;
- traffic: East Zhongshan No. 1 Road slows to ``jam_factor`` of its free speed from ``jam_from_s`` to
  ``jam_until_s`` (vehicles and loop detectors follow);
- a share ``bad_share`` of bad messages all along (broken checksums, unknown devices, garbage);
- citizens: at ``report_at_s`` (22:12) a caller tells the 12345 hotline of water on the road near the Yan'an Rd E.
  Tunnel Puxi portal (`CALLS`: a report on ``city/reports/12345``, WGS84, about 45 m from the portal's gauge, whose
  flood alert has then opened a case), and a minute later a second citizen reports the same water in the city app
  (in GCJ-02, as Chinese map apps give it): the twin links both to the flood's case, which is dispatched, verified
  and closed with it.

The alerts open cases by the twin's rules (crowd and flood from yellow, traffic from orange), the case desk sends
the nearest free unit of the right duty and the simulated units follow their tasks (`scenarios.feeds.units`); the
sensors verify a disposed case once its alerts have been cancelled for 5 minutes, and the twin closes it. The last
alerts clear at about 22:44 offline (a traffic alert on a link next to the jam can linger until about 22:51 in
``twin demo``, where timing varies), so the last case closes at about 22:49 to 22:56; ``length_s`` leaves room, and
the demo ends as soon as every alert has been cancelled and every case closed.

`Story.beats` lists what happens when, with the action that makes it happen (the simulator is
driven by them) and a line for the console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import ndimage

from ingest.registry import Registry
from models.design_storm import shanghai_storm_intensity
from scenarios.feeds.sensors import twin_walkable_m2
from scenarios.feeds.simulator import DEFAULT_START, FeedConfig, Simulator
from twin.district.cim import DEFAULT_DRAINAGE_MM_H
from twin.district.geo import wgs84_to_gcj02

PROFILE_HOURS_BEFORE_PEAK = 6.0
"""Hours of the real profile shown before its maximum (the evening rise) [h]."""
PROFILE_HOURS_AFTER_PEAK = 5.0
"""Hours of the real profile shown after its maximum (the dispersal, to near zero) [h]."""
PROFILE_HOURS = 24.0
SUMP_RATIO = 14.0
"""Catchment area / sump area of an underpass pump station: the mean catchment ratio of the simulated
water gauges (8-20, ``scenarios.feeds.sensors``), so the twin's sump cells drain what the pumps do [1]."""


@dataclass(frozen=True)
class Beat:
    """Something that happens ``at_s`` simulated seconds into the story."""

    at_s: float
    text: str
    action: Callable[[Simulator], None] | None = None


@dataclass(frozen=True)
class Story:
    """The storyline's settings; times in simulated seconds from the start unless named."""

    start: float = DEFAULT_START
    length_s: float = 4200.0
    """Simulated seconds at most: the water has drained by about 41 min, the crowd gone by 46 and the last case is
    closed by about 49 to 56 (see the module docstring)."""
    crowd_peak: float = 6.0
    """Density of the busiest counter (Chen Yi Square) at the profile's maximum, per m2 of walkable ground
    [person m-2]: above the red threshold (5) for seven minutes of the story."""
    crowd_rise_s: float = 1500.0
    """Simulated seconds the profile's evening rise (its last 6 hours before the peak) takes."""
    storm_return_period_yr: float = 3.0
    storm_duration_min: float = 20.0
    storm_start_s: float = 120.0
    drainage_mm_h: float = round(shanghai_storm_intensity(3.0, 20.0), 1)
    """Street drainage [mm h-1], where the twin has the default capacity."""
    pump_mm_h: float = round(shanghai_storm_intensity(2.0, 60.0), 1)
    """Underpass pump stations, as a rain intensity over their catchments [mm h-1]."""
    jam_road: str = "East Zhongshan No. 1 Road"
    jam_factor: float = 0.25
    jam_from_s: float = 900.0
    jam_until_s: float = 2100.0
    bad_share: float = 0.02
    report_at_s: float = 720.0
    """When the hotline call comes (22:12) [s from the start]; the app report follows ``report_again_s`` later."""
    report_again_s: float | None = 60.0
    """Seconds from the call to the second report of the same water (None: no second report)."""

    @property
    def crowd_peak_s(self) -> float:
        """When the crowd peaks [s from the start]."""
        return self.crowd_rise_s

    @property
    def crowd_span_s(self) -> float:
        """Simulated seconds the whole 24-hour profile is squeezed into [s]."""
        return self.crowd_rise_s / PROFILE_HOURS_BEFORE_PEAK * PROFILE_HOURS

    @property
    def crowd_gone_s(self) -> float:
        """When the profile has fallen to its overnight low [s from the start]."""
        return self.crowd_rise_s * (1 + PROFILE_HOURS_AFTER_PEAK / PROFILE_HOURS_BEFORE_PEAK)

    def check(self) -> None:
        """Raise ``ValueError`` naming every inconsistent setting."""
        problems = []
        if not 0 < self.jam_factor <= 1:
            problems.append(f"jam factor {self.jam_factor} not in (0, 1]")
        if not 0 <= self.jam_from_s < self.jam_until_s:
            problems.append("the jam must start before it ends")
        if not self.pump_mm_h >= 0:
            problems.append(f"pump capacity {self.pump_mm_h} mm/h < 0")
        if not self.length_s > 0:
            problems.append("the story must last > 0 s")
        if not 0 <= self.report_at_s < self.length_s:
            problems.append(f"the citizen's call at {self.report_at_s:g} s is outside the story")
        if self.report_again_s is not None and not self.report_again_s > 0:
            problems.append(f"the second report must follow the call, not {self.report_again_s:g} s after it")
        if problems:
            raise ValueError("; ".join(problems))

    def feed_config(self, seed: int = 0, prefix: str = "city/") -> FeedConfig:
        """The simulator's settings for this story."""
        self.check()
        return FeedConfig(seed=seed, start=self.start, bad_share=self.bad_share,
                          storm_return_period_yr=self.storm_return_period_yr,
                          storm_duration_min=self.storm_duration_min, storm_start=self.start + self.storm_start_s,
                          crowd_peak=self.crowd_peak, crowd_peak_at=self.start + self.crowd_peak_s,
                          crowd_span_s=self.crowd_span_s, underpass_drainage_mm_h=self.pump_mm_h, prefix=prefix)

    def simulator(self, static: xr.Dataset, registry: Registry, seed: int = 0, prefix: str = "city/") -> Simulator:
        """The story's feeds for the twin ``self.twin(static)`` with ``registry``: its crowd counters count people
        over the walkable area that twin divides their counts by (`scenarios.feeds.sensors.twin_walkable_m2`), so
        the twin reads the densities the story means."""
        return Simulator(self.feed_config(seed, prefix), walkable_m2=twin_walkable_m2(self.twin(static), registry))

    def twin(self, static: xr.Dataset) -> xr.Dataset:
        """The district as the story has it: street drainage and underpass pumps (see the module docstring)."""
        cap = static["drainage_capacity"]
        streets = np.where(cap.values == DEFAULT_DRAINAGE_MM_H, max(self.drainage_mm_h, DEFAULT_DRAINAGE_MM_H),
                           cap.values)
        comment = f"{cap.attrs.get('comment', '')}; streets {self.drainage_mm_h:g} mm/h (demo)".lstrip("; ")
        ds = static.assign(drainage_capacity=cap.copy(data=streets).assign_attrs(comment=comment))
        return pumped(ds, self.pump_mm_h * SUMP_RATIO)

    def beats(self) -> list[Beat]:
        """What happens when, in order."""
        road, factor = self.jam_road, self.jam_factor
        storm_end = self.storm_start_s + self.storm_duration_min * 60.0
        mean = shanghai_storm_intensity(self.storm_return_period_yr, self.storm_duration_min)
        beats = [
            Beat(0.0, "evening on the Bund: the New Year's Eve crowd starts to gather"),
            Beat(self.storm_start_s, f"a rainstorm arrives: {self.storm_return_period_yr:g}-year, "
                                     f"{self.storm_duration_min:g} min, {mean:.0f} mm/h on average"),
            Beat(self.jam_from_s, f"traffic on {road} slows to {factor:.0%} of free speed",
                 lambda sim: sim.set_congestion(road, factor)),
            Beat(self.crowd_peak_s, f"the crowd peaks: about {self.crowd_peak:g} people per m2 on Chen Yi Square"),
            Beat(self.jam_until_s, f"traffic on {road} flows again", lambda sim: sim.set_congestion(road, 1.0)),
            Beat(storm_end, "the rain stops; the underpass pumps drain the water"),
            Beat(self.crowd_gone_s, "the crowd has dispersed"),
            *self.calls(),
        ]
        return sorted(beats, key=lambda b: b.at_s)

    def calls(self) -> list[Beat]:
        """The citizens' reports of the water near the Yan'an Rd E. Tunnel Puxi portal (`CALLS`)."""
        first = CALLS[0]
        beats = [Beat(self.report_at_s, first.text, first.post)]
        if self.report_again_s is not None:
            second = CALLS[1]
            beats.append(Beat(self.report_at_s + self.report_again_s, second.text, second.post))
        return beats


@dataclass(frozen=True)
class Call:
    """A citizen's report the story posts: ``lon``/``lat`` [degree, WGS84] of where the citizen stands."""

    source: str
    ref: str
    lon: float
    lat: float
    description: str
    address: str
    text: str
    """The console's line."""
    gcj02: bool = False
    """Send the position in GCJ-02 (a Chinese map app's), else WGS84."""

    def post(self, sim: Simulator) -> None:
        """Post the report on ``{prefix}reports/{source}`` with the simulator's next step."""
        lon, lat = wgs84_to_gcj02(self.lon, self.lat) if self.gcj02 else (self.lon, self.lat)
        sim.report(self.source, self.ref, category="waterlogging", lon=float(lon), lat=float(lat),
                   description=self.description, address=self.address, datum="GCJ02" if self.gcj02 else "WGS84")


CALLS = (
    Call("12345", "HL-20251231-0412", 121.4822, 31.2333,
         "延安东路隧道浦西口旁路面积水，快没过脚踝了，车辆涉水慢行。"
         "(Water on the road beside the Yan'an Rd E. Tunnel Puxi portal, nearly ankle deep; cars wade through "
         "slowly.)",
         "中山东二路近延安东路 / East Zhongshan No. 2 Rd near Yan'an Rd E.",
         "a citizen calls the 12345 hotline: water on the road by the Yan'an Rd E. Tunnel Puxi portal "
         "(市民热线：延安东路隧道浦西口路面积水)"),
    Call("app", "A-7731", 121.4820, 31.2334,
         "隧道口积水，行人过不去。(Water at the tunnel mouth, people on foot cannot get past.)",
         "延安东路隧道浦西口 / Yan'an Rd E. Tunnel Puxi portal",
         "a second citizen reports the same water in the city app, in GCJ-02 (市民App上报同一处积水)",
         gcj02=True),
)
"""The story's citizen reports: the hotline call, then the app report of the same water (de-duplication)."""


class Script:
    """Plays a story's beats on a simulator as simulated time passes."""

    def __init__(self, story: Story, on_beat: Callable[[Beat], None] | None = None) -> None:
        self.story, self.on_beat = story, on_beat
        self.pending = story.beats()

    def advance(self, sim: Simulator) -> list[Beat]:
        """Run the beats due at the simulator's time; returns them."""
        due = []
        while self.pending and self.story.start + self.pending[0].at_s <= sim.t + 1e-9:
            beat = self.pending.pop(0)
            if beat.action is not None:
                beat.action(sim)
            if self.on_beat is not None:
                self.on_beat(beat)
            due.append(beat)
        return due


def pumped(static: xr.Dataset, pump_mm_h: float, reach_cells: int = 2) -> xr.Dataset:
    """The twin with pump stations at its underpasses: drainage capacity ``pump_mm_h`` [mm h-1 over the
    sump] on the underpass cells and ``reach_cells`` around them (where the ramps' water collects),
    never lowered."""
    underpass = static["underpass"].values > 0
    if not underpass.any():
        return static
    around = ndimage.binary_dilation(underpass, iterations=reach_cells)
    cap = static["drainage_capacity"]
    values = np.where(around, np.maximum(cap.values, pump_mm_h), cap.values)
    comment = f"{cap.attrs.get('comment', '')}; underpass pump stations {pump_mm_h:g} mm/h (demo)".lstrip("; ")
    return static.assign(drainage_capacity=cap.copy(data=values).assign_attrs(comment=comment))
