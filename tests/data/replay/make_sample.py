"""Write the small recorded feed in ``bund-nye-2024/`` (synthetic; run ``python tests/data/replay/make_sample.py``).

Ninety seconds of New Year's Eve 2024 on the Bund, from 23:50:00 +08:00 (a past date: the wall clock's time-skew
check refuses it), as two JSONL files that `twin replay` merges by time:

- ``counters.jsonl``: the twelve crowd counters of the Bund registry (data/bund/registry.geojson) report every
  10 s, each at its own offset (0.5 s apart), as SenML text in ``payload`` with ``t`` in unix seconds. Every counter
  counts `QUIET` people, except Chen Yi Square's (`SQUARE`), which counts `CROWD` from `JUMP_T` on: about 5.9
  person/m2 over its walkable area, a red crowd density (`models.config.CrowdConfig`), so the twin raises a crowd
  alert 3 s of twin time after that record (`models.config.AlertTiming.for_s`). Also three lines a recording can
  hold and a replay must skip, at fixed line numbers (`BAD_LINES`): one that is not JSON, one whose time has no UTC
  offset, and a retained alert of the twin itself (a topic the twin does not subscribe to).
- ``units.jsonl``: two field units' BeiDou fixes every 10 s as NMEA (GGA + RMC, with the date) in ``payload_b64``,
  ``t`` as ISO 8601 with +08:00.

The output is deterministic (no randomness, no wall time), so running this again gives the same files.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from ingest.batch import Batch
from ingest.decoders.nmea import encode_nmea
from ingest.decoders.senml import encode_senml

HERE = Path(__file__).parent
OUT = HERE / "bund-nye-2024"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2024, 12, 31, 23, 50, 0, tzinfo=SHANGHAI).timestamp()
"""The first record's time: 2024-12-31T23:50:00+08:00 [unix s]."""
LENGTH_S = 90.0
PERIOD_S = 10.0
"""Reporting period of every device [s]."""
COUNTERS = [f"crowd-bund-{i:02d}" for i in range(1, 13)]
SQUARE = "crowd-bund-05"
"""Chen Yi Square's counter."""
QUIET = 200.0
CROWD = 40_000.0
"""Counts [person]: a quiet evening, and the midnight crowd on Chen Yi Square (about 5.9 person/m2 there)."""
JUMP_T = T0 + 40.0 + COUNTERS.index(SQUARE) * 0.5
"""Recorded time of Chen Yi Square's first crowded count [unix s] (23:50:42 +08:00)."""
UNITS = {"unit-police-04": (121.4855, 31.2405), "unit-fire-05": (121.5100, 31.2380)}
"""Field units and where they stand (lon, lat): Chen Yi Square, and Lujiazui across the river."""
BAD_LINES = {5: "not_json", 20: "bad_time", 30: "not_subscribed"}
"""Line numbers of counters.jsonl that a replay skips, and why (`twin.live.replay.Skip`): not JSON, a time without
a UTC offset, and a retained alert of the twin itself."""


def iso(t: float) -> str:
    """ISO 8601 with the Shanghai offset."""
    return dt.datetime.fromtimestamp(t, SHANGHAI).isoformat()


def counter_lines() -> list[str]:
    """counters.jsonl: the counts in time order, with the `BAD_LINES` put in at their line numbers."""
    lines = []
    for k in range(int(LENGTH_S / PERIOD_S)):
        for i, device in enumerate(COUNTERS):
            t = round(T0 + k * PERIOD_S + i * 0.5, 3)
            count = CROWD if device == SQUARE and t >= JUMP_T else QUIET
            payload = encode_senml(Batch.build(1, device=device, t=t, quantity="count", value=count)).decode()
            lines.append(json.dumps({"topic": f"city/sensors/crowd/{device}", "payload": payload, "t": t}))
    bad = {5: "this line is not JSON",
           20: json.dumps({"topic": "city/sensors/crowd/crowd-bund-03", "payload": "{}", "t": "2024-12-31 23:50:30"}),
           30: json.dumps({"topic": "city/alerts/citytwin.bund.crowd.20241231T000000Z.00001",
                           "payload": "{\"msgType\":\"Alert\"}", "t": T0 + 30})}
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    return lines


def unit_lines() -> list[str]:
    """units.jsonl: each unit's fix every `PERIOD_S`, NMEA in base64, ISO 8601 times."""
    lines = []
    for k in range(int(LENGTH_S / PERIOD_S)):
        for j, (unit, (lon, lat)) in enumerate(UNITS.items()):
            t = T0 + k * PERIOD_S + 0.25 + j * 0.5
            fix = Batch.build(1, device=unit, t=float(t), lon=lon, lat=lat, speed_kmh=3.0, course_deg=90.0, fix=1,
                              hdop=0.9, quantity="position")
            lines.append(json.dumps({"topic": f"city/beidou/{unit}", "t": iso(t),
                                     "payload_b64": base64.b64encode(encode_nmea(fix, talker="BD")).decode()}))
    return lines


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, lines in (("counters.jsonl", counter_lines()), ("units.jsonl", unit_lines())):
        (OUT / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {OUT / name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
