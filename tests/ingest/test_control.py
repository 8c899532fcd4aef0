"""Control records (e.g. clock ticks) travel through the ingest loop in order and come back on replay."""

from __future__ import annotations

import json

from ingest.pipeline import Ingestor, control_message
from ingest.rawlog import RawLog
from tests.ingest.fakes import FakeSource


def _senml(device, t, count):
    return json.dumps([{"bn": f"urn:dev:{device}:", "n": "count", "u": "count", "v": count, "t": t}]).encode()


def test_control_records_keep_their_place_and_are_replayed(tmp_path):
    seen = []
    src = FakeSource()
    log = RawLog(tmp_path / "log")
    ing = Ingestor(src, log, None, sink=lambda b: seen.append(("batch", list(b.value))),
                   control=lambda topic, payload, t, pos: seen.append((topic, payload, pos)))
    t0 = 1_735_689_600.0
    src.put("city/sensors/crowd/c1", _senml("c1", t0, 5), received_at=t0)
    src.queue.put(control_message("$twin/tick", b"1", t0 + 0.5))
    src.put("city/sensors/crowd/c1", _senml("c1", t0 + 1, 7), received_at=t0 + 1)
    while ing.run_once(poll_s=0.01):
        pass
    tick_pos = seen[1][2]
    assert seen == [("batch", [5.0]), ("$twin/tick", b"1", tick_pos), ("batch", [7.0])]
    assert len(src.acked) == 2, "control records are never acknowledged to the broker"
    log.close()
    replayed = []
    again = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: replayed.append(list(b.value)),
                     control=lambda topic, payload, t, pos: replayed.append((topic, pos)))
    assert again.replay() == 3
    assert replayed == [[5.0], ("$twin/tick", tick_pos), [7.0]]
    # resuming at the position handed over with the tick gives exactly what followed it
    rest = []
    tail = Ingestor(FakeSource(), RawLog(tmp_path / "log"), None, sink=lambda b: rest.append(list(b.value)))
    assert tail.replay(tick_pos) == 1 and rest == [[7.0]]
